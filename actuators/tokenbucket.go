package actuators

import (
	"math"
	"sync/atomic"
)

// TokenBucket is a lock-free rate limiter: it admits on average ratePerSec
// events per second, with bursts of up to burst events.
//
// A bucket holds up to burst tokens, refills at ratePerSec tokens per second,
// and starts full. Allow takes one token when at least one is available.
// Over any interval that starts at construction and during which the
// configuration does not change, a bucket admits at most
// ratePerSec·seconds + burst events.
//
// Time is supplied by the caller as int64 nanoseconds from one monotonic
// clock; the bucket never reads a clock itself. Callers may present
// timestamps out of order, as concurrent goroutines that read the clock
// before calling Allow inevitably do: a timestamp older than one already
// seen never creates tokens. (golang.org/x/time/rate moves its clock
// backwards in that case, which lets a contended limiter exceed its rate.)
//
// A rate of NaN or +Inf means unlimited: Allow always admits. A negative
// rate is treated as 0, which admits the tokens left in the bucket and then
// nothing more. A burst below 1, or NaN, is raised to 1.
//
// Implementation: the state is a GCRA-style "empty time" held in one atomic
// int64 and advanced by compare-and-swap, at a resolution of 1/16 ns. Costs
// are rounded up to that resolution, so rates above 1.6e10 per second act as
// 1.6e10, rates below about 1.4e-8 per second (one token per 2.3 years) act
// as 0, and the bucket never holds more tokens than accrue in about 2.3
// years. Timestamps must stay within about 9 years (2^58 ns) of the
// construction time.
//
// All methods are safe for concurrent use. Allow and Tokens never block and
// never allocate; a CAS that loses a race is retried. SetRate, SetBurst and
// SetRateAndBurst are atomic with respect to each other and to Allow,
// allocate one small object when the configuration changes, and keep the
// current token count.
type TokenBucket struct {
	baseNs  int64 // nowNs at construction; internal time is relative to it
	current atomic.Pointer[bucketEpoch]
}

// A bucketEpoch is one immutable configuration of a bucket together with the
// state accumulated under it. Reconfiguring appends a new epoch and seals the
// old one; the first caller that needs the new epoch converts the sealed
// state into it, at that caller's time. Keeping the configuration and the
// state it is encoded in together is what makes SetRate atomic without a
// second word of state.
//
// The state word takes one of four forms:
//   - statePending: a new epoch whose state has not yet been converted;
//   - stateDead: an epoch replaced by a later one before it was converted;
//   - empty<<1: active, where empty is the internal time (ticks) at which
//     the bucket is or was empty; tokens(now) = (now - empty) / costTicks,
//     with empty raised to now - windowTicks when the bucket is full;
//   - empty<<1 | sealedBit: sealed; empty is final and the epoch has a next.
type bucketEpoch struct {
	state atomic.Int64
	bucketConfig
	next atomic.Pointer[bucketEpoch]
}

// bucketConfig is a bucket's configuration, as derived from its rate and
// burst.
type bucketConfig struct {
	costTicks   int64 // ticks per token
	windowTicks int64 // ticks to fill the bucket from empty: burst·costTicks
	unlimited   bool  // rate NaN or +Inf: admit everything
	frozen      bool  // rate 0: time is ignored and tokens never refill
	ratePerSec  float64
	burst       float64
}

const (
	// ticksPerNs is the resolution of the bucket's internal clock. At 1/16
	// ns per tick the cost of one token at 1e7/s is exactly 1600 ticks and
	// at 1e9/s exactly 16.
	ticksPerNs = 16
	// maxWindowTicks caps windowTicks (2^56 ns, about 2.3 years) so that
	// internal arithmetic stays far from int64 overflow.
	maxWindowTicks = 1 << 60
	// frozenCostTicks is the notional cost of one token while the rate is 0.
	// A frozen epoch reads its clock as 0, so only the ratio of window to
	// cost, the token count, matters.
	frozenCostTicks = 1 << 20

	sealedBit    = 1
	statePending = math.MinInt64
	stateDead    = math.MinInt64 + 1
)

// NewTokenBucket returns a full bucket (burst tokens) refilling at
// ratePerSec tokens per second, whose clock reads nowNs at construction.
// ratePerSec NaN or +Inf means unlimited; negative means 0. burst is raised
// to at least 1.
func NewTokenBucket(ratePerSec, burst float64, nowNs int64) *TokenBucket {
	b := &TokenBucket{baseNs: nowNs}
	e := &bucketEpoch{bucketConfig: newBucketConfig(ratePerSec, burst)}
	e.state.Store(e.stateWithTokens(math.Inf(1), 0))
	b.current.Store(e)
	return b
}

