package actuators

import (
	"sync"
	"sync/atomic"
	"time"
)

// Recorder is the flux meter of one (control point, API): it counts
// arrivals, decisions, outcomes and latencies, and hands them out one tick
// at a time as Windows.
//
// Counters are double-buffered. Arrive and Done write to the active buffer;
// Snapshot makes the other buffer active and then drains the one it
// retired, swapping each counter with 0. A writer that picked the retired
// buffer just before the flip and writes after the drain leaves its count in
// that buffer, which the snapshot after next drains: every count lands in
// exactly one Window, possibly a later one, and none is lost or counted
// twice.
//
// Arrive, Done, SetSLO and InFlight are safe for concurrent use, lock-free
// and allocation-free. Snapshot is safe for concurrent use too; concurrent
// snapshots are serialised and never block writers.
type Recorder struct {
	active atomic.Uint32 // index of the buffer writers use
	sloNs  atomic.Int64
	// Keep the read-mostly fields above off the cache line that every
	// writer modifies.
	_        [64]byte
	inFlight atomic.Int64
	buffers  [2]recorderBuffer
	// inFlightByStart counts the requests in flight by the slot of their
	// start time, so a snapshot can tell the age of the oldest one.
	inFlightByStart [ageSlots]atomic.Int64

	snapshotMu     sync.Mutex
	snapshotted    bool
	lastSnapshotNs int64
}

// Requests in flight are counted per start-time slot of 2^ageSlotShift ns
// (134 ms); ageSlots slots cover the last 34 s. A request older than that
// shares its slot with newer ones, so OldestInFlightNs reads at most 34 s.
const (
	ageSlotShift = 27
	ageSlots     = 256
)

func ageSlot(ns int64) int64 { return max(ns, 0) >> ageSlotShift }

// recorderBuffer is one side of a Recorder's double buffer. Incoming and
// Completed are derived (accepted + rejected, latency.Total()) so that they
// always agree with their parts.
type recorderBuffer struct {
	accepted     atomic.Uint64
	rejected     atomic.Uint64
	goodput      atomic.Uint64
	errors       atomic.Uint64
	latencySumNs atomic.Uint64
	latency      Histogram
}

// NewRecorder returns an empty recorder. Goodput counts OK responses whose
// latency is at most slo; slo <= 0 counts every OK response.
func NewRecorder(slo time.Duration) *Recorder {
	r := &Recorder{}
	r.SetSLO(slo)
	return r
}

// SetSLO atomically changes the goodput latency bound for requests that
// finish from now on; slo <= 0 counts every OK response.
func (r *Recorder) SetSLO(slo time.Duration) { r.sloNs.Store(int64(slo)) }

// Arrive records one arrival at nowNs (monotonic nanoseconds) and its
// decision: admitted requests are counted as accepted and are in flight
// until Done, others as rejected.
func (r *Recorder) Arrive(nowNs int64, admitted bool) {
	b := &r.buffers[r.active.Load()&1]
	if admitted {
		r.inFlight.Add(1)
		r.inFlightByStart[ageSlot(nowNs)%ageSlots].Add(1)
		b.accepted.Add(1)
		return
	}
	b.rejected.Add(1)
}

// Done records that an admitted request that arrived at startNs (the nowNs
// of its Arrive) finished after latencyNs nanoseconds (negative values
// count as 0), successfully or not. An OK request within the SLO counts as
// goodput; a failed one as an error.
func (r *Recorder) Done(startNs, latencyNs int64, ok bool) {
	r.inFlight.Add(-1)
	r.inFlightByStart[ageSlot(startNs)%ageSlots].Add(-1)
	latencyNs = max(latencyNs, 0)
	b := &r.buffers[r.active.Load()&1]
	b.latency.Record(latencyNs)
	b.latencySumNs.Add(uint64(latencyNs))
	switch slo := r.sloNs.Load(); {
	case !ok:
		b.errors.Add(1)
	case slo <= 0 || latencyNs <= slo:
		b.goodput.Add(1)
	}
}

// InFlight returns the number of admitted requests not yet Done.
func (r *Recorder) InFlight() int64 { return r.inFlight.Load() }

// Snapshot closes the current tick at nowNs (monotonic nanoseconds) and
// returns its counts. The Window starts where the previous snapshot ended;
// the recorder has no clock of its own, so the first snapshot returns an
// empty-length window [nowNs, nowNs] (its counts are kept, its rates are
// NaN). Call Snapshot once when attaching a recorder to open its first
// window.
func (r *Recorder) Snapshot(nowNs int64) Window {
	r.snapshotMu.Lock()
	defer r.snapshotMu.Unlock()
	w := Window{StartNs: nowNs, EndNs: nowNs}
	if r.snapshotted {
		w.StartNs = r.lastSnapshotNs
	}
	r.snapshotted, r.lastSnapshotNs = true, nowNs

	retired := r.active.Load() & 1
	r.active.Store(retired ^ 1)
	b := &r.buffers[retired]
	w.Accepted = b.accepted.Swap(0)
	w.Rejected = b.rejected.Swap(0)
	w.Goodput = b.goodput.Swap(0)
	w.Errors = b.errors.Swap(0)
	w.LatencySumNs = b.latencySumNs.Swap(0)
	b.latency.Drain(&w.LatencyCounts)
	w.Incoming = w.Accepted + w.Rejected
	w.Completed = w.LatencyCounts.Total()
	w.InFlight = r.inFlight.Load()
	w.OldestInFlightNs = r.oldestInFlightNs(nowNs)
	return w
}

// oldestInFlightNs is the age at nowNs of the oldest request in flight,
// rounded up to the start of its slot (at most 134 ms over), or 0 when
// none is in flight.
func (r *Recorder) oldestInFlightNs(nowNs int64) int64 {
	if r.inFlight.Load() <= 0 {
		return 0
	}
	current := ageSlot(nowNs)
	for s := max(current-ageSlots+1, 0); s <= current; s++ {
		if r.inFlightByStart[s%ageSlots].Load() > 0 {
			return max(nowNs-s<<ageSlotShift, 0)
		}
	}
	return 0
}
