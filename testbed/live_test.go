package testbed

import (
	"context"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPoolGrantsInFIFOOrder(t *testing.T) {
	p := &pool{size: 1}
	if _, err := p.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		order []int
		done  sync.WaitGroup
	)
	for i := range 5 {
		done.Go(func() {
			if _, err := p.acquire(context.Background()); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			p.release()
		})
		waitForWaiters(t, p, i+1) // queue them in a known order
	}
	p.release()
	done.Wait()
	if want := []int{0, 1, 2, 3, 4}; !slices.Equal(order, want) {
		t.Errorf("workers granted in order %v, want %v", order, want)
	}
}

func TestPoolWaiterLeavesOnCancel(t *testing.T) {
	p := &pool{size: 1}
	p.acquire(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error)
	go func() { _, err := p.acquire(ctx); errs <- err }()
	waitForWaiters(t, p, 1)
	cancel()
	if err := <-errs; err != context.Canceled {
		t.Errorf("acquire = %v, want context.Canceled", err)
	}
	p.release()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy != 0 || p.waiters.Len() != 0 {
		t.Errorf("busy %d, waiters %d after the canceled waiter left; want 0 and 0", p.busy, p.waiters.Len())
	}
}

func TestPoolResize(t *testing.T) {
	p := &pool{size: 2}
	p.acquire(context.Background())
	p.acquire(context.Background())
	p.resize(1) // one worker dies: nobody new starts until one is free
	got := make(chan struct{})
	go func() {
		p.acquire(context.Background())
		close(got)
	}()
	waitForWaiters(t, p, 1)
	p.release()
	select {
	case <-got:
		t.Fatal("a worker was granted while 1 was busy with size 1")
	case <-time.After(20 * time.Millisecond):
	}
	p.release()
	<-got
	p.resize(3) // growing grants at once
	if _, err := p.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func waitForWaiters(t *testing.T, p *pool, n int) {
	t.Helper()
	for range 1000 {
		p.mu.Lock()
		waiting := p.waiters.Len()
		p.mu.Unlock()
		if waiting >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("fewer than %d waiters after 1 s", n)
}

func TestStartLiveServesEveryAPIBehindWrap(t *testing.T) {
	app := Boutique()
	var (
		mu     sync.Mutex
		labels = map[string]int{}
	)
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			labels[r.Pattern]++
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	}
	live, err := StartLive(app, 1, wrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Close() })
	for _, api := range app.APIs {
		if status, body := fetch(t, live.URL+api.Path(), 5*time.Second); status != http.StatusOK || body != "ok\n" {
			t.Errorf("GET %s = %d %q, want 200 ok", api.Path(), status, body)
		}
		if labels[api.Label()] != 1 {
			t.Errorf("wrap saw %q %d times, want once", api.Label(), labels[api.Label()])
		}
	}
	if status, _ := fetch(t, live.URL+"/other", 5*time.Second); status != http.StatusNotFound {
		t.Errorf("GET /other = %d, want 404", status)
	}
	if err := live.SetWorkers("frontend", 1); err == nil || !strings.Contains(err.Error(), `service "frontend": no such bounded service`) {
		t.Errorf("SetWorkers(frontend) = %v, want an error: it is unbounded", err)
	}
	if err := live.SetWorkers("cart", 1); err != nil {
		t.Error(err)
	}
	// A slower dependency: every call at the entry takes 150 ms longer.
	if err := live.SetDelay("cart", time.Millisecond); err == nil || !strings.Contains(err.Error(), "want an unbounded service") {
		t.Errorf("SetDelay(cart) = %v, want an error: it is bounded", err)
	}
	if err := live.SetDelay("frontend", 150*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if status, _ := fetch(t, live.URL+app.APIs[0].Path(), 5*time.Second); status != http.StatusOK {
		t.Errorf("GET %s = %d with the delay, want 200", app.APIs[0].Path(), status)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("GET %s took %v with a 150 ms delay at the entry", app.APIs[0].Path(), took)
	}
	// A dependency of one API only that hangs: that API's calls at the
	// entry wait past the client's patience, and the wait ends when the
	// client leaves; the other APIs are as fast as before.
	if err := live.SetDelay("frontend", 0); err != nil {
		t.Fatal(err)
	}
	if err := live.SetAPIDelay(app.APIs[0].Name, "cart", time.Second); err == nil {
		t.Error("SetAPIDelay at a bounded service: no error")
	}
	if err := live.SetAPIDelay("nope", "frontend", time.Second); err == nil {
		t.Error("SetAPIDelay of an unknown API: no error")
	}
	if err := live.SetAPIDelay(app.APIs[0].Name, "frontend", time.Minute); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if status, _ := fetch(t, live.URL+app.APIs[0].Path(), 200*time.Millisecond); status != 0 {
		t.Errorf("GET %s = %d while it hangs, want the client's timeout", app.APIs[0].Path(), status)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("GET %s took %v with a 200 ms client timeout", app.APIs[0].Path(), took)
	}
	if status, _ := fetch(t, live.URL+app.APIs[1].Path(), 5*time.Second); status != http.StatusOK {
		t.Errorf("GET %s = %d while another API hangs, want 200", app.APIs[1].Path(), status)
	}
}

// Not parallel: the CPU-bound virtual tests would starve its servers.
func TestSimulateLiveShedsWithTheStaticOracle(t *testing.T) {
	// Four backend workers at 40 ms: 100 req/s. Offer 300 req/s for 2 s
	// after a 1 s warm-up at 50 req/s.
	app := App{
		Name: "tiny", Entry: "web", ClientTimeout: time.Second,
		Services: []Service{{Name: "web"}, {Name: "db", Workers: 4}},
		APIs: []API{{Name: "q", SLO: 200 * time.Millisecond, Priority: 1, Weight: 1, Calls: []Call{
			{Service: "db", Time: Dist{Kind: Constant, Mean: 40 * time.Millisecond}},
		}}},
	}
	s := Scenario{
		Name: "hand-made", Warmup: time.Second, Duration: 2 * time.Second, Load: 3,
		Steps: []Step{{Duration: time.Second, Rates: []float64{50}}, {Duration: 2 * time.Second, Rates: []float64{300}}},
		Marks: []time.Duration{time.Second},
	}
	var seconds []int
	r, err := Simulate(context.Background(), SimConfig{App: app, Scenario: s, Policy: StaticPolicy(), Seed: 1,
		OnSecond: func(s SecondStats) { seconds = append(seconds, s.T) }})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, r)
	if r.Driver != "live" || !slices.Equal(seconds, []int{-1, 0, 1}) {
		t.Errorf("driver %q, OnSecond saw %v; want live and seconds -1, 0, 1", r.Driver, seconds)
	}
	// The oracle admits 95 req/s of the 300 offered. Goodput depends on
	// how loaded the machine is (sleeps overshoot, and the race detector
	// slows the servers), so only its presence is checked.
	t.Logf("rejected %.2f, goodput ratio %.2f, p99 %.1f ms", r.RejectedRatio, r.GoodputRatio, r.P99Ms)
	if r.RejectedRatio < 0.55 || r.RejectedRatio > 0.8 || r.Goodput == 0 {
		t.Errorf("rejected %.2f, goodput %d; want about 0.68 rejected (95 of 300 req/s admitted) and some goodput", r.RejectedRatio, r.Goodput)
	}
}

