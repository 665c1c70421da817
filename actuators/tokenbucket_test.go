package actuators

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

const ms = int64(1e6) // one millisecond in nanoseconds

// bucketStep is one call in a hand-driven scenario: Allow at atNs, or, when
// setRate/setBurst is non-nil, a reconfiguration before it.
type bucketStep struct {
	atNs       int64
	want       bool
	setRate    *float64
	setBurst   *float64
	wantTokens *float64 // checked at atNs before Allow, if set
}

func ptr(v float64) *float64 { return &v }

func TestTokenBucketScenarios(t *testing.T) {
	cases := []struct {
		name          string
		ratePerSec    float64
		burst         float64
		constructNs   int64
		steps         []bucketStep
		wantRate      float64
		wantBurst     float64
		wantUnlimited bool
	}{
		{
			name: "starts full: 5 immediate allows then rejects, exactly one more after 100ms at 10/s",
			// The clock need not start at 0: all times are relative.
			ratePerSec: 10, burst: 5, constructNs: 7_000 * ms,
			steps: []bucketStep{
				{atNs: 7_000 * ms, want: true, wantTokens: ptr(5)},
				{atNs: 7_000 * ms, want: true},
				{atNs: 7_000 * ms, want: true},
				{atNs: 7_000 * ms, want: true},
				{atNs: 7_000 * ms, want: true, wantTokens: ptr(1)},
				{atNs: 7_000 * ms, want: false, wantTokens: ptr(0)},
				{atNs: 7_099 * ms, want: false},
				{atNs: 7_100 * ms, want: true, wantTokens: ptr(1)},
				{atNs: 7_100 * ms, want: false},
				{atNs: 7_150 * ms, want: false, wantTokens: ptr(0.5)},
				{atNs: 7_200 * ms, want: true},
			},
			wantRate: 10, wantBurst: 5,
		},
		{
			name:       "an idle bucket refills only up to its burst",
			ratePerSec: 10, burst: 2,
			steps: []bucketStep{
				{atNs: 0, want: true},
				{atNs: 0, want: true},
				{atNs: 10_000 * ms, want: true, wantTokens: ptr(2)},
				{atNs: 10_000 * ms, want: true},
				{atNs: 10_000 * ms, want: false},
			},
			wantRate: 10, wantBurst: 2,
		},
		{
			name:       "a sub-token rate of 0.5/s admits one event every 2s",
			ratePerSec: 0.5, burst: 1,
			steps: []bucketStep{
				{atNs: 0, want: true},
				{atNs: 1_000 * ms, want: false, wantTokens: ptr(0.5)},
				{atNs: 2_000*ms - 1, want: false},
				{atNs: 2_000 * ms, want: true},
				{atNs: 3_999 * ms, want: false},
				{atNs: 4_000 * ms, want: true},
			},
			wantRate: 0.5, wantBurst: 1,
		},
		{
			name:       "a fractional burst holds a fractional token count",
			ratePerSec: 1, burst: 1.5,
			steps: []bucketStep{
				{atNs: 0, want: true, wantTokens: ptr(1.5)},
				{atNs: 0, want: false, wantTokens: ptr(0.5)},
				{atNs: 500 * ms, want: true},
				{atNs: 5_000 * ms, want: true, wantTokens: ptr(1.5)},
			},
			wantRate: 1, wantBurst: 1.5,
		},
		{
			name:       "a high rate of 1e7/s refills one token every 100ns",
			ratePerSec: 1e7, burst: 1,
			steps: []bucketStep{
				{atNs: 0, want: true},
				{atNs: 99, want: false},
				{atNs: 100, want: true},
				{atNs: 150, want: false, wantTokens: ptr(0.5)},
				{atNs: 200, want: true},
			},
			wantRate: 1e7, wantBurst: 1,
		},
		{
			name:       "a caller with an older timestamp gains no tokens",
			ratePerSec: 10, burst: 2,
			steps: []bucketStep{
				{atNs: 100 * ms, want: true, wantTokens: ptr(2)},
				// At 50ms the bucket holds 0.5 tokens once the admission at
				// 100ms is accounted for; x/time/rate admits here and moves
				// its clock back to 50ms.
				{atNs: 50 * ms, want: false, wantTokens: ptr(0.5)},
				{atNs: 0, want: false, wantTokens: ptr(0)},
				{atNs: 100 * ms, want: true, wantTokens: ptr(1)},
				{atNs: 100 * ms, want: false},
				{atNs: 50 * ms, want: false},
				{atNs: 150 * ms, want: false, wantTokens: ptr(0.5)},
				{atNs: 200 * ms, want: true},
			},
			wantRate: 10, wantBurst: 2,
		},
		{
			name:       "SetRate keeps the tokens and refills at the new rate from then on",
			ratePerSec: 10, burst: 5,
			steps: []bucketStep{
				{atNs: 0, want: true}, {atNs: 0, want: true}, {atNs: 0, want: true},
				{atNs: 0, want: true}, {atNs: 0, want: true, wantTokens: ptr(1)},
				{atNs: 100 * ms, setRate: ptr(1000), want: true, wantTokens: ptr(1)},
				{atNs: 101 * ms, want: true, wantTokens: ptr(1)},
				{atNs: 101 * ms, want: false},
				{atNs: 101 * ms, setRate: ptr(1), want: false, wantTokens: ptr(0)},
				{atNs: 1_100 * ms, want: false, wantTokens: ptr(0.999)},
				{atNs: 1_101 * ms, want: true},
			},
			wantRate: 1, wantBurst: 5,
		},
		{
			name:       "SetRate to 0 admits the remaining tokens and then nothing, however long we wait",
			ratePerSec: 10, burst: 3,
			steps: []bucketStep{
				{atNs: 0, want: true},
				{atNs: 0, setRate: ptr(0), want: true, wantTokens: ptr(2)},
				{atNs: 1_000 * ms, want: true, wantTokens: ptr(1)},
				{atNs: 1_000_000 * ms, want: false, wantTokens: ptr(0)},
				{atNs: 1_000_000 * ms, setRate: ptr(10), want: false, wantTokens: ptr(0)},
				{atNs: 1_000_100 * ms, want: true},
			},
			wantRate: 10, wantBurst: 3,
		},
		{
			name:       "a negative rate acts as 0",
			ratePerSec: -5, burst: 2,
			steps: []bucketStep{
				{atNs: 0, want: true}, {atNs: 0, want: true},
				{atNs: 60_000 * ms, want: false, wantTokens: ptr(0)},
			},
			wantRate: 0, wantBurst: 2,
		},
		{
			name:       "two reconfigurations before any Allow keep the tokens across both",
			ratePerSec: 10, burst: 5,
			steps: []bucketStep{
				{atNs: 0, want: true}, {atNs: 0, want: true},
				{atNs: 0, setRate: ptr(20), setBurst: ptr(4), want: true, wantTokens: ptr(3)},
				{atNs: 0, setRate: ptr(20), want: true, wantTokens: ptr(2)}, // unchanged: a no-op
				{atNs: 0, setBurst: ptr(1), want: true, wantTokens: ptr(1)},
				{atNs: 0, want: false},
				{atNs: 49 * ms, want: false},
				{atNs: 50 * ms, want: true, wantTokens: ptr(1)},
			},
			wantRate: 20, wantBurst: 1,
		},
		{
			name:       "SetBurst below the tokens caps them; raising it again does not refill",
			ratePerSec: 10, burst: 5,
			steps: []bucketStep{
				{atNs: 0, setBurst: ptr(2), want: true, wantTokens: ptr(2)},
				{atNs: 0, setBurst: ptr(10), want: true, wantTokens: ptr(1)},
				{atNs: 0, want: false},
				{atNs: 1_000 * ms, want: true, wantTokens: ptr(10)},
			},
			wantRate: 10, wantBurst: 10,
		},
		{
			name:       "SetBurst below 1 or NaN is raised to 1",
			ratePerSec: 10, burst: 0.2,
			steps: []bucketStep{
				{atNs: 0, want: true, wantTokens: ptr(1)},
				{atNs: 1_000 * ms, setBurst: ptr(math.NaN()), want: true, wantTokens: ptr(1)},
				{atNs: 1_000 * ms, want: false},
			},
			wantRate: 10, wantBurst: 1,
		},
		{
			name:       "NaN rate is unlimited",
			ratePerSec: math.NaN(), burst: 1,
			steps: []bucketStep{
				{atNs: 0, want: true, wantTokens: ptr(math.Inf(1))},
				{atNs: 0, want: true}, {atNs: 0, want: true}, {atNs: 0, want: true},
			},
			wantRate: math.NaN(), wantBurst: 1, wantUnlimited: true,
		},
		{
			name:       "+Inf rate is unlimited, and a finite rate after it starts from a full bucket",
			ratePerSec: math.Inf(1), burst: 2,
			steps: []bucketStep{
				{atNs: 0, want: true}, {atNs: 0, want: true}, {atNs: 0, want: true},
				{atNs: 0, setRate: ptr(1), want: true, wantTokens: ptr(2)},
				{atNs: 0, want: true},
				{atNs: 0, want: false},
			},
			wantRate: 1, wantBurst: 2,
		},
		{
			name:       "SetRate to NaN fails open until a finite rate returns, which keeps the burst",
			ratePerSec: 1, burst: 1,
			steps: []bucketStep{
				{atNs: 0, want: true},
				{atNs: 0, want: false},
				{atNs: 0, setRate: ptr(math.NaN()), want: true},
				{atNs: 0, setBurst: ptr(3), want: true},
				{atNs: 0, setRate: ptr(1), want: true, wantTokens: ptr(3)},
			},
			wantRate: 1, wantBurst: 3,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := NewTokenBucket(tc.ratePerSec, tc.burst, tc.constructNs)
			for i, step := range tc.steps {
				if step.setRate != nil {
					b.SetRate(*step.setRate)
				}
				if step.setBurst != nil {
					b.SetBurst(*step.setBurst)
				}
				if step.wantTokens != nil {
					got, want := b.Tokens(step.atNs), *step.wantTokens
					if !(got == want || math.Abs(got-want) < 1e-9) {
						t.Fatalf("step %d: Tokens(%d) = %v, want %v", i, step.atNs, got, want)
					}
				}
				if got := b.Allow(step.atNs); got != step.want {
					t.Fatalf("step %d: Allow(%d) = %v, want %v", i, step.atNs, got, step.want)
				}
			}
			if got := b.Rate(); !sameFloat(got, tc.wantRate) {
				t.Errorf("Rate() = %v, want %v", got, tc.wantRate)
			}
			if got := b.Burst(); got != tc.wantBurst {
				t.Errorf("Burst() = %v, want %v", got, tc.wantBurst)
			}
			if got := b.Unlimited(); got != tc.wantUnlimited {
				t.Errorf("Unlimited() = %v, want %v", got, tc.wantUnlimited)
			}
		})
	}
}

