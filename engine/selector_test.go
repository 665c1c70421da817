package engine

import (
	"strings"
	"testing"
)

// A selector is a control point and an API; the engine has no notion of a
// service, so a selector that names one is refused rather than ignored.
func TestASelectorThatNamesAServiceIsRefused(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"blueprint", `package p
import "spillway.dev/blueprints/latencyaimd"
policies: a: latencyaimd.#Policy & {
	config: {
		policy_name: "a"
		flux_meter: selector: {service: "frontend", control_point: "ingress"}
	}
}
`},
		{"hand-written", `package p
import bp "spillway.dev/blueprints"
policies: a: bp.#Policy & {
	policy_name: "a"
	components: [{FluxMeter: {
		selector: {service: "frontend", control_point: "ingress"}
		out_ports: latency_avg_ms: "LATENCY"
	}}]
}
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := LoadSource("p.cue", []byte(tc.src))
			if len(diags.Errors()) == 0 || !strings.Contains(diags.Error(), "service") {
				t.Fatalf("diagnostics = %v, want an error about the service field", diags)
			}
		})
	}
}
