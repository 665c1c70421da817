package controlpoint

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spillway-dev/spillway/actuators"
)

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64 { return c.ns.Load() }

func TestAdmitWithoutLimitersAcceptsAndRecords(t *testing.T) {
	clock := &fakeClock{}
	cp := NewRegistry(clock.now).Get("ingress")
	all := actuators.NewRecorder(0)
	cp.API(AllAPIs).AttachTap(all)
	tk, d := cp.Admit("GET /a")
	if d != Accepted {
		t.Fatalf("decision %v, want Accepted", d)
	}
	clock.ns.Add(5e6)
	tk.Done(true)
	w := all.Snapshot(clock.now())
	if w.Incoming != 1 || w.Accepted != 1 || w.Completed != 1 || w.Goodput != 1 {
		t.Fatalf("window %+v: want one admitted, completed, good request", w)
	}
	if got := w.LatencyAvgMs(); math.Abs(got-5) > 0.1 {
		t.Fatalf("latency %v ms, want 5 ms", got)
	}
}

func TestUnknownAndMissingLabelsNeverPanic(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
	for _, label := range []string{"", "*", "never-seen", "\x00\xff"} {
		tk, d := cp.Admit(label)
		if d != Accepted {
			t.Fatalf("label %q: %v", label, d)
		}
		tk.Done(true)
	}
	var zero Ticket
	zero.Done(true) // a rejected request's ticket is inert
}

func TestRateLimiterRejectsPerAPIAndCountsEverywhere(t *testing.T) {
	clock := &fakeClock{}
	cp := NewRegistry(clock.now).Get("ingress")
	apiTap, allTap := actuators.NewRecorder(0), actuators.NewRecorder(0)
	cp.API("GET /a").AttachTap(apiTap)
	cp.API(AllAPIs).AttachTap(allTap)
	l := &Limiter{Bucket: actuators.NewTokenBucket(1, 2, 0)}
	cp.API("GET /a").AttachLimiter(l)
	var accepted, rejected int
	for i := 0; i < 5; i++ {
		tk, d := cp.Admit("GET /a")
		if d == Accepted {
			accepted++
			tk.Done(true)
		} else if d == RateLimited {
			rejected++
		}
	}
	if accepted != 2 || rejected != 3 {
		t.Fatalf("accepted %d rejected %d, want 2 and 3 (burst 2)", accepted, rejected)
	}
	if tk, d := cp.Admit("GET /b"); d != Accepted {
		t.Fatal("another API must not be limited by GET /a's bucket")
	} else {
		tk.Done(true)
	}
	if w := apiTap.Snapshot(0); w.Incoming != 5 || w.Rejected != 3 {
		t.Fatalf("API tap %+v", w)
	}
	if w := allTap.Snapshot(0); w.Incoming != 6 || w.Rejected != 3 {
		t.Fatalf("control-point tap %+v", w)
	}
	if l.Rejected.Load() != 3 || l.Allowed.Load() != 2 {
		t.Fatalf("limiter counters allowed %d rejected %d", l.Allowed.Load(), l.Rejected.Load())
	}
}

func TestInvalidSetpointFailsOpenAndIsCounted(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
	l := &Limiter{Bucket: actuators.NewTokenBucket(math.NaN(), 1, 0)}
	cp.API(AllAPIs).AttachLimiter(l)
	for i := 0; i < 10; i++ {
		tk, d := cp.Admit("x")
		if d != Accepted {
			t.Fatal("an invalid setpoint must not reject")
		}
		tk.Done(true)
	}
	if l.FailOpen.Load() != 10 {
		t.Fatalf("fail-open count %d, want 10", l.FailOpen.Load())
	}
}

func TestDryRunCountsWouldRejectButAdmits(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
	l := &Limiter{Bucket: actuators.NewTokenBucket(1, 1, 0)}
	l.DryRun.Store(true)
	cp.API(AllAPIs).AttachLimiter(l)
	for i := 0; i < 4; i++ {
		tk, d := cp.Admit("")
		if d != Accepted {
			t.Fatal("dry run must admit")
		}
		tk.Done(true)
	}
	if l.WouldReject.Load() != 3 || l.Rejected.Load() != 0 {
		t.Fatalf("would_reject %d rejected %d, want 3 and 0", l.WouldReject.Load(), l.Rejected.Load())
	}
}

