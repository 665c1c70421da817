package components_test

import (
	"math"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

// sloPlant drives an SLOConcurrencyController at 100 ms ticks against a
// service of workers servers of rtt own ms and a queue that adds 16 ms per
// worker's worth of requests beyond them, with demand requests wanting in.
type sloPlant struct {
	c                    components.Component
	out                  []float64
	own, workers, demand float64
}

func newSLOPlant(t *testing.T) *sloPlant {
	return &sloPlant{c: mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":8}`, 100*time.Millisecond),
		out: make([]float64, 3), own: 20, workers: 64, demand: 1e9}
}

func (p *sloPlant) run(n int) {
	for range n {
		limit := p.out[0]
		if limit == 0 {
			limit = 8
		}
		inFlight := math.Min(limit, p.demand)
		rtt := p.own + 16/p.workers*math.Max(0, inFlight-p.workers)
		p.c.Execute([]float64{rtt, components.Invalid, inFlight, 0, rtt, 1000, components.Invalid, components.Invalid}, p.out)
	}
}

// An outage's doubling back (a run that cut the limit to an eighth arms
// it) ends when the traffic no longer fills the limit: a surge after a
// lull grows the limit by √limit a window, as any surge does.
func TestSLOConcurrencyControllerForgetsAnOutageInALull(t *testing.T) {
	p := newSLOPlant(t)
	p.run(600)
	p.workers = 2 // capacity lost for 6 s: the cuts take the limit to an eighth
	p.run(60)
	p.workers, p.demand = 64, 3
	p.run(6000) // a 10-minute lull at 3 in flight
	p.demand = 1e9
	before := p.out[0]
	p.run(1)
	if grown := p.out[0]; grown > before+math.Sqrt(before)+1e-9 {
		t.Errorf("first window of a surge after a lull: limit %.1f → %.1f, want at most +√limit", before, grown)
	}
}

// A lull (nothing in flight, nothing finished) ends a run of queueing
// windows: when traffic resumes, the run's evidence from before the lull
// does not relearn the baseline before relearn_after of fresh windows.
func TestSLOConcurrencyControllerLullEndsAQueueingRun(t *testing.T) {
	p := newSLOPlant(t)
	p.workers = 8
	p.run(900)
	settled := p.out[2]
	p.own = 60
	p.run(25) // 2.5 s into a slower service: no relearn yet
	for range 6000 {
		p.c.Execute([]float64{components.Invalid, components.Invalid, 0, 0, components.Invalid, 0, components.Invalid, components.Invalid}, p.out)
	}
	for i := range 15 {
		p.run(1)
		if p.out[2] > 1.05*settled {
			t.Fatalf("resume tick %d: baseline %.1f relearned from %.1f with 1.5 s of fresh evidence", i, p.out[2], settled)
		}
	}
}
