package actuators

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// request is one request in a recorder scenario: an arrival, and for an
// admitted one with done set, its completion.
type request struct {
	admitted  bool
	done      bool
	latencyNs int64
	ok        bool
}

func TestRecorderCountsOneWindow(t *testing.T) {
	const slo = 100 * time.Millisecond
	cases := []struct {
		name     string
		slo      time.Duration
		requests []request
		want     Window // compared field by field, except LatencyCounts
	}{
		{
			name: "arrivals split into accepted and rejected",
			slo:  slo,
			requests: []request{
				{admitted: true}, {admitted: true}, {admitted: false},
			},
			want: Window{Incoming: 3, Accepted: 2, Rejected: 1, InFlight: 2},
		},
		{
			name: "goodput counts OK responses within the SLO, inclusive; errors count failures",
			slo:  slo,
			requests: []request{
				{admitted: true, done: true, latencyNs: 50 * ms, ok: true},
				{admitted: true, done: true, latencyNs: 100 * ms, ok: true},
				{admitted: true, done: true, latencyNs: 100*ms + 1, ok: true},
				{admitted: true, done: true, latencyNs: 10 * ms, ok: false},
				{admitted: true},
			},
			want: Window{
				Incoming: 5, Accepted: 5, Completed: 4, Goodput: 2, Errors: 1, InFlight: 1,
				LatencySumNs: uint64(260*ms + 1),
				// In whole µs, squared: 50, 100, 100 and 10 ms.
				SharedSqUs: 50_000*50_000 + 2*100_000*100_000 + 10_000*10_000,
			},
		},
		{
			name: "without an SLO every OK response is goodput",
			slo:  0,
			requests: []request{
				{admitted: true, done: true, latencyNs: 90 * secondNs, ok: true},
				{admitted: true, done: true, latencyNs: 1, ok: true},
				{admitted: true, done: true, latencyNs: 1, ok: false},
			},
			want: Window{Incoming: 3, Accepted: 3, Completed: 3, Goodput: 2, Errors: 1, LatencySumNs: uint64(90*secondNs + 2),
				SharedSqUs: 1 << 44}, // 90 s capped at 2²² µs
		},
		{
			name: "a negative latency counts as 0",
			slo:  slo,
			requests: []request{
				{admitted: true, done: true, latencyNs: -5, ok: true},
			},
			want: Window{Incoming: 1, Accepted: 1, Completed: 1, Goodput: 1},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecorder(tc.slo)
			r.Snapshot(1_000 * ms)
			for _, req := range tc.requests {
				r.Arrive(0, req.admitted)
				if req.done {
					r.Done(0, req.latencyNs, req.ok)
				}
			}
			got := r.Snapshot(1_500 * ms)
			want := tc.want
			want.StartNs, want.EndNs = 1_000*ms, 1_500*ms
			assertWindowCounts(t, got, want)
			if got.LatencyCounts.Total() != got.Completed {
				t.Errorf("histogram holds %d latencies, want Completed = %d", got.LatencyCounts.Total(), got.Completed)
			}
			if got := r.InFlight(); got != want.InFlight {
				t.Errorf("InFlight() = %d, want %d", got, want.InFlight)
			}
		})
	}
}

func assertWindowCounts(t *testing.T, got, want Window) {
	t.Helper()
	got.LatencyCounts, want.LatencyCounts = HistogramCounts{}, HistogramCounts{}
	got.marks, got.marked, want.marks, want.marked = histogramMarks{}, false, histogramMarks{}, false
	// The age of the oldest request in flight has its own test.
	got.OldestInFlightNs, want.OldestInFlightNs = 0, 0
	if got != want {
		t.Errorf("window\n got %+v\nwant %+v", got, want)
	}
}

