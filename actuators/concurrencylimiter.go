package actuators

import (
	"math"
	"sync"
	"sync/atomic"
)

// ConcurrencyLimiter bounds the number of requests in flight at once.
//
// A limit of L admits while fewer than floor(L) requests hold a slot that
// counts against it. NaN or +Inf means unlimited (requests are still
// counted in InFlight); a negative limit or -Inf means 0. A finite limit
// beyond the int64 range is clamped to math.MaxInt64.
//
// Shared by several APIs, it is also a bulkhead (Partition): the requests
// of an API that is not answered do not count against the limit for the
// others, and are admitted only while fewer than L requests are in flight
// at all and fewer than L/4 (at least one) of the unanswered. Answered
// APIs' requests never count beyond L, but the requests of APIs that
// turned unanswered while in flight come on top, so InFlight is not
// bounded by L: each API that turns unanswered may leave up to L more in
// flight until they finish.
//
// All methods but Rebalance and Separate (one caller at a time) are safe
// for concurrent use and lock-free; all but the first Partition call for
// an index (which takes a mutex and allocates) and the first Separate
// calls with more partitions than before are allocation-free. TryAcquire never admits beyond the limit in force when
// it decides, even while SetLimit runs concurrently. Lowering the limit
// below InFlight preempts nothing: new requests are refused until enough
// slots are released.
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
	// quarter is set while some answered partition has requests (Rebalance):
	// only then are the unanswered ones held to a quarter of the limit.
	quarter atomic.Bool
	// refNs is the reference latency the partitions' offsets are taken
	// from (Separate; 0: none), at which an unsettled partition's answers
	// count.
	refNs atomic.Int64
	// mixAge is how long Separate has seen requests, in seconds.
	mixAge float64

	// Owned by Separate's caller: the last shared excess and the time
	// since it was measured, and the partitions' excesses of a tick.
	shared, sharedAge float64
	// clock is the time Separate has run, in seconds, and groups counts
	// the own queues found by group tests.
	clock   float64
	groups  uint64
	scratch []measuredExcess
	// lastSlots is the limit set after the last Separate, in force over
	// the tick the next one measures, and lowSlots the lowest positive
	// limit so far (0: none).
	lastSlots, lowSlots int64
}

const unlimitedSlots = -1

