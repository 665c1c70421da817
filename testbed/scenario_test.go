package testbed

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScenariosFollowTheirShapes(t *testing.T) {
	app := Boutique()
	c := app.Capacity()
	opts := ScenarioOptions{Warmup: 5 * time.Second, Duration: 60 * time.Second}
	// total is the offered load of every API together at time at, as a
	// multiple of capacity.
	total := func(s Scenario, at time.Duration) float64 {
		var sum float64
		for _, r := range s.ratesAt(at) {
			sum += r
		}
		return sum / c
	}
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	tests := []struct {
		scenario string
		check    func(t *testing.T, s Scenario)
	}{
		{"steady", func(t *testing.T, s Scenario) {
			expectLoad(t, total(s, sec(5)), 4, "steady")
			expectLoad(t, total(s, sec(64)), 4, "steady at the end")
			if len(s.Marks) != 1 || s.Marks[0] != sec(5) {
				t.Errorf("Marks = %v, want only the end of the warm-up", s.Marks)
			}
		}},
		{"surge", func(t *testing.T, s Scenario) {
			expectLoad(t, total(s, sec(5)), 0.5, "before the surge")
			expectLoad(t, total(s, sec(17)), 4, "surge")
			expectLoad(t, total(s, sec(40)), 4, "surge")
			expectLoad(t, total(s, sec(41)), 0.5, "after the surge")
			if len(s.Marks) != 3 || s.Marks[1] != sec(17) || s.Marks[2] != sec(41) {
				t.Errorf("Marks = %v, want [5s 17s 41s]: the start and both steps", s.Marks)
			}
		}},
		{"ramp", func(t *testing.T, s Scenario) {
			expectLoad(t, total(s, sec(5)), 0.5, "ramp start")
			expectLoad(t, total(s, sec(64)), 5, "ramp end")
			for at := sec(6); at < sec(65); at += time.Second {
				if total(s, at) <= total(s, at-time.Second) {
					t.Fatalf("load does not rise at %v", at)
				}
			}
		}},
		{"capacity-drop", func(t *testing.T, s Scenario) {
			expectLoad(t, total(s, sec(30)), 0.8, "capacity drop")
			want := WorkerChange{At: sec(25), Service: "productcatalog", Workers: 4}
			if len(s.Changes) != 1 || s.Changes[0] != want {
				t.Errorf("Changes = %+v, want [%+v]", s.Changes, want)
			}
			if got := s.workersAt(app, sec(25))[app.serviceIndex("productcatalog")]; got != 4 {
				t.Errorf("workersAt(25s) = %v, want 4", got)
			}
		}},
		{"flash-crowd", func(t *testing.T, s Scenario) {
			product := 1 // the heaviest weight
			base, crowd := s.ratesAt(sec(10)), s.ratesAt(sec(25))
			for i := range base {
				want := 0.8 * c * app.Weights()[i]
				if i == product {
					expectLoad(t, crowd[i]/(c*app.Weights()[i]), 8, "flash crowd on product")
				} else if math.Abs(crowd[i]-want) > 1e-9 {
					t.Errorf("API %d during the crowd: %v req/s, want %v", i, crowd[i], want)
				}
				if math.Abs(base[i]-want) > 1e-9 {
					t.Errorf("API %d before the crowd: %v req/s, want %v", i, base[i], want)
				}
			}
			expectLoad(t, s.ratesAt(sec(40))[product]/(c*app.Weights()[product]), 0.8, "after the crowd")
		}},
		{"priority-mix", func(t *testing.T, s Scenario) {
			for i, r := range s.ratesAt(sec(30)) {
				expectLoad(t, r/app.CapacityAlone(i), 1.5, "priority-mix, of capacity alone")
			}
		}},
		{"cold-start", func(t *testing.T, s Scenario) {
			if s.Warmup != 0 || s.Total() != sec(60) || len(s.Marks) != 1 || s.Marks[0] != 0 {
				t.Errorf("Warmup %v, Total %v, Marks %v; want no warm-up, 60 s, marked at 0", s.Warmup, s.Total(), s.Marks)
			}
			expectLoad(t, total(s, 0), 3, "cold start at the first instant")
			expectLoad(t, total(s, sec(59)), 3, "cold start at the end")
		}},
		{"retry-storm", func(t *testing.T, s Scenario) {
			expectLoad(t, total(s, sec(16)), 0.8, "before the storm")
			expectLoad(t, total(s, sec(17)), 2, "storm")
			expectLoad(t, total(s, sec(28)), 2, "storm")
			expectLoad(t, total(s, sec(29)), 0.8, "after the storm")
			if s.Retries != 3 || s.RetryBackoff != 100*time.Millisecond || s.maxBackoff() != 1050*time.Millisecond {
				t.Errorf("Retries %d, RetryBackoff %v, maxBackoff %v; want 3, 100ms, 1.05s", s.Retries, s.RetryBackoff, s.maxBackoff())
			}
		}},
		{"slow-drift", func(t *testing.T, s Scenario) {
			expectLoad(t, total(s, sec(30)), 0.8, "slow drift")
			pc := app.serviceIndex("productcatalog")
			// 8 workers lose one every 7.5 s (in whole seconds) until 4
			// remain, 30 s in; all return at 45 s in.
			for _, w := range []struct {
				at      int
				workers int
			}{{5, 8}, {11, 8}, {12, 7}, {19, 7}, {20, 6}, {27, 5}, {34, 5}, {35, 4}, {49, 4}, {50, 8}, {64, 8}} {
				if got := s.workersAt(app, sec(w.at))[pc]; got != float64(w.workers) {
					t.Errorf("workersAt(%ds) = %v, want %d", w.at, got, w.workers)
				}
			}
			if len(s.Marks) != 2 || s.Marks[1] != sec(50) {
				t.Errorf("Marks = %v, want [5s 50s]: the start and the recovery", s.Marks)
			}
		}},
		{"mix-shift", func(t *testing.T, s Scenario) {
			// checkout calls four bounded services: the costliest per
			// request of boutique's APIs.
			checkout := 3
			if app.APIs[checkout].Name != "checkout" {
				t.Fatalf("API %d is %s, want checkout", checkout, app.APIs[checkout].Name)
			}
			expectLoad(t, total(s, sec(24)), 2, "before the shift")
			expectLoad(t, total(s, sec(46)), 2, "after the shift")
			shifted := s.ratesAt(sec(30))
			var sum float64
			for _, r := range shifted {
				sum += r
			}
			expectLoad(t, shifted[checkout]/sum, 0.8, "checkout's share during the shift")
			// 2× the capacity at the shifted mix: every bounded service
			// fits at half the rates, the busiest exactly.
			expectLoad(t, app.scale(shifted, app.workers()), 0.5, "the shifted load's scale to capacity")
			if len(s.Marks) != 3 || s.Marks[1] != sec(25) || s.Marks[2] != sec(45) {
				t.Errorf("Marks = %v, want [5s 25s 45s]", s.Marks)
			}
		}},
		{"slow-api", func(t *testing.T, s Scenario) {
			expectLoad(t, total(s, sec(30)), 2, "slow api")
			// checkout has the least weight; its calls at the entry take
			// its 300 ms SLO longer.
			want := []DelayChange{{At: sec(25), Service: "frontend", API: "checkout", Extra: 300 * time.Millisecond}, {At: sec(45), Service: "frontend", API: "checkout"}}
			if len(s.Delays) != 2 || s.Delays[0] != want[0] || s.Delays[1] != want[1] {
				t.Errorf("Delays = %+v, want %+v", s.Delays, want)
			}
		}},
		{"hung-dependency", func(t *testing.T, s Scenario) {
			expectLoad(t, total(s, sec(30)), 2, "hung dependency")
			// checkout has the least weight; its calls at the entry hang
			// for twice the 2 s client timeout.
			want := []DelayChange{{At: sec(25), Service: "frontend", API: "checkout", Extra: 4 * time.Second}, {At: sec(45), Service: "frontend", API: "checkout"}}
			if len(s.Delays) != 2 || s.Delays[0] != want[0] || s.Delays[1] != want[1] {
				t.Errorf("Delays = %+v, want %+v", s.Delays, want)
			}
			if len(s.Changes) != 0 {
				t.Errorf("Changes = %+v, want none: the app keeps its workers", s.Changes)
			}
		}},
		{"slow-dependency", func(t *testing.T, s Scenario) {
			expectLoad(t, total(s, sec(30)), 2, "slow dependency")
			// Twice the mean no-queue latency would be more than a quarter
			// of home's 100 ms SLO.
			want := []DelayChange{{At: sec(25), Service: "frontend", Extra: 25 * time.Millisecond}, {At: sec(45), Service: "frontend"}}
			if len(s.Delays) != 2 || s.Delays[0] != want[0] || s.Delays[1] != want[1] {
				t.Errorf("Delays = %+v, want %+v", s.Delays, want)
			}
			if len(s.Changes) != 0 {
				t.Errorf("Changes = %+v, want none: the app keeps its workers", s.Changes)
			}
		}},
		{"slow-service", func(t *testing.T, s Scenario) {
			expectLoad(t, total(s, sec(30)), 2, "slow service")
			// productcatalog serves every API: its calls take twice as
			// long for the middle third, and its capacity halves.
			want := []SlowdownChange{{At: sec(25), Service: "productcatalog", Factor: 2}, {At: sec(45), Service: "productcatalog", Factor: 1}}
			if !slices.Equal(s.Slowdowns, want) {
				t.Errorf("Slowdowns = %+v, want %+v", s.Slowdowns, want)
			}
			pc := app.serviceIndex("productcatalog")
			for _, w := range []struct{ at, workers float64 }{{24, 8}, {25, 4}, {44, 4}, {45, 8}} {
				if got := s.workersAt(app, sec(int(w.at)))[pc]; got != w.workers {
					t.Errorf("workersAt(%vs) = %v, want %v: the references see the capacity halve", w.at, got, w.workers)
				}
			}
			if len(s.Marks) != 3 || s.Marks[1] != sec(25) || s.Marks[2] != sec(45) {
				t.Errorf("Marks = %v, want [5s 25s 45s]", s.Marks)
			}
		}},
		{"scale-out", func(t *testing.T, s Scenario) {
			expectLoad(t, total(s, sec(30)), 3, "scale-out")
			// Every bounded service doubles a third in.
			var want []WorkerChange
			for _, svc := range app.Services {
				if svc.Workers > 0 {
					want = append(want, WorkerChange{At: sec(25), Service: svc.Name, Workers: 2 * svc.Workers})
				}
			}
			if len(want) < 2 || !slices.Equal(s.Changes, want) {
				t.Errorf("Changes = %+v, want %+v", s.Changes, want)
			}
			if got := app.scale(s.ratesAt(sec(30)), s.workersAt(app, sec(30))); math.Abs(got-2.0/3) > 1e-9 {
				t.Errorf("after the scale-out the load fits at %v of its rates, want 2/3", got)
			}
		}},
	}
	if len(tests) != len(ScenarioNames()) {
		t.Fatalf("%d scenarios tested, %d exist", len(tests), len(ScenarioNames()))
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			s, err := NewScenario(tt.scenario, app, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.validate(app); err != nil {
				t.Fatal(err)
			}
			if s.Warmup > 0 {
				expectLoad(t, total(s, 0), 0.5, "warm-up")
			}
			tt.check(t, s)
		})
	}
}

