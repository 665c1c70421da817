package actuators

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/actuators/internal/shard"
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
// Every counter is split into one shard per processor (see Counter), so
// that cores recording requests to the same API at once do not contend for
// one cache line; Snapshot and InFlight add the shards up. The latency
// histograms are sharded too, since one API's latencies fall into a few
// neighbouring buckets, but into at most maxHistogramShards shards.
//
// Arrive, Done, SetSLO and InFlight are safe for concurrent use, lock-free
// and allocation-free. Snapshot is safe for concurrent use too; concurrent
// snapshots are serialised and never block writers.
type Recorder struct {
	active atomic.Uint32 // index of the buffer writers use
	sloNs  atomic.Int64
	// sloBucket is the histogram bucket of sloNs, for the per-API tails'
	// bins (tailBin).
	sloBucket atomic.Int32
	// scanFrom is the oldest start-time slot (ageSlot) whose requests
	// may still be in flight: a read of the count adds up the slots from
	// there, not all 256 of every shard (inFlight).
	scanFrom atomic.Int64
	shards   []recorderShard // read-only after NewRecorder
	// latency holds each buffer's histogram, split into fewer shards than
	// the counters (at most maxHistogramShards): they take 7 KiB each.
	latency [][2]Histogram // read-only after NewRecorder
	// apiSLOs, where NewRecorderWithAPISLOs gave per-API SLOs, holds each
	// API's SLO in ns by its index at the control point (0: the
	// recorder's slo), and scaled the histograms of the latencies scaled
	// to the recorder's slo (Window.ScaledCounts); both nil otherwise.
	apiSLOs []int64        // read-only after NewRecorderWithAPISLOs
	scaled  [][2]Histogram // read-only after NewRecorderWithAPISLOs
	// tails counts each API's answers by their latency over their own
	// SLO (apitail.go), sharded as scaled; tailState is the decayed sum
	// of the windows' counts, under snapshotMu.
	tails     [][2]tailCounts // read-only after NewRecorderWithAPISLOs
	tailState *apiTails

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

// maxHistogramShards bounds the latency histograms of a recorder
// (2 buffers × 7 KiB each per shard).
const maxHistogramShards = 4

// recorderShard is one processor's share of a Recorder's counters.
type recorderShard struct {
	// Keep the counters off the cache line where the previous shard ends.
	_       [64]byte
	buffers [2]recorderBuffer
	// inFlightByStart counts the requests in flight by the slot of their
	// start time, so a snapshot can tell the age of the oldest one; their
	// sum over every slot and shard is the number in flight. A request
	// may arrive on one shard and finish on another, so one shard's count
	// may be negative; only the sum means something.
	inFlightByStart [ageSlots]atomic.Int64
}

// recorderBuffer is one side of a shard's double buffer. Incoming and
// Completed are derived (accepted + rejected, latency.Total()) so that they
// always agree with their parts.
type recorderBuffer struct {
	accepted     atomic.Uint64
	rejected     atomic.Uint64
	goodput      atomic.Uint64
	errors       atomic.Uint64
	latencySumNs atomic.Uint64
	abandoned    atomic.Uint64
	abandonedNs  atomic.Uint64
	ownNs        atomic.Uint64
	sharedSqUs   atomic.Uint64
	scaledSumNs  atomic.Uint64
}

// NewRecorder returns an empty recorder. Goodput counts OK responses whose
// latency is at most slo; slo <= 0 counts every OK response.
func NewRecorder(slo time.Duration) *Recorder {
	r := &Recorder{
		shards:  make([]recorderShard, shard.Count()),
		latency: make([][2]Histogram, min(shard.Count(), maxHistogramShards)),
	}
	r.SetSLO(slo)
	return r
}

// NewRecorderWithAPISLOs is NewRecorder for a recorder of several APIs
// whose SLOs differ: apiSLOs[i] is the SLO of the API with index i at the
// control point (controlpoint.API.Index), 0 or beyond the slice for slo.
// Goodput counts each OK response within its own API's SLO, and each
// answer's latency is also recorded scaled by slo ÷ its API's SLO
// (Window.ScaledCounts): where a latency reads over a fraction of slo, it
// is over that fraction of its own API's SLO. slo must be > 0 for the
// scaling; with slo <= 0 or no per-API SLO it is NewRecorder(slo).
func NewRecorderWithAPISLOs(slo time.Duration, apiSLOs []time.Duration) *Recorder {
	r := NewRecorder(slo)
	if slo <= 0 {
		return r
	}
	table := make([]int64, len(apiSLOs))
	some := false
	for i, d := range apiSLOs {
		if d > 0 {
			table[i], some = int64(d), true
		}
	}
	if some {
		r.apiSLOs = table
		r.scaled = make([][2]Histogram, len(r.latency))
		r.tails = make([][2]tailCounts, len(r.latency))
		r.tailState = new(apiTails)
	}
	return r
}

// SetSLO atomically changes the goodput latency bound for requests that
// finish from now on; slo <= 0 counts every OK response. Per-API SLOs
// (NewRecorderWithAPISLOs) stay as they are, and scale to the new slo.
func (r *Recorder) SetSLO(slo time.Duration) {
	r.sloBucket.Store(int32(histogramBucket(int64(slo))))
	r.sloNs.Store(int64(slo))
}

// Arrive records one arrival at nowNs (monotonic nanoseconds) and its
// decision: admitted requests are counted as accepted and are in flight
// until Done, others as rejected.
func (r *Recorder) Arrive(nowNs int64, admitted bool) { r.ArriveOn(shard.Index(), nowNs, admitted) }

// ArriveOn is Arrive for a caller on processor proc, which looked it up
// once for several counters (package actuators/internal/shard). Any proc is
// correct; only the caller's own avoids contention.
func (r *Recorder) ArriveOn(proc int, nowNs int64, admitted bool) {
	sh := &r.shards[proc&(len(r.shards)-1)]
	b := &sh.buffers[r.active.Load()&1]
	if admitted {
		sh.inFlightByStart[ageSlot(nowNs)%ageSlots].Add(1)
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
	r.DoneOn(shard.Index(), startNs, latencyNs, ok)
}

// DoneOn is Done for a caller on processor proc, like ArriveOn.
func (r *Recorder) DoneOn(proc int, startNs, latencyNs int64, ok bool) {
	r.done(proc, -1, startNs, latencyNs, 0, ok, false)
}

// DoneOwnOn is DoneOn for a request ownNs of whose latency was its API's
// own (a bulkhead's ConcurrencyLimiter.ReleaseAfter; negative for an API
// cheaper than the mix): it is left out of the window's shared latency
// (Window.SharedLatencyAvgMs).
func (r *Recorder) DoneOwnOn(proc int, startNs, latencyNs, ownNs int64, ok bool) {
	r.done(proc, -1, startNs, latencyNs, ownNs, ok, false)
}

// DoneAPIOn is DoneOwnOn for a request of the API with index api at the
// control point (controlpoint.API.Index), whose SLO counts where the
// recorder has per-API SLOs (NewRecorderWithAPISLOs).
func (r *Recorder) DoneAPIOn(proc, api int, startNs, latencyNs, ownNs int64, ok bool) {
	r.done(proc, api, startNs, latencyNs, ownNs, ok, false)
}

// done is DoneOn, DoneOwnOn, DoneAPIOn and AbandonOn: one buffer holds
// all of a request's counts. api is the request's API index, or -1.
func (r *Recorder) done(proc, api int, startNs, latencyNs, ownNs int64, ok, abandoned bool) {
	sh := &r.shards[proc&(len(r.shards)-1)]
	sh.inFlightByStart[ageSlot(startNs)%ageSlots].Add(-1)
	latencyNs = max(latencyNs, 0)
	active := r.active.Load() & 1
	b := &sh.buffers[active]
	r.latency[proc&(len(r.latency)-1)][active].add(histogramBucket(latencyNs))
	b.latencySumNs.Add(uint64(latencyNs))
	if abandoned {
		b.abandoned.Add(1)
		b.abandonedNs.Add(uint64(latencyNs))
	} else {
		if ownNs != 0 {
			// Signed, in two's complement; not clamped to the latency:
			// an answer faster than its API's baseline counts below the
			// reference, as a cheap one's counts above it.
			b.ownNs.Add(uint64(ownNs))
		}
		// The square of the shared latency (signed, as the mean sums
		// it), in µs² and capped at 2²² µs (4.2 s) an answer, so that a
		// tick's sum cannot wrap short of a million such answers: for
		// the shared latency's standard error.
		us := min(abs((latencyNs-ownNs)/1000), maxSharedUs)
		b.sharedSqUs.Add(uint64(us * us))
	}
	slo := r.sloNs.Load()
	if r.apiSLOs != nil && slo > 0 {
		scaledNs := latencyNs
		if api >= 0 && api < len(r.apiSLOs) && r.apiSLOs[api] > 0 && r.apiSLOs[api] != slo {
			own := r.apiSLOs[api]
			scaledNs = int64(float64(latencyNs) * float64(slo) / float64(own))
			slo = own
		}
		scaledBucket := histogramBucket(scaledNs)
		r.scaled[proc&(len(r.scaled)-1)][active].add(scaledBucket)
		b.scaledSumNs.Add(uint64(scaledNs))
		if api >= 0 {
			r.tails[proc&(len(r.tails)-1)][active].add(min(api, maxTailAPIs-1), tailBin(scaledBucket, int(r.sloBucket.Load())))
		}
	}
	switch {
	case !ok:
		b.errors.Add(1)
	case slo <= 0 || latencyNs <= slo:
		b.goodput.Add(1)
	}
}

// AbandonOn records, like DoneOn, an admitted request that failed because
// its client gave up before the answer: an error, and abandoned
// (Window.Abandoned).
func (r *Recorder) AbandonOn(proc int, startNs, latencyNs int64) {
	r.done(proc, -1, startNs, latencyNs, 0, false, true)
}

// AbandonAPIOn is AbandonOn for a request of the API with index api, as
// DoneAPIOn is DoneOwnOn's.
func (r *Recorder) AbandonAPIOn(proc, api int, startNs, latencyNs int64) {
	r.done(proc, api, startNs, latencyNs, 0, false, true)
}

// InFlight returns the number of admitted requests not yet Done. It adds
// up every slot of every shard; it is meant for ticks and tests, not for
// each request.
func (r *Recorder) InFlight() (inFlight int64) {
	for slot := range int64(ageSlots) {
		inFlight += r.inFlightAt(slot)
	}
	return max(inFlight, 0)
}

// Snapshot closes the current tick at nowNs (monotonic nanoseconds) and
// returns its counts. The Window starts where the previous snapshot ended;
// the recorder has no clock of its own, so the first snapshot returns an
// empty-length window [nowNs, nowNs] (its counts are kept, its rates are
// NaN). Call Snapshot once when attaching a recorder to open its first
// window.
func (r *Recorder) Snapshot(nowNs int64) Window {
	var w Window
	r.snapshotMu.Lock()
	defer r.snapshotMu.Unlock()
	r.snapshot(&w, nowNs)
	return w
}

// SnapshotAfter is Snapshot into *w, which it overwrites, if the current
// tick has been open for at least minNs, and Peek if it opened less than
// that before nowNs: a window too short to measure a rate stays open for
// the next tick. A Window holds a 7 KiB histogram, which a tick of many
// policies would otherwise copy on each return.
func (r *Recorder) SnapshotAfter(w *Window, nowNs, minNs int64) {
	r.snapshotMu.Lock()
	defer r.snapshotMu.Unlock()
	if r.snapshotted && nowNs-r.lastSnapshotNs < minNs {
		*w = r.Peek(nowNs)
		return
	}
	r.snapshot(w, nowNs)
}

// snapshot is SnapshotAfter's snapshot, with snapshotMu held.
func (r *Recorder) snapshot(w *Window, nowNs int64) {
	*w = Window{StartNs: nowNs, EndNs: nowNs}
	if r.snapshotted {
		w.StartNs = r.lastSnapshotNs
	}
	r.snapshotted, r.lastSnapshotNs = true, nowNs

	retired := r.active.Load() & 1
	r.active.Store(retired ^ 1)
	for i := range r.shards {
		b := &r.shards[i].buffers[retired]
		w.Accepted += take(&b.accepted)
		w.Rejected += take(&b.rejected)
		w.Goodput += take(&b.goodput)
		w.Errors += take(&b.errors)
		w.LatencySumNs += take(&b.latencySumNs)
		w.Abandoned += take(&b.abandoned)
		w.AbandonedLatencySumNs += take(&b.abandonedNs)
		w.OwnLatencySumNs += int64(take(&b.ownNs))
		w.SharedSqUs += take(&b.sharedSqUs)
		w.ScaledSumNs += take(&b.scaledSumNs)
	}
	for i := range r.latency {
		w.Completed += r.latency[i][retired].drain(&w.LatencyCounts, &w.marks)
	}
	if r.scaled != nil {
		w.Scaled = true
		for i := range r.scaled {
			w.scaledTotal += r.scaled[i][retired].drain(&w.ScaledCounts, &w.scaledMarks)
		}
		r.tailState.decay(math.Exp(-float64(w.EndNs-w.StartNs) / float64(tailHorizon)))
		for i := range r.tails {
			r.tailState.used |= r.tails[i][retired].drainInto(&r.tailState.counts)
		}
		w.worstAPI = r.tailState.worstMs(float64(r.sloNs.Load()) / 1e6)
	}
	w.marked = true
	w.Incoming = w.Accepted + w.Rejected
	w.InFlight, w.OldestInFlightNs = r.inFlight(nowNs)
}

// take returns a retired buffer's counter and resets it, swapping only
// one that a plain load finds non-zero: most of a tick's counters are
// zero (no errors, nothing abandoned), and a load costs a fraction of a swap.
// A writer that still adds to the retired buffer after the load is left
// for the snapshot after next, as after a swap.
func take(c *atomic.Uint64) uint64 {
	if c.Load() == 0 {
		return 0
	}
	return c.Swap(0)
}

// Peek returns the requests in flight at nowNs as an empty-length window
// (no counts, NaN rates) and leaves the current tick open: a reading for
// a tick too soon after the last snapshot to measure a rate.
func (r *Recorder) Peek(nowNs int64) Window {
	w := Window{StartNs: nowNs, EndNs: nowNs}
	w.InFlight, w.OldestInFlightNs = r.inFlight(nowNs)
	return w
}

// inFlight returns the number of requests in flight and the age at nowNs
// of the oldest, rounded up to the start of its slot (at most 134 ms over),
// or 0 when none is in flight. A read racing Arrive and Done may miss the
// requests that start or finish meanwhile, as with any unsynchronised read;
// a request whose Arrive comes more than scanMargin slots after its start
// is missed until its slot comes round again, 34 s later.
func (r *Recorder) inFlight(nowNs int64) (inFlight, oldestNs int64) {
	current := ageSlot(nowNs)
	from := r.scanFrom.Load()
	if from > current {
		from = 0 // the clock went back: the slots in use are unknown
	}
	from = max(from, current-ageSlots+1, 0)
	oldest := current + 1 // the first slot with requests in flight
	for slot := from; slot <= current; slot++ {
		n := r.inFlightAt(slot % ageSlots)
		inFlight += n
		if n > 0 && oldest > current {
			oldest = slot
		}
	}
	// The slots before the oldest with requests in flight stay empty: a
	// request counts in the slot of its start, read just before. The
	// margin is for a request whose count comes late after its start: up
	// to scanMargin slots late, it is still found. Admission can wait
	// between the two for a fleet's exact limits in Redis (a second per
	// limiter at most, two limiters) or a preempted goroutine.
	r.scanFrom.Store(max(min(oldest, current-scanMargin), from))
	if inFlight <= 0 {
		return 0, 0
	}
	if oldest > current {
		return inFlight, 0
	}
	return inFlight, max(nowNs-oldest<<ageSlotShift, 0)
}

// scanMargin is how many slots (134 ms each, 4.3 s in all) before the
// current one a read of the count in flight always adds up: four cache
// lines a shard, where all 256 slots took 32.
const scanMargin = 32

// inFlightAt adds up a start-time slot's count over the shards.
func (r *Recorder) inFlightAt(slot int64) (n int64) {
	for i := range r.shards {
		n += r.shards[i].inFlightByStart[slot].Load()
	}
	return n
}

// maxSharedUs caps an answer's shared latency in the sum of squares.
const maxSharedUs = 1 << 22

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