// NewConcurrencyLimiter returns a limiter with no request in flight and the
// given limit (see SetLimit).
func NewConcurrencyLimiter(limit float64) *ConcurrencyLimiter {
	c := &ConcurrencyLimiter{}
	c.SetLimit(limit)
	c.lastSlots = c.slots.Load()
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
func (c *ConcurrencyLimiter) Release() { c.ReleaseIn(&c.whole, Unmeasured) }

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

// Full reports whether the limit has no slot left for an answered
// partition's request: every slot is taken. A request refused while it
// is not was refused by its partition's cap, or, unanswered, at the
// unanswered APIs' quarter or where their requests beyond the limit take
// the room.
func (c *ConcurrencyLimiter) Full() bool {
	slots := c.slots.Load()
	return slots != unlimitedSlots && c.counted.Load() >= slots
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
// APIs: a bulkhead. Each partition counts how many of its requests were
// useful (answered, to a client still waiting) and how many were not
// (abandoned by their clients, or failed). While most are useful
// (Rebalance), the partition is answered and its requests count against
// the limit as usual. Once most are not, as when a dependency of that API
// alone hangs and each request holds its slot until the client gives up,
// the partition is unanswered: its requests in flight stop counting
// against the limit for the answered partitions, which keep the whole
// limit, and its new ones are admitted only while fewer than the limit
// are in flight at all, in the room the others leave, and while the
// unanswered partitions hold fewer than a quarter of the limit.
//
// An unanswered partition that gets no slot for a while drifts back to
// answered, so that an API whose dependency recovered is not locked out:
// its next requests count again, and measure it again.
type Partition struct {
	_ [64]byte // off the cache line of the partition before
	// state packs the partition's requests in flight: those counted
	// against the limit (the high 32 bits, part of the limiter's counted)
	// and those not (the low 32 bits, part of its uncounted), so that
	// Rebalance moves slots between them in one step that a racing
	// release always sees whole. A half would carry into the other only
	// at 2³² requests in flight in one partition.
	state         atomic.Uint64
	useful, other atomic.Int64 // requests finished since the last Rebalance
	unanswered    atomic.Bool
	// fraction is the smoothed useful fraction of the requests, owned by
	// Rebalance's caller.
	fraction float64

	// latN, latSumNs and latSqUs count the useful requests whose latency
	// is known, their latencies and their squares in µs², since the last
	// Separate.
	latN, latSumNs atomic.Int64
	latSqUs        atomic.Uint64
	// capSlots caps the partition's requests in flight (0: no cap), and
	// ceilingNs is the latency beyond which a request's is its own (0:
	// none is); both set by Separate.
	capSlots, ceilingNs atomic.Int64
	// ownMaxNs bounds a request's own latency beyond ceilingNs (0: no
	// bound), set by Separate.
	ownMaxNs atomic.Int64
	// offsetNs is the partition's baseline less the limiter's reference
	// latency (Separate): subtracted from each of its answers' latency, it
	// leaves the reference plus the answer's excess, so that the flux
	// meters' shared latency does not move with the mix of APIs.
	offsetNs atomic.Int64
	// scale is how many times an answer's excess over the partition's
	// baseline counts in the shared latency, in 1/1024ths, at least once
	// (Separate; 0: once).
	scale atomic.Int64
	// capRefused counts the requests refused since the test began, at the
	// cap or at the limit, and capHits those refused at the cap alone.
	capRefused, capHits atomic.Int64
	own                 ownState // owned by Separate's caller
}

// unansweredShare: while some answered partition has requests, the
// unanswered partitions' requests in flight are admitted up to a quarter
// of the limit (at least one), whatever room the answered ones leave. Each
// holds its slot until its client gives up; filling the room would keep
// the limit binding, which a controller reads as demand and grows the
// limit for, with more of them let in each time, and when the dependency
// comes back they all reach the service at once. With no answered
// partition in use (every API's clients give up: a queue past their
// patience) it is the plain limit.
const unansweredShare = 4

// unansweredFull reports whether u unanswered requests in flight, under a
// limit of slots, leave no room for another: they hold a quarter of the
// limit (at least one) while some answered partition has requests.
func (c *ConcurrencyLimiter) unansweredFull(slots, u int64) bool {
	return c.quarter.Load() && u >= quarterOf(slots)
}

// quarterOf is the unanswered partitions' share of a limit of slots.
func quarterOf(slots int64) int64 { return max(1, slots/unansweredShare) }

// UnansweredQuarter reports whether partition p is unanswered and held to
// the unanswered partitions' quarter of the limit, with the quarter and
// the unanswered requests in flight: why it is refused while the limit
// has room.
func (c *ConcurrencyLimiter) UnansweredQuarter(p *Partition) (held bool, quarter, inFlight int64) {
	slots := c.slots.Load()
	if !p.unanswered.Load() || slots == unlimitedSlots || !c.quarter.Load() {
		return false, 0, 0
	}
	quarter, inFlight = quarterOf(slots), c.uncounted.Load()
	return inFlight >= quarter, quarter, inFlight
}

const (
	countedOne    = 1 << 32
	uncountedMask = countedOne - 1
)

// InFlight returns the partition's requests in flight.
func (p *Partition) InFlight() int64 {
	s := p.state.Load()
	return int64(s>>32) + int64(s&uncountedMask)
}

// Answered reports whether most of the partition's requests were useful,
// as the last Rebalance measured it.
func (p *Partition) Answered() bool { return !p.unanswered.Load() }

// Use says what a finished request did with its slot, for ReleaseIn.
type Use uint8

const (
	// Unmeasured: the request is not a sample (it was refused after all,
	// or no one knows).
	Unmeasured Use = iota
	// Useful: answered, to a client still waiting.
	Useful
	// Wasted: abandoned by its client, or failed.
	Wasted
)

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
	next[i] = &Partition{fraction: 1, own: ownState{baseNs: math.NaN(), born: math.NaN(), watched: math.NaN(), seen: math.NaN(), startEx: math.NaN()}}
	c.parts.Store(&next)
	return next[i]
}

// AcquireIn is Acquire for a request of partition p. An answered
// partition's request takes a slot while fewer than the limit are counted
// (the requests of answered partitions, and those admitted while
// unlimited or stale); an unanswered one's while fewer than the limit are
// in flight at all and fewer than a quarter of it are unanswered ones',
// and is not counted. A partition under test (Separate) is also refused
// at its cap, and counts the requests refused while it is tested, at its
// cap or at the limit. A slot taken here must be given back with
// ReleaseIn or ReleaseAfter on the same partition.
func (c *ConcurrencyLimiter) AcquireIn(p *Partition) Acquisition {
	capSlots := p.capSlots.Load()
	if capSlots > 0 && p.InFlight() >= capSlots && c.slots.Load() != unlimitedSlots {
		p.capRefused.Add(1)
		p.capHits.Add(1)
		return Refused
	}
	if p.unanswered.Load() {
		for {
			u := c.uncounted.Load()
			slots := c.slots.Load()
			if slots == unlimitedSlots {
				c.HoldIn(p)
				return Unlimited
			}
			if c.counted.Load()+u >= slots || c.unansweredFull(slots, u) {
				return Refused
			}
			if c.uncounted.CompareAndSwap(u, u+1) {
				p.state.Add(1)
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
			if capSlots > 0 {
				p.capRefused.Add(1) // held back all the same
			}
			return Refused
		}
		if c.counted.CompareAndSwap(n, n+1) {
			p.state.Add(countedOne)
			return Acquired
		}
	}
}

// HoldIn is Hold for a request of partition p; it counts against the
// limit while p is answered.
func (c *ConcurrencyLimiter) HoldIn(p *Partition) {
	c.counted.Add(1)
	p.state.Add(countedOne)
}

// ReleaseIn returns a slot taken by AcquireIn or HoldIn, and records what
// the request did with it. The partition's uncounted slots are given back
// first. Releasing more slots than were taken is a bug in the caller and
// panics, as sync.WaitGroup does for a negative counter.
func (c *ConcurrencyLimiter) ReleaseIn(p *Partition, use Use) {
	for {
		s := p.state.Load()
		switch {
		case s&uncountedMask != 0:
			if p.state.CompareAndSwap(s, s-1) {
				c.uncounted.Add(-1)
				p.record(use)
				return
			}
		case s != 0:
			if p.state.CompareAndSwap(s, s-countedOne) {
				c.counted.Add(-1)
				p.record(use)
				return
			}
		default:
			panic("actuators: ConcurrencyLimiter.Release without a matching Acquire")
		}
	}
}

func (p *Partition) record(use Use) {
	switch use {
	case Useful:
		p.useful.Add(1)
	case Wasted:
		p.other.Add(1)
	}
}

// Rebalance updates each partition's useful fraction of its requests,
// smoothed by alpha (the weight of the requests since the last call, in
// (0, 1]), and, when on is true, marks unanswered those under half, and
// answered again those over three quarters; with on false every partition
// is answered. A partition with no request in flight and none finished
// since the last call drifts towards answered by alpha. The requests in
// flight of an unanswered partition stop counting against the limit, and,
// while some answered partition has requests, its new ones are held to
// the unanswered partitions' quarter of it. The caller calls it once per
// tick, from one goroutine.
func (c *ConcurrencyLimiter) Rebalance(on bool, alpha float64) {
	ps := c.parts.Load()
	if ps == nil {
		return
	}
	quarter := false
	for _, p := range *ps {
		if p == nil {
			continue
		}
		useful, other := float64(p.useful.Swap(0)), float64(p.other.Swap(0))
		switch {
		case useful+other > 0:
			p.fraction += alpha * (useful/(useful+other) - p.fraction)
		case p.InFlight() == 0:
			p.fraction += alpha * (1 - p.fraction) // locked out: drift back
		}
		unanswered := on && (p.fraction < 0.5 || (p.unanswered.Load() && p.fraction <= 0.75))
		p.unanswered.Store(unanswered)
		if unanswered {
			c.uncount(p)
		} else if useful+other > 0 || p.InFlight() > 0 {
			quarter = true
		}
	}
	c.quarter.Store(quarter)
}

// uncount moves p's counted slots to uncounted: they are the ones the
// answered partitions must not wait for. The limiter's uncounted grows
// before its counted shrinks, so that its sum never reads low.
func (c *ConcurrencyLimiter) uncount(p *Partition) {
	for {
		s := p.state.Load()
		k := s >> 32
		if k == 0 {
			return
		}
		c.uncounted.Add(int64(k))
		if p.state.CompareAndSwap(s, s&uncountedMask+k) {
			c.counted.Add(-int64(k))
			return
		}
		c.uncounted.Add(-int64(k))
	}
}

// FullFor reports whether a request of partition p would find no slot
// now: p at its cap while Separate tests it (Partition.Separated); the
// limit or more counted, for an answered partition; the limit or more in
// flight at all, or a quarter of it unanswered, for an unanswered one. An
// unlimited limiter is never full.
func (c *ConcurrencyLimiter) FullFor(p *Partition) bool {
	slots := c.slots.Load()
	if slots == unlimitedSlots {
		return false
	}
	if capSlots := p.capSlots.Load(); capSlots > 0 && p.InFlight() >= capSlots {
		return true
	}
	if p.unanswered.Load() {
		u := c.uncounted.Load()
		return c.counted.Load()+u >= slots || c.unansweredFull(slots, u)
	}
	return c.counted.Load() >= slots
}
