package engine_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

// statePolicy has one stateful component of each kind fed by a counter
// loop (COUNT = 1, 2, 3, ...): an EMA, a Holder and an AIMD controller
// whose overload is driven by the dynamic Variable SIG. {{EXTRA}} is
// replaced by extra components placed first, which shifts every other
// component's position; {{WARMUP}} is the EMA's warm-up window.
const statePolicy = `
package t
import bp "spillway.dev/blueprints"
policies: state: bp.#Policy & {
	policy_name: "state"
	evaluation_interval: "1s"
	components: [
		{{EXTRA}}
		{FirstValid: {in_ports: inputs: ["COUNT", 0], out_ports: output: "BASE"}},
		{Arithmetic: {operator: "add", in_ports: {lhs: "BASE", rhs: 1}, out_ports: output: "COUNT"}},
		{EMA: {ema_window: "10s", warmup_window: "{{WARMUP}}", in_ports: input: "COUNT", out_ports: output: "COUNT_EMA"}},
		{Holder: {hold_for: "4s", in_ports: input: "COUNT", out_ports: output: "HELD"}},
		{Variable: {value: 100, out_ports: output: "SIG"}},
		{AIMDController: {
			in_ports: {signal: "SIG", setpoint: 150, incoming: 100, accepted: 100}
			out_ports: {load_multiplier: "LM", rate_limit: "RATE"}
		}},
	]
}
`

func statePolicySource(extra, warmup string) string {
	return strings.NewReplacer("{{EXTRA}}", extra, "{{WARMUP}}", warmup).Replace(statePolicy)
}

var stateSignals = []string{"COUNT", "COUNT_EMA", "HELD", "LM", "RATE"}

func signals(t *testing.T, eng *engine.Engine, policy string, names []string) []float64 {
	t.Helper()
	out := make([]float64, len(names))
	for i, n := range names {
		v, err := eng.Signal(policy, n)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = v
	}
	return out
}

func sameFloats(a, b []float64) bool {
	for i := range a {
		if a[i] != b[i] && !(math.IsNaN(a[i]) && math.IsNaN(b[i])) {
			return false
		}
	}
	return len(a) == len(b)
}

func setSIG(t *testing.T, v float64, engines ...*engine.Engine) {
	t.Helper()
	for _, e := range engines {
		if err := e.SetDynamicConfig("state", engine.DynamicConfig{Variables: map[string]float64{"SIG": v}}); err != nil {
			t.Fatal(err)
		}
	}
}

// offer sends n requests to the whole control point and returns how many
// were admitted; each admitted one finishes at once.
func offer(cp *controlpoint.ControlPoint, n int) (admitted int) {
	for i := 0; i < n; i++ {
		if tk, d := cp.Admit(""); d == controlpoint.Accepted {
			tk.Done(true)
			admitted++
		}
	}
	return admitted
}

// An unchanged component keeps its state across a reload, wherever it
// moved in the list: the reloaded engine computes, tick for tick, exactly
// what an engine that was never reloaded computes.
func TestReloadKeepsTheStateOfUnchangedComponents(t *testing.T) {
	base := statePolicySource("", "2s")
	ref := enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "state.cue", base)})
	eng := enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "state.cue", base)})

	step := func(phase string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			ref.Tick()
			eng.Tick()
			want, got := signals(t, ref, "state", stateSignals), signals(t, eng, "state", stateSignals)
			if !sameFloats(want, got) {
				t.Fatalf("%s tick %d: reloaded engine %v, never-reloaded engine %v (%v)", phase, i, got, want, stateSignals)
			}
		}
	}
	// Overload for 3 ticks resets the AIMD integrator; then it climbs.
	setSIG(t, 200, ref, eng)
	step("overload", 3)
	setSIG(t, 100, ref, eng)
	step("recovering", 3)
	lmBefore := signals(t, eng, "state", []string{"LM"})[0]

	// Reload with a new component first: every index shifts.
	extra := `{Variable: {value: 7, out_ports: output: "UNRELATED"}},`
	if err := eng.Apply(enginetest.Load(t, "state.cue", statePolicySource(extra, "2s"))); err != nil {
		t.Fatal(err)
	}
	if got, err := eng.Signal("state", "UNRELATED"); err != nil || !math.IsNaN(got) {
		t.Fatalf("the new signal before its first tick = %v, %v; want invalid", got, err)
	}
	step("after reload", 6)
	lmAfter := signals(t, eng, "state", []string{"LM"})[0]
	if !(lmAfter > lmBefore) || lmAfter == 2 {
		t.Fatalf("the AIMD multiplier went %v → %v; want it still climbing from its kept integrator", lmBefore, lmAfter)
	}
	// The dynamic value of SIG survived the reload too.
	if cfg := eng.DynamicConfigOf("state"); cfg.Variables["SIG"] != 100 {
		t.Fatalf("dynamic config after reload: %+v", cfg)
	}
	if st := eng.Status(); st.Policies[0].Ticks != 12 {
		t.Fatalf("ticks after reload = %d, want 12 (carried over)", st.Policies[0].Ticks)
	}
}

