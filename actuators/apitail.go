package actuators

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// A recorder with per-API SLOs (NewRecorderWithAPISLOs) also counts each
// API's answers by their latency as a fraction of that API's own SLO, in
// coarse bins, and keeps the counts over the last seconds, decayed: the
// tail of an API that is a tenth of the answers or less, which a pooled
// percentile of one tick does not see. A cheap API at a bottleneck it
// shares with costly ones waits in the queue that the costly ones keep,
// and pays it against an SLO made for its own latency; the pooled p90 of
// the scaled latencies is the costly APIs'.
//
// The bins are a quarter of an octave wide, from 1/16 of the SLO (bin 0
// holds everything under it) to 4 × the SLO (the last bin holds
// everything over).
const (
	// maxTailAPIs bounds the APIs counted apart, by index at the control
	// point; the APIs past it share the last slot.
	maxTailAPIs = 32
	tailBins    = 24
	// tailBinsPerOctave and tailUnitBin: bin tailUnitBin starts at the
	// API's SLO.
	tailBinsPerOctave = 4
	tailUnitBin       = 16
	// tailHorizon is the time constant of the decay: an API answering 25
	// requests a second has about 100 answers' weight.
	tailHorizon = 4 * time.Second
	// minTailAnswers is the decayed weight an API needs for its quantiles
	// to count (APITailQuantilesMs): an API with fewer answers says little
	// about its tail.
	minTailAnswers = 20
)

// tailCounts is one buffer of one shard of the per-API bins: touched has
// a bit per API slot that may have non-zero counts.
type tailCounts struct {
	touched atomic.Uint64
	counts  [maxTailAPIs][tailBins]atomic.Uint64
}

// tailBin returns the bin of a latency scaled to slo (both in the
// histogram's buckets, 32 a power of two): a quarter of an octave each,
// bin tailUnitBin at the slo.
func tailBin(scaledBucket, sloBucket int) int {
	d := (scaledBucket - sloBucket) >> (histogramSubBucketBits - 2) // quarter octaves, floored
	return min(max(d+tailUnitBin, 0), tailBins-1)
}

// add counts one answer of API slot api in bin.
func (t *tailCounts) add(api, bin int) {
	t.counts[api][bin].Add(1)
	if t.touched.Load()>>api&1 == 0 {
		t.touched.Or(1 << api)
	}
}

// drainInto adds the counts into dst, resets them, and returns the slots
// touched.
func (t *tailCounts) drainInto(dst *[maxTailAPIs][tailBins]float64) uint64 {
	if t.touched.Load() == 0 {
		return 0
	}
	set := t.touched.Swap(0)
	for s := set; s != 0; s &= s - 1 {
		api := bits.TrailingZeros64(s)
		for b := range tailBins {
			dst[api][b] += float64(take(&t.counts[api][b]))
		}
	}
	return set
}

// APITails is each API's decayed answers by bin (see tailBins), as a
// Window carries them.
type APITails struct {
	// SLOMs is the recorder's slo in milliseconds, to which the quantiles
	// are scaled.
	SLOMs  float64
	used   uint64 // a bit per API slot with counts
	counts [maxTailAPIs][tailBins]float32
}

// QuantilesMs sets dst[i] to the largest over the APIs with at least
// minTailAnswers of decayed weight of their qs[i]-quantile, as a fraction
// of their own SLO times SLOMs: in the units of the scaled latencies
// (Window.ScaledQuantilesMs), over the last seconds. NaN where no API
// has the weight. qs must be increasing; dst at least as long.
func (t *APITails) QuantilesMs(qs, dst []float64) {
	for i := range qs {
		dst[i] = math.NaN()
	}
	if t == nil || t.SLOMs <= 0 {
		return
	}
	for s := t.used; s != 0; s &= s - 1 {
		c := &t.counts[bits.TrailingZeros64(s)]
		total := 0.0
		for _, n := range c {
			total += float64(n)
		}
		if total < minTailAnswers {
			continue
		}
		b, below := 0, 0.0
		for i, q := range qs {
			rank := q * total
			for b < tailBins-1 && below+float64(c[b]) < rank {
				below += float64(c[b])
				b++
			}
			// Geometric interpolation within the bin.
			frac := 0.5
			if c[b] > 0 {
				frac = min(max((rank-below)/float64(c[b]), 0), 1)
			}
			v := t.SLOMs * math.Exp2((float64(b-tailUnitBin)+frac)/tailBinsPerOctave)
			if !(v <= dst[i]) {
				dst[i] = v
			}
		}
	}
}

// AvgMs is the largest over the APIs with at least minTailAnswers of
// decayed weight of their mean, read at the bins' geometric middles, as
// QuantilesMs scales it; NaN where no API has the weight.
func (t *APITails) AvgMs() float64 {
	worst := math.NaN()
	if t == nil || t.SLOMs <= 0 {
		return worst
	}
	for s := t.used; s != 0; s &= s - 1 {
		c := &t.counts[bits.TrailingZeros64(s)]
		total, sum := 0.0, 0.0
		for b, n := range c {
			total += float64(n)
			sum += float64(n) * math.Exp2((float64(b-tailUnitBin)+0.5)/tailBinsPerOctave)
		}
		if total < minTailAnswers {
			continue
		}
		if v := t.SLOMs * sum / total; !(v <= worst) {
			worst = v
		}
	}
	return worst
}
