package engine

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/components"
)

// limiterPolicy is a policy that rejects everything at control point cp
// (rate 0), ticking every 20 ms.
func limiterPolicy(name, cp string) string {
	return fmt.Sprintf(`
package t
policies: %[1]q: {
	policy_name: %[1]q
	evaluation_interval: "20ms"
	components: [
		{Variable: {value: 0, out_ports: output: "RATE"}},
		{RateLimiter: {selector: {control_point: %[2]q}, in_ports: rate_limit: "RATE"}},
	]
}
`, name, cp)
}

// processRSS is this process's resident set size.
func processRSS(t *testing.T) int64 {
	t.Helper()
	rss, ok := residentBytes(os.Getpid())
	if !ok {
		t.Skip("no /proc on this platform") // the bound itself is Linux-only
	}
	return rss
}

// withLimits sets the evaluation limits for one test. An empty Evaluator
// keeps the test binary's (see TestMain).
func withLimits(t *testing.T, l EvalLimits) {
	saved := Limits
	if l.Evaluator == "" {
		l.Evaluator = saved.Evaluator
	}
	Limits = l
	t.Cleanup(func() { Limits = saved })
}

// A memory bomb is stopped at the limit, its memory is released with the
// child, the error has the file's position, and nothing of it stays in
// this process. The limit is a quarter of the default: the bomb's time to
// reach it grows with it, and the watchdog is the same at any value.
func TestPolicyEvaluationIsBoundedInMemory(t *testing.T) {
	withLimits(t, EvalLimits{Timeout: 60 * time.Second, MemoryBytes: 128 << 20})
	before := processRSS(t)
	bomb := "package p\nimport \"list\"\nbig: [for i in list.Range(0, 50000000, 1) {i}]\npolicies: {}\n"
	start := time.Now()
	specs, diags := LoadSource("bomb.cue", []byte(bomb))
	took := time.Since(start)
	if specs != nil || len(diags) != 1 || !strings.Contains(diags[0].Message, "more than 128 MiB of memory") {
		t.Fatalf("specs %v, diags %v; want one memory-limit error", specs, diags)
	}
	if d := diags[0]; d.Pos.File != "bomb.cue" || d.Pos.Line != 1 {
		t.Fatalf("position %v, want bomb.cue:1:1", d.Pos)
	}
	if took >= 6*Limits.Timeout {
		t.Fatalf("stopped after %s, by the wall-time backstop rather than the memory limit", took)
	}
	if after := processRSS(t); after-before > 128<<20 {
		t.Fatalf("this process's RSS grew by %d MiB while a child evaluated the bomb", (after-before)>>20)
	}
}

// Evaluation is bounded in time by killing the child, not abandoning it.
func TestPolicyEvaluationIsBoundedInTime(t *testing.T) {
	withLimits(t, EvalLimits{Timeout: 300 * time.Millisecond, MemoryBytes: 4 << 30})
	slow := "package p\nimport \"list\"\nn: len([for i in list.Range(0, 4000, 1) for j in list.Range(0, 4000, 1) if i == j {i}])\npolicies: {}\n"
	start := time.Now()
	_, diags := LoadSource("slow.cue", []byte(slow))
	if len(diags) != 1 || !strings.Contains(diags[0].Message, "and was stopped") {
		t.Fatalf("diags %v, want one timeout", diags)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("returned after %s", took)
	}
}

// The in-process fallback still loads policies.
func TestInProcessEvaluationLoads(t *testing.T) {
	withLimits(t, EvalLimits{InProcess: true})
	specs, diags := LoadSource("p.cue", []byte(limiterPolicy("p", "ingress")))
	if len(diags.Errors()) > 0 || len(specs) != 1 {
		t.Fatalf("specs %v, diags %v", specs, diags)
	}
}

// Numbers a float64 cannot hold are errors at their position, never a
// silent 0 (block everything) or Inf (no limit).
func TestOutOfRangeNumbersAreErrors(t *testing.T) {
	for _, lit := range []string{"-1e400", "1e400", "1e-400", "-1e-400", "1" + strings.Repeat("0", 400)} {
		for _, where := range []string{"const", "variable", "param"} {
			t.Run(where+"="+lit[:min(len(lit), 8)], func(t *testing.T) {
				var comps string
				switch where {
				case "const":
					comps = `{RateLimiter: {selector: {control_point: "ingress"}, in_ports: rate_limit: ` + lit + `}},`
				case "variable":
					comps = `{Variable: {value: ` + lit + `, out_ports: output: "RATE"}},
		{RateLimiter: {selector: {control_point: "ingress"}, in_ports: rate_limit: "RATE"}},`
				case "param":
					comps = `{Variable: {value: 1, out_ports: output: "RATE"}},
		{EMA: {ema_window: "10s", warmup_window: "1s", correction_factor_on_max_envelope_violation: ` + lit + `, in_ports: input: "RATE", out_ports: output: "E"}},
		{RateLimiter: {selector: {control_point: "ingress"}, in_ports: rate_limit: "E"}},`
				}
				src := "package t\npolicies: p: {\n\tpolicy_name: \"p\"\n\tevaluation_interval: \"1s\"\n\tcomponents: [\n\t\t" + comps + "\n\t]\n}\n"
				specs, diags := loadSource("n.cue", []byte(src))
				if len(diags.Errors()) == 0 {
					_, diags = Compile(specs[0])
				}
				if len(diags.Errors()) == 0 {
					t.Fatal("loaded")
				}
				d := diags.Errors()[0]
				// The schema's range of a parameter, when it has one, catches
				// the number first; either way the error is at its line.
				inRange := strings.Contains(d.Message, "outside the range of a 64-bit float") || strings.Contains(d.Message, ": want a number ")
				if !inRange || d.Pos.File != "n.cue" || d.Pos.Line < 6 {
					t.Fatalf("%v, want a range error on the number's line", d)
				}
			})
		}
	}
}