// A changed component starts fresh: a new warm-up window makes the EMA
// warm up again, while the unchanged counter and holder carry on.
func TestReloadRestartsAChangedComponent(t *testing.T) {
	eng := enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "state.cue", statePolicySource("", "2s"))})
	for i := 0; i < 5; i++ {
		eng.Tick()
	}
	if v := signals(t, eng, "state", []string{"COUNT_EMA"})[0]; math.IsNaN(v) {
		t.Fatal("EMA still warming up after 5 ticks")
	}
	if err := eng.Apply(enginetest.Load(t, "state.cue", statePolicySource("", "3s"))); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		eng.Tick()
		got := signals(t, eng, "state", []string{"COUNT", "COUNT_EMA"})
		if got[0] != float64(5+i) {
			t.Fatalf("tick %d after reload: COUNT = %v, want %d (kept)", i, got[0], 5+i)
		}
		switch {
		case i < 3 && !math.IsNaN(got[1]):
			t.Fatalf("tick %d after reload: COUNT_EMA = %v, want invalid (warming up again)", i, got[1])
		case i == 3 && got[1] != 7: // the warm-up mean of 6, 7, 8
			t.Fatalf("tick 3 after reload: COUNT_EMA = %v, want 7", got[1])
		}
	}
}

// A token bucket keeps its tokens across a reload, even when the component
// that sets its rate changed.
func TestReloadKeepsTokenBucketTokens(t *testing.T) {
	const limited = `
package t
import bp "spillway.dev/blueprints"
policies: lim: bp.#Policy & {
	policy_name: "lim"
	evaluation_interval: "1s"
	components: [
		{Variable: {value: RATE, out_ports: output: "RATE"}},
		{RateLimiter: {selector: {control_point: "cp"}, in_ports: {rate_limit: "RATE", burst: 10}}},
	]
}
`
	var now atomic.Int64
	clock := func() int64 { return now.Load() }
	load := func(rate string) []engine.Spec {
		return enginetest.Load(t, "state.cue", strings.Replace(limited, "value: RATE", "value: "+rate, 1))
	}
	eng := enginetest.Start(t, engine.Options{Specs: load("10"), Clock: clock})
	eng.Tick()
	cp := eng.ControlPoints().Get("cp")
	admitted := func() int { return offer(cp, 50) }
	if n := admitted(); n != 10 {
		t.Fatalf("admitted %d with a full bucket of 10, want 10", n)
	}
	if err := eng.Apply(load("11")); err != nil {
		t.Fatal(err)
	}
	eng.Tick()
	if n := admitted(); n != 0 {
		t.Fatalf("admitted %d right after the reload, want 0: the bucket was emptied before it", n)
	}
	now.Add(int64(500 * time.Millisecond))
	if n := admitted(); n != 5 {
		t.Fatalf("admitted %d after 0.5 s at 11/s, want 5", n)
	}
}

