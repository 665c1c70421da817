package testbed

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

func loadPolicy(t testing.TB, file string) []engine.Spec {
	t.Helper()
	specs, diags := engine.LoadFiles([]string{file})
	if len(diags.Errors()) > 0 {
		t.Fatal(diags)
	}
	return specs
}

// componentParams returns the params of every component of type typ.
func componentParams(t *testing.T, s engine.Spec, typ string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, c := range s.Components {
		if c.Type != typ {
			continue
		}
		var p map[string]any
		if err := json.Unmarshal(c.Params, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestInstantiatePolicyMakesOnePolicyPerAPI(t *testing.T) {
	app := Boutique()
	templates := loadPolicy(t, "../policies/latency-aimd.cue")
	specs, err := InstantiatePolicy(templates, app)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != len(app.APIs) {
		t.Fatalf("%d policies, want one per API (%d)", len(specs), len(app.APIs))
	}
	for i, api := range app.APIs {
		s := specs[i]
		if want := "ingress-latency-aimd." + api.Name; s.Name != want {
			t.Errorf("policy %d is named %q, want %q", i, s.Name, want)
		}
		want := map[string]any{"control_point": "ingress", "api": api.Label()}
		for _, typ := range []string{"FluxMeter", "RateLimiter"} {
			for _, p := range componentParams(t, s, typ) {
				sel, _ := p["selector"].(map[string]any)
				if len(sel) != 2 || sel["control_point"] != want["control_point"] || sel["api"] != want["api"] {
					t.Errorf("%s %s selector = %v, want %v", s.Name, typ, sel, want)
				}
			}
		}
		if slo, ok := componentParams(t, s, "FluxMeter")[0]["slo"]; ok {
			t.Errorf("%s FluxMeter slo = %v, want none, as in the template", s.Name, slo)
		}
		if _, diags := engine.Compile(s); len(diags.Errors()) > 0 {
			t.Errorf("%s does not compile: %v", s.Name, diags)
		}
	}
	if templates[0].Name != "ingress-latency-aimd" || strings.Contains(string(templates[0].Components[0].Params), "GET /") {
		t.Errorf("the template was modified: %+v", templates[0])
	}
}

func TestInstantiatePolicyKeepsPoliciesWrittenForTheApp(t *testing.T) {
	app := Boutique()
	specs, err := InstantiatePolicy(staticSpecs(app, []float64{1, 2, 3, 4}), app)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, s := range specs {
		names = append(names, s.Name)
	}
	if want := []string{"static.home", "static.product", "static.cart", "static.checkout"}; !slices.Equal(names, want) {
		t.Errorf("policies %v, want %v unchanged: their selectors already name the app's APIs", names, want)
	}
}

func TestVirtualRunTicksEachPolicyAtItsOwnInterval(t *testing.T) {
	app := TwoTierApp(DefaultTwoTier())
	a := loadPolicy(t, "../policies/latency-aimd.cue")[0]
	b := a
	b.Name, b.EvaluationInterval = "slow", 1500*time.Millisecond
	specs, err := InstantiatePolicy([]engine.Spec{a, b}, app)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := NewScenario("steady", app, ScenarioOptions{Warmup: time.Second, Duration: 10 * time.Second, Load: 1})
	if err != nil {
		t.Fatal(err)
	}
	var eng *engine.Engine
	_, err = Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Virtual: true, Seed: 1,
		Policy:   Policy{Name: "mixed", Templates: []engine.Spec{a, b}, PerAPI: true},
		OnEngine: func(e *engine.Engine) { eng = e }})
	if err != nil {
		t.Fatal(err)
	}
	// The run lasts 11 s plus the 2 s client timeout; each policy ticks
	// at its load too.
	want := map[string]uint64{specs[0].Name: 27, specs[1].Name: 9}
	for _, r := range eng.Policies() {
		if got := r.Circuit.Ticks(); got != want[r.Circuit.Spec.Name] {
			t.Errorf("policy %s (every %v) ticked %d times, want %d", r.Circuit.Spec.Name, r.Circuit.Spec.EvaluationInterval, got, want[r.Circuit.Spec.Name])
		}
	}
	_, err = InstantiatePolicy([]engine.Spec{a, a}, app)
	if err == nil || !strings.Contains(err.Error(), `policy "ingress-latency-aimd.api": declared twice`) {
		t.Errorf("err = %v, want the duplicate named", err)
	}
}

func TestSimulateRunsAPolicyAsWrittenUnlessAskedPerAPI(t *testing.T) {
	t.Parallel() // virtual time: the machine's load cannot change what it asserts
	app := Boutique()
	templates := loadPolicy(t, "../policies/latency-aimd.cue")
	sc, err := NewScenario("steady", app, ScenarioOptions{Warmup: time.Second, Duration: 10 * time.Second, Load: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		perAPI   bool
		label    string
		policies []string
	}{
		{"as written: one controller for every API", false, "latency-aimd", []string{"ingress-latency-aimd"}},
		{"per API: one controller each, and labelled so", true, "latency-aimd (per API)", []string{
			"ingress-latency-aimd.home", "ingress-latency-aimd.product", "ingress-latency-aimd.cart", "ingress-latency-aimd.checkout"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var names []string
			r, err := Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Virtual: true, Seed: 1,
				Policy: Policy{Name: "latency-aimd", Templates: templates, PerAPI: tt.perAPI},
				OnEngine: func(e *engine.Engine) {
					for _, p := range e.Policies() {
						names = append(names, p.Circuit.Spec.Name)
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(names)
			want := slices.Sorted(slices.Values(tt.policies))
			if !slices.Equal(names, want) {
				t.Errorf("engine runs %v, want %v", names, want)
			}
			if r.Policy != tt.label {
				t.Errorf("report labels the policy %q, want %q", r.Policy, tt.label)
			}
		})
	}
}

func TestStaticOracleFollowsCapacityShares(t *testing.T) {
	app := Boutique()
	s, err := NewScenario("capacity-drop", app, ScenarioOptions{Warmup: 5 * time.Second, Duration: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := staticChanges(s), []time.Duration{0, 5 * time.Second, 15 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("staticChanges = %v, want %v: start, load step, worker change", got, want)
	}
	before, err := staticRates(app, s, 10*time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	after, err := staticRates(app, s, 15*time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	weights := app.Weights()
	var sumBefore, sumAfter float64
	for i := range before {
		sumBefore += before[i]
		sumAfter += after[i]
		if math.Abs(before[i]/staticUtilization-weights[i]*app.Capacity()) > 1e-6 {
			t.Errorf("API %d: rate %v before the drop, want 0.95 × its capacity share %v", i, before[i], weights[i]*app.Capacity())
		}
	}
	if math.Abs(sumAfter/sumBefore-0.5) > 1e-9 {
		t.Errorf("after half of productcatalog's workers die the oracle admits %.3f of what it did, want 0.5", sumAfter/sumBefore)
	}
}

func TestStaticOptimalOracle(t *testing.T) {
	app := HeteroCost()
	s, err := NewScenario("surge", app, ScenarioOptions{Warmup: 5 * time.Second, Duration: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	light, err := staticRates(app, s, time.Second, true)
	if err != nil {
		t.Fatal(err)
	}
	proportional, _ := staticRates(app, s, time.Second, false)
	for i := range light {
		if math.Abs(light[i]-proportional[i]) > 1e-6 {
			t.Errorf("under light load API %d gets %v, want the proportional oracle's %v: both sit at capacity", i, light[i], proportional[i])
		}
	}
	// In the surge (4×), the cheap lookups fill the database alone.
	surge, err := staticRates(app, s, 12*time.Second, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := staticUtilization * 8 / 0.002; math.Abs(surge[0]-want) > 1e-6 || surge[1] > 1e-9 {
		t.Errorf("in the surge the oracle admits %v, want [%v 0]: all lookups it can, no reports", surge, want)
	}
}
