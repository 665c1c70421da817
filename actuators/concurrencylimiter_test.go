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
