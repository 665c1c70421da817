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
