package actuators

import (
	"slices"
	"sync"
	"testing"
	"time"
)

func TestCumulativeHistogramCountsByUpperBoundInclusive(t *testing.T) {
	h, err := NewCumulativeHistogram([]time.Duration{time.Millisecond, 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []int64{-5, 0, int64(time.Millisecond), int64(time.Millisecond) + 1, int64(10 * time.Millisecond), int64(time.Hour)} {
		h.Record(ns)
	}
	c := h.Read()
	if want := []uint64{3, 2, 1}; !slices.Equal(c.Counts, want) {
		t.Fatalf("counts %v, want %v (le semantics, negatives as 0, overflow in +Inf)", c.Counts, want)
	}
	wantSum := uint64(2*time.Millisecond+1) + uint64(10*time.Millisecond) + uint64(time.Hour)
	if c.Count != 6 || c.SumNs != wantSum {
		t.Fatalf("count %d sum %d, want 6 and %d", c.Count, c.SumNs, wantSum)
	}
	if !slices.Equal(c.Bounds, []time.Duration{time.Millisecond, 10 * time.Millisecond}) {
		t.Fatalf("bounds %v", c.Bounds)
	}
}

func TestCumulativeHistogramRefusesBadBounds(t *testing.T) {
	for _, b := range [][]time.Duration{{0}, {-1}, {2, 2}, {3, 1}} {
		if _, err := NewCumulativeHistogram(b); err == nil {
			t.Errorf("bounds %v accepted", b)
		}
	}
	if _, err := NewCumulativeHistogram(RequestDurationBounds); err != nil {
		t.Fatal(err)
	}
}

func TestCumulativeHistogramRecordDoesNotAllocate(t *testing.T) {
	h, _ := NewCumulativeHistogram(RequestDurationBounds)
	if allocs := testing.AllocsPerRun(1000, func() { h.Record(int64(30 * time.Millisecond)) }); allocs != 0 {
		t.Fatalf("%v allocs per Record", allocs)
	}
}

func TestCumulativeHistogramConcurrentRecordsAllLand(t *testing.T) {
	h, _ := NewCumulativeHistogram(RequestDurationBounds)
	const goroutines, each = 4, 20000
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				h.Record(int64(i*7919) % int64(20*time.Second)) // spread over buckets and shards
			}
		}()
	}
	wg.Wait()
	var wantSum uint64
	for i := 0; i < each; i++ {
		wantSum += uint64(int64(i*7919) % int64(20*time.Second))
	}
	c := h.Read()
	var total uint64
	for _, n := range c.Counts {
		total += n
	}
	if c.Count != goroutines*each || total != c.Count || c.SumNs != goroutines*wantSum {
		t.Fatalf("count %d (buckets add to %d), sum %d; want %d and %d", c.Count, total, c.SumNs, goroutines*each, goroutines*wantSum)
	}
}
