package testbed

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// TopFullSource is the TopFull policy for app, as CUE: the topfull
// blueprint over every API at ControlPoint, with the API's SLO and
// priority, its capacity alone as sustainable load, and bounds after the
// TopFull agent's: at most 1.5× the sustainable load, and at least a tenth
// of it (the agent's fixed floor of 100 req/s, made relative to the API).
// APIs form one cluster, "default", except an API whose bottleneck (the
// service that caps its capacity alone) serves no other API: its overload
// is its own, so it gets a cluster, and an agent, of its own. In one
// cluster the agent sees the cluster's worst latency, and a private
// bottleneck would have it cut the other APIs for nothing. Each API lists
// the services its calls cross, in call order, so that the agent can
// form dynamic clusters instead (spillway_agent run --clusters dynamic),
// and every bounded service is measured at a control point of its own name
// (services), which the live driver puts in front of it.
func TopFullSource(app App, name string) []byte { return topFullSource(app, name, false) }

// topFullSource is TopFullSource, with the blueprint's queue guard when
// guard: a second policy, NAME-guard (topfull.#QueueGuard), over the same
// APIs at 100 ms.
func topFullSource(app App, name string, guard bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "package policies\n\nimport \"spillway.dev/blueprints/topfull\"\n\n")
	fmt.Fprintf(&b, "policies: %s: topfull.#Policy & {\n\tconfig: {\n\t\tpolicy_name: %s\n\t\tapis: [\n", strconv.Quote(name), strconv.Quote(name))
	for i, api := range app.APIs {
		sustainable := math.Round(app.CapacityAlone(i))
		var services []string // quoted, each once
		for _, c := range api.Calls {
			if q := strconv.Quote(c.Service); !slices.Contains(services, q) {
				services = append(services, q)
			}
		}
		fmt.Fprintf(&b, "\t\t\t{name: %s, control_point: %q, slo: %q, priority: %d, cluster: %q, services: [%s], sustainable_rps: %g, lower_bound: %g, upper_bound: %g},\n",
			strconv.Quote(api.Label()), ControlPoint, api.SLO.String(), api.Priority, app.cluster(i), strings.Join(services, ", "), sustainable, math.Round(0.1*sustainable), 1.5*sustainable)
	}
	fmt.Fprintf(&b, "\t\t]\n")
	// Each bounded service's overload, measured live at a control point of
	// its name in front of it (the live driver puts one there); the
	// simulator reports the same in its /step answer.
	var svcs []string
	for _, s := range app.Services {
		if s.Workers > 0 {
			svcs = append(svcs, fmt.Sprintf("\t\t\t{name: %s, control_point: %s, workers: %d},\n", strconv.Quote(s.Name), strconv.Quote(s.Name), s.Workers))
		}
	}
	if len(svcs) > 0 {
		fmt.Fprintf(&b, "\t\tservices: [\n%s\t\t]\n", strings.Join(svcs, ""))
	}
	fmt.Fprintf(&b, "\t}\n}\n")
	if guard {
		fmt.Fprintf(&b, "\npolicies: %s: topfull.#QueueGuard & {\n\tconfig: {\n\t\tpolicy_name: %s\n\t\tapis: policies[%s].config.apis\n\t}\n}\n",
			strconv.Quote(name+"-guard"), strconv.Quote(name+"-guard"), strconv.Quote(name))
	}
	return []byte(b.String())
}

// cluster is API api's TopFull cluster; see TopFullSource.
func (a App) cluster(api int) string {
	bottleneck, worst := -1, 0.0
	for s, d := range a.demand(api) {
		if w := a.Services[s].Workers; w > 0 && d/float64(w) > worst {
			bottleneck, worst = s, d/float64(w)
		}
	}
	if bottleneck < 0 {
		return "default"
	}
	for i := range a.APIs {
		if i != api && a.demand(i)[bottleneck] > 0 {
			return "default"
		}
	}
	return a.APIs[api].Name
}

// TopFullPolicy loads TopFullSource(app).
func TopFullPolicy(app App) (Policy, error) { return topFullPolicy(app, false, false) }

// TopFullGuardPolicy is TopFullPolicy with the blueprint's queue guard
// (topfull.#QueueGuard, a policy of its own at 100 ms), reported as
// "topfull-guard".
func TopFullGuardPolicy(app App) (Policy, error) { return topFullPolicy(app, true, false) }

// DynamicClusterArgs are the agent's arguments for dynamic clusters.
var DynamicClusterArgs = []string{"--clusters", "dynamic"}

