package actuators

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestConcurrencyLimiterScenarios(t *testing.T) {
	type step struct {
		setLimit *float64 // applied first, if set
		acquire  int      // TryAcquire calls
		admitted int      // how many of them must succeed
		release  int      // Release calls after the acquisitions
		inFlight int64    // InFlight() at the end of the step
	}
	cases := []struct {
		name      string
		limit     float64
		steps     []step
		wantLimit float64
	}{
		{
			name:  "admits up to the limit and a release frees one slot",
			limit: 3,
			steps: []step{
				{acquire: 5, admitted: 3, inFlight: 3},
				{release: 1, inFlight: 2},
				{acquire: 2, admitted: 1, inFlight: 3},
				{release: 3, inFlight: 0},
			},
			wantLimit: 3,
		},
		{
			name:  "a fractional limit is floored",
			limit: 2.9,
			steps: []step{
				{acquire: 3, admitted: 2, inFlight: 2},
			},
			wantLimit: 2,
		},
		{
			name:  "lowering the limit below in-flight refuses until enough are released",
			limit: 4,
			steps: []step{
				{acquire: 4, admitted: 4, inFlight: 4},
				{setLimit: ptr(2), acquire: 1, admitted: 0, release: 1, inFlight: 3},
				{acquire: 1, admitted: 0, release: 2, inFlight: 1},
				{acquire: 2, admitted: 1, inFlight: 2},
			},
			wantLimit: 2,
		},
		{
			name:  "raising the limit admits more at once",
			limit: 1,
			steps: []step{
				{acquire: 2, admitted: 1, inFlight: 1},
				{setLimit: ptr(3), acquire: 3, admitted: 2, inFlight: 3},
			},
			wantLimit: 3,
		},
		{
			name:  "NaN is unlimited and still counts in-flight requests",
			limit: math.NaN(),
			steps: []step{
				{acquire: 1000, admitted: 1000, release: 400, inFlight: 600},
			},
			wantLimit: math.NaN(),
		},
		{
			name:  "+Inf is unlimited; a finite limit afterwards applies to those still in flight",
			limit: math.Inf(1),
			steps: []step{
				{acquire: 10, admitted: 10, inFlight: 10},
				{setLimit: ptr(10), acquire: 1, admitted: 0, inFlight: 10},
				{setLimit: ptr(math.Inf(1)), acquire: 1, admitted: 1, inFlight: 11},
			},
			wantLimit: math.NaN(),
		},
		{
			name:  "a zero or negative limit refuses everything",
			limit: -3,
			steps: []step{
				{acquire: 2, admitted: 0, inFlight: 0},
				{setLimit: ptr(0.5), acquire: 2, admitted: 0, inFlight: 0},
				{setLimit: ptr(math.Inf(-1)), acquire: 2, admitted: 0, inFlight: 0},
			},
			wantLimit: 0,
		},
		{
			name:  "a finite limit beyond int64 is clamped, not unlimited",
			limit: 1e30,
			steps: []step{
				{acquire: 3, admitted: 3, inFlight: 3},
			},
			wantLimit: math.MaxInt64,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConcurrencyLimiter(tc.limit)
			for i, s := range tc.steps {
				if s.setLimit != nil {
					c.SetLimit(*s.setLimit)
				}
				admitted := 0
				for range s.acquire {
					if c.TryAcquire() {
						admitted++
					}
				}
				for range s.release {
					c.Release()
				}
				if admitted != s.admitted {
					t.Errorf("step %d: %d of %d TryAcquire admitted, want %d", i, admitted, s.acquire, s.admitted)
				}
				if got := c.InFlight(); got != s.inFlight {
					t.Errorf("step %d: InFlight() = %d, want %d", i, got, s.inFlight)
				}
			}
			if got := c.Limit(); !sameFloat(got, tc.wantLimit) {
				t.Errorf("Limit() = %v, want %v", got, tc.wantLimit)
			}
		})
	}
}

func TestConcurrencyLimiterReleaseWithoutAcquirePanicsAndKeepsTheCount(t *testing.T) {
	c := NewConcurrencyLimiter(1)
	defer func() {
		if recover() == nil {
			t.Fatal("Release without TryAcquire did not panic")
		}
		if got := c.InFlight(); got != 0 {
			t.Errorf("InFlight() = %d after the panic, want 0", got)
		}
	}()
	c.Release()
}