func TestRecorderWindowsFollowEachOther(t *testing.T) {
	r := NewRecorder(time.Second)
	r.Arrive(0, true)
	first := r.Snapshot(100 * ms)
	r.Arrive(0, true)
	r.Arrive(0, false)
	second := r.Snapshot(600 * ms)
	r.Done(0, 5*ms, true)
	third := r.Snapshot(1_100 * ms)
	fourth := r.Snapshot(1_600 * ms)

	assertWindowCounts(t, first, Window{StartNs: 100 * ms, EndNs: 100 * ms, Incoming: 1, Accepted: 1, InFlight: 1})
	assertWindowCounts(t, second, Window{StartNs: 100 * ms, EndNs: 600 * ms, Incoming: 2, Accepted: 1, Rejected: 1, InFlight: 2})
	assertWindowCounts(t, third, Window{StartNs: 600 * ms, EndNs: 1_100 * ms, Completed: 1, Goodput: 1, InFlight: 1, LatencySumNs: uint64(5 * ms), SharedSqUs: 5_000 * 5_000})
	assertWindowCounts(t, fourth, Window{StartNs: 1_100 * ms, EndNs: 1_600 * ms, InFlight: 1})
	if got := first.Rate(first.Incoming); !math.IsNaN(got) {
		t.Errorf("the first window is empty-length, so its rates are NaN; got %v", got)
	}
	if got := second.Rate(second.Incoming); got != 4 {
		t.Errorf("second window: %v arrivals/s, want 4", got)
	}
}

// TestRecorderWriterRacingTheFlipIsCountedLater replays the race Snapshot
// must survive: a writer picks the active buffer, Snapshot flips and drains
// it, then the writer increments. Its count must appear in exactly one
// later window.
func TestRecorderWriterRacingTheFlipIsCountedLater(t *testing.T) {
	r := NewRecorder(time.Second)
	r.Snapshot(0)
	active := r.active.Load() & 1
	stale := &r.shards[0].buffers[active] // the writer picks its buffer...
	first := r.Snapshot(1 * secondNs)     // ...Snapshot flips and drains it...
	stale.accepted.Add(1)                 // ...and the writer increments.
	r.latency[0][active].Record(7 * ms)
	second := r.Snapshot(2 * secondNs)
	third := r.Snapshot(3 * secondNs)
	fourth := r.Snapshot(4 * secondNs)

	var accepted, completed []uint64
	for _, w := range []Window{first, second, third, fourth} {
		accepted = append(accepted, w.Accepted)
		completed = append(completed, w.Completed)
	}
	if accepted[0]+accepted[1]+accepted[2]+accepted[3] != 1 || completed[0]+completed[1]+completed[2]+completed[3] != 1 {
		t.Fatalf("the late write was counted %v (accepted) and %v (completed) times per window, want once in total", accepted, completed)
	}
	if accepted[0] != 0 || accepted[2] != 1 {
		t.Errorf("accepted per window %v, want the late write in the window after next", accepted)
	}
	if got := third.QuantileMs(0.5); math.Abs(got-7)/7 > 0.02 {
		t.Errorf("the late latency reads as %vms, want 7ms", got)
	}
}

func TestRecorderSetSLOAppliesToLaterCompletions(t *testing.T) {
	r := NewRecorder(10 * time.Millisecond)
	r.Arrive(0, true)
	r.Done(0, 20*ms, true) // over the 10ms SLO
	r.SetSLO(50 * time.Millisecond)
	r.Arrive(0, true)
	r.Done(0, 20*ms, true) // within the 50ms SLO
	r.SetSLO(0)
	r.Arrive(0, true)
	r.Done(0, time.Hour.Nanoseconds(), true) // no SLO
	if w := r.Snapshot(secondNs); w.Goodput != 2 || w.Completed != 3 {
		t.Errorf("goodput %d of %d completions, want 2 of 3", w.Goodput, w.Completed)
	}
}