// topFullPolicy is the topfull policy of app, with the queue guard when
// guard, and run by an agent with dynamic clusters when dynamic (the same
// policy; the label gains "-dynamic").
func topFullPolicy(app App, guard, dynamic bool) (Policy, error) {
	label := "topfull"
	if guard {
		label += "-guard"
	}
	name := app.Name + "-" + label
	specs, diags := engine.LoadSource(name+".cue", topFullSource(app, name, guard))
	if len(diags.Errors()) > 0 {
		return Policy{}, fmt.Errorf("%s policy for %s: %v", label, app.Name, diags.Errors())
	}
	p := topFullForApps(guard, dynamic)
	p.Templates = specs
	return p, nil
}

// topFullForApps is the topfull policy made per app (see topFullPolicy).
func topFullForApps(guard, dynamic bool) Policy {
	p := Policy{Name: "topfull", ForApp: func(app App) (Policy, error) { return topFullPolicy(app, guard, dynamic) }}
	if guard {
		p.Name += "-guard"
	}
	if dynamic {
		p.Name += "-dynamic"
		p.AgentArgs = DynamicClusterArgs
	}
	return p
}

// TopFullForApps is the topfull policy of whatever app it runs on, for a
// suite: TopFullPolicy per app.
func TopFullForApps() Policy { return topFullForApps(false, false) }

// TopFullGuardForApps is TopFullForApps with the queue guard.
func TopFullGuardForApps() Policy { return topFullForApps(true, false) }

// TopFullDynamicForApps is TopFullForApps run by an agent that forms its
// clusters from the services overloaded now (DynamicClusterArgs), as
// "topfull-dynamic"; with guard, the queue guard's too, as
// "topfull-guard-dynamic".
func TopFullDynamicForApps(guard bool) Policy { return topFullForApps(guard, true) }

// RandomApp draws an app for agent training: boutique's call graph with
// the quantities TopFull's simulator draws per episode. Capacity: every
// pool's workers scaled by one factor in [0.5, 2]. Base latency: every
// service time scaled by one factor in [0.5, 2]. Overload steepness: the
// service-time spread (lognormal σ in [0.2, 1]), which sets how fast
// queues and tails grow near capacity. Unlike that simulator's, these
// queues have memory: a backlog built in one tick is served in the next.
func RandomApp(rng *rand.Rand) App {
	app := Boutique()
	app.Name = "random"
	capacity := 0.5 + 1.5*rng.Float64()
	latency := 0.5 + 1.5*rng.Float64()
	sigma := 0.2 + 0.8*rng.Float64()
	for i := range app.Services {
		if w := app.Services[i].Workers; w > 0 {
			app.Services[i].Workers = max(1, int(math.Round(float64(w)*capacity)))
		}
	}
	for i := range app.APIs {
		calls := make([]Call, len(app.APIs[i].Calls))
		copy(calls, app.APIs[i].Calls)
		for j := range calls {
			calls[j].Time.Mean = time.Duration(float64(calls[j].Time.Mean) * latency)
			if calls[j].Time.Kind == Lognormal {
				calls[j].Time.Sigma = sigma
			}
		}
		app.APIs[i].Calls = calls
	}
	return app
}

// RandomScenario draws an episode's load for agent training: 5 s of warm-up
// at half capacity, then four 15 s steps, each at a load multiple drawn
// from [0.3, 4] of capacity and each API's share of it perturbed by a
// factor in [0.5, 1.5], so the agent meets both slack and overload and
// both raises and cuts.
func RandomScenario(app App, rng *rand.Rand) Scenario {
	const steps, stepLen = 4, 15 * time.Second
	s := Scenario{Name: "random", Warmup: 5 * time.Second, Duration: steps * stepLen}
	weights, capacity := app.Weights(), app.Capacity()
	mix := func(load float64, perturb bool) []float64 {
		rates := make([]float64, len(weights))
		for i, w := range weights {
			rates[i] = w * load * capacity
			if perturb {
				rates[i] *= 0.5 + rng.Float64()
			}
		}
		return rates
	}
	s.Steps = append(s.Steps, Step{Duration: s.Warmup, Rates: mix(warmupLoad, false)})
	s.Marks = append(s.Marks, s.Warmup)
	for range steps {
		load := 0.3 + 3.7*rng.Float64()
		s.Load = max(s.Load, load)
		s.Steps = append(s.Steps, Step{Duration: stepLen, Rates: mix(load, true)})
	}
	return s
}
