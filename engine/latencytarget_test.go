package engine_test

import (
	"math"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
)

// The shipped example compiles, and its only loop is the blueprint's burst
// latch (BURST is bucket.tokens on the first tick, bucket.max after).
func TestLatencyTargetExamplePolicyCompiles(t *testing.T) {
	specs, diags := engine.LoadFiles([]string{"../policies/latency-target.cue"})
	if len(diags.Errors()) > 0 || len(specs) != 1 {
		t.Fatalf("load: %d specs, %v", len(specs), diags)
	}
	c, diags := engine.Compile(specs[0])
	if diags != nil {
		t.Fatal(diags)
	}
	if len(c.Delayed) != 1 || c.Delayed[0].Signal != "BUCKET_MAX" {
		t.Fatalf("delayed edges %v, want BUCKET_MAX only", c.Delayed)
	}
}

const latencyTargetPolicy = `
package lt

import "spillway.dev/blueprints/latencytarget"

policies: lt: latencytarget.#Policy & {
	config: {
		policy_name: "lt"
		flux_meter: selector: control_point: "ingress"
		target_latency: "100ms"
	}
}
`

// TestLatencyTargetBlueprint drives the blueprint through the engine on a
// virtual clock: the seed's bucket {tokens 100, max 5000, rate 10} becomes a
// bucket that starts with 100 tokens and is not refilled to 5000, and a
// tick with failed requests is an overload even when latency is low.
func TestLatencyTargetBlueprint(t *testing.T) {
	eng, clock := startManual(t, "lt.cue", latencyTargetPolicy)
	ingress := eng.ControlPoints().Get("ingress")
	at := func(d time.Duration) { clock.Store(int64(d)) }
	// serve admits n requests now, finishes the admitted ones after latency
	// (failed when !ok) and reports how many were admitted.
	serve := func(n int, latency time.Duration, ok bool) int {
		var tickets []controlpoint.Ticket
		for range n {
			if tk, d := ingress.Admit(""); d == controlpoint.Accepted {
				tickets = append(tickets, tk)
			}
		}
		clock.Add(int64(latency))
		for _, tk := range tickets {
			tk.Done(ok)
		}
		return len(tickets)
	}
	signal := func(name string) float64 {
		t.Helper()
		v, err := eng.Signal("lt", name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 0.02*want } // histogram error ≤ 2 %

	// Tick 1: before it the bucket is unlimited. 100 requests at 20 ms:
	// smoothed = 0.7·100 + 0.3·20 = 76 ms, err −0.24, so the rate rises by
	// |−0.24 + 0.1|·2 = 0.28 from the seed's 10 req/s.
	if got := serve(100, 20*time.Millisecond, true); got != 100 {
		t.Fatalf("before the first tick admitted %d of 100, want all (no limit yet)", got)
	}
	at(500 * time.Millisecond)
	eng.Tick()
	if got := signal("LATENCY_SMOOTHED"); !near(got, 76) {
		t.Errorf("tick 1: LATENCY_SMOOTHED = %v, want 76 ± 2 %%", got)
	}
	rate1 := signal("RATE_LIMIT")
	if rate1 <= 10 || rate1 > 10.3 {
		t.Errorf("tick 1: RATE_LIMIT = %v, want 10.28 (10 + 0.28, ± histogram error)", rate1)
	}
	if got := signal("BURST"); got != 100 {
		t.Errorf("tick 1: BURST = %v, want bucket.tokens 100", got)
	}
	if got := signal("OVERLOAD_SEEN"); got != 0 {
		t.Errorf("tick 1: OVERLOAD_SEEN = %v, want 0", got)
	}

	// The bucket starts with bucket.tokens: 100 of 150 simultaneous requests
	// pass. They fail fast, which is an overload for tick 2.
	if got := serve(150, 10*time.Millisecond, false); got != 100 {
		t.Fatalf("after tick 1 admitted %d of 150, want bucket.tokens 100", got)
	}
	at(time.Second)
	eng.Tick()
	if got := signal("OVERLOAD_SEEN"); got != 1 {
		t.Errorf("tick 2: OVERLOAD_SEEN = %v, want 1 (every completed request failed)", got)
	}
	if got := signal("RATE_LIMIT"); got != rate1/1.2 {
		t.Errorf("tick 2: RATE_LIMIT = %v, want %v/1.2 (overload below target latency still decreases)", got, rate1)
	}
	if got := signal("BURST"); got != 5000 {
		t.Errorf("tick 2: BURST = %v, want bucket.max 5000", got)
	}
	// Raising the capacity to 5000 does not fill the bucket: about 0.5 s ×
	// 10.28 req/s = 5 tokens have accrued since it was emptied.
	if got := serve(50, 0, true); got < 4 || got > 6 {
		t.Errorf("after tick 2 admitted %d of 50, want about 5 (refilled at the rate, not to bucket.max)", got)
	}
}