// sameFloat compares floats, treating NaN as equal to NaN.
func sameFloat(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

func TestTokenBucketAdmitsExactlyRateTimesElapsedPlusBurst(t *testing.T) {
	cases := []struct {
		name       string
		ratePerSec float64
		burst      float64
		elapsedNs  int64
		stepNs     int64
		want       int
	}{
		{"10/s with burst 5 over 10s, asked every 1ms", 10, 5, 10_000 * ms, ms, 105},
		{"0.5/s with burst 1 over 60s, asked every 10ms", 0.5, 1, 60_000 * ms, 10 * ms, 31},
		{"1e7/s with burst 10 over 1ms, asked every 10ns", 1e7, 10, ms, 10, 10_010},
		{"1e9/s with burst 1 over 1µs, asked every 1ns", 1e9, 1, 1_000, 1, 1_001},
		// Costs round up to 1/16 ns, never down: at 3/s the 30th refill is
		// due 1.25ns after 10s, so the bucket is never faster than asked.
		{"3/s with burst 2 over 10s, asked every 1ms", 3, 2, 10_000 * ms, ms, 31},
		{"3/s with burst 2 over 10s and 2ns", 3, 2, 10_000*ms + 2, ms, 32},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := NewTokenBucket(tc.ratePerSec, tc.burst, 0)
			admitted := 0
			for now := int64(0); ; now = min(now+tc.stepNs, tc.elapsedNs) {
				for b.Allow(now) {
					admitted++
				}
				if now == tc.elapsedNs {
					break
				}
			}
			if admitted != tc.want {
				t.Errorf("admitted %d, want %d", admitted, tc.want)
			}
		})
	}
}

