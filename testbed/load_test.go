package testbed

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestArrivalsSameSeedSameSchedule(t *testing.T) {
	phases := []Phase{{Duration: 2 * time.Second, Rate: 300}}
	a, b, other := offsets(phases, 5), offsets(phases, 5), offsets(phases, 6)
	if !slices.Equal(a, b) {
		t.Errorf("seed 5 gave two different schedules (%d and %d arrivals)", len(a), len(b))
	}
	if slices.Equal(a, other) {
		t.Errorf("seeds 5 and 6 gave the same schedule")
	}
	if !slices.IsSorted(a) || a[0] < 0 || a[len(a)-1] >= 2*time.Second {
		t.Errorf("offsets are not increasing within [0, 2s): first %v, last %v", a[0], a[len(a)-1])
	}
}

func TestArrivalsFollowPhaseRates(t *testing.T) {
	phases := []Phase{
		{Duration: 10 * time.Second, Rate: 100},
		{Duration: 5 * time.Second, Rate: 0},
		{Duration: 10 * time.Second, Rate: 500},
	}
	perPhase := make([]int, len(phases))
	for _, at := range offsets(phases, 1) {
		switch {
		case at < 10*time.Second:
			perPhase[0]++
		case at < 15*time.Second:
			perPhase[1]++
		default:
			perPhase[2]++
		}
	}
	for i, p := range phases {
		want := p.Rate * p.Duration.Seconds()
		// Poisson counts have standard deviation sqrt(mean); allow 5 of them.
		if got := float64(perPhase[i]); math.Abs(got-want) > 5*math.Sqrt(want) {
			t.Errorf("phase %d (%v at %v req/s) has %v arrivals, want %v ± 5σ", i, p.Duration, p.Rate, got, want)
		}
	}
}

func TestRunLightLoadIsAllGoodput(t *testing.T) {
	t.Parallel()
	cfg := DefaultTwoTier()
	app := startApp(t, cfg, nil)
	load := LoadConfig{
		URL:     app.URL,
		Phases:  []Phase{{Duration: 1500 * time.Millisecond, Rate: 0.3 * cfg.Capacity()}},
		SLO:     time.Second,
		Timeout: 5 * time.Second,
		Seed:    1,
	}
	var seen []Second
	res, err := Run(context.Background(), load, func(s Second) { seen = append(seen, s) })
	if err != nil {
		t.Fatal(err)
	}
	checkTotals(t, res)
	if res.Offered < 50 {
		t.Fatalf("Offered = %d, want about %v", res.Offered, 1.5*load.Phases[0].Rate)
	}
	if res.Rejected != 0 || res.Errors != 0 || res.Timeouts != 0 || res.Dropped != 0 {
		t.Errorf("got Rejected %d, Errors %d, Timeouts %d, Dropped %d; want all 0 at 0.3× capacity",
			res.Rejected, res.Errors, res.Timeouts, res.Dropped)
	}
	if res.Goodput < res.Offered*95/100 {
		t.Errorf("Goodput = %d of %d offered, want >= 95%% at 0.3× capacity and a 1 s SLO", res.Goodput, res.Offered)
	}
	if res.P50 <= 0 || res.P99 < res.P50 {
		t.Errorf("P50 = %v, P99 = %v; want 0 < P50 <= P99", res.P50, res.P99)
	}
	if got := res.GoodputRate(); math.Abs(got-float64(res.Goodput)/1.5) > 1e-9 {
		t.Errorf("GoodputRate() = %v, want Goodput / 1.5 s = %v", got, float64(res.Goodput)/1.5)
	}
	if len(res.Seconds) != 2 || len(seen) != 2 || seen[0].T != 0 || seen[1].T != 1 {
		t.Fatalf("got %d Seconds and onSecond calls %+v; want seconds 0 and 1, once each, in order", len(res.Seconds), seen)
	}
	for i, s := range seen {
		if s.Offered != res.Seconds[i].Offered || s.Goodput > res.Seconds[i].Goodput {
			t.Errorf("onSecond saw %+v, beyond the final %+v", s, res.Seconds[i])
		}
	}
}

