package actuators

import (
	"fmt"
	"sync/atomic"
	"time"
)

// CumulativeHistogram counts durations into a few fixed buckets and never
// resets: the shape of a Prometheus or OTLP cumulative histogram, which an
// exporter reads as is. The flux meter's Histogram is the opposite: fine
// buckets drained every tick.
//
// A value v is counted in the first bucket whose upper bound satisfies
// v <= bound (Prometheus's `le`), or in the last, unbounded bucket.
//
// The counters are split into shards on separate cache lines, picked by
// the low bits of the value itself, so that cores recording at once rarely
// write the same line; Read adds the shards up.
//
// Record is lock-free and allocation-free; Read may run concurrently with
// it. A Read racing a Record may see the bucket incremented but not yet the
// sum; every counter on its own only grows.
type CumulativeHistogram struct {
	upperNs []int64         // read-only after construction
	stride  int             // counters per shard: sum, buckets, padding to a cache line
	cells   []atomic.Uint64 // cumulativeShards × stride
}

// cumulativeShards is the number of counter shards (a power of two).
const cumulativeShards = 4

// RequestDurationBounds are the bucket upper bounds of the request-duration
// histograms that control points keep for spillway_request_duration_seconds:
// Prometheus's default buckets, extended down to 1 ms for fast services.
var RequestDurationBounds = []time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// NewCumulativeHistogram returns an empty histogram with the given bucket
// upper bounds, which must be positive and strictly increasing.
func NewCumulativeHistogram(upper []time.Duration) (*CumulativeHistogram, error) {
	stride := (len(upper) + 2 + 7) / 8 * 8 // 8 counters per 64-byte line
	h := &CumulativeHistogram{upperNs: make([]int64, len(upper)), stride: stride, cells: make([]atomic.Uint64, cumulativeShards*stride)}
	for i, b := range upper {
		if b <= 0 || (i > 0 && b <= upper[i-1]) {
			return nil, fmt.Errorf("histogram bounds must be positive and strictly increasing, got %v", upper)
		}
		h.upperNs[i] = int64(b)
	}
	return h, nil
}

// Record counts one duration of ns nanoseconds; negative values count as 0.
func (h *CumulativeHistogram) Record(ns int64) {
	ns = max(ns, 0)
	i := 0
	for i < len(h.upperNs) && ns > h.upperNs[i] {
		i++
	}
	u := uint64(ns)
	shard := int((u^u>>10^u>>20)&(cumulativeShards-1)) * h.stride
	h.cells[shard].Add(u)     // the shard's sum
	h.cells[shard+1+i].Add(1) // its bucket
}

// CumulativeCounts is a read of a CumulativeHistogram.
type CumulativeCounts struct {
	// Bounds are the upper bounds of every bucket but the last (+Inf).
	Bounds []time.Duration
	// Counts holds the values counted per bucket (not cumulative across
	// buckets), one more than Bounds.
	Counts []uint64
	Count  uint64 // the sum of Counts
	SumNs  uint64 // the sum of the values counted
}

// Read copies the histogram's counters.
func (h *CumulativeHistogram) Read() CumulativeCounts {
	c := CumulativeCounts{Bounds: make([]time.Duration, len(h.upperNs)), Counts: make([]uint64, len(h.upperNs)+1)}
	for i, b := range h.upperNs {
		c.Bounds[i] = time.Duration(b)
	}
	for shard := 0; shard < len(h.cells); shard += h.stride {
		c.SumNs += h.cells[shard].Load()
		for i := range c.Counts {
			n := h.cells[shard+1+i].Load()
			c.Counts[i] += n
			c.Count += n
		}
	}
	return c
}

// Add adds the counts of o, a read of a histogram with the same bounds,
// into c.
func (c *CumulativeCounts) Add(o CumulativeCounts) {
	for i := range c.Counts {
		c.Counts[i] += o.Counts[i]
	}
	c.Count += o.Count
	c.SumNs += o.SumNs
}
