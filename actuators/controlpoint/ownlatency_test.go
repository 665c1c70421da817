package controlpoint

import (
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators"
)

// ownModel is a tick-driven model of two APIs through control point cp,
// whose shared concurrency limiter c measures their latencies: each tick,
// perTick arrivals per API spread over the tick, each answered after its
// API's latency, then a Rebalance and a Separate as the engine does.
type ownModel struct {
	now        int64
	cp         *ControlPoint
	c          *actuators.ConcurrencyLimiter
	fast, slow *ownModelAPI
}

type ownModelAPI struct {
	a         *API
	perTick   int
	latencyNs int64
	inFlight  []ownModelReq
}

type ownModelReq struct {
	tk            Ticket
	start, finish int64
}

// newOwnModel returns a model whose limiter (a limit of 1000) l is
// attached to every API before attach runs, with "fast" (50 requests of
// 5 ms a tick) and "slow" (5 of 40 ms).
func newOwnModel(attach func(m *ownModel, l *Limiter)) *ownModel {
	m := &ownModel{}
	m.cp = NewRegistry(func() int64 { return m.now }).Get("ingress")
	m.c = actuators.NewConcurrencyLimiter(1000)
	l := &Limiter{Concurrency: m.c}
	if attach != nil {
		attach(m, l)
	}
	m.cp.API(AllAPIs).AttachLimiter(l)
	m.fast = &ownModelAPI{a: m.cp.API("fast"), perTick: 50, latencyNs: int64(5 * time.Millisecond)}
	m.slow = &ownModelAPI{a: m.cp.API("slow"), perTick: 5, latencyNs: int64(40 * time.Millisecond)}
	return m
}

// run runs ticks of 100 ms.
func (m *ownModel) run(ticks int) {
	const tick = int64(100 * time.Millisecond)
	apis := []*ownModelAPI{m.fast, m.slow}
	for range ticks {
		base := m.now
		for _, a := range apis {
			for i := range a.perTick {
				m.now = base + int64(i)*tick/int64(a.perTick)
				if tk, d := a.a.Admit(); d == Accepted {
					a.inFlight = append(a.inFlight, ownModelReq{tk, m.now, m.now + a.latencyNs})
				}
			}
		}
		m.now = base + tick
		for _, a := range apis {
			kept := a.inFlight[:0]
			for _, r := range a.inFlight {
				if r.finish > m.now {
					kept = append(kept, r)
					continue
				}
				r.tk.DoneAfter(true, time.Duration(r.finish-r.start))
			}
			a.inFlight = kept
		}
		m.c.Rebalance(true, -math.Expm1(-0.1))
		m.c.Separate(true, 0.1)
	}
}

// TestDryRunOwnLatencyReachesNoTap: a dry-run limiter's own-latency
// verdicts (even were its partitions tested, which the engine does not
// do) never reach a flux meter's shared latency; TestCap shows a test's
// cap while it runs.
func TestDryRunOwnLatencyReachesNoTap(t *testing.T) {
	tap := actuators.NewRecorder(0)
	var l *Limiter
	m := newOwnModel(func(m *ownModel, dry *Limiter) {
		dry.DryRun.Store(true)
		m.cp.API(AllAPIs).AttachTap(tap)
		l = dry
	})
	m.run(150)
	m.slow.latencyNs = int64(340 * time.Millisecond)
	capped := false
	for range 80 {
		m.run(1)
		if capSlots, inFlight := l.TestCap(m.slow.a); capSlots > 0 && inFlight > 0 {
			capped = true
		}
	}
	if !capped {
		t.Error("TestCap never showed the test's cap")
	}
	if capSlots, _ := l.TestCap(m.fast.a); capSlots != 0 {
		t.Errorf("TestCap of the fast API %d, want 0", capSlots)
	}
	if sep, _ := m.c.Partition(m.slow.a.index).Separated(); !sep {
		t.Fatal("the partition was not separated: the test checks nothing")
	}
	tap.Snapshot(m.now)
	m.run(10)
	w := tap.Snapshot(m.now)
	if w.OwnLatencySumNs != 0 || w.SharedLatencyAvgMs() != w.AnsweredLatencyAvgMs() {
		t.Errorf("a dry-run limiter's own latency reached a tap: own %d ns, shared %.1f ms, answered %.1f ms",
			w.OwnLatencySumNs, w.SharedLatencyAvgMs(), w.AnsweredLatencyAvgMs())
	}
}

// TestPerAPITapSeesNoMixOffset: a flux meter of one API's requests (a
// policy whose selector names its label) reads that API's latency, not
// the control point's mix: the offsets that count each answer at the
// mix's reference latency go only to meters of every API's requests,
// whose shared latency they do move.
func TestPerAPITapSeesNoMixOffset(t *testing.T) {
	own, all := actuators.NewRecorder(0), actuators.NewRecorder(0)
	m := newOwnModel(func(m *ownModel, _ *Limiter) {
		m.cp.API("fast").AttachTap(own)
		m.cp.API(AllAPIs).AttachTap(all)
	})
	for _, slowPerTick := range []int{5, 50} {
		m.slow.perTick = slowPerTick
		m.run(1500)
		own.Snapshot(m.now)
		all.Snapshot(m.now)
		m.run(10)
		w := own.Snapshot(m.now)
		if got, want := w.SharedLatencyAvgMs(), w.AnsweredLatencyAvgMs(); math.Abs(got-want) > 0.1*want {
			t.Errorf("slow at %d a tick: fast's own meter reads shared %.2f ms, want its answered %.2f ms", slowPerTick, got, want)
		}
		if w := all.Snapshot(m.now); w.OwnLatencySumNs == 0 {
			t.Errorf("slow at %d a tick: the meter of every API subtracted no offset", slowPerTick)
		}
	}
}

// TestOffsetsUnderConcurrentRequests: requests finishing on several
// goroutines while Separate publishes offsets and a tap snapshots, for
// the race detector.
func TestOffsetsUnderConcurrentRequests(t *testing.T) {
	var clock atomic.Int64
	cp := NewRegistry(func() int64 { return clock.Add(int64(time.Microsecond)) }).Get("ingress")
	c := actuators.NewConcurrencyLimiter(1000)
	cp.API(AllAPIs).AttachLimiter(&Limiter{Concurrency: c})
	tap := actuators.NewRecorder(0)
	tap.Snapshot(clock.Load())
	cp.API(AllAPIs).AttachTap(tap)
	var stop atomic.Bool
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			a := cp.API([]string{"a", "b", "c", "d"}[g])
			lat := time.Duration(g+1) * 5 * time.Millisecond
			for !stop.Load() {
				if tk, d := a.Admit(); d == Accepted {
					tk.DoneAfter(true, lat)
				}
			}
		}()
	}
	for range 100 {
		c.Rebalance(true, 0.1)
		c.Separate(true, 0.1)
		tap.Snapshot(clock.Load())
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	for range 4 {
		<-done
	}
}