func TestConcurrencyLimitHoldsSlotsUntilDone(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
	c := actuators.NewConcurrencyLimiter(2)
	cp.API(AllAPIs).AttachLimiter(&Limiter{Concurrency: c})
	t1, _ := cp.Admit("")
	t2, _ := cp.Admit("")
	if _, d := cp.Admit(""); d != ConcurrencyLimited {
		t.Fatalf("third concurrent request: %v, want ConcurrencyLimited", d)
	}
	t1.Done(true)
	t3, d := cp.Admit("")
	if d != Accepted {
		t.Fatal("a released slot must admit the next request")
	}
	t2.Done(true)
	t3.Done(false)
	if c.InFlight() != 0 {
		t.Fatalf("in flight %d after all done", c.InFlight())
	}
}

// sharedLimitRig returns a control point on the clock *now with a
// concurrency limit of 8 for all its APIs (its limiter) and a flux meter
// of them all, whose first window has begun.
func sharedLimitRig(now *int64) (*ControlPoint, *Limiter, *actuators.Recorder) {
	cp := NewRegistry(func() int64 { return *now }).Get("ingress")
	l := &Limiter{Concurrency: actuators.NewConcurrencyLimiter(8)}
	cp.API(AllAPIs).AttachLimiter(l)
	tap := actuators.NewRecorder(0)
	cp.API(AllAPIs).AttachTap(tap)
	tap.Snapshot(*now)
	return cp, l, tap
}

// admitAll admits n requests of a, all of which must be accepted (what
// says which), and returns their tickets.
func admitAll(t *testing.T, a *API, n int, what string) []Ticket {
	t.Helper()
	held := make([]Ticket, 0, n)
	for range n {
		tk, d := a.Admit()
		if d != Accepted {
			t.Fatalf("%s: %v, want Accepted", what, d)
		}
		held = append(held, tk)
	}
	return held
}

// TestSharedConcurrencyLimitIsABulkheadByUsefulTime: a limit of 8 shared
// by two APIs. "pay"'s requests are abandoned by their clients and
// "browse"'s answered; after a rebalance, pay gets a quarter of the limit,
// which does not keep browse out, and the flux meter counts pay's requests
// as abandoned, apart from browse's answers.
func TestSharedConcurrencyLimitIsABulkheadByUsefulTime(t *testing.T) {
	now := int64(0)
	cp, l, tap := sharedLimitRig(&now)
	c := l.Concurrency
	browse, pay := cp.API("browse"), cp.API("pay")
	b, _ := browse.Admit()
	p, _ := pay.Admit()
	now += 40e6
	b.Done(true)
	now += 1960e6
	p.Abandon()
	w := tap.Snapshot(now)
	if w.Completed != 2 || w.Abandoned != 1 || w.Errors != 1 || w.Goodput != 1 {
		t.Fatalf("window %+v: want 2 completed, 1 abandoned (an error), 1 goodput", w)
	}
	if got := w.AnsweredLatencyAvgMs(); got != 40 {
		t.Fatalf("answered latency %v ms, want 40 (browse's only)", got)
	}
	if got := w.LatencyAvgMs(); got != 1020 {
		t.Fatalf("latency %v ms, want 1020 (both: 40 and 2000)", got)
	}
	c.Rebalance(true, 1)
	held := admitAll(t, pay, 2, "pay, under a quarter of the limit")
	if _, d := pay.Admit(); d != ConcurrencyLimited {
		t.Fatalf("pay beyond a quarter of the limit: %v, want ConcurrencyLimited", d)
	}
	for i := range 8 {
		tk, d := browse.Admit()
		if d != Accepted {
			t.Fatalf("browse's request %d, pay holding its quarter: %v, want Accepted", i, d)
		}
		held = append(held, tk)
	}
	if _, d := browse.Admit(); d != ConcurrencyLimited {
		t.Fatalf("browse beyond the limit: %v, want ConcurrencyLimited", d)
	}
	for _, tk := range held {
		tk.Abandon()
	}
	if c.InFlight() != 0 {
		t.Fatalf("in flight %d after all finished", c.InFlight())
	}
}

