package testbed

import (
	"context"
	"fmt"
	"testing"
)

// The default policy's goals, asserted on a small deterministic part of the
// suite (docs/suite.md has the whole): apps whose APIs differ 20× in cost
// at one bottleneck, cross two bottlenecks, or chain through shared
// services, each in steady overload, a surge and a cold start, run as
// written (one controller for every API), in virtual time.
//
//   - the steady half keeps ≥ 0.9 of the proportional share in total and
//     ≥ 0.7 of its share for every API, with every API's p99 within its SLO;
//   - a cold start keeps ≥ 0.7 of the proportional share over its first
//     10 s, and from its second 3 on no second's p99 passes 3 × the SLO;
//   - after the surge (0.5× → 4×) p99 is back within the SLO in ≤ 3 s.
func TestDefaultPolicyMeetsItsGoals(t *testing.T) {
	templates := loadPolicy(t, "../policies/default.cue")
	for _, appName := range []string{"hetero-cost", "multi-bottleneck", "boutique"} {
		app, err := BuiltinApp(appName)
		if err != nil {
			t.Fatal(err)
		}
		for _, scenario := range []string{"steady", "surge", "cold-start"} {
			t.Run(appName+"/"+scenario, func(t *testing.T) {
				t.Parallel()
				sc, err := NewScenario(scenario, app, ScenarioOptions{})
				if err != nil {
					t.Fatal(err)
				}
				r, err := Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Virtual: true, Seed: 1,
					Policy: Policy{Name: "default", Templates: templates}})
				if err != nil {
					t.Fatal(err)
				}
				var problems []string
				if got := r.Steady.GoodputRatio; got < 0.9 {
					problems = append(problems, fmt.Sprintf("steady goodput %.2f of proportional, want ≥ 0.9", got))
				}
				for _, name := range r.APIs {
					api := r.PerAPI[name]
					if got := api.Steady.GoodputRatio; got < 0.7 {
						problems = append(problems, fmt.Sprintf("%s: steady goodput %.2f of its share, want ≥ 0.7", name, got))
					}
					if api.Steady.P99Ms > api.SLOMs {
						problems = append(problems, fmt.Sprintf("%s: steady p99 %.0f ms over its %.0f ms SLO", name, api.Steady.P99Ms, api.SLOMs))
					}
				}
				if scenario == "surge" && (r.RecoveryS == nil || *r.RecoveryS > 3) {
					problems = append(problems, fmt.Sprintf("surge: p99 back within the SLO after %s, want ≤ 3 s", fmtRecoveryS(r.RecoveryS)))
				}
				if scenario == "cold-start" {
					for _, s := range r.Seconds {
						if s.T >= 3 && s.MaxAPIP99OverSLO > 3 {
							problems = append(problems, fmt.Sprintf("cold start, second %d: p99 %.1f × the SLO, want ≤ 3", s.T, s.MaxAPIP99OverSLO))
						}
					}
					var goodput, share float64
					for _, s := range r.Seconds {
						if s.T >= 0 && s.T < 10 {
							goodput += float64(s.Goodput)
							share += s.CapacityRPS
						}
					}
					if got := goodput / share; got < 0.7 {
						problems = append(problems, fmt.Sprintf("first 10 s of a cold start: goodput %.2f of proportional, want ≥ 0.7", got))
					}
				}
				for _, p := range problems {
					t.Error(p)
				}
			})
		}
	}
}

func fmtRecoveryS(v *float64) string {
	if v == nil {
		return "never"
	}
	return fmt.Sprintf("%g s", *v)
}
