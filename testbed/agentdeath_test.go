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
	t.Parallel() // virtual time: the machine's load cannot change what it asserts
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
