package testbed

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// DefaultSLOPolicy is policies/default.cue as the README tells a user with
// SLOs to write it: the slo blueprint with slo set to the tightest SLO of
// the app's APIs and, where their SLOs differ, each API's own in
// api_slos, reported as "default-slo".
func DefaultSLOPolicy(app App) (Policy, error) { return defaultSLOPolicy(app, true) }

// defaultSLOPolicy is DefaultSLOPolicy, with each API's own SLO in
// api_slos where perAPI is set, and otherwise the tightest for all, as a
// user who states only slo has it.
func defaultSLOPolicy(app App, perAPI bool) (Policy, error) {
	tightest := time.Duration(math.MaxInt64)
	for _, api := range app.APIs {
		tightest = min(tightest, api.SLO)
	}
	var own strings.Builder
	for _, api := range app.APIs {
		if perAPI && api.SLO != tightest {
			fmt.Fprintf(&own, "\t\tapi_slos: %q: %q\n", api.Label(), api.SLO.String())
		}
	}
	src := fmt.Sprintf(`package policies

import "spillway.dev/blueprints/slo"

policies: "ingress-default": slo.#Policy & {
	config: {
		policy_name: "ingress-default"
		selector: control_point: %q
		slo: %q
%s	}
}
`, ControlPoint, tightest.String(), own.String())
	specs, diags := engine.LoadSource(app.Name+"-default-slo.cue", []byte(src))
	if len(diags.Errors()) > 0 {
		return Policy{}, fmt.Errorf("default-slo policy for %s: %v", app.Name, diags.Errors())
	}
	return Policy{Name: "default-slo", Templates: specs, ForApp: DefaultSLOPolicy}, nil
}

// DefaultSLOForApps is DefaultSLOPolicy for whatever app it runs on.
func DefaultSLOForApps() Policy { return Policy{Name: "default-slo", ForApp: DefaultSLOPolicy} }