// A worker is held for its service time from the moment it was granted:
// a sleep that always overshoots by 300 µs is asked for that much less
// once the pool has measured it, so holds end on their deadlines on
// average and the service keeps the capacity its model gives it.
func TestPoolHoldsEndOnTimeDespiteSleepOvershoot(t *testing.T) {
	clock := time.Unix(0, 0)
	const overshoot = 300 * time.Microsecond
	p := &pool{size: 1,
		now:   func() time.Time { return clock },
		sleep: func(d time.Duration) { clock = clock.Add(d + overshoot) },
	}
	var lateness []time.Duration
	for range 200 {
		start, err := p.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p.hold(start, 2*time.Millisecond)
		lateness = append(lateness, clock.Sub(start.Add(2*time.Millisecond)))
		p.release()
	}
	if first := lateness[0]; first != overshoot {
		t.Errorf("first hold ended %v late, want %v (nothing measured yet)", first, overshoot)
	}
	var sum time.Duration
	for _, l := range lateness[150:] {
		sum += l
	}
	if mean := sum / 50; mean < -10*time.Microsecond || mean > 10*time.Microsecond {
		t.Errorf("holds 150-199 end %v late on average, want within 10 µs of their deadlines", mean)
	}
	// A hold whose goroutine woke after its deadline is not slept at all.
	before := clock
	p.hold(clock.Add(-5*time.Millisecond), 2*time.Millisecond)
	if clock != before {
		t.Errorf("a hold already due slept %v", clock.Sub(before))
	}
}

