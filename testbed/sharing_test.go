package testbed

import (
	"strings"
	"testing"
	"time"
)

// sharingApp is one API whose one call takes a constant 10 ms at a
// processor-sharing service of the given workers.
func sharingApp(workers int) App {
	return App{
		Name: "sharing", Entry: "frontend", ClientTimeout: 2 * time.Second,
		Services: []Service{{Name: "frontend"}, {Name: "cpu", Workers: workers, Discipline: DisciplineSharing}},
		APIs: []API{{Name: "a", SLO: time.Second, Priority: 1, Weight: 1, Calls: []Call{
			{Service: "cpu", Time: Dist{Kind: Constant, Mean: 10 * time.Millisecond}},
		}}},
	}
}

// Calls that arrive together at a processor-sharing service share its
// workers and end together: three 10 ms calls on one worker all end at
// 30 ms (in FIFO order they would end at 10, 20 and 30), and on two
// workers at 15 ms, each run at two thirds of a worker's speed.
func TestSharingCallsInServiceShareTheWorkers(t *testing.T) {
	for _, c := range []struct {
		workers int
		want    float64 // ms, every call's latency
	}{{1, 30}, {2, 15}} {
		app := sharingApp(c.workers)
		// Batches of three at one batch a second: a batch is alone
		// with its service but about one time in twenty.
		r := simulate(t, app, "steady", ScenarioOptions{Warmup: time.Second, Duration: 60 * time.Second, Load: 0.03 / float64(c.workers), Burst: 3}, NoPolicy(), 1)
		checkReport(t, r)
		if r.Admitted < 100 {
			t.Fatalf("%d workers: %d answers, want over 100", c.workers, r.Admitted)
		}
		if r.P50Ms < 0.97*c.want || r.P50Ms > 1.03*c.want {
			t.Errorf("%d workers: p50 %.1f ms, want %.0f ms: three calls share the workers", c.workers, r.P50Ms, c.want)
		}
		fifo := app
		fifo.Services = []Service{{Name: "frontend"}, {Name: "cpu", Workers: c.workers}}
		f := simulate(t, fifo, "steady", ScenarioOptions{Warmup: time.Second, Duration: 60 * time.Second, Load: 0.03 / float64(c.workers), Burst: 3}, NoPolicy(), 1)
		t.Logf("%d workers: sharing p50 %.1f p99 %.1f (%d answers), FIFO p50 %.1f p99 %.1f", c.workers, r.P50Ms, r.P99Ms, r.Admitted, f.P50Ms, f.P99Ms)
		if f.P50Ms >= 0.97*c.want {
			t.Errorf("%d workers in FIFO order: p50 %.1f ms, want under %.0f ms: the first calls end first", c.workers, f.P50Ms, c.want)
		}
	}
}

// A processor-sharing service serves what its workers can: at 0.8 of
// capacity every request is answered and the workers are 0.8 busy. Past
// capacity without protection every call in service slows, the calls of
// clients that gave up run on, and goodput collapses; the proportional
// oracle and the default policy keep it.
func TestSharingConservesWorkAndCollapsesUnprotected(t *testing.T) {
	app := sharingApp(4)
	app.APIs[0].Calls[0].Time = Dist{Kind: Lognormal, Mean: 10 * time.Millisecond, Sigma: 0.5}
	app.APIs[0].SLO = 100 * time.Millisecond
	light := simulate(t, app, "steady", ScenarioOptions{Warmup: time.Second, Duration: 30 * time.Second, Load: 0.8}, NoPolicy(), 1)
	if light.GoodputRatio < 0.99 || light.Timeouts != 0 {
		t.Errorf("0.8× capacity: goodput %.3f of offered, %d timeouts; want all answered in time", light.GoodputRatio, light.Timeouts)
	}
	if u := light.Services[0].Utilisation; u < 0.77 || u > 0.83 {
		t.Errorf("0.8× capacity: utilisation %.3f, want about 0.8", u)
	}
	opts := ScenarioOptions{Warmup: 5 * time.Second, Duration: 30 * time.Second}
	if r := simulate(t, app, "steady", opts, NoPolicy(), 1); r.Steady.GoodputRatio > 0.05 {
		t.Errorf("4× capacity, no protection: %.2f of proportional over the steady half, want a collapse (≤ 0.05)", r.Steady.GoodputRatio)
	}
	if r := simulate(t, app, "steady", opts, StaticPolicy(), 1); r.Steady.GoodputRatio < 0.9 {
		t.Errorf("4× capacity, static: %.2f of proportional over the steady half, want ≥ 0.9", r.Steady.GoodputRatio)
	}
}

func TestSharingIsValidatedAndVirtualOnly(t *testing.T) {
	app := sharingApp(1)
	app.Services[1].Discipline = "lifo"
	if err := app.Validate(); err == nil || !strings.Contains(err.Error(), `services[1].discipline "lifo"`) {
		t.Errorf("discipline lifo: %v, want an error naming the field", err)
	}
	app = sharingApp(1)
	app.Services[0].Discipline = DisciplineSharing
	if err := app.Validate(); err == nil || !strings.Contains(err.Error(), "nothing to share") {
		t.Errorf("an unbounded sharing service: %v, want an error", err)
	}
	if _, err := StartLive(sharingApp(1), 1, nil); err == nil || !strings.Contains(err.Error(), "virtual time only") {
		t.Errorf("StartLive with a sharing service: %v, want an error", err)
	}
	parsed, err := ParseApp([]byte(`{"name": "x", "entry": "f", "client_timeout": "1s",
		"services": [{"name": "f", "workers": 0}, {"name": "cpu", "workers": 2, "discipline": "processor-sharing"}],
		"apis": [{"name": "a", "slo": "50ms", "calls": [{"service": "cpu", "time": {"kind": "constant", "mean": "1ms"}}]}]}`))
	if err != nil || !parsed.Services[1].Sharing() {
		t.Errorf("ParseApp: %v, sharing %v; want a sharing service", err, err == nil && parsed.Services[1].Sharing())
	}
	random := RandomAppOf(3)
	if a := WithSharing(random); a.Name != "random-3-ps" || !a.Services[1].Sharing() || a.Services[0].Sharing() || a.Capacity() != random.Capacity() || random.Services[1].Sharing() {
		t.Errorf("WithSharing(random:3): %s, %+v; want random:3 with its bounded services sharing, and random:3 as it was", a.Name, a.Services)
	}
}