// Dry-run computes decisions and counts them as would_reject but never
// enforces them; it is switched at run time and survives a reload.
func TestDynamicDryRun(t *testing.T) {
	const src = `
package t
import bp "spillway.dev/blueprints"
policies: dry: bp.#Policy & {
	policy_name: "dry"
	evaluation_interval: "1s"
	components: [
		{RateLimiter: {selector: {control_point: "cp"}, in_ports: {rate_limit: 1, burst: 1}}},
	]
}
`
	eng := enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "state.cue", src)})
	eng.Tick()
	cp := eng.ControlPoints().Get("cp")
	if got := offer(cp, 5); got != 1 {
		t.Fatalf("enforcing: accepted %d of 5, want 1", got)
	}
	on := true
	if err := eng.SetDynamicConfig("dry", engine.DynamicConfig{DryRun: &on}); err != nil {
		t.Fatal(err)
	}
	if got := offer(cp, 5); got != 5 {
		t.Fatalf("dry run: accepted %d of 5, want all", got)
	}
	act := eng.Status().Policies[0].Actuators[0]
	if act.WouldReject != 5 || act.Rejected != 4 {
		t.Fatalf("would_reject %d rejected %d, want 5 and 4", act.WouldReject, act.Rejected)
	}
	// A reload of the same policy keeps the override.
	if err := eng.Apply(enginetest.Load(t, "state.cue", src)); err != nil {
		t.Fatal(err)
	}
	if got := offer(cp, 3); got != 3 || !eng.Status().Policies[0].DryRun {
		t.Fatalf("after reload: accepted %d of 3 (want 3), dry_run %v", got, eng.Status().Policies[0].DryRun)
	}
	if err := eng.ClearDynamicConfig("dry"); err != nil {
		t.Fatal(err)
	}
	if got := offer(cp, 3); got != 0 {
		t.Fatalf("after clearing: accepted %d of 3, want 0 (bucket empty, enforcing)", got)
	}
}

func TestDynamicConfigRejectsWhatThePolicyDoesNotHave(t *testing.T) {
	eng := enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "state.cue", statePolicySource("", "2s"))})
	var cfgErr *engine.ConfigError
	err := eng.SetDynamicConfig("state", engine.DynamicConfig{Variables: map[string]float64{"NOPE": 1}})
	if !errors.As(err, &cfgErr) || !strings.Contains(err.Error(), `"NOPE"`) || !strings.Contains(err.Error(), "SIG") {
		t.Fatalf("unknown variable: %v", err)
	}
	if err := eng.SetDynamicConfig("missing", engine.DynamicConfig{}); !errors.Is(err, engine.ErrNoPolicy) {
		t.Fatalf("unknown policy: %v", err)
	}
	for _, body := range []string{`{"dry_run": "yes"}`, `{"dryrun": true}`, `{"variables": {"SIG": 1}} {}`, `[`, strings.Repeat(" ", engine.MaxDynamicConfigSize+1)} {
		if _, err := engine.DecodeDynamicConfig(strings.NewReader(body)); !errors.As(err, &cfgErr) {
			t.Errorf("body %.40q: err %v, want a ConfigError", body, err)
		}
	}
	if got := eng.DynamicConfigOf("state"); got.DryRun != nil || got.Variables != nil {
		t.Fatalf("refused changes were kept: %+v", got)
	}
}