func TestWindowDerivedSignals(t *testing.T) {
	r := NewRecorder(time.Second)
	r.Snapshot(0)
	for i := int64(1); i <= 100; i++ {
		r.Arrive(0, true)
		r.Done(0, i*ms, true)
	}
	w := r.Snapshot(2 * secondNs)
	empty := r.Snapshot(3 * secondNs)
	inverted := Window{StartNs: 5, EndNs: 4}
	cases := []struct {
		name string
		got  float64
		want float64
		tol  float64 // relative
	}{
		{"Seconds is the window length", w.Seconds(), 2, 0},
		{"Rate divides by the window length", w.Rate(w.Completed), 50, 0},
		{"LatencyAvgMs is exact: the sum is kept separately", w.LatencyAvgMs(), 50.5, 1e-12},
		{"QuantileMs(0.5) is the 50th of 1..100ms", w.QuantileMs(0.5), 50, 0.02},
		{"QuantileMs(0.99) is the 99th of 1..100ms", w.QuantileMs(0.99), 99, 0.02},
		{"QuantileMs(1) is the maximum", w.QuantileMs(1), 100, 0.02},
		{"QuantileMs(0) is the minimum", w.QuantileMs(0), 1, 0.02},
		{"QuantileMs of q outside [0,1] is NaN", w.QuantileMs(1.5), math.NaN(), 0},
		{"LatencyAvgMs with nothing completed is NaN", empty.LatencyAvgMs(), math.NaN(), 0},
		{"QuantileMs with nothing completed is NaN", empty.QuantileMs(0.9), math.NaN(), 0},
		{"Rate of an idle window is 0", empty.Rate(empty.Incoming), 0, 0},
		{"Rate of an inverted window is NaN", inverted.Rate(1), math.NaN(), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if math.IsNaN(tc.want) {
				if !math.IsNaN(tc.got) {
					t.Errorf("got %v, want NaN", tc.got)
				}
				return
			}
			if math.Abs(tc.got-tc.want) > tc.tol*math.Abs(tc.want) {
				t.Errorf("got %v, want %v (relative tolerance %v)", tc.got, tc.want, tc.tol)
			}
		})
	}
}

// TestRecorderConcurrentWritersAndSnapshotsLoseNothing runs 8 writers
// against a snapshotting goroutine; the windows must add up to exactly what
// was written.
func TestRecorderConcurrentWritersAndSnapshotsLoseNothing(t *testing.T) {
	const writers, requestsPerWriter = 8, 20_000
	r := NewRecorder(50 * time.Millisecond)
	r.Snapshot(0)

	var total Window
	add := func(w Window) {
		total.Incoming += w.Incoming
		total.Accepted += w.Accepted
		total.Rejected += w.Rejected
		total.Completed += w.Completed
		total.Goodput += w.Goodput
		total.Errors += w.Errors
		total.LatencySumNs += w.LatencySumNs
		for i, n := range w.LatencyCounts {
			total.LatencyCounts[i] += n
		}
	}
	var stop atomic.Bool
	var snapshots atomic.Int64
	var snapshotter sync.WaitGroup
	snapshotter.Go(func() {
		for now := int64(1); !stop.Load(); now++ {
			add(r.Snapshot(now * ms))
			snapshots.Add(1)
			runtime.Gosched() // let writers run even with GOMAXPROCS=1
		}
	})
	var writerGroup sync.WaitGroup
	for g := range writers {
		writerGroup.Go(func() {
			for i := range requestsPerWriter {
				admitted := i%4 != 0
				r.Arrive(0, admitted)
				if admitted {
					r.Done(0, int64(i%100)*ms, (i+g)%10 != 0)
				}
			}
		})
	}
	writerGroup.Wait()
	stop.Store(true)
	snapshotter.Wait()
	// Two more snapshots drain both buffers, including writes that raced
	// with the last flip.
	add(r.Snapshot(math.MaxInt32 * ms))
	add(r.Snapshot(math.MaxInt32*ms + 1))

	// Compute the expectation by replaying the writers' arithmetic.
	var want Window
	for g := range writers {
		for i := range requestsPerWriter {
			want.Incoming++
			if i%4 == 0 {
				want.Rejected++
				continue
			}
			want.Accepted++
			want.Completed++
			latencyNs := int64(i%100) * ms
			want.LatencySumNs += uint64(latencyNs)
			want.LatencyCounts[histogramBucket(latencyNs)]++
			switch {
			case (i+g)%10 == 0:
				want.Errors++
			case latencyNs <= 50*ms:
				want.Goodput++
			}
		}
	}
	if total != want {
		t.Errorf("windows add up to\n%+v\nwant\n%+v", stripCounts(total), stripCounts(want))
		if total.LatencyCounts != want.LatencyCounts {
			t.Error("latency histograms differ")
		}
	}
	if got := r.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d after every admitted request finished", got)
	}
	if snapshots.Load() < 2 {
		t.Logf("only %d snapshots ran concurrently with the writers", snapshots.Load())
	}
}

func stripCounts(w Window) Window {
	w.LatencyCounts = HistogramCounts{}
	return w
}