func TestTokenBucketReconfiguredEveryTickWhileIdleDoesNotGrow(t *testing.T) {
	b := NewTokenBucket(10, 5, 0)
	for i := range 1000 {
		b.SetRate(float64(10 + i))
		b.SetBurst(float64(5 + i%7))
	}
	chain := 0
	for e := b.current.Load(); e != nil; e = e.next.Load() {
		chain++
	}
	if chain > 2 {
		t.Errorf("chain of %d epochs after 2000 idle reconfigurations, want at most 2", chain)
	}
	if got := b.Tokens(0); got != 5 {
		t.Errorf("Tokens(0) = %v, want the initial 5 (the last burst is 10)", got)
	}
}

// TestTokenBucketConcurrentAdmissionsStayWithinTheBound hammers one bucket
// from 8 goroutines sharing a virtual clock that they advance themselves.
// Goroutines present stale timestamps both naturally (the clock moves
// between reading it and calling Allow) and deliberately (jitter), which is
// what makes x/time/rate exceed its limit.
func TestTokenBucketConcurrentAdmissionsStayWithinTheBound(t *testing.T) {
	cases := []struct {
		name       string
		ratePerSec float64
		burst      float64
		stepNs     int64 // clock advance every 4th call of each goroutine
		// A ninth goroutine cycles through these while the others call
		// Allow; the bound uses their maxima, the floor the slowest rate.
		toggleRates  []float64
		toggleBursts []float64
	}{
		{name: "steady 1000/s burst 10", ratePerSec: 1000, burst: 10, stepNs: 250_000},
		{name: "1e7/s burst 1", ratePerSec: 1e7, burst: 1, stepNs: 25},
		{name: "0.5/s burst 3", ratePerSec: 0.5, burst: 3, stepNs: 500 * ms},
		{name: "rate and burst changed concurrently", ratePerSec: 1000, burst: 10, stepNs: 250_000,
			toggleRates: []float64{2000, 1000}, toggleBursts: []float64{20, 10, 5}},
		{name: "burst changed concurrently at a fixed rate keeps the bound tight", ratePerSec: 1000, burst: 10, stepNs: 250_000,
			toggleBursts: []float64{9.5, 10}},
	}
	const goroutines, callsPerGoroutine = 8, 20_000
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var clock, admitted atomic.Int64
			var stop atomic.Bool
			b := NewTokenBucket(tc.ratePerSec, tc.burst, 0)
			maxRate, minRate, maxBurst := tc.ratePerSec, tc.ratePerSec, tc.burst
			for _, r := range tc.toggleRates {
				maxRate, minRate = max(maxRate, r), min(minRate, r)
			}
			for _, burst := range tc.toggleBursts {
				maxBurst = max(maxBurst, burst)
			}
			var reconfigurer sync.WaitGroup
			if len(tc.toggleRates)+len(tc.toggleBursts) > 0 {
				reconfigurer.Go(func() {
					for i := 0; !stop.Load(); i++ {
						if len(tc.toggleRates) > 0 {
							b.SetRate(tc.toggleRates[i%len(tc.toggleRates)])
						}
						if len(tc.toggleBursts) > 0 {
							b.SetBurst(tc.toggleBursts[i%len(tc.toggleBursts)])
						}
						runtime.Gosched() // let callers run even with GOMAXPROCS=1
					}
				})
			}
			var callers sync.WaitGroup
			for g := range goroutines {
				callers.Go(func() {
					for i := range callsPerGoroutine {
						now := clock.Load()
						if i%4 == 0 {
							now = clock.Add(tc.stepNs)
						}
						if (i+g)%3 == 0 {
							now -= int64(i%7) * tc.stepNs
						}
						if b.Allow(now) {
							admitted.Add(1)
						}
					}
				})
			}
			callers.Wait()
			stop.Store(true)
			reconfigurer.Wait()

			elapsedSec := float64(clock.Load()) / 1e9
			bound := maxRate*elapsedSec + maxBurst
			got := float64(admitted.Load())
			if got > bound+1e-6 {
				t.Errorf("admitted %v, more than rate·elapsed + burst = %v", got, bound)
			}
			// Demand is 4 calls per clock step, several times the supply, so
			// nearly all supplied tokens must be used; this keeps the test
			// from passing with a bucket that admits nothing. A SetBurst
			// under the tokens held discards the rest (by design), and a
			// loaded scheduler can leave them unclaimed until it does: with
			// the burst toggled, a quarter of the supply may go that way.
			share := 0.9
			if len(tc.toggleBursts) > 0 {
				share = 0.75
			}
			if floor := share * minRate * elapsedSec; got < floor {
				t.Errorf("admitted %v, fewer than %.0f%% of the slowest supply %v", got, 100*share, minRate*elapsedSec)
			}
		})
	}
}

