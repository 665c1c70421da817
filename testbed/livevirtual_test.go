//go:build !race

// A live run times real servers; under the race detector it would time
// the detector. scripts/test runs this without it, after the race run.

package testbed

import (
	"context"
	"math"
	"testing"
	"time"
)

// The virtual driver is the model the suite's figures come from; the live
// driver runs the same app on loopback HTTP servers in real time, as a
// user's service runs. On two-tier at 4× (steady) and in a surge from 0.5×
// to 4× and back, the default policy's goodput ÷ proportional must agree
// between them within 0.1 (live 0.99–1.00 against virtual 1.00 on a quiet
// machine), and so in steady under closed-loop users thinking 100 ms (128
// users at 4×; 1.00 both). Run one after the other, so that the live run
// has the CPU.
func TestDefaultPolicyLiveAgreesWithVirtual(t *testing.T) {
	app, err := BuiltinApp("two-tier")
	if err != nil {
		t.Fatal(err)
	}
	pol := defaultPolicy(t)
	for _, tt := range []struct {
		scenario string
		think    time.Duration
	}{{"steady", 0}, {"surge", 0}, {"steady", 100 * time.Millisecond}} {
		name := tt.scenario
		if tt.think > 0 {
			name += "/closed-loop"
		}
		t.Run(name, func(t *testing.T) {
			sc, err := NewScenario(tt.scenario, app, ScenarioOptions{Warmup: 5 * time.Second, Duration: 15 * time.Second, Think: tt.think})
			if err != nil {
				t.Fatal(err)
			}
			reports := map[bool]Report{}
			for _, virtual := range []bool{true, false} {
				r, err := Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Policy: pol, Virtual: virtual, Seed: 1})
				if err != nil {
					t.Fatal(err)
				}
				checkReport(t, r)
				reports[virtual] = r
			}
			live, virtual := reports[false], reports[true]
			t.Logf("goodput ÷ proportional: live %.3f, virtual %.3f; p99 live %.1f ms, virtual %.1f ms",
				live.GoodputPerProportional, virtual.GoodputPerProportional, live.P99Ms, virtual.P99Ms)
			if live.Driver != "live" || virtual.Driver != "virtual" {
				t.Fatalf("drivers %q and %q, want live and virtual", live.Driver, virtual.Driver)
			}
			if d := math.Abs(live.GoodputPerProportional - virtual.GoodputPerProportional); !(d <= 0.1) {
				t.Errorf("goodput ÷ proportional live %.3f, virtual %.3f: %.3f apart, want ≤ 0.1",
					live.GoodputPerProportional, virtual.GoodputPerProportional, d)
			}
		})
	}
}
