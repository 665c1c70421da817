package actuators

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// Histogram is a log-linear latency histogram in nanoseconds with atomic
// counters and fixed memory (896 counters, 7 KiB), whatever the request
// rate.
//
// Each power of two from 512 ns to 2^37 ns (about 137 s) is split into 32
// equal buckets, so a bucket is at most 1/32 of its lower bound wide and a
// quantile read at the bucket midpoint is within 1/64 (1.6 %) of the true
// value. Values below 512 ns are counted in the first bucket and values of
// 2^37 ns or more in the last, so quantiles of such values are not accurate.
//
// The zero value is an empty histogram ready to use. Record and Drain are
// safe for concurrent use; Record is lock-free and allocation-free.
type Histogram struct {
	counts [histogramBuckets]atomic.Uint64
	// occupied has a bit per counter that may be non-zero: Drain reads
	// only those, a few cache lines instead of 7 KiB, which matters to a
	// tick of a thousand policies, most of whose counters are cold.
	occupied [histogramWords]atomic.Uint64
}

// HistogramCounts is a plain copy of a Histogram's counters, as drained into
// a Window.
type HistogramCounts [histogramBuckets]uint64

const (
	histogramSubBucketBits = 5 // 32 buckets per power of two
	histogramSubBuckets    = 1 << histogramSubBucketBits
	histogramMinExponent   = 9  // first bucket starts at 2^9 ns = 512 ns
	histogramMaxExponent   = 36 // last bucket ends at 2^37 ns ≈ 137 s
	histogramBuckets       = (histogramMaxExponent - histogramMinExponent + 1) * histogramSubBuckets
	histogramMinNs         = 1 << histogramMinExponent
	histogramMaxNs         = 1<<(histogramMaxExponent+1) - 1
	histogramWords         = (histogramBuckets + 63) / 64
)

// Record counts one latency of latencyNs nanoseconds. Values outside the
// histogram's range are counted in its first or last bucket.
func (h *Histogram) Record(latencyNs int64) { h.add(histogramBucket(latencyNs)) }

// add counts one value in bucket i. After the count, it sets the
// bucket's bit in occupied if a load finds it clear: a Drain that cleared
// the bit before that load finds it set again; one that clears it after
// has seen the count.
func (h *Histogram) add(i int) {
	h.counts[i].Add(1)
	if h.occupied[i>>6].Load()>>(i&63)&1 == 0 {
		h.occupied[i>>6].Or(1 << (i & 63))
	}
}

// Drain adds the histogram's counters into dst, resets them to zero and
// returns how many values it moved. It reads only the counters whose bit
// in occupied is set, clearing the bit before the counter: a Record
// racing with Drain is either added to dst or left for the next Drain,
// never lost or counted twice.
func (h *Histogram) Drain(dst *HistogramCounts) (drained uint64) {
	return h.drain(dst, nil)
}

// drain is Drain that also sets in marks the bits of the counters it
// moved (nil: none).
func (h *Histogram) drain(dst *HistogramCounts, marks *histogramMarks) (drained uint64) {
	for k := range h.occupied {
		if h.occupied[k].Load() == 0 {
			continue
		}
		set := h.occupied[k].Swap(0)
		if marks != nil {
			marks[k] |= set
		}
		for ; set != 0; set &= set - 1 {
			i := k<<6 | bits.TrailingZeros64(set)
			n := h.counts[i].Swap(0)
			dst[i] += n
			drained += n
		}
	}
	return drained
}

// histogramMarks has a bit per bucket of a HistogramCounts, set for every
// bucket that may be non-zero: a quantile reads only those.
type histogramMarks [histogramWords]uint64

// next returns the first marked bucket after i (-1: from the start), or
// -1 after the last; with no marks (nil), every bucket is marked.
func (m *histogramMarks) next(i int) int {
	i++
	if m == nil {
		if i < histogramBuckets {
			return i
		}
		return -1
	}
	for k := i >> 6; k < histogramWords; k++ {
		if set := m[k] &^ (uint64(1)<<(i&63) - 1); set != 0 {
			return k<<6 | bits.TrailingZeros64(set)
		}
		i = (k + 1) << 6
	}
	return -1
}

// Total returns the number of values counted.
func (c *HistogramCounts) Total() uint64 {
	var total uint64
	for _, n := range c {
		total += n
	}
	return total
}

// QuantileNs returns the q-quantile in nanoseconds, by nearest rank: the
// midpoint of the bucket holding the ceil(q·Total())-th smallest value (the
// smallest value for q = 0). It returns NaN when the histogram is empty or q
// is outside [0, 1].
func (c *HistogramCounts) QuantileNs(q float64) float64 {
	var out [1]float64
	c.quantilesNs(c.Total(), []float64{q}, out[:])
	return out[0]
}

// QuantilesNs sets dst[i] to the qs[i]-quantile in nanoseconds, as
// QuantileNs would. The quantiles are read in one pass over the buckets
// when qs is in increasing order; a q lower than the one before it starts
// the pass again. dst must be at least as long as qs.
func (c *HistogramCounts) QuantilesNs(qs, dst []float64) {
	c.quantilesNs(c.Total(), qs, dst)
}

// quantilesNs is QuantilesNs for a histogram of total values.
func (c *HistogramCounts) quantilesNs(total uint64, qs, dst []float64) {
	c.markedQuantilesNs(total, nil, qs, dst)
}

// markedQuantilesNs is quantilesNs reading only the buckets marked (all
// with nil marks), when they hold all total values: a count added by hand
// where no mark says makes it read every bucket.
func (c *HistogramCounts) markedQuantilesNs(total uint64, marks *histogramMarks, qs, dst []float64) {
	if marks != nil {
		var held uint64
		for i := marks.next(-1); i >= 0; i = marks.next(i) {
			held += c[i]
		}
		if held != total {
			marks = nil
		}
	}
	// Buckets up to i hold seen values; i is the bucket of the last answer.
	i, seen, previousRank := -1, uint64(0), uint64(0)
	for k, q := range qs {
		dst[k] = math.NaN()
		if total == 0 || !(q >= 0 && q <= 1) {
			continue
		}
		rank := min(max(uint64(math.Ceil(q*float64(total))), 1), total)
		if rank < previousRank {
			i, seen = -1, 0
		}
		previousRank = rank
		for seen < rank {
			j := marks.next(i)
			if j < 0 {
				break
			}
			i = j
			seen += c[i]
		}
		if seen >= rank { // not so only if total overstates the counts
			dst[k] = histogramMidpointNs(i)
		}
	}
}

// histogramBucket returns the index of the bucket counting latencyNs.
func histogramBucket(latencyNs int64) int {
	v := uint64(min(max(latencyNs, histogramMinNs), histogramMaxNs))
	exponent := bits.Len64(v) - 1
	sub := v>>(exponent-histogramSubBucketBits) - histogramSubBuckets
	return (exponent-histogramMinExponent)<<histogramSubBucketBits + int(sub)
}

// histogramMidpointNs returns the middle of bucket i in nanoseconds.
func histogramMidpointNs(i int) float64 {
	exponent := i>>histogramSubBucketBits + histogramMinExponent
	width := uint64(1) << (exponent - histogramSubBucketBits)
	lower := uint64(histogramSubBuckets+i%histogramSubBuckets) * width
	return float64(lower) + float64(width)/2
}
