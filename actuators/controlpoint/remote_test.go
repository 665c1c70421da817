package controlpoint

import (
	"math"
	"testing"

	"github.com/spillway-dev/spillway/actuators"
)

// scriptedRemote answers with verdict and records the times it was asked.
type scriptedRemote struct {
	verdict RemoteVerdict
	asked   []int64
}

func (r *scriptedRemote) Decide(now int64) RemoteVerdict {
	r.asked = append(r.asked, now)
	return r.verdict
}

// TestRemoteDecidesFirst: a limiter with a Remote takes its answer; only
// a request the remote leaves unanswered is decided by the bucket, and is
// counted as a fallback. A stale setpoint is decided by the fail mode,
// without asking the remote.
func TestRemoteDecidesFirst(t *testing.T) {
	type counters struct{ allowed, rejected, wouldReject, failOpen, fallback uint64 }
	for _, c := range []struct {
		name          string
		verdict       RemoteVerdict
		bucketRate    float64 // the bucket's rate; its burst of 1 is spent when 0
		dryRun, stale bool
		want          Decision
		wantOutcome   Outcome
		wantCounts    counters
		wantAsked     int
	}{
		{name: "admitted by the remote, though the bucket is empty",
			verdict: RemoteAdmit, want: Accepted, wantOutcome: OutcomeAccepted, wantCounts: counters{allowed: 1}, wantAsked: 1},
		{name: "refused by the remote, though the bucket has tokens",
			verdict: RemoteReject, bucketRate: 1e9, want: RateLimited, wantOutcome: OutcomeRejected, wantCounts: counters{rejected: 1}, wantAsked: 1},
		{name: "refused by the remote in dry-run: would_reject",
			verdict: RemoteReject, dryRun: true, want: Accepted, wantOutcome: OutcomeWouldReject, wantCounts: counters{wouldReject: 1}, wantAsked: 1},
		{name: "no limit at the remote: passthrough",
			verdict: RemoteUnlimited, want: Accepted, wantOutcome: OutcomePassthrough, wantCounts: counters{failOpen: 1}, wantAsked: 1},
		{name: "unanswered, an empty bucket refuses",
			verdict: RemoteUnanswered, want: RateLimited, wantOutcome: OutcomeRejected, wantCounts: counters{rejected: 1, fallback: 1}, wantAsked: 1},
		{name: "unanswered, a bucket with tokens admits",
			verdict: RemoteUnanswered, bucketRate: 1e9, want: Accepted, wantOutcome: OutcomeAccepted, wantCounts: counters{allowed: 1, fallback: 1}, wantAsked: 1},
		{name: "unanswered, a bucket with no limit passes through",
			verdict: RemoteUnanswered, bucketRate: math.NaN(), want: Accepted, wantOutcome: OutcomePassthrough, wantCounts: counters{failOpen: 1, fallback: 1}, wantAsked: 1},
		{name: "stale: the fail mode decides, the remote is not asked",
			verdict: RemoteReject, stale: true, want: Accepted, wantOutcome: OutcomePassthrough, wantCounts: counters{failOpen: 1}, wantAsked: 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := &fakeClock{}
			cp := NewRegistry(clock.now).Get("ingress")
			remote := &scriptedRemote{verdict: c.verdict}
			l := &Limiter{Bucket: actuators.NewTokenBucket(c.bucketRate, 1, 0), Remote: remote}
			if c.bucketRate == 0 {
				l.Bucket.Allow(0)
			}
			l.DryRun.Store(c.dryRun)
			l.StaleAfter.Store(100)
			api := cp.Declare("GET /a")
			api.AttachLimiter(l)
			l.Stamp(0)
			clock.ns.Store(50)
			if c.stale {
				clock.ns.Store(101)
			}
			tk, d := cp.Admit("GET /a")
			tk.Done(true)
			if d != c.want {
				t.Fatalf("decision %v, want %v", d, c.want)
			}
			if n := api.Count(c.wantOutcome); n != 1 {
				t.Fatalf("outcome %v counted %d times, want 1", c.wantOutcome, n)
			}
			got := counters{l.Allowed.Load(), l.Rejected.Load(), l.WouldReject.Load(), l.FailOpen.Load(), l.RemoteFallback.Load()}
			if got != c.wantCounts {
				t.Fatalf("counters %+v, want %+v", got, c.wantCounts)
			}
			if len(remote.asked) != c.wantAsked || (c.wantAsked == 1 && remote.asked[0] != clock.ns.Load()) {
				t.Fatalf("the remote was asked at %v, want %d time(s) at the control point's now", remote.asked, c.wantAsked)
			}
		})
	}
}
