package controlpoint

import (
	"testing"

	"github.com/spillway-dev/spillway/actuators"
)

func TestStaleSetpointsApplyTheFailMode(t *testing.T) {
	const never = -1
	type counters struct{ allowed, rejected, wouldReject, failOpen, stale uint64 }
	for _, c := range []struct {
		name                     string
		concurrency              bool // a full concurrency limiter instead of an empty bucket
		staleAfter               int64
		failClosed, dryRun       bool
		attachAt, stampAt, nowNs int64 // stampAt never: no tick stamped it
		want                     Decision
		wantOutcome              Outcome
		wantCounts               counters
	}{
		{name: "StaleAfter 0 is never stale: the empty bucket rejects",
			staleAfter: 0, stampAt: never, nowNs: 1e15,
			want: RateLimited, wantOutcome: OutcomeRejected, wantCounts: counters{rejected: 1}},
		{name: "exactly StaleAfter after the stamp is still fresh",
			staleAfter: 100, stampAt: 50, nowNs: 150,
			want: RateLimited, wantOutcome: OutcomeRejected, wantCounts: counters{rejected: 1}},
		{name: "stale fail-open admits as passthrough",
			staleAfter: 100, stampAt: 50, nowNs: 151,
			want: Accepted, wantOutcome: OutcomePassthrough, wantCounts: counters{failOpen: 1, stale: 1}},
		{name: "stale fail-closed rejects",
			staleAfter: 100, failClosed: true, stampAt: 50, nowNs: 151,
			want: RateLimited, wantOutcome: OutcomeRejected, wantCounts: counters{rejected: 1, stale: 1}},
		{name: "stale fail-closed in dry-run admits as would_reject",
			staleAfter: 100, failClosed: true, dryRun: true, stampAt: 50, nowNs: 151,
			want: Accepted, wantOutcome: OutcomeWouldReject, wantCounts: counters{wouldReject: 1, stale: 1}},
		{name: "stale fail-open in dry-run is still passthrough",
			staleAfter: 100, dryRun: true, stampAt: 50, nowNs: 151,
			want: Accepted, wantOutcome: OutcomePassthrough, wantCounts: counters{failOpen: 1, stale: 1}},
		{name: "a fresh stamp resets staleness",
			staleAfter: 100, failClosed: true, stampAt: 1000, nowNs: 1050,
			want: RateLimited, wantOutcome: OutcomeRejected, wantCounts: counters{rejected: 1}},
		{name: "never ticked: fresh until StaleAfter after the attachment",
			staleAfter: 100, failClosed: true, attachAt: 1000, stampAt: never, nowNs: 1100,
			want: RateLimited, wantOutcome: OutcomeRejected, wantCounts: counters{rejected: 1}},
		{name: "never ticked: stale StaleAfter after the attachment",
			staleAfter: 100, attachAt: 1000, stampAt: never, nowNs: 1101,
			want: Accepted, wantOutcome: OutcomePassthrough, wantCounts: counters{failOpen: 1, stale: 1}},
		{name: "a stale fail-closed concurrency limiter rejects as a concurrency limit",
			concurrency: true, staleAfter: 100, failClosed: true, stampAt: 0, nowNs: 101,
			want: ConcurrencyLimited, wantOutcome: OutcomeRejected, wantCounts: counters{rejected: 1, stale: 1}},
		{name: "a stale fail-open concurrency limiter still counts its request in flight",
			concurrency: true, staleAfter: 100, stampAt: 0, nowNs: 101,
			want: Accepted, wantOutcome: OutcomePassthrough, wantCounts: counters{failOpen: 1, stale: 1}},
		{name: "a fresh concurrency limiter takes a slot",
			concurrency: true, staleAfter: 100, stampAt: 0, nowNs: 100,
			want: Accepted, wantOutcome: OutcomeAccepted, wantCounts: counters{allowed: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := &fakeClock{}
			cp := NewRegistry(clock.now).Get("ingress")
			l := &Limiter{}
			if c.concurrency {
				// One slot, taken below unless the case wants it free.
				l.Concurrency = actuators.NewConcurrencyLimiter(1)
			} else {
				l.Bucket = actuators.NewTokenBucket(0, 1, 0)
				l.Bucket.Allow(0) // spend the burst: the bucket is empty
			}
			l.StaleAfter.Store(c.staleAfter)
			l.FailClosed.Store(c.failClosed)
			l.DryRun.Store(c.dryRun)
			clock.ns.Store(c.attachAt)
			api := cp.Declare("GET /a")
			api.AttachLimiter(l)
			if c.stampAt != never {
				l.Stamp(c.stampAt)
			}
			if c.concurrency && c.want != Accepted {
				l.Concurrency.TryAcquire()
			}
			clock.ns.Store(c.nowNs)
			tk, d := cp.Admit("GET /a")
			if d != c.want {
				t.Fatalf("decision %v, want %v", d, c.want)
			}
			if c.concurrency && d == Accepted {
				// Every admitted request holds a slot, whatever decided it.
				if n := l.Concurrency.InFlight(); n != 1 {
					t.Fatalf("%v slots held, want 1", n)
				}
			}
			tk.Done(true)
			if c.concurrency && d == Accepted && l.Concurrency.InFlight() != 0 {
				t.Fatalf("%v slots held after Done, want 0", l.Concurrency.InFlight())
			}
			if n := api.Count(c.wantOutcome); n != 1 {
				t.Fatalf("outcome %v counted %d times, want 1", c.wantOutcome, n)
			}
			got := counters{l.Allowed.Load(), l.Rejected.Load(), l.WouldReject.Load(), l.FailOpen.Load(), l.Stale.Load()}
			if got != c.wantCounts {
				t.Fatalf("limiter counters %+v, want %+v", got, c.wantCounts)
			}
		})
	}
}

func TestAttachKeepsAnEarlierStamp(t *testing.T) {
	clock := &fakeClock{}
	cp := NewRegistry(clock.now).Get("ingress")
	l := &Limiter{Bucket: actuators.NewTokenBucket(1, 1, 0)}
	l.Stamp(40)
	clock.ns.Store(900)
	cp.Declare("GET /a").AttachLimiter(l)
	if l.StampNs() != 40 {
		t.Fatalf("stamp %d after attaching, want the tick's 40", l.StampNs())
	}
}

func TestAdmitWithStalenessDoesNotAllocate(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
	l := &Limiter{Bucket: actuators.NewTokenBucket(1e12, 1e12, 0)}
	l.StaleAfter.Store(1e9)
	cp.API("GET /a").AttachLimiter(l)
	if allocs := testing.AllocsPerRun(1000, func() {
		tk, _ := cp.Admit("GET /a")
		tk.Done(true)
	}); allocs != 0 {
		t.Fatalf("%v allocs per Admit+Done, want 0", allocs)
	}
}
