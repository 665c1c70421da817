package testbed

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCapacityIsWorkersOverMeanBackendTime(t *testing.T) {
	tests := []struct {
		name string
		cfg  TwoTierConfig
		want float64
	}{
		{"default app", DefaultTwoTier(), 8 / 0.025},
		{"4 workers at 10 ms", TwoTierConfig{BackendTime: Dist{Kind: Constant, Mean: 10 * time.Millisecond}, Workers: 4}, 400},
		{"shape does not matter", TwoTierConfig{BackendTime: Dist{Kind: Exponential, Mean: 10 * time.Millisecond}, Workers: 4}, 400},
		{"frontend time does not matter", TwoTierConfig{FrontendTime: Dist{Kind: Constant, Mean: time.Second}, BackendTime: Dist{Kind: Constant, Mean: 10 * time.Millisecond}, Workers: 4}, 400},
		{"zero service time is unbounded", TwoTierConfig{BackendTime: Dist{Kind: Constant}, Workers: 4}, math.Inf(1)},
	}
	for _, tt := range tests {
		if got := tt.cfg.Capacity(); math.Abs(got-tt.want) > 1e-9 && got != tt.want {
			t.Errorf("%s: Capacity() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestDefaultTwoTierSuitsTheDemo(t *testing.T) {
	cfg := DefaultTwoTier()
	if c := cfg.Capacity(); c < 300 || c > 500 {
		t.Errorf("Capacity() = %v req/s, want 300..500 so 3× is easy to generate on 2 cores", c)
	}
	if err := cfg.validate(); err != nil {
		t.Errorf("DefaultTwoTier is invalid: %v", err)
	}
}

func TestStartTwoTierRejectsInvalidConfig(t *testing.T) {
	valid := Dist{Kind: Constant, Mean: time.Millisecond}
	tests := []struct {
		name    string
		cfg     TwoTierConfig
		wantErr string
	}{
		{"no workers", TwoTierConfig{FrontendTime: valid, BackendTime: valid}, "TwoTierConfig.Workers 0: must be >= 1"},
		{"unknown kind", TwoTierConfig{FrontendTime: valid, BackendTime: Dist{Kind: "uniform"}, Workers: 1}, `TwoTierConfig.BackendTime.Kind "uniform"`},
		{"zero Dist", TwoTierConfig{BackendTime: valid, Workers: 1}, `TwoTierConfig.FrontendTime.Kind ""`},
		{"negative mean", TwoTierConfig{FrontendTime: valid, BackendTime: Dist{Kind: Constant, Mean: -1}, Workers: 1}, "TwoTierConfig.BackendTime.Mean -1ns: must be >= 0"},
		{"negative sigma", TwoTierConfig{FrontendTime: valid, BackendTime: Dist{Kind: Lognormal, Mean: 1, Sigma: -1}, Workers: 1}, "TwoTierConfig.BackendTime.Sigma -1"},
	}
	for _, tt := range tests {
		app, err := StartTwoTier(tt.cfg, nil)
		if err == nil {
			app.Close()
			t.Errorf("%s: StartTwoTier succeeded, want error containing %q", tt.name, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error %q does not contain %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestTwoTierServesAndWrapSeesEntryPattern(t *testing.T) {
	var (
		mu       sync.Mutex
		patterns []string
	)
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			patterns = append(patterns, r.Pattern)
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	}
	app := startApp(t, fastApp(1), wrap)
	if !strings.HasPrefix(app.URL, "http://127.0.0.1:") || !strings.HasSuffix(app.URL, "/api") {
		t.Errorf("URL = %q, want http://127.0.0.1:PORT/api", app.URL)
	}
	if status, body := fetch(t, app.URL, 5*time.Second); status != http.StatusOK || body != "ok\n" {
		t.Errorf("GET %s = %d %q, want 200 \"ok\\n\"", app.URL, status, body)
	}
	if status, _ := fetch(t, strings.TrimSuffix(app.URL, "/api")+"/other", 5*time.Second); status != http.StatusNotFound {
		t.Errorf("GET /other = %d, want 404: only %s is served", status, EntryPattern)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(patterns) != 1 || patterns[0] != "GET /api" {
		t.Errorf("wrap saw patterns %q, want exactly [\"GET /api\"]", patterns)
	}
}

func TestFrontendAnswers502WhenBackendIsDown(t *testing.T) {
	app := startApp(t, fastApp(1), nil)
	app.backend.Close()
	if status, _ := fetch(t, app.URL, 5*time.Second); status != http.StatusBadGateway {
		t.Errorf("GET with the backend down = %d, want 502", status)
	}
}

func TestBackendQueueDropsCanceledRequests(t *testing.T) {
	// One worker at 50 ms. 40 requests that give up after 100 ms would
	// hold the worker for 2 s if canceled requests stayed queued; since they
	// leave, a request sent right after them waits for at most the one or
	// two that reached the worker.
	cfg := TwoTierConfig{
		FrontendTime: Dist{Kind: Constant},
		BackendTime:  Dist{Kind: Constant, Mean: 50 * time.Millisecond},
		Workers:      1,
	}
	app := startApp(t, cfg, nil)
	var impatient sync.WaitGroup
	for range 40 {
		impatient.Go(func() { fetch(t, app.URL, 100*time.Millisecond) })
	}
	impatient.Wait()

	begin := time.Now()
	status, _ := fetch(t, app.URL, 5*time.Second)
	if status != http.StatusOK {
		t.Fatalf("GET after the impatient burst = %d, want 200", status)
	}
	if took := time.Since(begin); took > time.Second {
		t.Errorf("GET after the impatient burst took %v; canceled requests seem to stay queued (they hold 2 s of work)", took)
	}
}

func TestCloseStopsBothServers(t *testing.T) {
	app, err := StartTwoTier(fastApp(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(app.URL); err == nil {
		resp.Body.Close()
		t.Errorf("GET after Close answered %d, want a connection error", resp.StatusCode)
	}
}

// fastApp is a two-tier app with 1 ms backend work on the given workers.
func fastApp(workers int) TwoTierConfig {
	return TwoTierConfig{
		FrontendTime: Dist{Kind: Constant},
		BackendTime:  Dist{Kind: Constant, Mean: time.Millisecond},
		Workers:      workers,
	}
}

func startApp(t *testing.T, cfg TwoTierConfig, wrap func(http.Handler) http.Handler) *TwoTier {
	t.Helper()
	app, err := StartTwoTier(cfg, wrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return app
}

// fetch returns the status and body of GET url, or status 0 if the request
// failed or timed out.
func fetch(t *testing.T, url string, timeout time.Duration) (status int, body string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Logf("GET %s: %v", url, err)
		}
		return 0, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, ""
	}
	return resp.StatusCode, string(b)
}
