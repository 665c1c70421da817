package testbed

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/rlbridge"
)

// oneBottleneckEpisode is multi-bottleneck with only its db overloaded:
// browse (db only) offered 3,000/s against db's 2,000/s, search (index
// only) 100/s against index's 800/s, the rest idle.
func oneBottleneckEpisode(seed uint64) (SimConfig, error) {
	app := MultiBottleneck()
	p, err := TopFullPolicy(app)
	if err != nil {
		return SimConfig{}, err
	}
	sc := Scenario{Name: "db-only", Duration: 10 * time.Second,
		Steps: []Step{{Duration: 10 * time.Second, Rates: []float64{3000, 100, 0, 0}}}}
	return SimConfig{App: app, Scenario: sc, Policy: p, Virtual: true, Seed: seed}, nil
}

func TestSimServerReportsEachBoundedServiceLoad(t *testing.T) {
	srv := NewSimServer(1, 0, oneBottleneckEpisode)
	defer srv.Close()
	ctx := context.Background()
	seed := uint64(1)
	if err := srv.Reset(ctx, &seed); err != nil {
		t.Fatal(err)
	}
	if got, ok := srv.Backend().Services(); len(got) != 0 || !ok {
		t.Errorf("services before the first step: %+v, %v; want none yet, and signals", got, ok)
	}
	// Every API at its upper bound (1.5 × its capacity alone), so the
	// rate limits let browse's overload through to db.
	for _, a := range srv.Backend().APIs() {
		if !slices.Equal(a.Services, map[string][]string{
			"GET /browse": {"frontend", "db"}, "GET /search": {"frontend", "index"},
			"GET /order": {"frontend", "db", "index"}, "GET /report": {"frontend", "db", "index"},
		}[a.Name]) {
			t.Errorf("%s: services %v, want its calls' services in call order", a.Name, a.Services)
		}
		srv.Backend().SetRate(a.Name, a.UpperBound)
	}
	var last rlbridge.StepResult
	for range 5 {
		var err error
		if last, err = srv.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	byName := map[string]rlbridge.ServiceInfo{}
	for _, s := range last.Services {
		byName[s.Name] = s
	}
	if len(last.Services) != 2 {
		t.Fatalf("/step services %+v, want the two bounded ones (db, index), not the unbounded frontend", last.Services)
	}
	db, index := byName["db"], byName["index"]
	if !db.Overloaded || *db.Utilisation < 0.97 || *db.Utilisation > 1+1e-9 || *db.QueueingMs < OverloadQueueingMs {
		t.Errorf("db at 1.5× its capacity: %+v (utilisation %v, queueing %v ms); want overloaded, busy, queueing", db, *db.Utilisation, *db.QueueingMs)
	}
	// index serves search's 100/s × 10 ms on 8 workers: 1/8 busy.
	if index.Overloaded || math.Abs(*index.Utilisation-0.125) > 0.04 || *index.QueueingMs > 1 {
		t.Errorf("index at 1/8 of its capacity: %+v (utilisation %v, queueing %v ms); want about 0.125 and no queue", index, *index.Utilisation, *index.QueueingMs)
	}
	// GET /services answers what the last step did.
	if got, _ := srv.Backend().Services(); !slices.EqualFunc(got, last.Services, func(a, b rlbridge.ServiceInfo) bool {
		return a.Name == b.Name && *a.Utilisation == *b.Utilisation && *a.QueueingMs == *b.QueueingMs && a.Overloaded == b.Overloaded
	}) {
		t.Errorf("GET /services %+v, want the last step's %+v", got, last.Services)
	}
}

func TestServiceLoadsOverAWindow(t *testing.T) {
	// Two workers: one busy for the whole second, one for half of it; a
	// call that waited 4 ms and one that waited none started in it.
	s := virtualService{bounded: true, workers: 2}
	s.busy = 1
	s.account(int64(500 * time.Millisecond))
	s.busy = 2
	s.waitNs, s.started = int64(4*time.Millisecond), 2
	v := &virtualRun{app: App{Services: []Service{{Name: "db", Workers: 2}}}, services: []virtualService{s}, now: int64(time.Second)}
	got := v.serviceLoads()
	want := []ServiceLoad{{Name: "db", Utilisation: 0.75, QueueingMs: 2}}
	if !slices.Equal(got, want) {
		t.Errorf("loads %+v, want %+v", got, want)
	}
	// The next window starts afresh: both workers busy for a second.
	v.now += int64(time.Second)
	got = v.serviceLoads()
	want = []ServiceLoad{{Name: "db", Utilisation: 1, Overloaded: true}}
	if !slices.Equal(got, want) {
		t.Errorf("second window %+v, want %+v", got, want)
	}
}
