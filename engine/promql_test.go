package engine_test

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/promtest"
)

// promqlPolicy limits GET /pay to the fleet-wide value of a PromQL query.
const promqlPolicy = `
package p

policies: fleet: {
	policy_name:         "fleet"
	evaluation_interval: "100ms"
	components: [
		{PromQL: {query: "QUERY", interval: "INTERVAL", out_ports: output: "FLEET"}},
		{RateLimiter: {selector: {control_point: "ingress", api: "GET /pay"}, in_ports: rate_limit: "FLEET"}},
	]
}
`

func loadPromQLPolicy(t *testing.T, query, interval string) []engine.Spec {
	t.Helper()
	src := strings.NewReplacer("QUERY", query, "INTERVAL", interval).Replace(promqlPolicy)
	specs, diags := engine.LoadSource("fleet.cue", []byte(src))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	return specs
}

// TestPromQLNeedsPrometheus: a PromQL component on an engine without a
// Prometheus address is a load error at the component's position.
func TestPromQLNeedsPrometheus(t *testing.T) {
	_, err := engine.Start(context.Background(), engine.Options{Specs: loadPromQLPolicy(t, "up", "1s"), ManualTicks: true})
	if err == nil || !strings.Contains(err.Error(), "fleet.cue:8:") || !strings.Contains(err.Error(), "PromQL component needs a Prometheus server") {
		t.Fatalf("err = %v, want fleet.cue:8 and a word about Prometheus", err)
	}
	if _, err := engine.Start(context.Background(), engine.Options{Prometheus: "localhost:9090", ManualTicks: true}); err == nil || !strings.Contains(err.Error(), "engine.Options.Prometheus") {
		t.Fatalf("a bad address: err = %v", err)
	}
}

// queryStatus is the fleet policy's one query as /status shows it.
func queryStatus(t *testing.T, eng *engine.Engine) engine.QueryStatus {
	t.Helper()
	for _, p := range eng.Status().Policies {
		if p.Name == "fleet" && len(p.Queries) == 1 {
			return p.Queries[0]
		}
	}
	t.Fatalf("no query on /status: %+v", eng.Status().Policies)
	return engine.QueryStatus{}
}