// TestConcurrencyLimiterConcurrentHoldersNeverExceedTheLimit has 8
// goroutines acquire, hold and release slots while a ninth changes the
// limit; each holder counts itself, and the peak count must not exceed the
// largest limit ever set.
func TestConcurrencyLimiterConcurrentHoldersNeverExceedTheLimit(t *testing.T) {
	cases := []struct {
		name   string
		limits []float64 // the first is the initial limit; the rest are cycled
	}{
		{name: "fixed limit 3", limits: []float64{3}},
		{name: "limit 1 is mutual exclusion", limits: []float64{1}},
		{name: "limit cycled between 2 and 5", limits: []float64{2, 5, 2.5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConcurrencyLimiter(tc.limits[0])
			var holding, peak, admitted atomic.Int64
			var stop atomic.Bool
			var changer sync.WaitGroup
			changer.Go(func() {
				for i := 0; !stop.Load(); i++ {
					c.SetLimit(tc.limits[i%len(tc.limits)])
					runtime.Gosched() // let holders run even with GOMAXPROCS=1
				}
			})
			var holders sync.WaitGroup
			for range 8 {
				holders.Go(func() {
					for range 20_000 {
						if !c.TryAcquire() {
							continue
						}
						admitted.Add(1)
						n := holding.Add(1)
						for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
						}
						runtime.Gosched() // hold the slot while others try
						holding.Add(-1)
						c.Release()
					}
				})
			}
			holders.Wait()
			stop.Store(true)
			changer.Wait()

			maxLimit := int64(0)
			for _, l := range tc.limits {
				maxLimit = max(maxLimit, int64(l))
			}
			if p := peak.Load(); p > maxLimit {
				t.Errorf("peak of %d holders, limit at most %d", p, maxLimit)
			}
			if admitted.Load() == 0 {
				t.Error("no TryAcquire succeeded")
			}
			if got := c.InFlight(); got != 0 {
				t.Errorf("InFlight() = %d after every holder released, want 0", got)
			}
		})
	}
}

func TestConcurrencyLimiterDoesNotAllocate(t *testing.T) {
	for _, limit := range []float64{10, math.NaN()} {
		c := NewConcurrencyLimiter(limit)
		if allocs := testing.AllocsPerRun(1000, func() {
			if c.TryAcquire() {
				c.Release()
			}
		}); allocs != 0 {
			t.Errorf("limit %v: TryAcquire+Release allocate %v times, want 0", limit, allocs)
		}
	}
}

// TestConcurrencyLimiterBulkhead: two APIs share a limit of 10. Once
// "stuck"'s requests were abandoned by their clients and
// "served"'s to answers, stuck is unanswered: it gets up to a quarter of
// the limit while there is room, and its slots do not keep served out,
// which still gets the whole limit. With the bulkhead off (or every
// partition answered), the limit is the plain shared one.
func TestConcurrencyLimiterBulkhead(t *testing.T) {
	c := NewConcurrencyLimiter(10)
	stuck, served := c.Partition(2), c.Partition(3)
	if c.Partition(3) != served {
		t.Fatal("Partition(3) returned a new partition the second time")
	}
	acquire := func(p *Partition, n int) {
		t.Helper()
		for i := range n {
			if got := c.AcquireIn(p); got != Acquired {
				t.Fatalf("request %d: %v, want Acquired", i, got)
			}
		}
	}
	refused := func(p *Partition, why string) {
		t.Helper()
		if got := c.AcquireIn(p); got != Refused {
			t.Fatalf("%s: %v, want Refused", why, got)
		}
	}
	// A tick of history: served answered 4 requests of 50 ms; stuck's one
	// request was abandoned after 2 s.
	for range 4 {
		acquire(served, 1)
		c.ReleaseIn(served, Useful)
	}
	acquire(stuck, 1)
	c.ReleaseIn(stuck, Wasted)
	c.Rebalance(true, 1)
	if stuck.Answered() || !served.Answered() {
		t.Fatalf("answered: stuck %v, served %v; want false, true", stuck.Answered(), served.Answered())
	}
	acquire(stuck, 2)
	refused(stuck, "stuck beyond a quarter of the limit, with room left")
	acquire(served, 10)
	refused(served, "served beyond the limit it counts against")
	if got := c.InFlight(); got != 12 {
		t.Fatalf("in flight %d, want 12 (stuck's 2 + served's 10)", got)
	}
	// served's slots count; stuck finds no room while they are held.
	for range 2 {
		c.ReleaseIn(stuck, Unmeasured)
	}
	refused(stuck, "stuck while served's 10 fill the limit")
	for range 10 {
		c.ReleaseIn(served, Unmeasured)
	}
	// The bulkhead off: every partition answered, one plain limit.
	c.Rebalance(false, 1)
	if !stuck.Answered() {
		t.Fatal("stuck unanswered with the bulkhead off")
	}
	acquire(stuck, 6)
	acquire(served, 4)
	refused(served, "served with the plain limit full")
	refused(stuck, "stuck with the plain limit full")
	for range 6 {
		c.ReleaseIn(stuck, Unmeasured)
	}
	for range 4 {
		c.ReleaseIn(served, Unmeasured)
	}
	if c.InFlight() != 0 || served.InFlight() != 0 || stuck.InFlight() != 0 {
		t.Fatalf("after every release: %d, %d, %d in flight", c.InFlight(), served.InFlight(), stuck.InFlight())
	}
}