// TestConcurrencyLimitCountsRequestsAdmittedWhileUnlimited: requests
// admitted while the limit was invalid or stale (fail-open) hold slots too,
// so a limit set while they are in flight admits nothing more until fewer
// than the limit remain.
func TestConcurrencyLimitCountsRequestsAdmittedWhileUnlimited(t *testing.T) {
	clock := &fakeClock{}
	for _, c := range []struct {
		name string
		prep func(l *Limiter)
		free func(l *Limiter)
	}{
		{"invalid limit", func(l *Limiter) { l.Concurrency.SetLimit(math.NaN()) }, func(*Limiter) {}},
		{"stale limit", func(l *Limiter) {
			l.Concurrency.SetLimit(0)
			l.StaleAfter.Store(100)
			clock.ns.Store(1000) // 1000 ns after the attachment's stamp
		}, func(l *Limiter) { l.Stamp(1000) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock.ns.Store(0)
			cp := NewRegistry(clock.now).Get("ingress")
			l := &Limiter{Concurrency: actuators.NewConcurrencyLimiter(0)}
			cp.API("GET /a").AttachLimiter(l)
			c.prep(l)
			var tickets []Ticket
			for i := 0; i < 10; i++ {
				tk, d := cp.Admit("GET /a")
				if d != Accepted {
					t.Fatalf("request %d: %v, want Accepted before the limit is set", i, d)
				}
				tickets = append(tickets, tk)
			}
			c.free(l)
			l.Concurrency.SetLimit(5)
			for i := 0; i < 6; i++ {
				if _, d := cp.Admit("GET /a"); d != ConcurrencyLimited {
					t.Fatalf("with %d in flight and a limit of 5, a new request is %v, want ConcurrencyLimited", 10-i, d)
				}
				tickets[i].Done(true)
			}
			// 4 in flight now: one more fits.
			tk, d := cp.Admit("GET /a")
			if d != Accepted {
				t.Fatalf("with 4 in flight and a limit of 5, a new request is %v, want Accepted", d)
			}
			if _, d := cp.Admit("GET /a"); d != ConcurrencyLimited {
				t.Fatalf("with 5 in flight and a limit of 5, a new request is %v, want ConcurrencyLimited", d)
			}
			tk.Done(true)
			for _, tk := range tickets[6:] {
				tk.Done(true)
			}
			if n := l.Concurrency.InFlight(); n != 0 {
				t.Fatalf("%d in flight after every request is done, want 0", n)
			}
		})
	}
}

// TestDryRunConcurrencyHoldsOnlyTheSlotsEnforcementWouldGrant: in dry-run,
// requests past the limit are admitted as would_reject without a slot, so
// the next ones are judged as enforcement would judge them.
func TestDryRunConcurrencyHoldsOnlyTheSlotsEnforcementWouldGrant(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
	l := &Limiter{Concurrency: actuators.NewConcurrencyLimiter(5)}
	l.DryRun.Store(true)
	api := cp.API("GET /a")
	api.AttachLimiter(l)
	var tickets []Ticket
	for i := 0; i < 10; i++ {
		tk, d := cp.Admit("GET /a")
		if d != Accepted {
			t.Fatalf("request %d: %v, want Accepted in dry-run", i, d)
		}
		tickets = append(tickets, tk)
	}
	if n := l.Concurrency.InFlight(); n != 5 {
		t.Fatalf("%d slots held, want the 5 enforcement would grant", n)
	}
	if api.Count(OutcomeAccepted) != 5 || api.Count(OutcomeWouldReject) != 5 {
		t.Fatalf("accepted %d would_reject %d, want 5 and 5", api.Count(OutcomeAccepted), api.Count(OutcomeWouldReject))
	}
	tickets[0].Done(true) // a slot holder finishes: the next request fits
	if _, d := cp.Admit("GET /a"); d != Accepted || api.Count(OutcomeAccepted) != 6 {
		t.Fatalf("after a slot is released: %v with %d accepted, want a 6th accepted", d, api.Count(OutcomeAccepted))
	}
}

