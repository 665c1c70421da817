package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/telemetry"
)

// The admin server serves the live page, its data and the metrics next to
// /status.
func TestAdminServesLivePageSignalsAndMetrics(t *testing.T) {
	eng := startDemoEngine(t)
	eng.Tick()
	metrics, err := telemetry.New(t.Context(), eng)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdownMetrics(metrics)
	srv := httptest.NewServer(adminServer(eng, metrics).Handler)
	defer srv.Close()
	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if code, ctype, body := get("/"); code != 200 || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, "Spillway live") {
		t.Fatalf("GET /: %d %s", code, ctype)
	}
	code, _, body := get("/api/signals")
	var signals struct {
		Policies []struct {
			Policy string `json:"policy"`
		} `json:"policies"`
	}
	if err := json.Unmarshal([]byte(body), &signals); code != 200 || err != nil || len(signals.Policies) != 1 || signals.Policies[0].Policy != "demo" {
		t.Fatalf("GET /api/signals: %d %v %s", code, err, body)
	}
	if code, _, body := get("/metrics"); code != 200 || !strings.Contains(body, `spillway_signal_invalid_total{component="components[4].AIMDController",policy="demo",port="rate_limit",signal="RATE_LIMIT"} 1`) {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	if code, _, _ := get("/status"); code != 200 {
		t.Fatalf("GET /status: %d", code)
	}
}

func TestDashboardsCommandWritesOneDashboardPerPolicy(t *testing.T) {
	out := filepath.Join(t.TempDir(), "boards")
	stdout, err := runCLI(t, "dashboards", "--policies", "../../policies", "--out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.json"))
	if len(files) == 0 || strings.Count(stdout, ".json") != len(files) {
		t.Fatalf("wrote %v, printed:\n%s", files, stdout)
	}
	if _, err := os.Stat(filepath.Join(out, "ingress-latency-aimd.json")); err != nil {
		t.Fatal(err)
	}
	stdout, err = runCLI(t, "dashboards", "--policies", filepath.Join(t.TempDir(), "missing"), "--out", out)
	if err == nil || !strings.Contains(stdout, "missing") {
		t.Fatalf("a missing directory: %v\n%s", err, stdout)
	}
}

// The demo serves the admin listener while it runs and prints its URL.
func TestDemoServesTheLivePageWhileItRuns(t *testing.T) {
	plan := defaultDemoPlan()
	plan.Warm, plan.Overload = time.Second, time.Second
	plan.Admin = "127.0.0.1:0"
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		_, err := runDemo(t.Context(), out, plan)
		done <- err
	}()
	url := regexp.MustCompile(`live dashboard: (http://127\.0\.0\.1:\d+/) `)
	deadline := time.Now().Add(30 * time.Second)
	var m []string
	for m == nil {
		if m = url.FindStringSubmatch(out.String()); m == nil {
			if time.Now().After(deadline) {
				t.Fatalf("the demo never printed its URL:\n%s", out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	resp, err := http.Get(m[1] + "api/signals")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %sapi/signals while the demo runs: %d", m[1], resp.StatusCode)
	}
	if err := <-done; err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "latency-aimd goodput is") {
		t.Fatalf("the demo did not finish its report:\n%s", out.String())
	}
}
