package actuators

import (
	"sync"
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
