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

// apiTails is each API's answers by bin (see tailBins), decayed over
// tailHorizon: a recorder's state between snapshots, under snapshotMu.
type apiTails struct {
	used   uint64 // a bit per API slot with counts
	counts [maxTailAPIs][tailBins]float64
}

// decay weighs the counts by keep, and forgets the APIs left with no
// weight.
func (t *apiTails) decay(keep float64) {
	for s := t.used; s != 0; s &= s - 1 {
		api := bits.TrailingZeros64(s)
		total := 0.0
		for b := range t.counts[api] {
			t.counts[api][b] *= keep
			total += t.counts[api][b]
		}
		if total < 0.01 {
			t.counts[api] = [tailBins]float64{}
			t.used &^= 1 << api
		}
	}
}

// worstAPIQuantiles are the quantiles of worstMs after the mean.
var worstAPIQuantiles = [4]float64{0.50, 0.90, 0.95, 0.99}

// worstMs returns, over the APIs with at least minTailAnswers of decayed
// weight, the largest mean (read at the bins' geometric middles) and
// the largest of each of worstAPIQuantiles, each as a fraction of the
// API's own SLO times sloMs: in the units of the scaled latencies
// (Window.ScaledQuantilesMs). NaN where no API has the weight.
func (t *apiTails) worstMs(sloMs float64) (worst [5]float64) {
	for i := range worst {
		worst[i] = math.NaN()
	}
	if sloMs <= 0 {
		return worst
	}
	scale := func(bin int, frac float64) float64 {
		return sloMs * math.Exp2((float64(bin-tailUnitBin)+frac)/tailBinsPerOctave)
	}
	raise := func(i int, v float64) {
		if !(v <= worst[i]) {
			worst[i] = v
		}
	}
	for s := t.used; s != 0; s &= s - 1 {
		c := &t.counts[bits.TrailingZeros64(s)]
		total, sum := 0.0, 0.0
		for b, n := range c {
			total += n
			sum += n * scale(b, 0.5)
		}
		if total < minTailAnswers {
			continue
		}
		raise(0, sum/total)
		b, below := 0, 0.0
		for i, q := range worstAPIQuantiles {
			rank := q * total
			for b < tailBins-1 && below+c[b] < rank {
				below += c[b]
				b++
			}
			// Geometric interpolation within the bin.
			frac := 0.5
			if c[b] > 0 {
				frac = min(max((rank-below)/c[b], 0), 1)
			}
			raise(i+1, scale(b, frac))
		}
	}
	return worst
}