// Allow reports whether an event at time nowNs (monotonic nanoseconds) may
// happen, and if so takes one token. It never blocks and never allocates.
func (b *TokenBucket) Allow(nowNs int64) bool {
	allowed, _ := b.Admit(nowNs)
	return allowed
}

// Admit is Allow that also reports whether a limit was in force: limited
// is false when the bucket is unlimited, in which case allowed is true.
// Both answers come from the one configuration the decision used, so a
// concurrent reconfiguration cannot make them disagree, as calling
// Unlimited and then Allow could.
func (b *TokenBucket) Admit(nowNs int64) (allowed, limited bool) {
	now := b.ticks(nowNs)
	e := b.current.Load()
	for {
		s := e.state.Load()
		if s&sealedBit != 0 {
			e = b.advance(e, now)
			continue
		}
		if e.unlimited {
			return true, false
		}
		clock := e.clock(now)
		empty := max(s>>1, clock-e.windowTicks) + e.costTicks
		if empty > clock {
			return false, true
		}
		if e.state.CompareAndSwap(s, empty<<1) {
			return true, true
		}
	}
}

// Tokens returns the number of tokens available at time nowNs: at most
// Burst, never negative, and +Inf when the bucket is unlimited. It is meant
// for tests and status pages; deciding with Tokens and then calling Allow is
// racy.
func (b *TokenBucket) Tokens(nowNs int64) float64 {
	now := b.ticks(nowNs)
	e := b.current.Load()
	for {
		s := e.state.Load()
		if s&sealedBit != 0 {
			e = b.advance(e, now)
			continue
		}
		return max(0, e.tokens(s>>1, now))
	}
}

// SetRate changes the refill rate to ratePerSec tokens per second, keeping
// the tokens currently in the bucket. NaN or +Inf means unlimited; negative
// means 0. Changing from unlimited to a finite rate starts with a full
// bucket. The change is atomic: every Allow that starts after SetRate
// returns sees the new rate.
func (b *TokenBucket) SetRate(ratePerSec float64) {
	b.reconfigure(func(tail *bucketEpoch) bucketConfig {
		return newBucketConfig(ratePerSec, tail.burst)
	})
}

// SetBurst changes the bucket's capacity to burst tokens (raised to at least
// 1; NaN means 1). Tokens above the new capacity are discarded; a larger
// capacity is not filled. The change is atomic like SetRate's.
func (b *TokenBucket) SetBurst(burst float64) {
	b.reconfigure(func(tail *bucketEpoch) bucketConfig {
		return newBucketConfig(tail.ratePerSec, burst)
	})
}

// SetRateAndBurst changes the rate and the capacity in one atomic step, as
// SetRate and SetBurst would one after the other, but with no Allow ever
// seeing one changed and not the other, and with one reconfiguration (and
// at most one small allocation) instead of two. Setting what is already
// set does nothing and allocates nothing.
func (b *TokenBucket) SetRateAndBurst(ratePerSec, burst float64) {
	b.reconfigure(func(*bucketEpoch) bucketConfig {
		return newBucketConfig(ratePerSec, burst)
	})
}

// Rate returns the rate set last, in tokens per second: NaN when unlimited,
// 0 for a rate set negative.
func (b *TokenBucket) Rate() float64 { return b.latest().ratePerSec }

// Burst returns the capacity set last, in tokens.
func (b *TokenBucket) Burst() float64 { return b.latest().burst }

// Unlimited reports whether the rate set last is unlimited (NaN or +Inf),
// in which case Allow always admits. Like Rate and Burst it walks to the
// latest configuration; on the request path, Admit answers the same
// question as part of the decision.
func (b *TokenBucket) Unlimited() bool { return b.latest().unlimited }

// ticks converts a caller's timestamp to the bucket's internal clock.
func (b *TokenBucket) ticks(nowNs int64) int64 { return (nowNs - b.baseNs) * ticksPerNs }

// latest returns the most recently configured epoch, converted or not.
func (b *TokenBucket) latest() *bucketEpoch {
	_, tail := b.tail()
	return tail
}