func TestRejectionByControlPointReleasesAPISlot(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
	apiSlots := actuators.NewConcurrencyLimiter(5)
	cp.API("a").AttachLimiter(&Limiter{Concurrency: apiSlots})
	cp.API(AllAPIs).AttachLimiter(&Limiter{Bucket: actuators.NewTokenBucket(0, 1, 0)})
	tk, _ := cp.Admit("a")
	tk.Done(true)
	if _, d := cp.Admit("a"); d != RateLimited {
		t.Fatalf("decision %v, want RateLimited by the control-point bucket", d)
	}
	if apiSlots.InFlight() != 0 {
		t.Fatalf("the API's concurrency slot leaked: %d in flight", apiSlots.InFlight())
	}
}

func TestAdmitAndDoneDoNotAllocate(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
	cp.API("GET /a").AttachTap(actuators.NewRecorder(0))
	cp.API(AllAPIs).AttachTap(actuators.NewRecorder(0))
	cp.API("GET /a").AttachLimiter(&Limiter{Bucket: actuators.NewTokenBucket(1e12, 1e12, 0)})
	allocs := testing.AllocsPerRun(1000, func() {
		tk, _ := cp.Admit("GET /a")
		tk.Done(true)
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per Admit+Done, want 0", allocs)
	}
}

func TestConcurrentAdmitAttachDetach(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tk, d := cp.Admit("GET /a")
				if d == Accepted {
					tk.Done(true)
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		detach := cp.API("GET /a").AttachLimiter(&Limiter{Concurrency: actuators.NewConcurrencyLimiter(3)})
		undo := cp.API("GET /a").AttachTap(actuators.NewRecorder(0))
		detach()
		undo()
	}
	close(stop)
	wg.Wait()
}

// TestRefusalsAtAFullLimitAreCountedApart checks Limiter.Full: a request
// its concurrency limit refused with every slot taken counts there; one
// refused at the unanswered APIs' quarter while the limit has room does
// not, nor does a refusal by another limiter of the same request.
func TestRefusalsAtAFullLimitAreCountedApart(t *testing.T) {
	now := int64(0)
	cp, l, _ := sharedLimitRig(&now)
	browse, pay := cp.API("browse"), cp.API("pay")
	// browse has a limit of its own, never full here.
	own := &Limiter{Concurrency: actuators.NewConcurrencyLimiter(100)}
	browse.AttachLimiter(own)
	// pay's clients give up: it turns unanswered, held to a quarter.
	p, _ := pay.Admit()
	now += 2e9
	p.Abandon()
	b, _ := browse.Admit()
	b.Done(true)
	l.Concurrency.Rebalance(true, 1)
	admitAll(t, pay, 2, "pay, under a quarter of the limit")
	if _, d := pay.Admit(); d != ConcurrencyLimited {
		t.Fatalf("pay beyond its quarter: %v, want ConcurrencyLimited", d)
	}
	if got := l.Full.Load(); got != 0 {
		t.Fatalf("after a refusal at the quarter: %d counted full, want 0", got)
	}
	admitAll(t, browse, 8, "browse, under the limit")
	if _, d := browse.Admit(); d != ConcurrencyLimited {
		t.Fatalf("browse beyond the limit: %v, want ConcurrencyLimited", d)
	}
	if got, ownGot := l.Full.Load(), own.Full.Load(); got != 1 || ownGot != 0 {
		t.Fatalf("after a refusal at the full shared limit: %d counted full there and %d at browse's own, want 1 and 0", got, ownGot)
	}
}
