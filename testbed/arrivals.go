package testbed

import (
	"math/rand/v2"
	"time"
)

// arrivals yields the Poisson arrival offsets of a load schedule, measured
// from the start of the run. The offsets depend only on the phases and the
// seed, never on the wall clock, so a seed fixes how many requests each
// second offers.
type arrivals struct {
	rng        *rand.Rand
	phases     []Phase
	phase      int           // index of the current phase
	phaseStart time.Duration // offset at which phase begins
	last       time.Duration // offset of the previous arrival, or of the current phase start
	// batch is how many requests arrive together (Scenario.Burst; 0 or 1:
	// one at a time), and pending how many of the current batch are
	// still to come at last.
	batch, pending int
}

// streamLoad is the RNG stream of Run's single arrival schedule.
const streamLoad = 3

func newArrivals(phases []Phase, seed uint64) *arrivals {
	return newArrivalStream(phases, seed, streamLoad)
}

// newArrivalStream is newArrivals on one of several independent RNG
// streams of the same seed, one per API of a multi-API run.
func newArrivalStream(phases []Phase, seed, stream uint64) *arrivals {
	return &arrivals{rng: rand.New(rand.NewPCG(seed, stream)), phases: phases}
}

// inBatches makes the stream's requests arrive n at a time, at the same
// offset, the batches a Poisson process at each phase's rate ÷ n, so
// that the mean rate is the phase's (Scenario.Burst). It returns a.
func (a *arrivals) inBatches(n int) *arrivals {
	a.batch = n
	return a
}

// next returns the next arrival offset, or false once every phase has ended.
func (a *arrivals) next() (time.Duration, bool) {
	if a.pending > 0 {
		a.pending--
		return a.last, true
	}
	batch := max(1, a.batch)
	for a.phase < len(a.phases) {
		p := a.phases[a.phase]
		phaseEnd := a.phaseStart + p.Duration
		if p.Rate > 0 {
			gap := time.Duration(a.rng.ExpFloat64() / p.Rate * float64(batch) * float64(time.Second))
			if at := a.last + gap; at < phaseEnd {
				a.last, a.pending = at, batch-1
				return at, true
			}
		}
		// Poisson arrivals are memoryless, so the next phase may start its
		// own gap at its boundary without biasing either rate.
		a.phase++
		a.phaseStart = phaseEnd
		a.last = phaseEnd
	}
	return 0, false
}
