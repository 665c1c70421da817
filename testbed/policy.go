package testbed

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// ControlPoint is the name of the control point in front of an App's entry
// service, in both drivers. It is the demo's and the example policies'.
const ControlPoint = "ingress"

// staticUtilization is the fraction of each API's capacity share that the
// static oracle admits. A bucket at exactly the capacity runs the
// bottleneck at utilization 1, where a queue with random service times
// grows without bound, so the oracle keeps 5 % headroom.
const staticUtilization = 0.95

// Policy is what protects an App's entry during a run.
type Policy struct {
	// Name labels the policy in reports, e.g. "latency-aimd".
	Name string
	// Static selects the oracle (see StaticPolicy); Templates are ignored.
	Static bool
	// Optimal, with Static, makes the oracle admit the optimal reference
	// (the LP of optimal.go) instead of the proportional one.
	Optimal bool
	// Templates are loaded policies, run as written: a policy for API "*"
	// is one controller for every API, as it is for a user who deploys
	// it. None and not Static means no protection.
	Templates []engine.Spec
	// Dagor makes every bounded service shed by priority on its own (see
	// DagorPolicy); it needs the virtual driver.
	Dagor bool
	// PerAPI instantiates each template once per API (InstantiatePolicy)
	// instead, so that every API has a controller of its own; reports
	// label the policy "NAME (per API)".
	PerAPI bool
	// ForApp, if not nil, makes the policy for each app it runs on (as
	// TopFullPolicy does from the app's APIs); the suite calls it per app.
	ForApp func(App) (Policy, error)
	// AgentArgs are extra arguments of the agent's run command, for a
	// policy with an RLActuator (DynamicClusterArgs, say).
	AgentArgs []string
}

// Label is how reports name the policy: Name, with " (per API)" when its
// templates are instantiated per API.
func (p Policy) Label() string {
	if p.PerAPI && !p.Static && len(p.Templates) > 0 {
		return p.Name + " (per API)"
	}
	return p.Name
}

// NoPolicy admits everything: the control point has no policy.
func NoPolicy() Policy { return Policy{Name: "none"} }

// StaticPolicy is the oracle: one token bucket per API at that API's share
// of the app's capacity, times 0.95 for headroom. Shares are recomputed,
// and set through the engine's dynamic config, whenever the scenario
// changes the offered mix or the workers, from the model's known service
// times, so the oracle knows what no real operator does. A share is the offered mix scaled to the largest load every
// bounded service sustains: the capacity that goodput_ratio is measured
// against. Priorities play no part in it.
func StaticPolicy() Policy { return Policy{Name: "static", Static: true} }

// StaticOptimalPolicy is the oracle at the physical limit: StaticPolicy
// with each API's bucket at its share of the optimal reference, the
// weighted-goodput-maximal admission (optimal.go), times 0.95.
func StaticOptimalPolicy() Policy { return Policy{Name: "static-optimal", Static: true, Optimal: true} }