func TestRunCountsRejectionsFromWrap(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		patterns = map[string]int{}
	)
	rejectAll := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			patterns[r.Pattern]++
			mu.Unlock()
			http.Error(w, "shed", http.StatusTooManyRequests)
		})
	}
	app := startApp(t, DefaultTwoTier(), rejectAll)
	res, err := Run(context.Background(), LoadConfig{
		URL:     app.URL,
		Phases:  []Phase{{Duration: time.Second, Rate: 200}},
		SLO:     time.Second,
		Timeout: 5 * time.Second,
		Seed:    2,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkTotals(t, res)
	if res.Offered == 0 || res.Rejected != res.Offered || res.Admitted != 0 || res.Goodput != 0 {
		t.Errorf("got Offered %d, Rejected %d, Admitted %d, Goodput %d; want every request Rejected",
			res.Offered, res.Rejected, res.Admitted, res.Goodput)
	}
	if res.P50 != 0 || res.P99 != 0 {
		t.Errorf("P50 = %v, P99 = %v; want 0, as rejections are not in the percentiles", res.P50, res.P99)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(patterns) != 1 || patterns[EntryPattern] != res.Offered {
		t.Errorf("wrap saw patterns %v, want %q for all %d requests", patterns, EntryPattern, res.Offered)
	}
}

func TestRunSameSeedSameOffered(t *testing.T) {
	t.Parallel()
	server := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(server.Close)
	load := LoadConfig{
		URL:     server.URL,
		Phases:  []Phase{{Duration: 600 * time.Millisecond, Rate: 150}, {Duration: 600 * time.Millisecond, Rate: 50}},
		SLO:     time.Second,
		Timeout: 5 * time.Second,
		Seed:    3,
	}
	// The schedule fixes which second each arrival belongs to.
	want := make([]int, 2)
	for _, at := range offsets(load.Phases, load.Seed) {
		want[at/time.Second]++
	}
	var runs sync.WaitGroup
	for run := range 2 {
		runs.Go(func() {
			res, err := Run(context.Background(), load, nil)
			if err != nil {
				t.Error(err)
				return
			}
			checkTotals(t, res)
			got := []int{}
			for _, s := range res.Seconds {
				got = append(got, s.Offered)
			}
			if !slices.Equal(got, want) {
				t.Errorf("run %d: Offered per second = %v, want %v from seed %d", run, got, want, load.Seed)
			}
		})
	}
	runs.Wait()
}

func TestRunOfferedFollowsPhases(t *testing.T) {
	t.Parallel()
	server := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(server.Close)
	phases := []Phase{{Duration: time.Second, Rate: 50}, {Duration: time.Second, Rate: 400}, {Duration: 500 * time.Millisecond, Rate: 0}}
	begin := time.Now()
	res, err := Run(context.Background(), LoadConfig{
		URL:     server.URL,
		Phases:  phases,
		SLO:     time.Second,
		Timeout: 5 * time.Second,
		Seed:    4,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < 2500*time.Millisecond {
		t.Errorf("Run returned after %v, before its trailing idle phase ended at 2.5 s", took)
	}
	checkTotals(t, res)
	if len(res.Seconds) != len(phases) {
		t.Fatalf("got %d Seconds, want %d", len(res.Seconds), len(phases))
	}
	for i, p := range phases {
		got, want := float64(res.Seconds[i].Offered), p.Rate*min(p.Duration.Seconds(), 1)
		if math.Abs(got-want) > 5*math.Sqrt(want) {
			t.Errorf("second %d offered %v, want %v ± 5σ", i, got, want)
		}
	}
	if res.Goodput != res.Offered {
		t.Errorf("Goodput = %d, want all %d offered: the server answers 200 at once", res.Goodput, res.Offered)
	}
}

func TestRunClassifiesFailures(t *testing.T) {
	t.Parallel()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	status := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	t.Cleanup(status.Close)
	slowOK := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
	}))
	t.Cleanup(slowOK.Close)
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no backend", http.StatusBadGateway)
	}))
	t.Cleanup(gateway.Close)

	tests := []struct {
		name    string
		url     string
		slo     time.Duration
		want    func(Result) int
		wantPct bool // whether the requests count toward P50 and P99
	}{
		{"no answer within the timeout is a Timeout", slow.URL, time.Second, func(r Result) int { return r.Timeouts }, true},
		{"a refused connection is an Error", down.URL, time.Second, func(r Result) int { return r.Errors }, false},
		{"503 is Rejected", status.URL, time.Second, func(r Result) int { return r.Rejected }, false},
		{"502 is Admitted but not goodput", gateway.URL, time.Second, func(r Result) int { return r.Admitted - r.Goodput }, true},
		{"200 later than the SLO is Admitted but not goodput", slowOK.URL, 10 * time.Millisecond, func(r Result) int { return r.Admitted - r.Goodput }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := Run(context.Background(), LoadConfig{
				URL:     tt.url,
				Phases:  []Phase{{Duration: 300 * time.Millisecond, Rate: 30}},
				SLO:     tt.slo,
				Timeout: time.Second, // far over slowOK's 50 ms, on a busy machine too
				Seed:    5,
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkTotals(t, res)
			if res.Offered == 0 || tt.want(res) != res.Offered {
				t.Errorf("got %+v, want all %d offered in the named class", res, res.Offered)
			}
			if gotPct := res.P50 > 0; gotPct != tt.wantPct {
				t.Errorf("P50 = %v; want it set: %v", res.P50, tt.wantPct)
			}
		})
	}
}

func TestRunDropsBeyondMaxInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(stuck.Close)
	t.Cleanup(func() { close(release) })
	res, err := Run(context.Background(), LoadConfig{
		URL:    stuck.URL,
		Phases: []Phase{{Duration: 300 * time.Millisecond, Rate: 100}},
		SLO:    time.Second,
		// Past the phase's end by far: no slot frees while it offers
		// requests, however late a busy machine runs the last arrival
		// (at 300 ms a timed-out request freed one, now and then).
		Timeout:     time.Second,
		Seed:        6,
		MaxInFlight: 2,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkTotals(t, res)
	if res.Timeouts != 2 || res.Dropped != res.Offered-2 {
		t.Errorf("got Timeouts %d, Dropped %d of %d offered; want 2 sent (and timed out) and the rest dropped",
			res.Timeouts, res.Dropped, res.Offered)
	}
}

func TestRunStopsWhenCanceled(t *testing.T) {
	t.Parallel()
	server := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(server.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	calls := 0
	res, err := Run(ctx, LoadConfig{
		URL:     server.URL,
		Phases:  []Phase{{Duration: time.Minute, Rate: 100}},
		SLO:     time.Second,
		Timeout: 5 * time.Second,
		Seed:    7,
	}, func(Second) { calls++ })
	if err != context.DeadlineExceeded {
		t.Errorf("err = %v, want the ctx's error", err)
	}
	checkTotals(t, res)
	if res.Duration <= 0 || res.Duration > 30*time.Second || len(res.Seconds) >= 30 || res.Offered == 0 {
		t.Errorf("got Duration %v, %d Seconds, Offered %d; want the run cut short near 300 ms with some load offered",
			res.Duration, len(res.Seconds), res.Offered)
	}
	if calls != 0 {
		t.Errorf("onSecond called %d times, want 0: second 0 had not ended when ctx was done", calls)
	}
}

func TestRunRejectsInvalidConfig(t *testing.T) {
	valid := LoadConfig{URL: "http://127.0.0.1:1/api", Phases: []Phase{{Duration: time.Second, Rate: 1}}, SLO: time.Second, Timeout: time.Second}
	tests := []struct {
		name    string
		edit    func(*LoadConfig)
		wantErr string
	}{
		{"relative URL", func(c *LoadConfig) { c.URL = "/api" }, `LoadConfig.URL "/api": must be an absolute http or https URL`},
		{"no phases", func(c *LoadConfig) { c.Phases = nil }, "LoadConfig.Phases: must have at least one phase"},
		{"zero-length phase", func(c *LoadConfig) { c.Phases = append(c.Phases, Phase{Rate: 1}) }, "LoadConfig.Phases[1].Duration 0s: must be > 0"},
		{"negative rate", func(c *LoadConfig) { c.Phases[0].Rate = -1 }, "LoadConfig.Phases[0].Rate -1: must be finite and >= 0"},
		{"NaN rate", func(c *LoadConfig) { c.Phases[0].Rate = math.NaN() }, "LoadConfig.Phases[0].Rate NaN"},
		{"no SLO", func(c *LoadConfig) { c.SLO = 0 }, "LoadConfig.SLO 0s: must be > 0"},
		{"no timeout", func(c *LoadConfig) { c.Timeout = 0 }, "LoadConfig.Timeout 0s: must be > 0"},
		{"negative MaxInFlight", func(c *LoadConfig) { c.MaxInFlight = -1 }, "LoadConfig.MaxInFlight -1: must be >= 0"},
	}
	for _, tt := range tests {
		cfg := valid
		cfg.Phases = slices.Clone(valid.Phases)
		tt.edit(&cfg)
		_, err := Run(context.Background(), cfg, nil)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty is 0", nil, 0.5, 0},
		{"one sample is every percentile", ms(7), 0.99, 7 * time.Millisecond},
		{"p50 of 1..100 is 50", ms(hundred...), 0.50, 50 * time.Millisecond},
		{"p99 of 1..100 is 99", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p99 of 4 samples is the max", ms(1, 2, 3, 4), 0.99, 4 * time.Millisecond},
		{"p50 of 4 samples is the 2nd", ms(1, 2, 3, 4), 0.50, 2 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(p=%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

// offsets is the whole arrival schedule of phases under seed.
func offsets(phases []Phase, seed uint64) []time.Duration {
	var out []time.Duration
	schedule := newArrivals(phases, seed)
	for {
		at, ok := schedule.next()
		if !ok {
			return out
		}
		out = append(out, at)
	}
}

// checkTotals checks that every arrival lands in exactly one class and that
// the totals are the sums of the seconds.
func checkTotals(t *testing.T, r Result) {
	t.Helper()
	var sum Second
	for i, s := range r.Seconds {
		if s.T != i {
			t.Errorf("Seconds[%d].T = %d", i, s.T)
		}
		if classes := s.Admitted + s.Rejected + s.Errors + s.Timeouts + s.Dropped; classes != s.Offered {
			t.Errorf("second %d: classes sum to %d, Offered is %d: %+v", i, classes, s.Offered, s)
		}
		if s.Goodput > s.Admitted {
			t.Errorf("second %d: Goodput %d > Admitted %d", i, s.Goodput, s.Admitted)
		}
		sum.Offered += s.Offered
		sum.Admitted += s.Admitted
		sum.Rejected += s.Rejected
		sum.Goodput += s.Goodput
		sum.Errors += s.Errors
		sum.Timeouts += s.Timeouts
		sum.Dropped += s.Dropped
	}
	got := Second{Offered: r.Offered, Admitted: r.Admitted, Rejected: r.Rejected, Goodput: r.Goodput, Errors: r.Errors, Timeouts: r.Timeouts, Dropped: r.Dropped}
	if got != sum {
		t.Errorf("totals %+v are not the sums of the seconds %+v", got, sum)
	}
}

// Live closed-loop users end with the run: no think time runs past its
// end (before, 20 users thinking 5 s kept a 500 ms run going for 16 s),
// and each user sends one request at a time.
func TestLiveUsersEndWithTheRun(t *testing.T) {
	var inFlight sync.Mutex
	busy, peak := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Lock()
		busy++
		peak = max(peak, busy)
		inFlight.Unlock()
		time.Sleep(5 * time.Millisecond)
		inFlight.Lock()
		busy--
		inFlight.Unlock()
	}))
	defer srv.Close()
	total := 500 * time.Millisecond
	tally := newTally(1, time.Second)
	streams := []*userStream{{url: srv.URL, users: []int{20}, think: []time.Duration{5 * time.Second}, tally: tally}}
	start := time.Now()
	err := offerUsers(context.Background(), streams, []time.Duration{total}, 1,
		loadLimits{total: total, timeout: time.Second, reportDelay: time.Second, maxInFlight: 100}, nil)
	if took := time.Since(start); err != nil || took > total+time.Second {
		t.Errorf("offerUsers returned %v after %v, for a run of %v", err, took, total)
	}
	if peak > 20 {
		t.Errorf("%d requests at once from 20 users", peak)
	}
}

// Closed-loop users offer a step's rate exactly when every answer is
// instant: ⌈rate × Think⌉ of them, each thinking that many ÷ rate.
func TestUsersOfferTheRateExactly(t *testing.T) {
	s := Scenario{Think: 20 * time.Millisecond}
	for _, rate := range []float64{16.7, 33.3, 63.5, 50, 1000, 0.1} {
		n, think := s.Users(rate), s.ThinkAt(rate)
		if n < 1 || think < s.Think {
			t.Errorf("rate %g: %d users thinking %v, want at least one, thinking at least %v", rate, n, think, s.Think)
		}
		if got := float64(n) / think.Seconds(); math.Abs(got-rate) > 1e-6*rate {
			t.Errorf("rate %g: %d users thinking %v offer %g req/s", rate, n, think, got)
		}
	}
	if n := s.Users(50); n != 1 {
		t.Errorf("50 req/s at 20 ms: %d users, want 1", n)
	}
	if n, think := s.Users(0), s.ThinkAt(0); n != 0 || think != 0 {
		t.Errorf("no rate: %d users thinking %v, want none", n, think)
	}
}

// Arrivals in batches of 10 come ten at one offset, the offsets of
// batches strictly later each time, at the phases' mean rate: 200 a
// second for 60 s, then 50 a second for 60 s (within three standard
// deviations of a Poisson count of 1,200 and of 300 batches), and none
// past the phases.
func TestArrivalsInBatches(t *testing.T) {
	phases := []Phase{{Duration: 60 * time.Second, Rate: 200}, {Duration: 60 * time.Second, Rate: 50}}
	schedule := newArrivalStream(phases, 7, streamLoad).inBatches(10)
	var first, second int
	var last time.Duration = -1
	for run := 0; ; {
		at, ok := schedule.next()
		if !ok {
			break
		}
		switch {
		case at == last:
			run++
		case at > last:
			if last >= 0 && run != 10 {
				t.Fatalf("a batch of %d at %v, want 10", run, last)
			}
			run, last = 1, at
		default:
			t.Fatalf("arrival at %v after one at %v", at, last)
		}
		if at < 60*time.Second {
			first++
		} else if at < 120*time.Second {
			second++
		} else {
			t.Fatalf("arrival at %v, past the phases", at)
		}
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"first phase", float64(first), 12000}, {"second phase", float64(second), 3000}} {
		batches := c.want / 10
		if tol := 3 * math.Sqrt(batches) * 10; math.Abs(c.got-c.want) > tol {
			t.Errorf("%s: %v arrivals, want %v within %.0f", c.name, c.got, c.want, tol)
		}
	}
}
