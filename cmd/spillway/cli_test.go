package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/blueprints"
	"github.com/spillway-dev/spillway/engine"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestRenderExpandsTheBlueprintWithDefaultsAndSets(t *testing.T) {
	out, err := runCLI(t, "render", "latencyaimd",
		"--set", "policy_name=checkout",
		"--set", "flux_meter.selector.control_point=ingress",
		"--set", "latency_baseliner.latency_tolerance_multiplier=1.3")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var policy struct {
		Name       string           `json:"policy_name"`
		Interval   string           `json:"evaluation_interval"`
		Components []map[string]any `json:"components"`
		Config     struct {
			Baseliner struct {
				EMA struct {
					Window string `json:"ema_window"`
				} `json:"ema"`
				Tolerance float64 `json:"latency_tolerance_multiplier"`
			} `json:"latency_baseliner"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(out), &policy); err != nil {
		t.Fatalf("render output is not JSON: %v\n%s", err, out)
	}
	if policy.Name != "checkout" || policy.Interval != "500ms" || len(policy.Components) != 7 ||
		policy.Config.Baseliner.EMA.Window != "1500s" || policy.Config.Baseliner.Tolerance != 1.3 {
		t.Fatalf("unexpected render: %+v", policy)
	}
}

// render words its errors in terms of its command line: the --set flag at
// fault, the flag to add, or the blueprints there are.
func TestRenderReportsMissingAndBadInput(t *testing.T) {
	out, err := runCLI(t, "render", "latencyaimd", "--set", "policy_name=x")
	want := "flux_meter.selector.control_point: required field is missing (want a non-empty string); set it with --set flux_meter.selector.control_point=VALUE\n"
	if err == nil || out != want {
		t.Fatalf("want one required-field error, got %v:\n%s\nwant:\n%s", err, out, want)
	}
	out, err = runCLI(t, "render", "latencyaimd", "--set", "policy_name=x", "--set", "flux_meter.selector.control_point=in", "--set", "rate_controller.slope=1")
	want = "--set rate_controller.slope=1: want a number <0, got 1\n"
	if err == nil || out != want {
		t.Fatalf("want the --set at fault, got %v:\n%s\nwant:\n%s", err, out, want)
	}
	_, err = runCLI(t, "render", "nosuch")
	if err == nil || err.Error() != `unknown blueprint "nosuch" (the blueprints are `+strings.Join(blueprints.Names(), ", ")+`)` {
		t.Fatalf("want the blueprints named, got %v", err)
	}
	if _, err := runCLI(t, "render", "../etc"); err == nil {
		t.Fatal("a path as blueprint name must be refused")
	}
	if _, err := runCLI(t, "render", "latencyaimd", "--set", "no-equals"); err == nil {
		t.Fatal("a --set without = must be refused")
	}
}

func TestCheckJSON(t *testing.T) {
	out, err := runCLI(t, "check", "--json", "testdata/check/constraint_slope.cue", "testdata/check/loop.cue")
	if err == nil {
		t.Fatal("check must fail when one file is broken")
	}
	var r checkReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.OK || len(r.Errors) != 1 || r.Errors[0].Pos.Line != 9 || r.Errors[0].Pos.Col != 27 {
		t.Fatalf("report %+v", r)
	}
}

// startDemoEngine runs the demo policy with ticks driven by hand.
func startDemoEngine(t *testing.T) *engine.Engine {
	t.Helper()
	specs, diags := engine.LoadSource("demo_policy.cue", demoPolicy)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	eng, err := engine.Start(t.Context(), engine.Options{Specs: specs, ManualTicks: true, Clock: func() int64 { return 1e9 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

func TestStatusEndpoint(t *testing.T) {
	eng := startDemoEngine(t)
	eng.Tick()
	srv := httptest.NewServer(adminServer(eng, nil, adminAccess{}).Handler)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Policies []struct {
			Name      string         `json:"name"`
			Ticks     int            `json:"ticks"`
			Signals   map[string]any `json:"signals"`
			Actuators []any          `json:"actuators"`
		} `json:"policies"`
		Errors []any `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if len(st.Policies) != 1 || st.Policies[0].Name != "demo" || st.Policies[0].Ticks != 1 ||
		len(st.Policies[0].Actuators) != 1 {
		t.Fatalf("status %+v", st)
	}
	if v, ok := st.Policies[0].Signals["LATENCY"]; !ok || v != nil {
		t.Fatalf("LATENCY before any request must be present and null (invalid), got %v", v)
	}
	// Protection from the first tick: the limit is the initial one.
	if v := st.Policies[0].Signals["LIMIT"]; v != 3.0 {
		t.Fatalf("LIMIT after the first tick = %v, want the initial 3", v)
	}
}

// The dynamic-config endpoint: a good body changes the running policy, a
// bad one gets a 4xx with the reason and changes nothing.
func TestDynamicConfigEndpoint(t *testing.T) {
	eng := startDemoEngine(t)
	srv := httptest.NewServer(adminServer(eng, nil, adminAccess{}).Handler)
	defer srv.Close()
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/policies/demo/config", `{"dry_run": "yes"}`, 400, "invalid dynamic config"},
		{"POST", "/policies/demo/config", `{"dry_run": true, "extra": 1}`, 400, `unknown field \"extra\"`},
		{"POST", "/policies/demo/config", `{"variables": {"NOPE": 1}}`, 400, `no Variable with output \"NOPE\"`},
		{"POST", "/policies/demo/config", strings.Repeat("x", engine.MaxDynamicConfigSize+10), 413, "larger than"},
		{"POST", "/policies/demo/config", `{"dry_run": true, "dry_run": false}`, 400, `key \"dry_run\" given twice`},
		{"POST", "/policies/nope/config", `{"dry_run": true}`, 404, "no such policy"},
		{"GET", "/policies/demo/config", "", 200, "{}"},
		{"POST", "/policies/demo/config", `{"dry_run": true}`, 200, `"dry_run": true`},
		{"GET", "/policies/demo/config", "", 200, `"dry_run": true`},
		{"DELETE", "/policies/demo/config", "", 200, "{}"},
		{"PUT", "/policies/demo/config", "{}", 405, ""},
	} {
		code, body := call(tc.method, tc.path, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s %.30q: %d %s; want %d containing %q", tc.method, tc.path, tc.body, code, body, tc.code, tc.want)
		}
		if code >= 400 && eng.Status().Policies[0].DryRun {
			t.Errorf("a refused body changed dry_run")
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// check --watch re-checks the directory after every save.
func TestCheckWatch(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile("../../policies/latency-aimd.cue")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "p.cue")
	if err := os.WriteFile(file, good, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	out := &syncBuffer{}
	root := newRoot()
	root.SetOut(out)
	root.SetArgs([]string{"check", "--watch", dir})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second) // a loaded machine evaluates slowly
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("output never contained %q:\n%s", want, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("policy ingress-latency-aimd: 7 components")
	if err := os.WriteFile(file, []byte("policies: {"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(file + ":1:12: ")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("check --watch ended with %v", err)
	}
}
