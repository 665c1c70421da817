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
		p.c.Execute([]float64{rtt, components.Invalid, inFlight, 0, rtt, 1000}, p.out)
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
		p.c.Execute([]float64{components.Invalid, components.Invalid, 0, 0, components.Invalid, 0}, p.out)
	}
	for i := range 15 {
		p.run(1)
		if p.out[2] > 1.05*settled {
			t.Fatalf("resume tick %d: baseline %.1f relearned from %.1f with 1.5 s of fresh evidence", i, p.out[2], settled)
		}
	}
}

// A relearned baseline's lease decays only while the limit binds: it is
// how a controller under a standing queue finds out that the dependency
// is fast again, and a window with room shows that directly (faster than
// 0.8 × the lease ends it). A slower dependency that outlasts a lull keeps
// its baseline through it, and the load that returns is not cut for the
// latency the service has without a queue.
func TestSLOConcurrencyControllerLeaseHoldsWhileTheLimitHasRoom(t *testing.T) {
	p := newSLOPlant(t)
	p.run(600)
	p.own = 60 // a slower dependency: relearned on a lease
	p.run(100)
	if b := p.out[2]; b < 45 {
		t.Fatalf("baseline %.1f ms 10 s into a shift to 60 ms, want it relearned", b)
	}
	p.demand = 3 // five minutes under the limit, the dependency still slow
	p.run(3000)
	if b := p.out[2]; b < 45 {
		t.Fatalf("baseline %.1f ms after a lull with the dependency still slow, want the relearned one", b)
	}
	p.demand = 1e9
	before := p.out[0]
	p.run(30)
	if l := p.out[0]; l < before {
		t.Errorf("limit %.1f → %.1f in the 3 s after the lull, want no cut: the service has no queue", before, l)
	}
	p.demand, p.own = 3, 20 // fast again: the first window with room ends the lease
	p.run(30)
	if b := p.out[2]; b > 21 {
		t.Errorf("baseline %.1f ms with the dependency fast again, want 20", b)
	}
}
