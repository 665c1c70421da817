package testbed

import "fmt"

// The default policy's goals, per run. Every scenario's steady half (its
// last half) keeps:
//
//   - ≥ 0.9 of the proportional share in total, or, where the app's own
//     service-time variance keeps even the proportional oracle below 0.9,
//     ≥ 0.95 of what the oracle keeps;
//   - ≥ 0.7 of its share for every API;
//   - every API's p99 within its SLO.
//
// Where the oracle itself keeps an API below 0.7 of its share or misses its
// SLO at the fair share, the miss is the app's and counts as infeasible.
//
// A cold start keeps ≥ 0.7 of the proportional share over its first 10 s,
// and from its second 3 on no second's p99 passes 3 × the SLO. After a surge
// (0.5× → 4×), p99 is back within the SLO in ≤ 3 s.
const (
	goalSteadyTotal    = 0.9
	goalOracleFraction = 0.95
	goalSteadyPerAPI   = 0.7
	goalColdStartShare = 0.7
	goalColdStartP99   = 3.0
	goalColdStartFrom  = 3
	goalSurgeRecoveryS = 3.0
)

// Goal names, in the order GoalMisses checks them.
const (
	GoalSteadyTotal   = "steady total ≥ 0.9 of proportional"
	GoalSteadyPerAPI  = "every API ≥ 0.7 of its share"
	GoalSteadyP99     = "every API's steady p99 ≤ SLO"
	GoalColdStartRate = "cold start: first 10 s ≥ 0.7 of proportional"
	GoalColdStartP99  = "cold start: p99 ≤ 3 × SLO from second 3"
	GoalSurgeRecovery = "surge: p99 within SLO in ≤ 3 s"
)

// Goals lists the goal names in order.
var Goals = []string{GoalSteadyTotal, GoalSteadyPerAPI, GoalSteadyP99, GoalColdStartRate, GoalColdStartP99, GoalSurgeRecovery}

// goalApplies reports whether a scenario's runs are checked against goal:
// the cold-start goals on cold starts, the surge goal on surges, the steady
// goals everywhere.
func goalApplies(goal, scenario string) bool {
	switch goal {
	case GoalColdStartRate, GoalColdStartP99:
		return scenario == "cold-start"
	case GoalSurgeRecovery:
		return scenario == "surge"
	}
	return true
}

// GoalMiss is one goal a run misses. Infeasible is set when the
// proportional oracle misses it too on the same cell: the same API's share
// or steady p99, any second of a cold start, or the surge's recovery.
type GoalMiss struct {
	Goal       string
	Detail     string
	Infeasible bool
}

// GoalMisses checks r against the default policy's goals. oracle, if not
// nil, is the proportional oracle's run on the same app and scenario: it
// relaxes the total goal where variance keeps the oracle below 0.9, and
// marks a latency miss infeasible where the oracle misses it too.
func GoalMisses(r Report, oracle *Report) []GoalMiss {
	var misses []GoalMiss
	miss := func(goal, format string, args ...any) {
		misses = append(misses, GoalMiss{Goal: goal, Detail: fmt.Sprintf(format, args...)})
	}
	want := goalSteadyTotal
	if oracle != nil && oracle.Steady.GoodputRatio < goalSteadyTotal {
		want = goalOracleFraction * oracle.Steady.GoodputRatio
	}
	if got := r.Steady.GoodputRatio; got < want {
		miss(GoalSteadyTotal, "steady goodput %.2f of proportional, want ≥ %.2f", got, want)
	}
	for _, name := range r.APIs {
		api := r.PerAPI[name]
		if api.Steady.ProportionalRPS > 0 && api.Steady.GoodputRatio < goalSteadyPerAPI {
			miss(GoalSteadyPerAPI, "%s: steady goodput %.2f of its share, want ≥ %.1f", name, api.Steady.GoodputRatio, goalSteadyPerAPI)
			if oracle != nil {
				o := oracle.PerAPI[name].Steady.GoodputRatio
				misses[len(misses)-1].Infeasible = o < goalSteadyPerAPI
				misses[len(misses)-1].Detail += fmt.Sprintf(" (oracle %.2f)", o)
			}
		}
	}
	for _, name := range r.APIs {
		api := r.PerAPI[name]
		if api.Steady.P99Ms > api.SLOMs {
			miss(GoalSteadyP99, "%s: steady p99 %.0f ms over its %.0f ms SLO", name, api.Steady.P99Ms, api.SLOMs)
			if oracle != nil {
				o := oracle.PerAPI[name]
				misses[len(misses)-1].Infeasible = o.Steady.P99Ms > o.SLOMs
			}
		}
	}
	if goalApplies(GoalColdStartRate, r.Scenario) {
		var goodput, share float64
		for _, s := range r.Seconds {
			if s.T >= 0 && s.T < 10 {
				goodput += float64(s.Goodput)
				share += s.CapacityRPS
			}
		}
		if got := goodput / share; share > 0 && got < goalColdStartShare {
			miss(GoalColdStartRate, "first 10 s of a cold start: goodput %.2f of proportional, want ≥ %.1f", got, goalColdStartShare)
		}
		over := func(s SecondStats) bool { return s.T >= goalColdStartFrom && s.MaxAPIP99OverSLO > goalColdStartP99 }
		oracleOver := false
		if oracle != nil {
			for _, s := range oracle.Seconds {
				oracleOver = oracleOver || over(s)
			}
		}
		for _, s := range r.Seconds {
			if over(s) {
				miss(GoalColdStartP99, "cold start, second %d: p99 %.1f × the SLO, want ≤ %g", s.T, s.MaxAPIP99OverSLO, goalColdStartP99)
				misses[len(misses)-1].Infeasible = oracleOver
			}
		}
	}
	late := func(r Report) bool { return r.RecoveryS == nil || *r.RecoveryS > goalSurgeRecoveryS }
	if goalApplies(GoalSurgeRecovery, r.Scenario) && late(r) {
		miss(GoalSurgeRecovery, "surge: p99 back within the SLO after %s, want ≤ %g s", fmtRecoveryS(r.RecoveryS), goalSurgeRecoveryS)
		misses[len(misses)-1].Infeasible = oracle != nil && late(*oracle)
	}
	return misses
}

func fmtRecoveryS(v *float64) string {
	if v == nil {
		return "never"
	}
	return fmt.Sprintf("%g s", *v)
}
