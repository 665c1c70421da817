package testbed

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// poolApp calls a pool of 4 workers for 10 ms a request (400 req/s); idle
// is bounded and never called.
func poolApp() App {
	constant := func(d time.Duration) Dist { return Dist{Kind: Constant, Mean: d} }
	return App{
		Name: "pool", Entry: "web", ClientTimeout: 2 * time.Second,
		Services: []Service{{Name: "web"}, {Name: "pool", Workers: 4}, {Name: "idle", Workers: 8}},
		APIs: []API{{Name: "a", SLO: time.Second, Priority: 1, Weight: 1,
			Calls: []Call{{Service: "web", Time: constant(time.Millisecond)}, {Service: "pool", Time: constant(10 * time.Millisecond)}}}},
	}
}

func simulateScenario(t *testing.T, app App, sc Scenario) Report {
	t.Helper()
	if err := app.Validate(); err != nil {
		t.Fatal(err)
	}
	r, err := Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Policy: NoPolicy(), Virtual: true, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func near(got, want, by float64) bool { return math.Abs(got-want) <= by }

func TestReportServicesUtilisationIsTheWorkersBusyShare(t *testing.T) {
	t.Parallel() // virtual time
	// 2 s of warm-up and 5 s at 200 req/s (half the pool), then 5 s at
	// 800 req/s (twice it) with no policy: the scenario proper is half at
	// each, and its steady half is all overload.
	sc := Scenario{Name: "half-then-twice", Warmup: 2 * time.Second, Duration: 10 * time.Second,
		Steps: []Step{{Duration: 7 * time.Second, Rates: []float64{200}}, {Duration: 5 * time.Second, Rates: []float64{800}}}}
	r := simulateScenario(t, poolApp(), sc)
	if len(r.Services) != 2 || r.Services[0].Name != "pool" || r.Services[0].Workers != 4 || r.Services[1].Name != "idle" {
		t.Fatalf("services %+v, want pool (4 workers) and idle, the bounded ones in app order", r.Services)
	}
	pool, idle := r.Services[0], r.Services[1]
	if !near(pool.Utilisation, 0.75, 0.03) {
		t.Errorf("pool utilisation %.3f over the scenario, want about 0.75 (0.5 for 5 s, 1 for 5 s)", pool.Utilisation)
	}
	if pool.SteadyUtilisation < 0.99 {
		t.Errorf("pool steady utilisation %.3f at twice its capacity, want every worker busy", pool.SteadyUtilisation)
	}
	// At 800 req/s against 400, the queue grows by 400 calls a second,
	// and a call that starts t s into the overload has waited about t s.
	if pool.SteadyQueueingMs < 500 || pool.SteadyQueueingMs > 2100 {
		t.Errorf("pool steady queueing %.0f ms, want the growing queue's wait, between 0.5 s and the 2 s client timeout", pool.SteadyQueueingMs)
	}
	if pool.QueueingMs >= pool.SteadyQueueingMs {
		t.Errorf("pool queueing %.0f ms over the scenario, want less than the overloaded half's %.0f", pool.QueueingMs, pool.SteadyQueueingMs)
	}
	if idle.Utilisation != 0 || idle.QueueingMs != 0 || idle.SteadyUtilisation != 0 {
		t.Errorf("idle service %+v, want no work and no queue", idle)
	}
}

func TestReportServicesUtilisationCountsTheWorkersLeft(t *testing.T) {
	t.Parallel() // virtual time
	// 150 req/s throughout: 0.375 of 4 workers; half the workers die at
	// the start of the steady half, and the 2 left are 0.75 busy.
	sc := Scenario{Name: "drop", Warmup: 2 * time.Second, Duration: 10 * time.Second,
		Steps:   []Step{{Duration: 12 * time.Second, Rates: []float64{150}}},
		Changes: []WorkerChange{{At: 7 * time.Second, Service: "pool", Workers: 2}}}
	r := simulateScenario(t, poolApp(), sc)
	pool := r.Services[0]
	if !near(pool.SteadyUtilisation, 0.75, 0.05) {
		t.Errorf("pool steady utilisation %.3f on the 2 workers left, want about 0.75", pool.SteadyUtilisation)
	}
	// Worker time over the scenario: 5 s × 4 + 5 s × 2 = 30, of which
	// 10 s × 1.5 = 15 busy.
	if !near(pool.Utilisation, 0.5, 0.04) {
		t.Errorf("pool utilisation %.3f over the scenario, want about 0.5", pool.Utilisation)
	}
	// The JSON report carries them.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"services":[{"name":"pool","workers":4,"utilisation":`) {
		t.Errorf("JSON report has no services: %.300s…", b[strings.Index(string(b), `"seconds"`):])
	}
}