// A rate below zero, as a constant, as a Variable's value or through
// dynamic config, is refused by the same bounds.
func TestNegativeRatesAreRefusedEverywhere(t *testing.T) {
	for _, src := range []string{
		strings.Replace(limiterPolicy("p", "ingress"), "value: 0", "value: -5", 1),
		strings.Replace(limiterPolicy("p", "ingress"), `rate_limit: "RATE"`, "rate_limit: -5", 1),
	} {
		specs, diags := loadSource("neg.cue", []byte(src))
		if len(diags.Errors()) > 0 {
			t.Fatal(diags)
		}
		_, diags = Compile(specs[0])
		if len(diags) != 1 || !strings.Contains(diags[0].Message, "-5 is below the minimum 0") || diags[0].Pos.Line != 8 {
			t.Fatalf("%v, want the bound error at line 8", diags)
		}
	}
	specs, diags := loadSource("p.cue", []byte(limiterPolicy("p", "ingress")))
	if len(diags.Errors()) > 0 {
		t.Fatal(diags)
	}
	e, err := Start(t.Context(), Options{Specs: specs, ManualTicks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	err = e.SetDynamicConfig("p", DynamicConfig{Variables: map[string]float64{"RATE": -5}})
	var cfgErr *ConfigError
	if !errors.As(err, &cfgErr) || !strings.Contains(err.Error(), "below the minimum 0") {
		t.Fatalf("err = %v, want a ConfigError about the bound", err)
	}
	if err := e.SetDynamicConfig("p", DynamicConfig{Variables: map[string]float64{"RATE": 5}}); err != nil {
		t.Fatal(err)
	}
}

// Caps: components per policy, signals and the shortest interval, each
// refused at a position instead of allocated (history memory is shared
// out instead: TestHistoryOverItsBudgetKeepsAShorterWindow). Each case
// lowers its cap, so that a policy of a few dozen components is over it:
// the check is the same at any value, and a policy over the default caps
// costs seconds of CUE evaluation. The defaults are checked on their own.
func TestPolicyCapsRefuseHugeCircuits(t *testing.T) {
	want := PolicyCaps{ComponentsPerPolicy: 2000, SignalsPerPolicy: 8000, HistoryBytes: 32 << 20, MinEvaluationInterval: 10 * time.Millisecond, MaxEvaluationInterval: time.Hour,
		PoliciesPerSet: 2000, ComponentsPerSet: 100_000, SignalsPerSet: 200_000, EvaluationsPerSecond: 1_000_000, APILabelsPerControlPoint: 1024, APILabelsPerSet: 4096}
	if DefaultCaps != want {
		t.Fatalf("DefaultCaps = %+v, want the documented %+v", DefaultCaps, want)
	}
	variables := func(n int, interval string) string {
		return `package t
import "list"
policies: big: {
	policy_name: "big"
	evaluation_interval: "` + interval + `"
	components: [for i in list.Range(0, ` + strconv.Itoa(n) + `, 1) {Variable: {value: 1, out_ports: output: "V\(i)"}}]
}
`
	}
	cases := []struct {
		name string
		caps PolicyCaps // zero fields are the defaults
		src  string
		want string
	}{
		{"components", PolicyCaps{ComponentsPerPolicy: 25}, variables(26, "10ms"), "26 components, over the cap of 25"},
		{"signals", PolicyCaps{SignalsPerPolicy: 10}, variables(11, "1s"), "more than 10 signals"},
		{"interval", PolicyCaps{}, variables(1, "1ms"), "shorter than the minimum 10ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			saved := Caps
			Caps = tc.caps
			defer func() { Caps = saved }()
			specs, diags := LoadSource("big.cue", []byte(tc.src))
			if len(diags.Errors()) == 0 {
				_, diags = compileAll(specs)
			}
			if len(diags.Errors()) == 0 || !strings.Contains(diags.Error(), tc.want) {
				t.Fatalf("diags %v, want %q", diags, tc.want)
			}
			if p := diags.Errors()[0].Pos; p.File != "big.cue" || p.Line < 3 {
				t.Fatalf("position %v, want the policy in big.cue", p)
			}
		})
	}
}

// panicker panics in its first Execute: a component bug.
type panicker struct{}

func (*panicker) Ports() components.Ports        { return components.Ports{Out: []string{"output"}} }
func (*panicker) Execute(_, _ []float64)         { panic("component bug") }
func (*panicker) Provision(components.Env) error { return nil }

func init() {
	components.Register(components.Info{Type: "TestPanicker", New: func() components.Component { return &panicker{} }})
}

// A panicking component disables its policy, never the host; the other
// policies keep ticking and the disabled one is on /status.
func TestComponentPanicDisablesOnlyItsPolicy(t *testing.T) {
	bad := `package t
policies: bad: {
	policy_name: "bad"
	evaluation_interval: "20ms"
	components: [{TestPanicker: {out_ports: output: "X"}}]
}
`
	specs, diags := loadSource("bad.cue", []byte(bad))
	good, d2 := loadSource("good.cue", []byte(limiterPolicy("good", "ingress")))
	if len(diags.Errors())+len(d2.Errors()) > 0 {
		t.Fatal(diags, d2)
	}
	now := int64(0)
	e, err := Start(t.Context(), Options{Specs: append(specs, good...), ManualTicks: true, Clock: func() int64 { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for i := 0; i < 3; i++ {
		now += int64(20 * time.Millisecond)
		e.TickDue()
	}
	if e.PolicyPanics() != 1 {
		t.Fatalf("panics = %d, want 1", e.PolicyPanics())
	}
	var disabled string
	for _, ps := range e.Status().Policies {
		if ps.Name == "bad" {
			disabled = ps.Disabled
		}
		if ps.Name == "good" && ps.Ticks != 3 {
			t.Fatalf("good ticked %d times, want 3", ps.Ticks)
		}
	}
	if !strings.Contains(disabled, "component bug") {
		t.Fatalf("status of bad: disabled %q", disabled)
	}
	if !rejectsSome(e.ControlPoints().Get("ingress"), 5) {
		t.Fatal("the good policy stopped enforcing")
	}
}

// rejectsSome reports whether any of n requests to cp is rejected (a
// zero-rate bucket still holds its one token of burst).
func rejectsSome(cp *controlpoint.ControlPoint, n int) bool {
	for i := 0; i < n; i++ {
		tk, d := cp.Admit("")
		if d != controlpoint.Accepted {
			return true
		}
		tk.Done(true)
	}
	return false
}

// Setpoints age: once no tick has set a limiter for StaleAfterTicks
// intervals (the loop stopped, the policy panicked, the engine closed), the
// limiter applies its fail mode, chosen by the actuator's fail_mode, else by
// the control point's Options.FailModes, else fail-open.
func TestStaleSetpointsApplyTheFailMode(t *testing.T) {
	generous := strings.Replace(limiterPolicy("p", "ingress"), "value: 0", "value: 1e9", 1)
	cases := []struct {
		name, src string
		modes     map[string]components.FailMode
		fresh     bool // rejects while fresh
		stale     bool // rejects once stale
	}{
		{"blocking policy fails open by default", limiterPolicy("p", "ingress"), nil, true, false},
		{"fail_closed in the policy", strings.Replace(generous, "selector:", `fail_mode: "fail_closed", selector:`, 1), nil, false, true},
		{"fail_closed for the control point", generous, map[string]components.FailMode{"ingress": components.FailClosed}, false, true},
		{"the policy's fail_open wins over the control point's", strings.Replace(limiterPolicy("p", "ingress"), "selector:", `fail_mode: "fail_open", selector:`, 1),
			map[string]components.FailMode{"ingress": components.FailClosed}, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			specs, diags := loadSource("p.cue", []byte(tc.src))
			if len(diags.Errors()) > 0 {
				t.Fatal(diags)
			}
			now := int64(0)
			e, err := Start(t.Context(), Options{Specs: specs, ManualTicks: true, Clock: func() int64 { return now }, FailModes: tc.modes})
			if err != nil {
				t.Fatal(err)
			}
			cp := e.ControlPoints().Get("ingress")
			now += int64(20 * time.Millisecond)
			e.TickDue()
			if got := rejectsSome(cp, 5); got != tc.fresh {
				t.Fatalf("fresh: rejects %v, want %v", got, tc.fresh)
			}
			// Five intervals without a tick: still fresh.
			now += int64(5 * 20 * time.Millisecond)
			if got := rejectsSome(cp, 5); got != tc.fresh {
				t.Fatalf("after 5 intervals: rejects %v, want %v", got, tc.fresh)
			}
			e.Close() // no tick will ever come again
			now += int64(time.Millisecond)
			if got := rejectsSome(cp, 5); got != tc.stale {
				t.Fatalf("stale: rejects %v, want %v", got, tc.stale)
			}
			st := e.Status().Policies[0].Actuators[0]
			if st.Stale == 0 || st.SetpointAge <= 100*time.Millisecond {
				t.Fatalf("status %+v: want stale decisions and the setpoint's age", st)
			}
		})
	}
	if _, err := Start(t.Context(), Options{FailModes: map[string]components.FailMode{"x": "fail_sideways"}}); err == nil {
		t.Fatal("a bad fail mode in Options was accepted")
	}
}
