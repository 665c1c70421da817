// Package promtest serves Prometheus's query API for tests: a fake that
// answers what the test says, and a real prometheus server on loopback.
package promtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Fake serves /api/v1/query with the body answer returns for the request's
// query; a body that starts with a status code and a space ("503 ...") is
// sent with that status, any other with 200. The server stops when the
// test ends.
func Fake(t testing.TB, answer func(query string, r *http.Request) string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		body := answer(r.FormValue("query"), r)
		code := http.StatusOK
		if len(body) > 4 && body[3] == ' ' {
			if _, err := fmt.Sscanf(body[:3], "%d", &code); err == nil {
				body = body[4:]
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Vector is a successful instant-vector answer with one series per value
// (values as Prometheus writes them: "1.5", "NaN", "+Inf").
func Vector(values ...string) string {
	series := make([]string, len(values))
	for i, v := range values {
		series[i] = fmt.Sprintf(`{"metric":{"instance":"10.0.0.%d:9464","job":"spillway"},"value":[1764590000.5,%q]}`, i+1, v)
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(series, ",") + `]}}`
}

// Binary returns the prometheus server's path. Without it the test is
// skipped with a loud message, unless the environment variable CI is
// "true", in which case it fails: scripts/test installs prometheus.
func Binary(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("prometheus")
	if err == nil {
		return path
	}
	msg := "the prometheus server is not installed: this test did NOT run (apt-get install -y prometheus, or run scripts/test)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "SKIP!", t.Name()+":", msg)
	t.Skip(msg)
	return ""
}

// Start runs a real prometheus on a free loopback port, scraping targets
// (host:port, /metrics) every scrape interval as job "spillway", with its
// configuration and storage in a temporary directory, and returns its base
// URL once it is ready. It stops when the test ends; its log is shown when
// the test failed.
func Start(t testing.TB, scrape time.Duration, targets ...string) string {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, target := range targets {
		quoted[i] = fmt.Sprintf("%q", target)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
scrape_configs:
  - job_name: spillway
    static_configs:
      - targets: [%s]
`, scrape, scrape, strings.Join(quoted, ", "))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen,
		"--log.level=warn")
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	base := "http://" + listen
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus on %s not ready within 30 s: %v", listen, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
