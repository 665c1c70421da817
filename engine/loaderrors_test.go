package engine

import (
	"path/filepath"
	"strings"
	"testing"
)

// Load errors name the field at fault, at its line and column, in the
// user's words; each mistake is reported once.
func TestLoadErrorsAreAtTheFieldInTheUsersWords(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src, want string
	}{
		{"an unknown field in a hand-written policy lists what its struct takes", `package t
policies: p: {
	policy_name: "p"
	components: [{EMA: {ema_window: "10s", windw: "1s", in_ports: input: 1}}]
}`, `x.cue:4:41: policies.p.components[0].EMA.windw: unknown field (want one of correction_factor_on_max_envelope_violation, correction_factor_on_min_envelope_violation, ema_window, in_ports, out_ports, valid_during_warmup, warmup_window)`},
		{"a wrong type says what was expected", `package t
policies: p: {
	policy_name:         "p"
	evaluation_interval: 5
	components: []
}`, `x.cue:4:23: policies.p.evaluation_interval: want a Go duration string such as "500ms" or "1500s", got 5`},
		{"a missing field is reported once, at its struct", `package t
import "spillway.dev/blueprints/latencytarget"
policies: x: latencytarget.#Policy & {
	config: {
		policy_name: "x"
		flux_meter: selector: {api: "*"}
		target_latency: "100ms"
	}
}`, `x.cue:6:15: policies.x.config.flux_meter.selector.control_point: required field is missing (want a non-empty string)`},
		{"a component that fails to build does not cascade", `package t
policies: p: {
	policy_name: "p"
	components: [
		{Integrator: {out_ports: output: "SUM"}},
		{RateLimiter: {selector: control_point: "ingress", in_ports: rate_limit: "SUM"}},
	]
}`, `x.cue:5:4: policies.p.components[0].Integrator: unknown component type "Integrator"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			specs, diags := loadSource("x.cue", []byte(tc.src))
			for _, s := range specs {
				_, d := Compile(s)
				diags = append(diags, d...)
			}
			if len(diags) != 1 || !strings.HasPrefix(diags[0].String(), tc.want) {
				t.Fatalf("got %d diagnostics:\n%v\nwant one, starting:\n%s", len(diags), diags, tc.want)
			}
		})
	}
}

// LoadPaths returns the policies of the files that loaded beside the
// errors of those that did not, so that check compiles them too.
func TestLoadPathsKeepsTheFilesThatLoaded(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.cue"), "package t\npolicies: {\n")
	writeFile(t, filepath.Join(dir, "b.cue"), limiterPolicy("b", "ingress"))
	specs, diags := LoadPaths([]string{dir})
	if len(diags.Errors()) != 1 || !strings.HasSuffix(diags[0].Pos.File, "a.cue") {
		t.Fatalf("diags %v, want one error in a.cue", diags)
	}
	if len(specs) != 1 || specs[0].Name != "b" {
		t.Fatalf("specs %v, want b", specs)
	}
}
