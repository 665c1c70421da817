package telemetry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/promtest"
)

// livePolicy is latency AIMD on a 100 ms tick with a 1 s warm-up, so that
// every signal is valid and moving within seconds.
const livePolicy = `
package t
import "spillway.dev/blueprints/latencyaimd"
policies: web: latencyaimd.#Policy & {
	config: {
		policy_name: "web"
		evaluation_interval: "100ms"
		flux_meter: selector: control_point: "ingress"
		latency_baseliner: ema: warmup_window: "1s"
	}
}
`

// waitFor polls cond until it holds; it fails the test after a generous
// deadline, which only bounds a hang and is not what the test asserts.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened; last: %s", what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// promQuery evaluates an instant PromQL query and returns its samples'
// values.
func promQuery(base, query string) ([]float64, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", query, body.Error)
	}
	var out []float64
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// TestPrometheusScrapesARunningEngine runs an engine on real ticks behind
// an HTTP server under steady load, and a real Prometheus server scraping
// its /metrics. Prometheus must see the decision counters and the signal
// gauges, and see them move.
func TestPrometheusScrapesARunningEngine(t *testing.T) {
	promtest.Binary(t) // skip or fail before starting anything
	specs, diags := engine.LoadSource("web.cue", []byte(livePolicy))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	eng, err := engine.Start(t.Context(), engine.Options{Specs: specs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	m := newMetrics(t, eng)
	admin := http.NewServeMux()
	admin.Handle("GET /metrics", m.Handler())
	adminSrv := httptest.NewServer(admin)
	defer adminSrv.Close()

	app := http.NewServeMux()
	app.HandleFunc("GET /work", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
	})
	appSrv := httptest.NewServer(eng.HTTP("ingress", app))
	defer appSrv.Close()
	ctx, stopLoad := context.WithCancel(context.Background())
	var load sync.WaitGroup
	for range 4 {
		load.Add(1)
		go func() {
			defer load.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", appSrv.URL+"/work", nil)
				if resp, err := appSrv.Client().Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	defer func() { stopLoad(); load.Wait() }()

	prom := promtest.Start(t, 200*time.Millisecond, adminSrv.Listener.Addr().String())
	check := func(query string, want func([]float64) bool) func() (bool, string) {
		return func() (bool, string) {
			v, err := promQuery(prom, query)
			if err != nil {
				return false, err.Error()
			}
			return want(v), fmt.Sprintf("%s = %v", query, v)
		}
	}
	positive := func(v []float64) bool { return len(v) == 1 && v[0] > 0 }
	waitFor(t, "the scrape target is up", check(`up{job="spillway"}`, func(v []float64) bool { return len(v) == 1 && v[0] == 1 }))
	// The decision counters exist for the API, and grow.
	waitFor(t, "spillway_requests_total exists", check(`count(spillway_requests_total{control_point="ingress",api="GET /work"})`,
		func(v []float64) bool { return len(v) == 1 && v[0] == 4 }))
	waitFor(t, "spillway_requests_total moves", check(`sum(increase(spillway_requests_total{control_point="ingress",api="GET /work"}[5s]))`, positive))
	// Every signal of the circuit is there, and the latency moves.
	waitFor(t, "spillway_signal has the latency", check(`count(spillway_signal{policy="web",signal="LATENCY"})`, positive))
	waitFor(t, "spillway_signal moves", check(`sum(changes(spillway_signal{policy="web",signal="LATENCY"}[5s]))`, positive))
	waitFor(t, "every signal is exported", check(`count(spillway_signal_invalid_total{policy="web"})`,
		func(v []float64) bool { return len(v) == 1 && v[0] == 9 }))
	waitFor(t, "the request-duration histogram is scraped", check(`sum(spillway_request_duration_seconds_count{control_point="ingress",api="*"})`, positive))
}