func expectLoad(t *testing.T, got, want float64, what string) {
	t.Helper()
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("%s: load %.4g× capacity, want %g×", what, got, want)
	}
}

func TestNewScenarioRejectsBadInput(t *testing.T) {
	app := Boutique()
	tests := []struct {
		name     string
		scenario string
		opts     ScenarioOptions
		want     string
	}{
		{"unknown", "tsunami", ScenarioOptions{}, `unknown scenario "tsunami" (known: steady, surge, ramp, capacity-drop, flash-crowd, priority-mix, cold-start, retry-storm, slow-drift, mix-shift, slow-dependency, hung-dependency, slow-api, slow-service, scale-out)`},
		{"too short", "steady", ScenarioOptions{Duration: 5 * time.Second}, "duration 5s: must be >= 10s"},
		{"fractional", "steady", ScenarioOptions{Duration: 10500 * time.Millisecond}, "must be whole seconds"},
		{"negative load", "steady", ScenarioOptions{Load: -1}, "load -1: must be finite and > 0"},
		{"negative think time", "steady", ScenarioOptions{Think: -time.Second}, "think time -1s: must be >= 0 (0: open-loop clients)"},
		{"users past the bound", "steady", ScenarioOptions{Think: 1000 * time.Hour}, "users; shorten the think time"},
		{"negative burst", "steady", ScenarioOptions{Burst: -2}, "burst -2: must be within [0, 10000]"},
		{"burst past the bound", "steady", ScenarioOptions{Burst: MaxBurst + 1}, "burst 10001: must be within"},
		{"burst of closed-loop users", "steady", ScenarioOptions{Burst: 5, Think: time.Second}, "bursts are of open-loop arrivals"},
	}
	for _, tt := range tests {
		if _, err := NewScenario(tt.scenario, app, tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
	unbounded := TwoTierApp(DefaultTwoTier())
	unbounded.Services[1].Workers = 0
	if _, err := NewScenario("steady", unbounded, ScenarioOptions{}); err == nil || !strings.Contains(err.Error(), "cannot be overloaded") {
		t.Errorf("an app without a bounded service: err = %v, want it to say it cannot be overloaded", err)
	}
	boundedEntry := TwoTierApp(DefaultTwoTier())
	boundedEntry.Services[0].Workers = 4
	for _, name := range []string{"slow-dependency", "hung-dependency", "slow-api"} {
		if _, err := NewScenario(name, boundedEntry, ScenarioOptions{}); err == nil || !strings.Contains(err.Error(), "the entry must be unbounded") {
			t.Errorf("%s with a bounded entry: err = %v, want it to say the entry must be unbounded", name, err)
		}
	}
}

// A run's requests are counted before it starts, each retry a client may
// make counted too, and a run over its budget is refused with the
// figures, by Simulate itself as well as by the command line.
func TestSimulateRefusesARunOverItsRequestBudget(t *testing.T) {
	app := TwoTierApp(DefaultTwoTier()) // 320 requests a second
	sc, err := NewScenario("retry-storm", app, ScenarioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 0.5× for the 65 s warm-up, then 0.8×, 2× and 0.8× for 12, 12 and
	// 36 s; each request and its three retries.
	want := (0.5*65 + 0.8*12 + 2*12 + 0.8*36) * 320 * 4
	if got := sc.Requests(); math.Abs(got-want) > 1e-6*want {
		t.Fatalf("Requests() = %.0f, want %.0f", got, want)
	}
	_, err = Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Virtual: true, MaxRequests: want / 2})
	if err == nil || !strings.Contains(err.Error(), "scenario retry-storm on app two-tier offers about 1.21e+05 requests (retries counted), over the budget of 6.07e+04 a run") {
		t.Fatalf("err = %v, want the run refused over its budget", err)
	}
	if err := CheckRequests(app, sc, want); err != nil {
		t.Errorf("at its budget: %v", err)
	}
	if err := CheckRequests(app, sc, 0); err != nil {
		t.Errorf("under the default budget: %v", err)
	}
}

// A scenario built by hand may slow only a bounded service of its app,
// by a factor within MaxSlowdown either way.
func TestScenarioRejectsBadSlowdowns(t *testing.T) {
	app := Boutique()
	s, err := NewScenario("slow-service", app, ScenarioOptions{Warmup: 5 * time.Second, Duration: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.validate(app); err != nil {
		t.Fatalf("slow-service as built: %v", err)
	}
	for _, bad := range []SlowdownChange{
		{At: time.Second, Service: "frontend", Factor: 2},
		{At: time.Second, Service: "nowhere", Factor: 2},
		{At: time.Second, Service: "productcatalog", Factor: 0},
		{At: time.Second, Service: "productcatalog", Factor: 1000},
		{At: time.Second, Service: "productcatalog", Factor: math.NaN()},
	} {
		s.Slowdowns = []SlowdownChange{bad}
		if err := s.validate(app); err == nil || !strings.Contains(err.Error(), "Slowdowns[0]") {
			t.Errorf("%+v: err = %v, want one naming Slowdowns[0]", bad, err)
		}
	}
}