// TestConcurrencyLimiterPartitionTurningUnanswered: the slots a
// partition holds stop counting once it turns unanswered, and count again
// only for requests admitted after it is answered again.
func TestConcurrencyLimiterPartitionTurningUnanswered(t *testing.T) {
	c := NewConcurrencyLimiter(4)
	a, b := c.Partition(0), c.Partition(1)
	for range 3 {
		c.AcquireIn(a)
	}
	// a's history: all abandoned; with alpha 0.5 one tick leaves its
	// useful fraction at 0.5 (answered), the second at 0.25.
	c.ReleaseIn(a, Wasted)
	c.Rebalance(true, 0.5)
	if !a.Answered() {
		t.Fatal("a unanswered after one tick at alpha 0.5")
	}
	c.AcquireIn(a)
	c.ReleaseIn(a, Wasted)
	c.Rebalance(true, 0.5)
	if a.Answered() {
		t.Fatal("a answered after two ticks of abandoned requests")
	}
	// a's 2 slots no longer count: b may take all 4.
	for range 4 {
		if c.AcquireIn(b) != Acquired {
			t.Fatal("b refused within the limit, a's slots uncounted")
		}
	}
	if c.AcquireIn(b) != Refused {
		t.Fatal("b admitted beyond the limit")
	}
	if c.AcquireIn(a) != Refused {
		t.Fatal("unanswered a admitted with 6 in flight and a limit of 4")
	}
	// a answered again: its new requests count, its old ones still do not.
	c.ReleaseIn(a, Useful)
	for range 4 {
		c.ReleaseIn(b, Unmeasured)
	}
	c.Rebalance(true, 1)
	if !a.Answered() {
		t.Fatal("a unanswered after a tick of answers at alpha 1")
	}
	for range 4 {
		c.AcquireIn(a)
	}
	if c.AcquireIn(b) != Refused {
		t.Fatal("b admitted beyond a's 4 counted slots")
	}
	c.ReleaseIn(a, Unmeasured) // the old, uncounted one: a's counted stay 4 ≤ its 4 in flight
	if c.AcquireIn(b) != Refused {
		t.Fatal("b admitted while a still holds 4 counted slots")
	}
	for range 4 {
		c.ReleaseIn(a, Unmeasured)
	}
	if c.InFlight() != 0 {
		t.Fatalf("in flight %d after every release", c.InFlight())
	}
	// Unlimited: every partition is admitted as unlimited.
	c.SetLimit(math.NaN())
	if c.AcquireIn(a) != Unlimited {
		t.Fatal("an unlimited limiter did not admit as unlimited")
	}
}

// TestConcurrencyLimiterPartitionsRacingRebalance: holders of two
// partitions acquire and release while a rebalancer turns one partition
// unanswered and answered again, moving its slots between counted and
// uncounted. Every release finds its slot, and once all are released
// nothing is left in flight, counted or not.
func TestConcurrencyLimiterPartitionsRacingRebalance(t *testing.T) {
	c := NewConcurrencyLimiter(6)
	parts := []*Partition{c.Partition(0), c.Partition(1)}
	var stop atomic.Bool
	var rebalancer sync.WaitGroup
	var moves atomic.Int64
	rebalancer.Go(func() {
		for i := 0; !stop.Load(); i++ {
			c.Rebalance(i%4 < 2, 1)
			if !parts[0].Answered() {
				moves.Add(1)
			}
			runtime.Gosched()
		}
	})
	var holders sync.WaitGroup
	for h := range 8 {
		holders.Go(func() {
			p := parts[h%2]
			for range 20_000 {
				if c.AcquireIn(p) == Refused {
					continue
				}
				if h%4 == 0 {
					c.HoldIn(p) // fail-open on a stale setpoint: counted, whatever p is
					c.ReleaseIn(p, Wasted)
				}
				runtime.Gosched()
				if h%2 == 0 {
					c.ReleaseIn(p, Wasted) // partition 0 unanswered while the bulkhead is on
				} else {
					c.ReleaseIn(p, Useful)
				}
			}
		})
	}
	holders.Wait()
	stop.Store(true)
	rebalancer.Wait()
	if moves.Load() == 0 {
		t.Error("partition 0 never turned unanswered")
	}
	for i, p := range parts {
		if s := p.state.Load(); s != 0 {
			t.Errorf("partition %d: %d counted, %d uncounted after every release", i, s>>32, s&uncountedMask)
		}
	}
	if c.counted.Load() != 0 || c.uncounted.Load() != 0 {
		t.Errorf("limiter: %d counted, %d uncounted after every release", c.counted.Load(), c.uncounted.Load())
	}
}