// Each service but the entry is served behind wrapService, by its name:
// where the live driver puts a control point that measures the service's
// overload (the topfull policy's services).
func TestStartLiveServicesWrapsEveryServiceByName(t *testing.T) {
	app := Boutique()
	var (
		mu    sync.Mutex
		calls = map[string]int{}
	)
	wrapService := func(service string, next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			calls[service]++
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	}
	live, err := StartLiveServices(app, 1, nil, wrapService)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Close() })
	want := map[string]int{}
	for _, api := range app.APIs {
		if status, _ := fetch(t, live.URL+api.Path(), 5*time.Second); status != http.StatusOK {
			t.Fatalf("GET %s = %d, want 200", api.Path(), status)
		}
		for _, c := range api.Calls {
			if c.Service != app.Entry {
				want[c.Service]++
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !maps.Equal(calls, want) {
		t.Errorf("wrapService saw %v, want %v (every call to a service but the entry)", calls, want)
	}
}

// A slowdown stretches every later hold of the pool's workers, and
// SetSlowdown takes only a bounded service and a factor within bounds.
func TestSlowdownStretchesHolds(t *testing.T) {
	clock := time.Unix(0, 0)
	p := &pool{size: 1,
		now:   func() time.Time { return clock },
		sleep: func(d time.Duration) { clock = clock.Add(d) },
	}
	hold := func() time.Duration {
		before := clock
		start, err := p.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p.hold(start, 10*time.Millisecond)
		p.release()
		return clock.Sub(before)
	}
	if got := hold(); got != 10*time.Millisecond {
		t.Errorf("hold without a slowdown took %v, want 10ms", got)
	}
	l := &LiveApp{app: TwoTierApp(DefaultTwoTier()), pools: []*pool{nil, p}}
	if err := l.SetSlowdown("backend", 2.5); err != nil {
		t.Fatal(err)
	}
	if got := hold(); got != 25*time.Millisecond {
		t.Errorf("hold under a 2.5× slowdown took %v, want 25ms", got)
	}
	if err := l.SetSlowdown("backend", 1); err != nil {
		t.Fatal(err)
	}
	if got := hold(); got != 10*time.Millisecond {
		t.Errorf("hold after the slowdown ended took %v, want 10ms", got)
	}
	for _, bad := range []struct {
		service string
		factor  float64
	}{{"frontend", 2}, {"nowhere", 2}, {"backend", 0}, {"backend", -1}, {"backend", 1000}, {"backend", math.NaN()}, {"backend", math.Inf(1)}} {
		if err := l.SetSlowdown(bad.service, bad.factor); err == nil {
			t.Errorf("SetSlowdown(%q, %v) = nil, want an error", bad.service, bad.factor)
		}
	}
}
