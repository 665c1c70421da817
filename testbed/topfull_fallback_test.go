//go:build !race

// The virtual driver runs the engine on one goroutine (manual ticks, no
// watcher, no Redis), so the race detector has nothing to check in these
// simulations and makes them about 15× slower. scripts/test runs them,
// at full length, without it.

package testbed

import (
	"context"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// TestTopFullWithoutAgentProtectsFromTheFirstSecond runs the topfull
// policy on a cold start (3× capacity from the first second) with no agent
// at all. Every API is on its fallback from the first tick (not on the
// initial rate, and not fail-open through a warm-up as the latency-AIMD
// fallback is for 60 s), and the fallback, the SLO concurrency limit,
// holds every second's p99 within 3× the SLO from the second tick on and
// reaches ≥ 0.8 of the proportional share by t = 10 s. At TopFull's 1 s
// ticks the first second passes before the first tick, and the slow start
// takes about 10 ticks; the default policy ticks every 100 ms.
func TestTopFullWithoutAgentProtectsFromTheFirstSecond(t *testing.T) {
	for _, app := range []App{mustBuiltin("two-tier"), Boutique(), mustBuiltin("hetero-cost")} {
		sc, err := NewScenario("cold-start", app, ScenarioOptions{Duration: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		p, err := TopFullPolicy(app)
		if err != nil {
			t.Fatal(err)
		}
		var eng *engine.Engine
		onAgent := 0
		cfg := SimConfig{App: app, Scenario: sc, Policy: p, Virtual: true, Seed: 3,
			OnEngine: func(e *engine.Engine) { eng = e },
			OnSecond: func(SecondStats) {
				for _, a := range eng.AgentAPIs() {
					if a.Mode() != "fallback" {
						onAgent++
					}
				}
			}}
		r, err := Simulate(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if onAgent != 0 {
			t.Errorf("%s: %d API-seconds in agent mode without an agent, want 0", app.Name, onAgent)
		}
		var maxSLO float64
		for _, a := range r.PerAPI {
			maxSLO = max(maxSLO, a.SLOMs)
		}
		var first, firstShare, late, lateShare float64
		for _, s := range r.Seconds {
			switch {
			case s.T < 0:
			case s.T < 10:
				first += float64(s.Goodput)
				firstShare += s.CapacityRPS
			default:
				late += float64(s.Goodput)
				lateShare += s.CapacityRPS
			}
			if s.T >= 2 && s.P99Ms > 3*maxSLO {
				t.Errorf("%s: second %d: p99 %.0f ms, want ≤ 3 × the SLO (%.0f ms)", app.Name, s.T, s.P99Ms, 3*maxSLO)
			}
		}
		t.Logf("%s, no agent: goodput ÷ proportional %.2f over seconds 0–9, %.2f over 10–19", app.Name, first/firstShare, late/lateShare)
		if got := late / lateShare; got < 0.8 {
			t.Errorf("%s: seconds 10–19 of a cold start without an agent: goodput %.2f of proportional, want ≥ 0.8", app.Name, got)
		}
	}
}
