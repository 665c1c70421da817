package actuators

import (
	"math"
	"sync"
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
	// counted is the requests in flight that count against the limit for
	// answered partitions' requests; uncounted those of unanswered
	// partitions (Partition). Their sum is the requests in flight.
	counted, uncounted atomic.Int64
	slots              atomic.Int64 // unlimitedSlots when unlimited
	// whole is the partition of Acquire, Hold and Release.
	whole Partition

	// parts holds the partitions by index (Partition), copy-on-write
	// under partsMu; a nil entry has none yet.
	parts   atomic.Pointer[[]*Partition]
	partsMu sync.Mutex
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
// for as long as its request is in flight. It is AcquireIn on a partition
// of its own that is always answered.
func (c *ConcurrencyLimiter) Acquire() Acquisition { return c.AcquireIn(&c.whole) }

// TryAcquire is Acquire reporting only whether it took a slot.
func (c *ConcurrencyLimiter) TryAcquire() bool { return c.Acquire() != Refused }

// Hold takes a slot whatever the limit, for a request admitted in spite of
// it (a fail-open decision on a stale limit), so that InFlight stays the
// number of requests in flight and a limit set later is measured against
// all of them. It must be paired with one Release, like a slot from
// Acquire.
func (c *ConcurrencyLimiter) Hold() { c.HoldIn(&c.whole) }

// Release returns a slot taken by Acquire or Hold. Releasing more slots
// than were acquired is a bug in the caller and panics, as sync.WaitGroup
// does for a negative counter.
func (c *ConcurrencyLimiter) Release() { c.ReleaseIn(&c.whole, 0, 0) }

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
func (c *ConcurrencyLimiter) InFlight() int64 { return c.counted.Load() + c.uncounted.Load() }

// Limit returns the number of slots, or NaN when unlimited.
func (c *ConcurrencyLimiter) Limit() float64 {
	slots := c.slots.Load()
	if slots == unlimitedSlots {
		return math.NaN()
	}
	return float64(slots)
}

// Partition is one API's part of a ConcurrencyLimiter shared by several
// APIs: a bulkhead. Each partition measures how much of the slot time its
// requests held went to useful requests (answered, to a client still
// waiting) rather than to requests abandoned by their clients or failed.
// While most of it is useful (Rebalance), the partition is answered and
// its requests count against the limit as usual. Once most of it is not, as
// when a dependency of that API alone hangs and each request holds its slot
// until the client gives up, the partition's new requests are admitted only
// while the limit has room and do not count against it for the answered
// partitions: those keep the whole limit, and the hung API fills only what
// they leave free.
//
// When every partition is answered, or none is, the limiter is exactly the
// shared limit it would be without partitions.
type Partition struct {
	_ [64]byte // off the cache line of the partition before
	// counted and uncounted are the partition's requests in flight, in
	// ConcurrencyLimiter's counted and uncounted.
	counted, uncounted atomic.Int64
	usefulNs, otherNs  atomic.Int64
	unanswered         atomic.Bool
	// useful is the smoothed useful fraction of the slot time, owned by
	// Rebalance's caller.
	useful float64
}

// InFlight returns the partition's requests in flight.
func (p *Partition) InFlight() int64 { return p.counted.Load() + p.uncounted.Load() }

// Answered reports whether most of the partition's slot time went to
// useful requests, as the last Rebalance measured it.
func (p *Partition) Answered() bool { return !p.unanswered.Load() }

// maxPartitions bounds the partitions of one limiter; a larger index
// shares the last one.
const maxPartitions = 4096

// Partition returns partition i (0 ≤ i; an index past maxPartitions
// shares the last), creating it on first use. Creating takes a mutex and
// allocates; looking up an existing one is lock-free and allocation-free.
func (c *ConcurrencyLimiter) Partition(i int) *Partition {
	i = min(max(i, 0), maxPartitions-1)
	if ps := c.parts.Load(); ps != nil && i < len(*ps) {
		if p := (*ps)[i]; p != nil {
			return p
		}
	}
	c.partsMu.Lock()
	defer c.partsMu.Unlock()
	var old []*Partition
	if ps := c.parts.Load(); ps != nil {
		old = *ps
	}
	if i < len(old) && old[i] != nil {
		return old[i]
	}
	next := make([]*Partition, max(len(old), i+1))
	copy(next, old)
	next[i] = &Partition{useful: 1}
	c.parts.Store(&next)
	return next[i]
}

// AcquireIn is Acquire for a request of partition p. An answered
// partition's request takes a slot while fewer than the limit are counted
// (the requests of answered partitions, and those admitted while
// unlimited or stale); an unanswered one's while fewer than the limit are
// in flight at all, and is not counted. A slot taken here must be given
// back with ReleaseIn on the same partition.
func (c *ConcurrencyLimiter) AcquireIn(p *Partition) Acquisition {
	if p.unanswered.Load() {
		for {
			u := c.uncounted.Load()
			slots := c.slots.Load()
			if slots == unlimitedSlots {
				c.HoldIn(p)
				return Unlimited
			}
			if c.counted.Load()+u >= slots {
				return Refused
			}
			if c.uncounted.CompareAndSwap(u, u+1) {
				p.uncounted.Add(1)
				return Acquired
			}
		}
	}
	for {
		n := c.counted.Load()
		slots := c.slots.Load()
		if slots == unlimitedSlots {
			c.HoldIn(p)
			return Unlimited
		}
		if n >= slots {
			return Refused
		}
		if c.counted.CompareAndSwap(n, n+1) {
			p.counted.Add(1)
			return Acquired
		}
	}
}

// HoldIn is Hold for a request of partition p; it counts against the
// limit.
func (c *ConcurrencyLimiter) HoldIn(p *Partition) {
	c.counted.Add(1)
	p.counted.Add(1)
}

// ReleaseIn returns a slot taken by AcquireIn or HoldIn. usefulNs is how
// long the request held it if it was useful (answered, to a client still
// waiting), otherNs if it was not. The partition's uncounted slots are
// given back first. Releasing more slots than were taken is a bug in the
// caller and panics, as sync.WaitGroup does for a negative counter.
func (c *ConcurrencyLimiter) ReleaseIn(p *Partition, usefulNs, otherNs int64) {
	for {
		if u := p.uncounted.Load(); u > 0 {
			if p.uncounted.CompareAndSwap(u, u-1) {
				c.uncounted.Add(-1)
				break
			}
			continue
		}
		k := p.counted.Load()
		if k <= 0 {
			// Rebalance may have moved the slot to uncounted since the
			// load above; a move never goes back, so this read settles
			// it. (A CAS rather than an Add: a count never dips below 0
			// for Rebalance's move to read.)
			if p.uncounted.Load() > 0 {
				continue
			}
			panic("actuators: ConcurrencyLimiter.Release without a matching Acquire")
		}
		if p.counted.CompareAndSwap(k, k-1) {
			c.counted.Add(-1)
			break
		}
	}
	if usefulNs > 0 {
		p.usefulNs.Add(usefulNs)
	}
	if otherNs > 0 {
		p.otherNs.Add(otherNs)
	}
}

// Rebalance updates each partition's useful fraction of the slot time,
// smoothed by alpha (the weight of the time since the last call, in
// (0, 1]), and marks unanswered those under half, when on is true; with on
// false every partition is answered. The requests in flight of an
// unanswered partition stop counting against the limit. The caller calls
// it once per tick, from one goroutine. A partition whose requests held no
// slot time since the last call keeps its fraction.
func (c *ConcurrencyLimiter) Rebalance(on bool, alpha float64) {
	ps := c.parts.Load()
	if ps == nil {
		return
	}
	for _, p := range *ps {
		if p == nil {
			continue
		}
		useful, other := float64(p.usefulNs.Swap(0)), float64(p.otherNs.Swap(0))
		if useful+other > 0 {
			p.useful += alpha * (useful/(useful+other) - p.useful)
		}
		unanswered := on && p.useful < 0.5
		p.unanswered.Store(unanswered)
		if !unanswered {
			continue
		}
		// Its requests in flight no longer count: they are the ones the
		// answered partitions must not wait for. They become uncounted
		// first, so that a release racing the move always finds a slot to
		// give back; the surplus of the releases that took a counted slot
		// meanwhile is taken back after.
		k := p.counted.Load()
		if k <= 0 {
			continue
		}
		p.uncounted.Add(k)
		c.uncounted.Add(k)
		for {
			left := p.counted.Load()
			if p.counted.CompareAndSwap(left, 0) {
				c.counted.Add(-left)
				p.uncounted.Add(left - k)
				c.uncounted.Add(left - k)
				break
			}
		}
	}
}