// waitQuery waits until the query's status satisfies ok.
func waitQuery(t *testing.T, eng *engine.Engine, ok func(engine.QueryStatus) bool) engine.QueryStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		qs := queryStatus(t, eng)
		if ok(qs) {
			return qs
		}
		if time.Now().After(deadline) {
			t.Fatalf("query status never became as wanted: %+v", qs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func signal(t *testing.T, eng *engine.Engine, name string) float64 {
	t.Helper()
	v, err := eng.Signal("fleet", name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestPromQLDrivesALimit: the query's answer becomes the signal and the
// limit at the next tick; an error makes both invalid (no limit) at once,
// and shows on /status; a new answer brings them back.
func TestPromQLDrivesALimit(t *testing.T) {
	t.Parallel()
	var answer atomic.Value
	answer.Store(promtest.Vector("250"))
	var queries atomic.Int64
	prom := promtest.Fake(t, func(q string, _ *http.Request) string {
		queries.Add(1)
		if q != `sum(rate(spillway_requests_total{api="GET /pay"}[10s]))` {
			return `400 {"status":"error","errorType":"bad_data","error":"unexpected query"}`
		}
		return answer.Load().(string)
	})
	specs := loadPromQLPolicy(t, `sum(rate(spillway_requests_total{api=\"GET /pay\"}[10s]))`, "100ms")
	eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, Prometheus: prom.URL, ManualTicks: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()

	waitQuery(t, eng, func(q engine.QueryStatus) bool { return float64(q.Value) == 250 })
	eng.Tick()
	if v := signal(t, eng, "FLEET"); v != 250 {
		t.Fatalf("FLEET = %v, want 250", v)
	}
	if sp := eng.Status().Policies[0].Actuators[0].Setpoint; float64(sp) != 250 {
		t.Fatalf("rate limit %v, want 250", sp)
	}

	answer.Store(promtest.Vector("1", "2"))
	qs := waitQuery(t, eng, func(q engine.QueryStatus) bool { return q.LastError != "" })
	if !strings.Contains(qs.LastError, "2 series") || qs.Failures == 0 || !math.IsNaN(float64(qs.Value)) {
		t.Fatalf("after a two-series answer: %+v", qs)
	}
	eng.Tick()
	if v := signal(t, eng, "FLEET"); !math.IsNaN(v) {
		t.Fatalf("FLEET = %v after a failed query, want invalid", v)
	}
	if sp := eng.Status().Policies[0].Actuators[0].Setpoint; !math.IsNaN(float64(sp)) {
		t.Fatalf("rate limit %v after a failed query, want none (fail-open)", sp)
	}

	answer.Store(promtest.Vector("90.5"))
	waitQuery(t, eng, func(q engine.QueryStatus) bool { return float64(q.Value) == 90.5 && q.LastError == "" })
	eng.Tick()
	if v := signal(t, eng, "FLEET"); v != 90.5 {
		t.Fatalf("FLEET = %v after recovery, want 90.5", v)
	}
	if queries.Load() < 3 {
		t.Errorf("%d queries", queries.Load())
	}
}

// TestPromQLStaleAnswerIsInvalid: on the engine's clock, an answer older
// than two intervals is invalid even when no query has failed yet.
func TestPromQLStaleAnswerIsInvalid(t *testing.T) {
	prom := promtest.Fake(t, func(string, *http.Request) string { return promtest.Vector("7") })
	var now atomic.Int64
	now.Store(int64(time.Hour))
	eng, err := engine.Start(context.Background(), engine.Options{
		Specs: loadPromQLPolicy(t, "x", "10s"), Prometheus: prom.URL, ManualTicks: true,
		Clock: now.Load, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	waitQuery(t, eng, func(q engine.QueryStatus) bool { return float64(q.Value) == 7 })
	for _, step := range []struct {
		advance time.Duration
		want    float64
	}{
		{0, 7},
		{20 * time.Second, 7}, // two intervals: still valid
		{time.Nanosecond, math.NaN()},
	} {
		now.Add(int64(step.advance))
		eng.Tick()
		v := signal(t, eng, "FLEET")
		if v != step.want && !(math.IsNaN(v) && math.IsNaN(step.want)) {
			t.Fatalf("after +%s: FLEET = %v, want %v", step.advance, v, step.want)
		}
	}
	if qs := queryStatus(t, eng); qs.Age != 20*time.Second+1 {
		t.Errorf("status age %s, want 20.000000001s", qs.Age)
	}
}

// TestPromQLNeverHoldsATick: with Prometheus hanging, a tick returns at
// once with the signal invalid; Close cancels the query in flight and
// waits for its poller.
func TestPromQLNeverHoldsATick(t *testing.T) {
	var inFlight atomic.Int64
	prom := promtest.Fake(t, func(_ string, r *http.Request) string {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		<-r.Context().Done()
		return promtest.Vector("1")
	})
	eng, err := engine.Start(context.Background(), engine.Options{Specs: loadPromQLPolicy(t, "x", "10s"), Prometheus: prom.URL, ManualTicks: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for inFlight.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if inFlight.Load() != 1 {
		t.Fatalf("%d queries in flight, want 1", inFlight.Load())
	}
	start := time.Now()
	eng.Tick()
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("a tick took %s while the query hung", took)
	}
	if v := signal(t, eng, "FLEET"); !math.IsNaN(v) {
		t.Errorf("FLEET = %v with no answer yet, want invalid", v)
	}
	eng.Close()
	deadline = time.Now().Add(5 * time.Second)
	for inFlight.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if inFlight.Load() != 0 {
		t.Error("the query was still in flight after Close")
	}
}

// TestPromQLPollerSurvivesAReload: a reload that keeps the query keeps
// its poller and its answer; one that changes the query starts a new
// poller and stops the old.
func TestPromQLPollerSurvivesAReload(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	runs := map[string]int{}
	count := func(q string) int {
		mu.Lock()
		defer mu.Unlock()
		return runs[q]
	}
	prom := promtest.Fake(t, func(q string, _ *http.Request) string {
		mu.Lock()
		runs[q]++
		mu.Unlock()
		return promtest.Vector("5")
	})
	eng, err := engine.Start(context.Background(), engine.Options{Specs: loadPromQLPolicy(t, "a", "10s"), Prometheus: prom.URL, ManualTicks: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	waitQuery(t, eng, func(q engine.QueryStatus) bool { return float64(q.Value) == 5 })

	// The same query, another limiter selector: the poller carries over.
	src := strings.Replace(strings.NewReplacer("QUERY", "a", "INTERVAL", "10s").Replace(promqlPolicy), "GET /pay", "GET /refund", 1)
	same, diags := engine.LoadSource("fleet.cue", []byte(src))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if err := eng.Apply(same); err != nil {
		t.Fatal(err)
	}
	if qs := queryStatus(t, eng); float64(qs.Value) != 5 {
		t.Fatalf("after a reload that kept the query: %+v", qs)
	}
	eng.Tick()
	if v := signal(t, eng, "FLEET"); v != 5 {
		t.Fatalf("FLEET = %v right after the reload, want the carried answer 5", v)
	}
	time.Sleep(50 * time.Millisecond)
	if n := count("a"); n != 1 {
		t.Fatalf("query a ran %d times, want once (10 s interval, poller kept)", n)
	}

	// Another query: a new poller, which queries at once.
	if err := eng.Apply(loadPromQLPolicy(t, "b", "10s")); err != nil {
		t.Fatal(err)
	}
	waitQuery(t, eng, func(q engine.QueryStatus) bool { return q.Query == "b" && float64(q.Value) == 5 })
	if count("b") != 1 || count("a") != 1 {
		t.Fatalf("queries a=%d b=%d, want 1 each", count("a"), count("b"))
	}
}