// writePolicy writes a file of the policy directory.
func writePolicy(t *testing.T, dir, name, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// counterSrc is a policy file whose one policy, name, outputs value as V.
func counterSrc(name string, value int) string {
	return enginetest.Policy(name, "", fmt.Sprintf(`{Variable: {value: %d, out_ports: output: "V"}},`, value))
}

// Reload swaps the whole set or nothing: a bad, empty or half-written file
// keeps the last good set running, counted and shown on /status; removing
// a file removes its policy and says so.
func TestReloadIsAllOrNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePolicy(t, dir, "a.cue", counterSrc("a", 1))
	writePolicy(t, dir, "b.cue", counterSrc("b", 2))
	eng := enginetest.Start(t, engine.Options{Policies: dir})
	eng.Tick()

	value := func(policy string) float64 {
		t.Helper()
		v, err := eng.Signal(policy, "V")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if changed, err := eng.Reload(); changed || err != nil {
		t.Fatalf("reload of unchanged files: changed %v err %v; want a no-op", changed, err)
	}
	bad := []struct{ name, src, want string }{
		{"empty", "", "b.cue:1:1: policy file is empty"},
		{"half-written", counterSrc("b", 3)[:60], "b.cue:"},
		{"constraint", strings.Replace(counterSrc("b", 3), `policy_name: "b"`, `policy_name: "b", evaluation_interval: "-1s"`, 1), "b.cue:"},
	}
	for i, tc := range bad {
		writePolicy(t, dir, "a.cue", counterSrc("a", 10+i)) // a good change alongside
		writePolicy(t, dir, "b.cue", tc.src)
		changed, err := eng.Reload()
		if !changed || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: changed %v err %v; want an error containing %q", tc.name, changed, err, tc.want)
		}
		eng.Tick()
		if a, b := value("a"), value("b"); a != 1 || b != 2 {
			t.Fatalf("%s: running a=%v b=%v; want the last good set (1, 2) still ticking", tc.name, a, b)
		}
		st := eng.Status()
		if st.Reload.LoadErrors != uint64(i+1) || st.Reload.LastError == nil || len(st.Errors) == 0 {
			t.Fatalf("%s: status %+v; want %d load errors and the last error shown", tc.name, st.Reload, i+1)
		}
	}
	if got := eng.LoadErrors(); got != 3 {
		t.Fatalf("LoadErrors = %d, want 3", got)
	}
	// A fixed save recovers, and clears the error.
	writePolicy(t, dir, "b.cue", counterSrc("b", 20))
	if _, err := eng.Reload(); err != nil {
		t.Fatal(err)
	}
	eng.Tick()
	if a, b := value("a"), value("b"); a != 12 || b != 20 {
		t.Fatalf("after the fix: a=%v b=%v, want 12 and 20", a, b)
	}
	if st := eng.Status(); st.Reload.LastError != nil || len(st.Errors) != 0 {
		t.Fatalf("the error is still shown after a good reload: %+v", st.Reload.LastError)
	}
	// Removing a file removes its policy, explicitly.
	if err := os.Remove(filepath.Join(dir, "b.cue")); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Reload(); err != nil {
		t.Fatal(err)
	}
	st := eng.Status()
	if len(st.Policies) != 1 || st.Policies[0].Name != "a" || st.Reload.LastChange == nil || len(st.Reload.LastChange.Removed) != 1 || st.Reload.LastChange.Removed[0] != "b" {
		t.Fatalf("after removing b.cue: policies %v, last change %+v", st.Policies, st.Reload.LastChange)
	}
	// The directory disappearing is an error, not "no policies".
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Reload(); err == nil {
		t.Fatal("reload of a missing directory succeeded")
	}
	if len(eng.Policies()) != 1 {
		t.Fatal("a missing directory dropped the running policies")
	}
}

// A reload evaluates only the files whose bytes changed since the last
// attempt; the others' evaluations are reused. A file whose evaluation
// failed is evaluated again, as the failure may have been the machine's.
func TestReloadEvaluatesOnlyTheFilesThatChanged(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, "a.cue", counterSrc("a", 1))
	writePolicy(t, dir, "b.cue", counterSrc("b", 2))
	eng := enginetest.Start(t, engine.Options{Policies: dir})
	reload := func(wantEvaluations uint64, wantErr bool) {
		t.Helper()
		before := engine.Evaluations()
		if _, err := eng.Reload(); (err != nil) != wantErr {
			t.Fatalf("reload: error %v, want one: %v", err, wantErr)
		}
		if got := engine.Evaluations() - before; got != wantEvaluations {
			t.Fatalf("the reload evaluated %d files, want %d", got, wantEvaluations)
		}
	}
	writePolicy(t, dir, "b.cue", counterSrc("b", 3))
	reload(1, false)
	writePolicy(t, dir, "c.cue", "package p\npolicies: nope: 1\n")
	reload(1, true)
	os.Remove(filepath.Join(dir, "c.cue"))
	writePolicy(t, dir, "b.cue", counterSrc("b", 2)) // back to what the start evaluated
	reload(1, false)
	writePolicy(t, dir, "c.cue", "package p\npolicies: nope: 1\n")
	reload(1, true) // failed evaluations are not kept
	eng.Tick()
	for policy, want := range map[string]float64{"a": 1, "b": 2} {
		if v, err := eng.Signal(policy, "V"); err != nil || v != want {
			t.Fatalf("%s: V = %v (%v), want %v", policy, v, err, want)
		}
	}
}

// After Close nothing ticks: Apply refuses, as Reload does, and the
// policies it was given are not listed as running.
func TestApplyAfterCloseIsRefused(t *testing.T) {
	base := statePolicySource("", "2s")
	eng := enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "state.cue", base)})
	eng.Close()
	if err := eng.Apply(nil); err == nil || !strings.Contains(err.Error(), "the engine is closed") {
		t.Fatalf("Apply after Close: %v, want it refused", err)
	}
	if n := len(eng.Status().Policies); n != 1 {
		t.Errorf("%d policies listed after a refused Apply, want the 1 that ran", n)
	}
}