func TestRecorderArriveAndDoneDoNotAllocate(t *testing.T) {
	r := NewRecorder(time.Second)
	if allocs := testing.AllocsPerRun(1000, func() {
		r.Arrive(0, true)
		r.Done(0, 3*ms, true)
		r.Arrive(0, false)
	}); allocs != 0 {
		t.Errorf("Arrive+Done allocate %v times, want 0", allocs)
	}
}

func TestRecorderOldestInFlightAge(t *testing.T) {
	slot := int64(1) << ageSlotShift
	r := NewRecorder(time.Second)
	if w := r.Snapshot(0); w.OldestInFlightNs != 0 {
		t.Fatalf("idle recorder: oldest in flight %d ns, want 0", w.OldestInFlightNs)
	}
	r.Arrive(10*slot+5, true) // the oldest, still in flight at the end
	r.Arrive(12*slot, true)   // finishes first
	r.Arrive(13*slot, false)  // rejected: never in flight
	r.Done(12*slot, 3*ms, true)
	now := 20 * slot
	w := r.Snapshot(now)
	if want := now - 10*slot; w.OldestInFlightNs != want {
		t.Errorf("oldest in flight %d ns, want %d (rounded up to the start of its slot)", w.OldestInFlightNs, want)
	}
	r.Done(10*slot+5, 10*slot, true)
	if w := r.Snapshot(now + slot); w.OldestInFlightNs != 0 || w.InFlight != 0 {
		t.Errorf("after the last Done: oldest %d ns, in flight %d; want 0, 0", w.OldestInFlightNs, w.InFlight)
	}
}

// TestRecorderAPISLOs checks a recorder of several APIs with SLOs of their
// own: goodput counts each answer within its own API's SLO, and the scaled
// latencies read each one × slo ÷ its API's SLO.
func TestRecorderAPISLOs(t *testing.T) {
	ms := int64(time.Millisecond)
	r := NewRecorderWithAPISLOs(200*time.Millisecond, []time.Duration{0, 0, 40 * time.Millisecond})
	r.Snapshot(0)
	for _, a := range []struct {
		api       int
		latencyMs int64
	}{{2, 30}, {1, 100}, {2, 50}, {5, 120}} {
		r.ArriveOn(0, 0, true)
		r.DoneAPIOn(0, a.api, 0, a.latencyMs*ms, 0, true)
	}
	w := r.Snapshot(1e9)
	// 30 ms within 40, 100 and 120 within 200 (API 5 is past the table:
	// slo); 50 ms is over its API's 40.
	if w.Goodput != 3 {
		t.Errorf("goodput %d, want 3", w.Goodput)
	}
	if !w.Scaled {
		t.Fatal("a recorder with per-API SLOs gave a window that is not Scaled")
	}
	// Scaled: 150, 100, 250, 120 ms.
	if got := w.ScaledLatencyAvgMs(); math.Abs(got-155) > 1e-6 {
		t.Errorf("scaled mean %.3f ms, want 155", got)
	}
	var p [2]float64
	w.ScaledQuantilesMs([]float64{0, 1}, p[:])
	if math.Abs(p[0]-100) > 2 || math.Abs(p[1]-250) > 4 {
		t.Errorf("scaled min and max %.1f, %.1f ms, want 100 and 250 (within 1.6 %%)", p[0], p[1])
	}
	w.QuantilesMs([]float64{0, 1}, p[:])
	if math.Abs(p[0]-30) > 1 || math.Abs(p[1]-120) > 2 {
		t.Errorf("plain min and max %.1f, %.1f ms, want 30 and 120", p[0], p[1])
	}

	// Without per-API SLOs the scaled latencies are the latencies, and the
	// API's index changes nothing.
	plain := NewRecorder(200 * time.Millisecond)
	plain.Snapshot(0)
	plain.ArriveOn(0, 0, true)
	plain.DoneAPIOn(0, 2, 0, 50*ms, 0, true)
	pw := plain.Snapshot(1e9)
	if pw.Scaled || pw.Goodput != 1 || pw.ScaledLatencyAvgMs() != pw.LatencyAvgMs() {
		t.Errorf("plain recorder: scaled %v, goodput %d, scaled mean %v, mean %v", pw.Scaled, pw.Goodput, pw.ScaledLatencyAvgMs(), pw.LatencyAvgMs())
	}
}