// InstantiatePolicy turns policy templates into the policies that protect
// app at ControlPoint, one per API; Simulate uses it for a Policy with
// PerAPI set.
//
// A template whose every selector already names ControlPoint and one of
// app's API labels is written for this app and is used as it is. Any other
// template (typically one with api "*" or a different control point, such
// as policies/latency-aimd.cue) protects one API and is instantiated once
// per API of app:
//
//   - its name becomes NAME.API (for example "ingress-latency-aimd.home");
//   - every selector, of flux meters and actuators alike, becomes
//     {control_point: ControlPoint, api: API.Label()}.
//
// Nothing else changes: the template's parameters and wiring are the same
// for every API. In particular a FluxMeter keeps its slo, or its lack of
// one, which some circuits rely on (latencytarget counts failures as
// completed − goodput, with goodput counting every OK answer).
func InstantiatePolicy(templates []engine.Spec, app App) ([]engine.Spec, error) {
	labels := map[string]bool{}
	for _, api := range app.APIs {
		labels[api.Label()] = true
	}
	var out []engine.Spec
	for _, t := range templates {
		sels, err := selectors(t)
		if err != nil {
			return nil, err
		}
		specific := len(sels) > 0
		for _, s := range sels {
			specific = specific && s.ControlPoint == ControlPoint && labels[s.API]
		}
		if specific || len(sels) == 0 {
			out = append(out, t)
			continue
		}
		for _, api := range app.APIs {
			s, err := instantiate(t, api)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	seen := map[string]bool{}
	for _, s := range out {
		if seen[s.Name] {
			return nil, fmt.Errorf("policy %q: declared twice after instantiation per API", s.Name)
		}
		seen[s.Name] = true
	}
	return out, nil
}

// selector is the JSON form of components.Selector.
type selector struct {
	ControlPoint string `json:"control_point"`
	API          string `json:"api,omitempty"`
}

// selectors returns the selectors of every component of s that has one.
func selectors(s engine.Spec) ([]selector, error) {
	var out []selector
	for _, c := range s.Components {
		params, err := decodeParams(s, c)
		if err != nil {
			return nil, err
		}
		raw, ok := params["selector"]
		if !ok {
			continue
		}
		var sel selector
		if err := json.Unmarshal(raw, &sel); err != nil {
			return nil, fmt.Errorf("%s: %s.selector: %v", c.Pos, c.Path, err)
		}
		if sel.API == "" {
			sel.API = "*"
		}
		out = append(out, sel)
	}
	return out, nil
}

func decodeParams(s engine.Spec, c engine.ComponentSpec) (map[string]json.RawMessage, error) {
	params := map[string]json.RawMessage{}
	if len(c.Params) == 0 {
		return params, nil
	}
	if err := json.Unmarshal(c.Params, &params); err != nil {
		return nil, fmt.Errorf("%s: policy %q %s: params: %v", c.Pos, s.Name, c.Path, err)
	}
	return params, nil
}

// instantiate is template t re-pointed at one API; see InstantiatePolicy.
func instantiate(t engine.Spec, api API) (engine.Spec, error) {
	s := t
	s.Name = t.Name + "." + api.Name
	s.Components = slices.Clone(t.Components)
	sel, err := json.Marshal(selector{ControlPoint: ControlPoint, API: api.Label()})
	if err != nil {
		return engine.Spec{}, err
	}
	for i, c := range s.Components {
		params, err := decodeParams(t, c)
		if err != nil {
			return engine.Spec{}, err
		}
		if _, ok := params["selector"]; !ok {
			continue
		}
		params["selector"] = sel
		if s.Components[i].Params, err = json.Marshal(params); err != nil {
			return engine.Spec{}, err
		}
	}
	return s, nil
}

// The static oracle's bucket depth is staticBurst of its rate, at least
// staticMinBurst tokens. It is shallow so that admissions are smooth: the
// default, one tick's worth, lets half a second of capacity through at once
// whenever the bucket has filled, which queues at the bottleneck. Too
// shallow a bucket wastes tokens in the gaps between Poisson arrivals, so
// it holds at least a few.
const (
	staticBurst    = 20 * time.Millisecond
	staticMinBurst = 5
)

// staticPrefix starts the name of every static oracle policy.
const staticPrefix = "static."

// staticBucket is the oracle's burst for a rate.
func staticBucket(rate float64) float64 { return max(staticMinBurst, rate*staticBurst.Seconds()) }

// staticSpecs are the static oracle's policies for the given per-API
// rates: two Variables, RATE_LIMIT and BURST, feeding one RateLimiter per
// API. applyStatic changes the Variables as the scenario goes.
func staticSpecs(app App, rates []float64) []engine.Spec {
	specs := make([]engine.Spec, len(app.APIs))
	for i, api := range app.APIs {
		rate, _ := json.Marshal(map[string]float64{"value": rates[i]})
		burst, _ := json.Marshal(map[string]float64{"value": staticBucket(rates[i])})
		sel, _ := json.Marshal(map[string]selector{"selector": {ControlPoint: ControlPoint, API: api.Label()}})
		specs[i] = engine.Spec{
			Name:               staticPrefix + api.Name,
			File:               "(static oracle)",
			EvaluationInterval: 500 * time.Millisecond,
			Components: []engine.ComponentSpec{
				{Type: "Variable", Path: "components[0].Variable", Params: rate,
					Out: []engine.PortBinding{{Port: "output", Signal: "RATE_LIMIT"}}},
				{Type: "Variable", Path: "components[1].Variable", Params: burst,
					Out: []engine.PortBinding{{Port: "output", Signal: "BURST"}}},
				{Type: "RateLimiter", Path: "components[2].RateLimiter", Params: sel,
					In: []engine.PortBinding{{Port: "rate_limit", Signal: "RATE_LIMIT"}, {Port: "burst", Signal: "BURST"}}},
			},
		}
	}
	return specs
}

// staticRates is what the oracle admits per API at time at of scenario s:
// the capacity shares, or with optimal the LP optimum. Like the shares,
// the optimum is scaled up until some bounded service is full, so that
// under light load the buckets sit at capacity, not at the offered rates,
// and Poisson bursts pass.
func staticRates(app App, s Scenario, at time.Duration, optimal bool) ([]float64, error) {
	workers := s.workersAt(app, at)
	shares := app.capacityShares(s.ratesAt(at), workers)
	if optimal {
		var err error
		if shares, err = app.optimalRates(s.ratesAt(at), workers); err != nil {
			return nil, err
		}
		if f := app.scale(shares, workers); f > 1 && !math.IsInf(f, 1) {
			for i := range shares {
				shares[i] *= f
			}
		}
	}
	for i := range shares {
		shares[i] *= staticUtilization
	}
	return shares, nil
}

// applyStatic sets the static oracle's buckets for time at of scenario s,
// through the engine's dynamic config (the policies of staticSpecs must be
// running), and ticks so that the new rates hold at once, not one interval
// later.
func applyStatic(eng *engine.Engine, app App, s Scenario, at time.Duration, optimal bool) error {
	rates, err := staticRates(app, s, at, optimal)
	if err != nil {
		return err
	}
	for i, rate := range rates {
		name := app.APIs[i].Name
		cfg := engine.DynamicConfig{Variables: map[string]float64{"RATE_LIMIT": rate, "BURST": staticBucket(rate)}}
		if err := eng.SetDynamicConfig(staticPrefix+name, cfg); err != nil {
			return fmt.Errorf("testbed: static oracle at %v: %w", at, err)
		}
	}
	eng.Tick()
	return nil
}

// staticChanges are the times at which the oracle's rates change: the
// start of the run, every step whose rates differ from the previous one,
// and every worker change and slowdown.
func staticChanges(s Scenario) []time.Duration {
	times := []time.Duration{0}
	var at time.Duration
	for i, st := range s.Steps {
		if i > 0 && !slices.Equal(st.Rates, s.Steps[i-1].Rates) {
			times = append(times, at)
		}
		at += st.Duration
	}
	for _, c := range s.Changes {
		times = append(times, c.At)
	}
	for _, c := range s.Slowdowns {
		times = append(times, c.At)
	}
	slices.Sort(times)
	return slices.Compact(times)
}