func TestTokenBucketAllowDoesNotAllocate(t *testing.T) {
	for _, rate := range []float64{1e9, 0, math.NaN()} {
		b := NewTokenBucket(rate, 10, 0)
		now := int64(0)
		if allocs := testing.AllocsPerRun(1000, func() {
			now += 1000
			b.Allow(now)
		}); allocs != 0 {
			t.Errorf("rate %v: Allow allocates %v times per call, want 0", rate, allocs)
		}
	}
}

func TestTokenBucketSetRateAndBurstIsOneReconfiguration(t *testing.T) {
	b := NewTokenBucket(10, 5, 0)
	b.Allow(0) // make the first epoch active, so that the next one seals it
	b.SetRateAndBurst(100, 50)
	chain := 0
	for e := b.current.Load(); e != nil; e = e.next.Load() {
		chain++
	}
	if chain != 2 {
		t.Errorf("chain of %d epochs after one SetRateAndBurst, want 2 (the sealed one and the new one)", chain)
	}
	if b.Rate() != 100 || b.Burst() != 50 {
		t.Errorf("rate %v burst %v, want 100 and 50", b.Rate(), b.Burst())
	}
	if got := b.Tokens(0); got != 4 {
		t.Errorf("Tokens(0) = %v, want the 4 left (a larger burst is not filled)", got)
	}
	if got := b.Tokens(1e9); got != 50 {
		t.Errorf("Tokens(1s) = %v, want the new burst of 50 at the new rate", got)
	}
	rate := 100.0
	if allocs := testing.AllocsPerRun(100, func() {
		rate++
		b.SetRateAndBurst(rate, 50)
	}); allocs != 1 {
		t.Errorf("a changing SetRateAndBurst allocates %v times, want 1 (its epoch)", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { b.SetRateAndBurst(rate, 50) }); allocs != 0 {
		t.Errorf("an unchanged SetRateAndBurst allocates %v times, want 0", allocs)
	}
}

func TestTokenBucketAdmitReportsWhetherALimitDecided(t *testing.T) {
	b := NewTokenBucket(math.NaN(), 1, 0)
	if allowed, limited := b.Admit(0); !allowed || limited {
		t.Errorf("unlimited: Admit = %v, %v; want true, false", allowed, limited)
	}
	b.SetRateAndBurst(0, 1)
	if allowed, limited := b.Admit(0); !allowed || !limited {
		t.Errorf("the full bucket's last token: Admit = %v, %v; want true, true", allowed, limited)
	}
	if allowed, limited := b.Admit(0); allowed || !limited {
		t.Errorf("empty bucket: Admit = %v, %v; want false, true", allowed, limited)
	}
}
