package actuators

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCounterAddsUpEveryShard(t *testing.T) {
	var c Counter
	if got := c.Load(); got != 0 {
		t.Fatalf("zero Counter loads %d, want 0", got)
	}
	const goroutines, adds = 8, 1000
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < adds; i++ {
				c.Add(2)
			}
		}()
	}
	wg.Wait()
	if got, want := c.Load(), uint64(2*goroutines*adds); got != want {
		t.Errorf("Load() = %d, want %d", got, want)
	}
}

func TestCounterAddAllocatesOnlyOnce(t *testing.T) {
	var c Counter
	c.Add(0)
	if allocs := testing.AllocsPerRun(100, func() { c.Add(1) }); allocs != 0 {
		t.Errorf("Add allocates %v times per call after the first", allocs)
	}
}

// TestRecorderSumsShards plays requests that arrive on one processor's
// shard and finish on another's: only the sums count.
func TestRecorderSumsShards(t *testing.T) {
	r := &Recorder{shards: make([]recorderShard, 4), latency: make([][2]Histogram, 2)}
	r.SetSLO(time.Second)
	slot := ageSlot(200*ms) % ageSlots
	r.shards[0].buffers[0].accepted.Add(1) // arrives on shard 0 at 200 ms...
	r.shards[0].inFlightByStart[slot].Add(1)
	r.shards[3].inFlightByStart[slot].Add(-1) // ...finishes on shard 3
	r.shards[3].buffers[0].goodput.Add(1)
	r.latency[1][0].Record(5 * ms)
	r.shards[1].buffers[0].accepted.Add(1) // another, still in flight
	r.shards[1].inFlightByStart[slot].Add(1)
	r.shards[2].buffers[0].rejected.Add(1)

	if got := r.InFlight(); got != 1 {
		t.Errorf("InFlight() = %d, want 1", got)
	}
	w := r.Snapshot(1000 * ms)
	if w.Accepted != 2 || w.Rejected != 1 || w.Incoming != 3 || w.Goodput != 1 || w.Completed != 1 || w.InFlight != 1 {
		t.Errorf("window %+v, want 2 accepted, 1 rejected, 1 goodput of 1 completed, 1 in flight", w)
	}
	if want := 1000*ms - ageSlot(200*ms)<<ageSlotShift; w.OldestInFlightNs != want {
		t.Errorf("oldest in flight %d ns, want %d", w.OldestInFlightNs, want)
	}
}

// Reads of the count in flight racing with arrivals and answers (each
// read moves on the slot it starts adding up from) leave it exact: after
// the writers stop, it is what was admitted and not answered, and the
// oldest is the slot of the first request still in flight. Writers and
// reader share one clock, which moves 200 µs an arrival, so that the
// requests start in some thirty slots.
func TestRecorderInFlightStaysExactUnderRacingReads(t *testing.T) {
	r := NewRecorder(time.Second)
	var clock atomic.Int64
	const writers, each = 4, 5000
	var firstLeft atomic.Int64
	firstLeft.Store(math.MaxInt64)
	stop := concurrently(writers, func(w int) {
		for i := range each {
			start := clock.Add(200_000)
			r.Arrive(start, true)
			if w == 0 && i%1000 == 500 { // writer 0 leaves five requests in flight
				for {
					if f := firstLeft.Load(); start >= f || firstLeft.CompareAndSwap(f, start) {
						break
					}
				}
				continue
			}
			r.Done(start, int64(ms), true)
		}
	})
	for reading := true; reading; {
		select {
		case <-stop:
			reading = false
		default:
			r.Peek(clock.Load())
		}
	}
	now := clock.Load()
	w := r.Peek(now)
	if w.InFlight != 5 {
		t.Fatalf("%d in flight, want 5", w.InFlight)
	}
	if want := now - ageSlot(firstLeft.Load())<<ageSlotShift; w.OldestInFlightNs != want {
		t.Fatalf("oldest in flight %d ns, want %d", w.OldestInFlightNs, want)
	}
}

// concurrently runs write(w) for w in [0, n) on n goroutines, and returns
// a channel closed once every one has returned.
func concurrently(n int, write func(w int)) <-chan struct{} {
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			write(w)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// The count in flight finds a request whose Arrive comes seconds after
// its start (admission waited on a fleet's exact limits in Redis, up to a
// second per limiter) though a read in between moved on, and a read at an
// earlier time than the one before (a clock that went back) still finds
// the requests in flight.
func TestRecorderInFlightFindsALateArrivalAndSurvivesAClockGoingBack(t *testing.T) {
	const slotNs = int64(1) << ageSlotShift
	r := NewRecorder(time.Second)
	r.Snapshot(0)
	start := 100*slotNs + 120*ms
	r.Peek(start + 2200*ms) // a tick while admission waits
	r.Arrive(start, true)
	now := start + 2300*ms
	if w := r.Peek(now); w.InFlight != 1 || w.OldestInFlightNs != now-100*slotNs {
		t.Fatalf("a request counted 2.2 s after its start: %d in flight, oldest %d ns; want 1 and %d", w.InFlight, w.OldestInFlightNs, now-100*slotNs)
	}

	r = NewRecorder(time.Second)
	r.Arrive(10*slotNs, true)
	r.Peek(400 * slotNs) // 52 s on: slot 10 aliases slot 266
	r.Peek(20 * slotNs)  // back
	if w := r.Peek(30 * slotNs); w.InFlight != 1 || w.OldestInFlightNs != 20*slotNs {
		t.Fatalf("after the clock went back: %d in flight, oldest %d ns; want 1 and %d", w.InFlight, w.OldestInFlightNs, 20*slotNs)
	}
}