// tail walks from the current epoch to the last one and returns it with its
// predecessor (nil when the tail is current).
func (b *TokenBucket) tail() (pred, tail *bucketEpoch) {
	tail = b.current.Load()
	for next := tail.next.Load(); next != nil; next = tail.next.Load() {
		pred, tail = tail, next
	}
	return pred, tail
}

// reconfigure appends the epoch that configure derives from the latest one,
// then retires that predecessor: an active one is sealed, and one still
// pending (no Allow since the last change) is marked dead and unlinked so
// that an idle bucket reconfigured every tick does not grow a chain.
func (b *TokenBucket) reconfigure(configure func(tail *bucketEpoch) bucketConfig) {
	for {
		pred, tail := b.tail()
		config := configure(tail)
		if config.same(&tail.bucketConfig) {
			return
		}
		next := &bucketEpoch{bucketConfig: config}
		next.state.Store(statePending)
		if !tail.next.CompareAndSwap(nil, next) {
			continue // another reconfiguration won; build on top of it
		}
		if tail.state.CompareAndSwap(statePending, stateDead) {
			if pred != nil {
				pred.next.CompareAndSwap(tail, next)
			}
			return
		}
		// tail is (or has just become) active: seal it so that no Allow
		// can take a token under the old configuration any more.
		tail.seal()
		return
	}
}

// advance moves the bucket from the sealed epoch from to its live successor,
// converting the state if nobody has yet, and returns the current epoch.
// now is the caller's internal time, at which the conversion happens.
func (b *TokenBucket) advance(from *bucketEpoch, now int64) *bucketEpoch {
	sealedEmpty := from.state.Load() >> 1
	to := from.next.Load()
	for {
		s := to.state.Load()
		if s == stateDead {
			to = to.next.Load()
			continue
		}
		if s == statePending {
			converted := to.stateWithTokens(from.tokens(sealedEmpty, now), now)
			if !to.state.CompareAndSwap(statePending, converted) {
				continue // killed or converted meanwhile: look again
			}
			if to.next.Load() != nil {
				to.seal() // reconfigured again before we converted it
			}
		}
		break
	}
	b.current.CompareAndSwap(from, to)
	return b.current.Load()
}

func newBucketConfig(ratePerSec, burst float64) bucketConfig {
	if !(burst >= 1) {
		burst = 1
	}
	e := bucketConfig{burst: burst}
	if math.IsNaN(ratePerSec) || math.IsInf(ratePerSec, 1) {
		e.unlimited = true
		e.ratePerSec = math.NaN()
		return e
	}
	e.ratePerSec = max(ratePerSec, 0)
	cost := ticksPerNs * 1e9 / e.ratePerSec // +Inf for rate 0
	if cost > maxWindowTicks {
		e.frozen = true
		cost = frozenCostTicks
	}
	cost = max(1, math.Ceil(cost)) // round up: never faster than asked
	e.costTicks = int64(cost)
	e.windowTicks = int64(math.Min(math.Floor(burst*cost), maxWindowTicks))
	return e
}

func (e *bucketConfig) same(o *bucketConfig) bool {
	if e.burst != o.burst || e.unlimited != o.unlimited {
		return false
	}
	return e.unlimited || e.ratePerSec == o.ratePerSec
}

// clock returns the epoch's view of internal time now: frozen epochs stop
// the clock at 0.
func (e *bucketEpoch) clock(now int64) int64 {
	if e.frozen {
		return 0
	}
	return now
}

// tokens returns the tokens at internal time now for the state empty. It is
// negative when now is older than the latest admission.
func (e *bucketEpoch) tokens(empty, now int64) float64 {
	if e.unlimited {
		return math.Inf(1)
	}
	clock := e.clock(now)
	empty = max(empty, clock-e.windowTicks)
	return float64(clock-empty) / float64(e.costTicks)
}

// stateWithTokens encodes an active state holding tokens (capped at the
// burst, rounded down to a tick) at internal time now.
func (e *bucketEpoch) stateWithTokens(tokens float64, now int64) int64 {
	if e.unlimited {
		return 0
	}
	fill := math.Max(tokens*float64(e.costTicks), -maxWindowTicks)
	fill = math.Min(math.Floor(fill), float64(e.windowTicks))
	return (e.clock(now) - int64(fill)) << 1
}

// seal marks an active epoch as sealed; it is idempotent.
func (e *bucketEpoch) seal() {
	for {
		s := e.state.Load()
		if s&sealedBit != 0 || s == statePending {
			return
		}
		if e.state.CompareAndSwap(s, s|sealedBit) {
			return
		}
	}
}
