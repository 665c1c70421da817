package engine_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
)

// TestPeerPoliciesLimitConcurrency runs each shipped peer policy (Gradient2,
// Vegas, Envoy gradient) on a virtual clock: after the first tick the
// control point admits exactly the controller's initial limit in flight
// (Netflix's initial_limit 20, Envoy's min_concurrency 3), and a tick of
// fast completions moves the limit as the published formula says.
func TestPeerPoliciesLimitConcurrency(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file, policy string
		interval     time.Duration
		first        float64 // the limit after tick 1
		second       float64 // after a tick of 10 ms completions that ends with the limit in flight
	}{
		// Gradient2: the first sample gives 0.8·20 + 0.2·(20·1 + 4) = 20.8.
		{"../policies/gradient2.cue", "ingress-gradient2", 500 * time.Millisecond, 20, 20},
		// Vegas: the first sample only sets rttNoLoad; the second (same RTT, queue 0) adds beta 6.
		{"../policies/vegas.cue", "ingress-vegas", 500 * time.Millisecond, 20, 26},
		// Envoy: pinned at min_concurrency while the first 50 requests are sampled.
		{"../policies/envoy-gradient.cue", "ingress-envoy-gradient", 100 * time.Millisecond, 3, 3},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			specs, diags := engine.LoadFiles([]string{tc.file})
			if len(diags.Errors()) > 0 || len(specs) != 1 {
				t.Fatalf("load: %d specs, %v", len(specs), diags)
			}
			var clock atomic.Int64
			eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, ManualTicks: true, Clock: clock.Load})
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			ingress := eng.ControlPoints().Get("ingress")
			// admit admits up to n requests at once.
			admit := func(n int) []controlpoint.Ticket {
				var tickets []controlpoint.Ticket
				for range n {
					if tk, d := ingress.Admit(""); d == controlpoint.Accepted {
						tickets = append(tickets, tk)
					}
				}
				return tickets
			}
			// serve admits up to n requests at once, finishes them after 10 ms
			// and reports how many were admitted.
			serve := func(n int) int {
				tickets := admit(n)
				clock.Add(int64(10 * time.Millisecond))
				for _, tk := range tickets {
					tk.Done(true)
				}
				return len(tickets)
			}
			limit := func() float64 {
				t.Helper()
				v, err := eng.Signal(tc.policy, "LIMIT")
				if err != nil {
					t.Fatal(err)
				}
				return v
			}

			serve(30)
			clock.Store(int64(tc.interval))
			eng.Tick()
			if got := limit(); got != tc.first {
				t.Fatalf("tick 1: LIMIT = %v, want %v", got, tc.first)
			}
			if got := serve(100); got != int(tc.first) {
				t.Errorf("after tick 1 admitted %d of 100 at once, want the limit %v", got, tc.first)
			}
			// A full limit in flight at the end of the tick: not app-limited.
			held := admit(100)
			clock.Store(int64(2 * tc.interval))
			eng.Tick()
			for _, tk := range held {
				tk.Done(true)
			}
			if got := limit(); got != tc.second {
				t.Errorf("tick 2: LIMIT = %v, want %v", got, tc.second)
			}
		})
	}
}
