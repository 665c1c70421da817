package testbed

import (
	"context"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// TestAgentDeathFallsBackAndKeepsGoodput drives boutique at twice its
// capacity under the topfull policy with a scripted agent in lock step. The
// agent sets every API to 95 % of its capacity share each tick, then dies
// (stops stepping) at t = 20 s of the overload. Within agent_timeout (5)
// ticks every API must be on its fallback (the SLO concurrency limit), and goodput must
// stay at 80 % or more of what the agent achieved.
func TestAgentDeathFallsBackAndKeepsGoodput(t *testing.T) {
	app := Boutique()
	sc, err := NewScenario("steady", app, ScenarioOptions{Duration: 60 * time.Second, Load: 2})
	if err != nil {
		t.Fatal(err)
	}
	p, err := TopFullPolicy(app)
	if err != nil {
		t.Fatal(err)
	}
	const deathT = 20 // seconds into the overload
	deathTick := int(sc.Warmup/time.Second) + deathT
	goodput := map[int]int{}
	modes := map[int][]string{} // by second, after its last tick
	var eng *engine.Engine
	cfg := SimConfig{App: app, Scenario: sc, Policy: p, Virtual: true, Seed: 7,
		OnEngine: func(e *engine.Engine) { eng = e },
		OnSecond: func(s SecondStats) {
			goodput[s.T] = s.Goodput
			for _, a := range eng.AgentAPIs() {
				modes[s.T] = append(modes[s.T], a.Mode())
			}
		}}
	srv := NewSimServer(1, 300*time.Millisecond, func(uint64) (SimConfig, error) { return cfg, nil })
	defer srv.Close()
	ctx := context.Background()
	seed := uint64(7)
	if err := srv.Reset(ctx, &seed); err != nil {
		t.Fatal(err)
	}
	backend := srv.Backend()
	shares := app.capacityShares(sc.ratesAt(sc.Warmup), app.workers())
	for tick := 1; tick < deathTick; tick++ {
		res, err := srv.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Done {
			t.Fatalf("the run ended at tick %d, before the agent died", tick)
		}
		for i, api := range app.APIs {
			if !backend.SetRate(api.Label(), 0.95*shares[i]) {
				t.Fatalf("SetRate(%s) refused", api.Label())
			}
		}
	}
	// The agent dies: nobody steps again, and the run goes on alone after
	// the grace.
	if _, err := srv.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	var before, after float64
	for s := deathT - 10; s < deathT; s++ {
		before += float64(goodput[s]) / 10
	}
	for s := deathT + 1; s < 60; s++ {
		after += float64(goodput[s]) / float64(60-deathT-1)
	}
	t.Logf("goodput %.0f/s with the agent (10 s before its death), %.0f/s after it (%.0f%%)", before, after, 100*after/before)
	if after < 0.8*before {
		t.Errorf("goodput on the fallback %.0f/s is below 80%% of the agent's %.0f/s", after, before)
	}
	// The second after the death still shows the agent's mode for at most
	// agent_timeout ticks.
	switched := -1
	for s := deathT - 1; s < 60; s++ {
		all := len(modes[s]) == len(app.APIs)
		for _, m := range modes[s] {
			all = all && m == "fallback"
		}
		if all {
			switched = s
			break
		}
	}
	if switched < 0 || switched > deathT+5 {
		t.Fatalf("every API on its fallback from second %d; want by second %d (agent_timeout 5 ticks after death at %d); modes %v", switched, deathT+5, deathT, modes[deathT+5])
	}
	for s := deathT - 10; s < deathT-1; s++ {
		for _, m := range modes[s] {
			if m != "agent" {
				t.Fatalf("second %d: mode %s while the agent was alive", s, m)
			}
		}
	}
}

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
