package engine

import (
	"math"
	"strings"
	"testing"
	"time"
)

// intervalPolicies is a file of two policies: "slow" at the given
// evaluation_interval (line 3), and "guard", which rejects everything at
// control point ingress and ticks every 20 ms.
func intervalPolicies(interval string) string {
	return `package p
policies: slow: {policy_name: "slow",
	evaluation_interval: "` + interval + `"
	components: [{Variable: {value: 1, out_ports: output: "V"}}]}
policies: guard: {policy_name: "guard", evaluation_interval: "20ms", components: [
	{Variable: {value: 0, out_ports: output: "RATE"}},
	{RateLimiter: {selector: {control_point: "ingress"}, in_ports: rate_limit: "RATE"}},
]}
`
}

// An evaluation_interval is at most Caps.MaxEvaluationInterval (1 h), and
// one outside the range is refused at the field, in the file and by
// Compile alike.
func TestEvaluationIntervalIsBoundedAtItsField(t *testing.T) {
	withLimits(t, EvalLimits{InProcess: true})
	cases := []struct {
		interval, want string // want "" loads
	}{
		{"1h", ""},
		{"1h0m0.000000001s", "evaluation_interval 1h0m0.000000001s is longer than the maximum 1h0m0s (engine.Caps.MaxEvaluationInterval)"},
		{"2562047h", "is longer than the maximum 1h0m0s"},
		{"3689348814741910324ns", "is longer than the maximum 1h0m0s"},
		{"9ms", "is shorter than the minimum 10ms"},
	}
	for _, tc := range cases {
		t.Run(tc.interval, func(t *testing.T) {
			specs, diags := LoadSource("p.cue", []byte(intervalPolicies(tc.interval)))
			if len(diags.Errors()) > 0 {
				t.Fatalf("load: %v", diags)
			}
			_, diags = compileAll(specs)
			if tc.want == "" {
				if len(diags.Errors()) > 0 {
					t.Fatalf("%v, want it loaded", diags)
				}
				return
			}
			errs := diags.Errors()
			if len(errs) != 1 || !strings.Contains(errs[0].Message, tc.want) {
				t.Fatalf("%v, want one error %q", diags, tc.want)
			}
			if p := errs[0].Pos; p != (Position{File: "p.cue", Line: 3, Col: 23}) {
				t.Fatalf("error at %v, want p.cue:3:23, the evaluation_interval field", p)
			}
		})
	}
}

// The scheduler's sums of an interval and the engine clock saturate: a
// policy whose next tick is beyond the clock's range (an interval above
// the cap, allowed here by raising it; or a virtual clock near its end)
// never makes the tick loop sleep for centuries, and the other policies
// keep ticking. Before, lastDue+interval wrapped to −9.2e18 once the engine
// had run 48 minutes, and deadline−now wrapped again into a 292-year timer.
func TestAHugeIntervalDoesNotStopTheOtherPolicies(t *testing.T) {
	withUncappedInterval(t)
	specs, diags := LoadSource("p.cue", []byte(intervalPolicies("2562047h")))
	if len(diags.Errors()) > 0 {
		t.Fatal(diags)
	}
	start := time.Now()
	const uptime = int64(48 * time.Minute)
	e, err := Start(t.Context(), Options{Specs: specs, Clock: func() int64 { return uptime + int64(time.Since(start)) }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	time.Sleep(500 * time.Millisecond)
	ticks := uint64(0)
	for _, ps := range e.Status().Policies {
		if ps.Name == "guard" {
			ticks = ps.Ticks
		}
	}
	if ticks < 3 {
		t.Fatalf("guard ticked %d times in 500 ms at a 20 ms interval: the tick loop is asleep", ticks)
	}
}

// StaleAfterTicks × the interval saturates: a setpoint never goes stale
// sooner because the interval is long. Before, 5 × 3689348814741910324 ns
// wrapped to 4 ns and a rate-0 limiter admitted everything.
func TestStalenessOfALongIntervalDoesNotWrap(t *testing.T) {
	withUncappedInterval(t)
	src := strings.Replace(limiterPolicy("wrap", "ingress"), `"20ms"`, `"3689348814741910324ns"`, 1)
	specs, diags := LoadSource("p.cue", []byte(src))
	if len(diags.Errors()) > 0 {
		t.Fatal(diags)
	}
	now := int64(0)
	e, err := Start(t.Context(), Options{Specs: specs, ManualTicks: true, Clock: func() int64 { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.TickDue()
	now += int64(time.Second)
	if !rejectsSome(e.ControlPoints().Get("ingress"), 5) {
		t.Fatal("a rate_limit of 0 admits everything a second after its tick: its staleness window wrapped")
	}
}

func TestSaturatingArithmetic(t *testing.T) {
	const maxI, minI = math.MaxInt64, math.MinInt64
	cases := []struct {
		name      string
		got, want int64
	}{
		{"add in range", addSaturating(40, 2), 42},
		{"add past the top", addSaturating(maxI-1, 2), maxI},
		{"add past the bottom", addSaturating(minI+1, -2), minI},
		{"add zero", addSaturating(minI, 0), minI},
		{"sub in range", subSaturating(-40, 2), -42},
		{"sub past the bottom", subSaturating(-2, maxI), minI},
		{"sub past the top", subSaturating(1, -maxI), maxI},
		{"sub the bottom from zero", subSaturating(0, minI), maxI},
		{"sub the bottom from a negative", subSaturating(-1, minI), maxI},
		{"mul in range", mulSaturating(5, int64(time.Hour)), 5 * int64(time.Hour)},
		{"mul past the top", mulSaturating(5, 3689348814741910324), maxI},
		{"mul by zero", mulSaturating(0, maxI), 0},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

// withUncappedInterval runs the evaluator in process and lifts the cap on
// evaluation_interval for the test, so that the scheduler's sums, not the
// cap, meet an interval near the clock's range.
func withUncappedInterval(t *testing.T) {
	t.Helper()
	withLimits(t, EvalLimits{InProcess: true})
	saved := Caps
	Caps.MaxEvaluationInterval = math.MaxInt64
	t.Cleanup(func() { Caps = saved })
}
