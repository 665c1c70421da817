package controlpoint

import (
	"math"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators"
)

// TestDryRunOwnLatencyReachesNoTap: a dry-run limiter's own-latency
// verdicts (even were its partitions tested, which the engine does not
// do) never reach a flux meter's shared latency; TestCap shows a test's
// cap while it runs.
func TestDryRunOwnLatencyReachesNoTap(t *testing.T) {
	now := int64(0)
	cp := NewRegistry(func() int64 { return now }).Get("ingress")
	c := actuators.NewConcurrencyLimiter(1000)
	l := &Limiter{Concurrency: c}
	l.DryRun.Store(true)
	cp.API(AllAPIs).AttachLimiter(l)
	tap := actuators.NewRecorder(0)
	cp.API(AllAPIs).AttachTap(tap)
	type req struct {
		tk            Ticket
		start, finish int64
	}
	type api struct {
		a         *API
		perTick   int
		latencyNs int64
		inFlight  []req
	}
	fast := &api{a: cp.API("fast"), perTick: 50, latencyNs: int64(5 * time.Millisecond)}
	slow := &api{a: cp.API("slow"), perTick: 5, latencyNs: int64(40 * time.Millisecond)}
	tick := int64(100 * time.Millisecond)
	run := func(ticks int) {
		for range ticks {
			base := now
			for _, a := range []*api{fast, slow} {
				for i := range a.perTick {
					now = base + int64(i)*tick/int64(a.perTick)
					if tk, d := a.a.Admit(); d == Accepted {
						a.inFlight = append(a.inFlight, req{tk, now, now + a.latencyNs})
					}
				}
			}
			now = base + tick
			for _, a := range []*api{fast, slow} {
				kept := a.inFlight[:0]
				for _, r := range a.inFlight {
					if r.finish > now {
						kept = append(kept, r)
						continue
					}
					r.tk.DoneAfter(true, time.Duration(r.finish-r.start))
				}
				a.inFlight = kept
			}
			c.Rebalance(true, -math.Expm1(-0.1))
			c.Separate(true, 0.1)
		}
	}
	run(150)
	slow.latencyNs = int64(340 * time.Millisecond)
	capped := false
	for range 80 {
		run(1)
		if capSlots, inFlight := l.TestCap(slow.a); capSlots > 0 && inFlight > 0 {
			capped = true
		}
	}
	if !capped {
		t.Error("TestCap never showed the test's cap")
	}
	if capSlots, _ := l.TestCap(fast.a); capSlots != 0 {
		t.Errorf("TestCap of the fast API %d, want 0", capSlots)
	}
	if sep, _ := c.Partition(slow.a.index).Separated(); !sep {
		t.Fatal("the partition was not separated: the test checks nothing")
	}
	tap.Snapshot(now)
	run(10)
	w := tap.Snapshot(now)
	if w.OwnLatencySumNs != 0 || w.SharedLatencyAvgMs() != w.AnsweredLatencyAvgMs() {
		t.Errorf("a dry-run limiter's own latency reached a tap: own %d ns, shared %.1f ms, answered %.1f ms",
			w.OwnLatencySumNs, w.SharedLatencyAvgMs(), w.AnsweredLatencyAvgMs())
	}
}

// TestPerAPITapSeesNoMixOffset: a flux meter of one API's requests (a
// policy whose selector names its label) reads that API's latency, not
// the control point's mix: the offsets that count each answer at the
// mix's reference latency go only to meters of every API's requests.
func TestPerAPITapSeesNoMixOffset(t *testing.T) {
	now := int64(0)
	cp := NewRegistry(func() int64 { return now }).Get("ingress")
	c := actuators.NewConcurrencyLimiter(1000)
	cp.API(AllAPIs).AttachLimiter(&Limiter{Concurrency: c})
	type req struct {
		tk     Ticket
		finish int64
	}
	type api struct {
		a        *API
		perTick  int
		lat      int64
		inFlight []req
	}
	fast := &api{a: cp.API("fast"), perTick: 50, lat: int64(5 * time.Millisecond)}
	slow := &api{a: cp.API("slow"), perTick: 5, lat: int64(40 * time.Millisecond)}
	tap := actuators.NewRecorder(0)
	fast.a.AttachTap(tap)
	tick := int64(100 * time.Millisecond)
	run := func(ticks int) {
		for range ticks {
			base := now
			for _, a := range []*api{fast, slow} {
				for i := range a.perTick {
					now = base + int64(i)*tick/int64(a.perTick)
					if tk, d := a.a.Admit(); d == Accepted {
						a.inFlight = append(a.inFlight, req{tk, now + a.lat})
					}
				}
			}
			now = base + tick
			for _, a := range []*api{fast, slow} {
				kept := a.inFlight[:0]
				for _, r := range a.inFlight {
					if r.finish > now {
						kept = append(kept, r)
					} else {
						r.tk.DoneAfter(true, time.Duration(a.lat))
					}
				}
				a.inFlight = kept
			}
			c.Rebalance(true, -math.Expm1(-0.1))
			c.Separate(true, 0.1)
		}
	}
	var ws []actuators.Window
	for _, slowPerTick := range []int{5, 50} {
		slow.perTick = slowPerTick
		run(1500)
		tap.Snapshot(now)
		run(10)
		ws = append(ws, tap.Snapshot(now))
	}
	for i, w := range ws {
		if got, want := w.SharedLatencyAvgMs(), w.AnsweredLatencyAvgMs(); math.Abs(got-want) > 0.1*want {
			t.Errorf("window %d: fast's own meter reads shared %.2f ms, want its answered %.2f ms", i+1, got, want)
		}
	}
}

// TestReviewRaceOffsets: requests finishing on several goroutines while
// Separate publishes offsets and a tap snapshots, for the race detector.
func TestReviewRaceOffsets(t *testing.T) {
	cp := NewRegistry(func() int64 { return time.Now().UnixNano() }).Get("ingress")
	c := actuators.NewConcurrencyLimiter(1000)
	cp.API(AllAPIs).AttachLimiter(&Limiter{Concurrency: c})
	tap := actuators.NewRecorder(0)
	tap.Snapshot(time.Now().UnixNano())
	cp.API(AllAPIs).AttachTap(tap)
	stop := make(chan struct{})
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			a := cp.API([]string{"a", "b", "c", "d"}[g])
			lat := time.Duration(g+1) * 5 * time.Millisecond
			for {
				select {
				case <-stop:
					return
				default:
				}
				if tk, d := a.Admit(); d == Accepted {
					tk.DoneAfter(true, lat)
				}
			}
		}()
	}
	for range 300 {
		c.Rebalance(true, 0.1)
		c.Separate(true, 0.1)
		tap.Snapshot(time.Now().UnixNano())
		time.Sleep(time.Millisecond)
	}
	close(stop)
	for range 4 {
		<-done
	}
}
