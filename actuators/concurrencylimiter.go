package actuators

import (
	"math"
	"sync/atomic"
)

// ConcurrencyLimiter bounds the number of requests in flight at once.
//
// A limit of L admits while fewer than floor(L) requests hold a slot. NaN or
// +Inf means unlimited (requests are still counted in InFlight); a negative
// limit or -Inf means 0. A finite limit beyond the int64 range is clamped
// to math.MaxInt64.
//
// All methods are safe for concurrent use, lock-free and allocation-free.
// TryAcquire never admits beyond the limit in force when it decides, even
// while SetLimit runs concurrently. Lowering the limit below InFlight
// preempts nothing: new requests are refused until enough slots are
// released.
type ConcurrencyLimiter struct {
	inFlight atomic.Int64
	slots    atomic.Int64 // unlimitedSlots when unlimited
}

const unlimitedSlots = -1

// NewConcurrencyLimiter returns a limiter with no request in flight and the
// given limit (see SetLimit).
func NewConcurrencyLimiter(limit float64) *ConcurrencyLimiter {
	c := &ConcurrencyLimiter{}
	c.SetLimit(limit)
	return c
}

// Acquisition is what Acquire did.
type Acquisition uint8

const (
	// Refused: the limit was reached; no slot was taken.
	Refused Acquisition = iota
	// Acquired: a slot was taken under the limit.
	Acquired
	// Unlimited: a slot was taken while the limiter is unlimited.
	Unlimited
)

// Acquire takes a slot if fewer requests than the limit are in flight, or
// if the limiter is unlimited, and says which; otherwise it takes nothing
// and returns Refused. Every slot taken must be given back with exactly one
// Release. A slot taken while unlimited counts against a limit set later,
// for as long as its request is in flight.
func (c *ConcurrencyLimiter) Acquire() Acquisition {
	for {
		n := c.inFlight.Load()
		slots := c.slots.Load()
		if slots == unlimitedSlots {
			c.inFlight.Add(1)
			return Unlimited
		}
		if n >= slots {
			return Refused
		}
		if c.inFlight.CompareAndSwap(n, n+1) {
			return Acquired
		}
	}
}

// TryAcquire is Acquire reporting only whether it took a slot.
func (c *ConcurrencyLimiter) TryAcquire() bool { return c.Acquire() != Refused }

// Hold takes a slot whatever the limit, for a request admitted in spite of
// it (a fail-open decision on a stale limit), so that InFlight stays the
// number of requests in flight and a limit set later is measured against
// all of them. It must be paired with one Release, like a slot from
// Acquire.
func (c *ConcurrencyLimiter) Hold() { c.inFlight.Add(1) }

// Release returns a slot taken by TryAcquire. Releasing more slots than were
// acquired is a bug in the caller and panics, as sync.WaitGroup does for a
// negative counter.
func (c *ConcurrencyLimiter) Release() {
	if c.inFlight.Add(-1) < 0 {
		c.inFlight.Add(1)
		panic("actuators: ConcurrencyLimiter.Release without a matching TryAcquire")
	}
}

// SetLimit atomically changes the limit to floor(limit) slots. NaN or +Inf
// means unlimited; a negative value means 0.
func (c *ConcurrencyLimiter) SetLimit(limit float64) {
	var slots int64
	switch {
	case math.IsNaN(limit) || math.IsInf(limit, 1):
		slots = unlimitedSlots
	case limit <= 0:
		slots = 0
	case limit >= math.MaxInt64: // float64(MaxInt64) rounds up to 2^63
		slots = math.MaxInt64
	default:
		slots = int64(limit) // truncation is floor for positive values
	}
	c.slots.Store(slots)
}

// InFlight returns the number of slots currently held.
func (c *ConcurrencyLimiter) InFlight() int64 { return c.inFlight.Load() }

// Limit returns the number of slots, or NaN when unlimited.
func (c *ConcurrencyLimiter) Limit() float64 {
	slots := c.slots.Load()
	if slots == unlimitedSlots {
		return math.NaN()
	}
	return float64(slots)
}