// TestConcurrencyLimiterUnansweredPartitionDriftsBack: an unanswered
// partition with nothing in flight and nothing finished (kept out, or its
// traffic gone) drifts back to answered, so that its next requests count
// and measure it again; one with requests in flight keeps its verdict.
func TestConcurrencyLimiterUnansweredPartitionDriftsBack(t *testing.T) {
	c := NewConcurrencyLimiter(10)
	hung, pending := c.Partition(2), c.Partition(3)
	for _, p := range []*Partition{hung, pending} {
		c.AcquireIn(p)
		c.ReleaseIn(p, Wasted)
	}
	c.Rebalance(true, 1)
	if hung.Answered() || pending.Answered() {
		t.Fatal("answered after a tick of abandoned requests")
	}
	c.AcquireIn(pending) // in flight, not finished
	for range 5 {
		c.Rebalance(true, 0.2)
	}
	if hung.Answered() {
		t.Fatal("answered after five idle ticks at alpha 0.2 (fraction 0.67, under the 0.75 to leave)")
	}
	for range 10 {
		c.Rebalance(true, 0.2)
	}
	if !hung.Answered() {
		t.Error("an idle unanswered partition did not drift back to answered")
	}
	if pending.Answered() {
		t.Error("a partition with a request in flight drifted back without a sample")
	}
	c.ReleaseIn(pending, Wasted)
}

// TestConcurrencyLimiterReleaseRacingTheMoveOfHeldSlots: slots held
// whatever the limit (fail-open, or unlimited) count, and Rebalance moves
// an unanswered partition's counted slots to uncounted while they are
// released; no release may find its slot in neither.
func TestConcurrencyLimiterReleaseRacingTheMoveOfHeldSlots(t *testing.T) {
	for _, limit := range []float64{math.NaN(), 1000} {
		c := NewConcurrencyLimiter(limit)
		p := c.Partition(2)
		c.AcquireIn(p)
		c.ReleaseIn(p, Wasted)
		c.Rebalance(true, 1)
		var stop atomic.Bool
		var rebalancer sync.WaitGroup
		rebalancer.Go(func() {
			for !stop.Load() {
				p.other.Add(1)
				c.Rebalance(true, 1)
			}
		})
		var holders sync.WaitGroup
		for range 4 {
			holders.Go(func() {
				for range 100_000 {
					c.HoldIn(p)
					c.ReleaseIn(p, Wasted)
				}
			})
		}
		holders.Wait()
		stop.Store(true)
		rebalancer.Wait()
		if c.InFlight() != 0 || p.state.Load() != 0 {
			t.Errorf("limit %v: %d in flight after every release", limit, c.InFlight())
		}
	}
}

// TestConcurrencyLimiterNoneAnsweredIsThePlainLimit: with every API's
// requests abandoned (a queue past every client's patience, or one API
// whose clients all give up) no answered API has use for the room, and
// the bulkhead is the plain shared limit: the unanswered quarter holds
// only while some answered API has requests.
func TestConcurrencyLimiterNoneAnsweredIsThePlainLimit(t *testing.T) {
	for _, parts := range []int{1, 2} {
		c := NewConcurrencyLimiter(8)
		var ps []*Partition
		for i := range parts {
			p := c.Partition(i)
			c.AcquireIn(p)
			c.ReleaseIn(p, Wasted)
			ps = append(ps, p)
		}
		c.Rebalance(true, 1)
		for _, p := range ps {
			if p.Answered() {
				t.Fatal("partition answered with every request abandoned")
			}
		}
		admitted := 0
		for i := range 16 {
			if c.AcquireIn(ps[i%parts]) != Refused {
				admitted++
			}
		}
		if admitted != 8 {
			t.Errorf("%d partition(s), none answered, limit 8: %d admitted, want 8 (the plain shared limit)", parts, admitted)
		}
	}
}
