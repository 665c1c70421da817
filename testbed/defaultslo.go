package testbed

import (
	"fmt"
	"math"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// DefaultSLOPolicy is policies/default.cue as the README tells a user with
// SLOs to write it: the slo blueprint with slo set to the tightest SLO of
// the app's APIs, reported as "default-slo".
func DefaultSLOPolicy(app App) (Policy, error) {
	tightest := time.Duration(math.MaxInt64)
	for _, api := range app.APIs {
		tightest = min(tightest, api.SLO)
	}
	src := fmt.Sprintf(`package policies

import "spillway.dev/blueprints/slo"

policies: "ingress-default": slo.#Policy & {
	config: {
		policy_name: "ingress-default"
		selector: control_point: %q
		slo: %q
	}
}
`, ControlPoint, tightest.String())
	specs, diags := engine.LoadSource(app.Name+"-default-slo.cue", []byte(src))
	if len(diags.Errors()) > 0 {
		return Policy{}, fmt.Errorf("default-slo policy for %s: %v", app.Name, diags.Errors())
	}
	return Policy{Name: "default-slo", Templates: specs, ForApp: DefaultSLOPolicy}, nil
}

// DefaultSLOForApps is DefaultSLOPolicy for whatever app it runs on.
func DefaultSLOForApps() Policy { return Policy{Name: "default-slo", ForApp: DefaultSLOPolicy} }
