package testbed

import (
	"context"
	"fmt"

	"github.com/spillway-dev/spillway/engine"
)

// SimConfig describes one simulated run.
type SimConfig struct {
	App      App
	Scenario Scenario
	Policy   Policy
	// Virtual selects the discrete-event driver: virtual time, as fast as
	// the CPU allows, deterministic for a seed. Otherwise the app runs
	// live on loopback in real time.
	Virtual bool
	// Seed fixes the arrivals (both drivers) and the service times
	// (virtual driver) of every API.
	Seed uint64
	// OnSecond, if not nil, is called once per second of the run, in
	// order, with that second's totals: in the virtual driver once the
	// second is final, in the live one shortly after it ends (see Run).
	OnSecond func(SecondStats)
	// OnEngine, if not nil, is called with the run's engine once it has
	// started, before any request (the RL bridge serves it).
	OnEngine func(*engine.Engine)
	// Lockstep, in the virtual driver, pauses the run at every tick of a
	// policy with an RLActuator until the agent steps it.
	Lockstep *Lockstep
	// MaxRequests bounds the requests the scenario may offer, retries
	// counted (Scenario.Requests); 0 takes DefaultMaxRequests.
	MaxRequests float64
}

// DefaultMaxRequests is how many requests a run may offer unless
// SimConfig.MaxRequests says otherwise. The simulator's time and memory
// grow with every request: the suite's largest cell, huge-capacity's
// retry storm (50,000 requests a second), counts 19 million and takes 8 s
// under default; 54.5 million (200,000 a second, steady, no policy, every
// request waiting for its client's timeout) took 40 s and 2.7 GB; and an
// app file of 100,000 workers at 10 µs ran for minutes without end.
const DefaultMaxRequests = 50e6

// CheckRequests reports an error if scenario s on app offers more than
// budget requests (Scenario.Requests; 0 takes DefaultMaxRequests).
func CheckRequests(app App, s Scenario, budget float64) error {
	if budget == 0 {
		budget = DefaultMaxRequests
	}
	if n := s.Requests(); !(n <= budget) {
		return fmt.Errorf("scenario %s on app %s offers about %.3g requests (retries counted), over the budget of %.3g a run: the simulator's time and memory grow with every request; scale the app's capacity down (fewer workers, or longer service times) or raise the budget (--max-requests)",
			s.Name, app.Name, n, budget)
	}
	return nil
}

// Simulate runs cfg.App through cfg.Scenario under cfg.Policy and reports
// what happened. Both drivers run the real engine, with the policy's
// templates as written, or instantiated per API (InstantiatePolicy) if the
// policy says PerAPI.
func Simulate(ctx context.Context, cfg SimConfig) (Report, error) {
	if err := cfg.App.Validate(); err != nil {
		return Report{}, fmt.Errorf("app %s: %w", cfg.App.Name, err)
	}
	if err := cfg.Scenario.validate(cfg.App); err != nil {
		return Report{}, err
	}
	if err := CheckRequests(cfg.App, cfg.Scenario, cfg.MaxRequests); err != nil {
		return Report{}, err
	}
	if cfg.Scenario.Retries > 0 && !cfg.Virtual {
		return Report{}, fmt.Errorf("scenario %s: client retries need the virtual driver (--virtual)", cfg.Scenario.Name)
	}
	if n := cfg.Scenario.liveUsers(); n > MaxLiveUsers && !cfg.Virtual {
		return Report{}, fmt.Errorf("scenario %s: %d closed-loop users, over the live load generator's %d; shorten the think time or run it in virtual time (--virtual)", cfg.Scenario.Name, n, MaxLiveUsers)
	}
	if cfg.Policy.Dagor && !cfg.Virtual {
		return Report{}, fmt.Errorf("policy %s sheds inside the app's services, which only the virtual driver models (--virtual)", cfg.Policy.Name)
	}
	var specs []engine.Spec
	switch {
	case cfg.Policy.Static:
		rates, err := staticRates(cfg.App, cfg.Scenario, 0, cfg.Policy.Optimal)
		if err != nil {
			return Report{}, err
		}
		specs = staticSpecs(cfg.App, rates)
	case len(cfg.Policy.Templates) > 0 && !cfg.Policy.PerAPI:
		specs = cfg.Policy.Templates
	case len(cfg.Policy.Templates) > 0:
		var err error
		if specs, err = InstantiatePolicy(cfg.Policy.Templates, cfg.App); err != nil {
			return Report{}, err
		}
	}
	driver := "live"
	var rt *runTally
	var err error
	if cfg.Virtual {
		driver = "virtual"
		var v *virtualRun
		v = newVirtualRun(cfg.App, cfg.Scenario, cfg.Policy, specs, cfg.Seed, func(t int) {
			if cfg.OnSecond != nil {
				cfg.OnSecond(v.tally.second(t))
			}
		})
		v.onEngine, v.lockstep = cfg.OnEngine, cfg.Lockstep
		err = v.run(ctx)
		rt = v.tally
	} else {
		if cfg.Lockstep != nil {
			return Report{}, fmt.Errorf("lock step needs the virtual driver")
		}
		rt, err = runLive(ctx, cfg, specs)
	}
	if err != nil {
		return Report{}, err
	}
	return rt.report(cfg.Policy.Label(), driver, cfg.Seed), nil
}
