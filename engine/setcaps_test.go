package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// variablesPolicy is a policy of n Variables (n signals) at interval,
// declared on line 2 of its file.
func variablesPolicy(name, interval string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "policies: %[1]s: {policy_name: %[1]q, evaluation_interval: %[2]q, components: [", name, interval)
	for i := range n {
		fmt.Fprintf(&b, `{Variable: {value: 1, out_ports: output: "V%d"}},`, i)
	}
	b.WriteString("]}\n")
	return b.String()
}

// labelsPolicy is a policy whose flux meter at control point cp selects the
// API labels prefix0 .. prefix<n-1> through its api_slos (line 3).
func labelsPolicy(name, cp, prefix string, n int) string {
	var slos []string
	for i := range n {
		slos = append(slos, fmt.Sprintf(`"%s%d": "1s"`, prefix, i))
	}
	return fmt.Sprintf(`policies: %[1]s: {policy_name: %[1]q, evaluation_interval: "1s", components: [
	{Variable: {value: 1, out_ports: output: "V"}},
	{FluxMeter: {selector: {control_point: %[2]q}, slo: "1s", api_slos: {%[3]s}}},
]}
`, name, cp, strings.Join(slos, ", "))
}

// The policy set as a whole is capped (engine.Caps: policies, files,
// components, signals, component evaluations a second, API labels per
// control point and in all): a set over a cap is a load error at the
// policy, file or component that crosses it, counted in file-name order,
// and the running set keeps running. Each case lowers its cap so that a
// few small files are over it; the check is the same at any value. The
// running policy (2 components, a tick every 20 ms) counts first.
func TestPolicySetCapsRefuseAtTheCrossingPolicy(t *testing.T) {
	withLimits(t, EvalLimits{InProcess: true})
	cases := []struct {
		name  string
		caps  PolicyCaps // zero fields are the defaults
		files map[string]string
		want  string
		at    Position
	}{
		{"policies", PolicyCaps{PoliciesPerSet: 3},
			map[string]string{"a.cue": variablesPolicy("a1", "1s", 1) + variablesPolicy("a2", "1s", 1), "b.cue": variablesPolicy("b1", "1s", 1) + variablesPolicy("b2", "1s", 1)},
			`policy "b1": the policy set has more policies, over the cap of 3 (engine.Caps.PoliciesPerSet): this policy and those before it (files in name order) come to 4`,
			Position{File: "b.cue", Line: 2, Col: 11}},
		{"files", PolicyCaps{PoliciesPerSet: 3},
			map[string]string{"a.cue": variablesPolicy("a", "1s", 1), "b.cue": variablesPolicy("b", "1s", 1), "c.cue": variablesPolicy("c", "1s", 1)},
			"4 policy files, over the cap of 3 (engine.Caps.PoliciesPerSet; every file declares a policy)",
			Position{File: "c.cue", Line: 1, Col: 1}},
		{"components", PolicyCaps{ComponentsPerSet: 25},
			map[string]string{"a.cue": variablesPolicy("a", "1s", 10), "b.cue": variablesPolicy("b", "1s", 10) + variablesPolicy("c", "1s", 10)},
			`policy "c": the policy set has more components, over the cap of 25 (engine.Caps.ComponentsPerSet): this policy and those before it (files in name order) come to 32`,
			Position{File: "b.cue", Line: 3, Col: 11}},
		{"signals", PolicyCaps{SignalsPerSet: 15},
			map[string]string{"a.cue": variablesPolicy("a", "1s", 10), "b.cue": variablesPolicy("b", "1s", 10)},
			`policy "b": the policy set has more signals, over the cap of 15 (engine.Caps.SignalsPerSet)`,
			Position{File: "b.cue", Line: 2, Col: 11}},
		{"evaluations a second", PolicyCaps{EvaluationsPerSecond: 1000},
			// 100 a second (and the running policy's 100), then 5
			// components at 10 ms: 500 each.
			map[string]string{"a.cue": variablesPolicy("a", "1s", 100), "b.cue": variablesPolicy("b", "10ms", 5) + variablesPolicy("c", "10ms", 5)},
			`policy "c": the policy set has more component evaluations a second (components ÷ evaluation_interval), over the cap of 1000 (engine.Caps.EvaluationsPerSecond): this policy and those before it (files in name order) come to 1200`,
			Position{File: "b.cue", Line: 3, Col: 11}},
		{"API labels at one control point", PolicyCaps{APILabelsPerControlPoint: 30},
			map[string]string{"a.cue": labelsPolicy("a", "ingress", "GET /a", 20), "b.cue": labelsPolicy("b", "egress", "GET /a", 20) + labelsPolicy("c", "ingress", "GET /c", 20)},
			`policies.c.components[1].FluxMeter: the policies select more than 30 API labels at control point "ingress" (engine.Caps.APILabelsPerControlPoint): this component brings them to 40`,
			Position{File: "b.cue", Line: 8, Col: 58}},
		{"API labels in all", PolicyCaps{APILabelsPerSet: 50},
			map[string]string{"a.cue": labelsPolicy("a", "ingress", "GET /a", 20) + labelsPolicy("b", "egress", "GET /a", 20), "b.cue": labelsPolicy("c", "other", "GET /a", 20)},
			`policies.c.components[1].FluxMeter: the policies select more than 50 API labels at all control points together (engine.Caps.APILabelsPerSet): this component brings them to 60`,
			Position{File: "b.cue", Line: 4, Col: 56}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			saved := Caps
			defer func() { Caps = saved }()
			Caps = tc.caps
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "0-running.cue"), []byte(limiterPolicy("running", "ingress")), 0o644); err != nil {
				t.Fatal(err)
			}
			e, err := Start(t.Context(), Options{Policies: dir, ManualTicks: true})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			for name, src := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("package t\n"+src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err = e.Reload()
			errs := e.LastErrors()
			if err == nil || len(errs) != 1 || !strings.Contains(errs[0].Message, tc.want) {
				t.Fatalf("reload: %v, want one error %q", errs, tc.want)
			}
			if got, want := errs[0].Pos, (Position{File: filepath.Join(dir, tc.at.File), Line: tc.at.Line, Col: tc.at.Col}); got != want {
				t.Fatalf("error at %v, want %v", got, want)
			}
			if len(e.Policies()) != 1 {
				t.Fatalf("%d policies running, want the last good set's 1", len(e.Policies()))
			}
			e.Tick()
			if !rejectsSome(e.ControlPoints().Get("ingress"), 5) {
				t.Fatal("the running policy stopped enforcing")
			}
			// The same set given as specs is refused by Apply alike.
			if tc.name != "files" {
				Caps = saved
				specs := []Spec{e.Policies()[0].Circuit.Spec}
				for _, name := range []string{"a.cue", "b.cue"} {
					s, diags := LoadSource(name, []byte("package t\n"+tc.files[name]))
					if len(diags.Errors()) > 0 {
						t.Fatal(diags)
					}
					specs = append(specs, s...)
				}
				Caps = tc.caps
				if err := e.Apply(specs); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Apply: %v, want %q", err, tc.want)
				}
			}
		})
	}
}

// Declaring a policy set's API labels costs time in proportion to them:
// four times the labels allocate about four times as much, where
// declaring them one by one copied the control point's label map for each
// (sixteen times as much).
func TestApplyingManyAPILabelsIsLinear(t *testing.T) {
	withLimits(t, EvalLimits{InProcess: true})
	allocated := func(n int) uint64 {
		specs, diags := LoadSource("p.cue", []byte("package t\n"+labelsPolicy("p", "ingress", "GET /api/", n)))
		if len(diags.Errors()) > 0 {
			t.Fatal(diags)
		}
		e, err := Start(t.Context(), Options{ManualTicks: true})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if err := e.Apply(specs); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		if got := len(e.ControlPoints().Get("ingress").APIs()); got != n {
			t.Fatalf("%d labels at ingress, want %d", got, n)
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := allocated(250), allocated(1000)
	if ratio := float64(large) / float64(small); ratio > 8 {
		t.Fatalf("declaring 1000 labels allocated %d bytes, %.1f times as much as 250 (%d): quadratic", large, ratio, small)
	}
}
