package components

import (
	"errors"
	"math"
)

func init() {
	Register(Info{Type: "SLOConcurrencyController", New: func() Component { return &SLOConcurrencyController{} }})
}

// SLOConcurrencyController sets a concurrency limit from latency measured
// against a setpoint the user knows (a fraction of the SLO), with no
// baseline to learn and so no warm-up.
//
// A concurrency limit charges each request for the time it holds the
// service, so an API twenty times as expensive holds its slots twenty times
// as long (Little's law) and cheap requests are not starved behind it: the
// admitted mix is the offered mix, and the queue behind the bottleneck
// stays as short as the limit allows. Each tick:
//
//   - latency above setpoint (overload): limit ← limit × max(min_gradient,
//     setpoint/latency), and slow start ends;
//   - otherwise, when the limit binds (in_flight ≥ utilization × limit):
//     during slow start (until the first overload) limit ← limit ×
//     slow_start_factor, after it limit ← limit + max(1, √limit), Envoy's
//     headroom;
//   - otherwise the limit holds: a limit the traffic does not reach says
//     nothing about capacity, and growing it would leave no protection for
//     the next surge;
//   - when nothing completed in the tick, the age of the oldest request in
//     flight (oldest_in_flight_ms, optional) stands in for the latency, so
//     a stalled service is an overload rather than silence.
//
// The limit stays within [min_limit, max_limit]. It starts at
// initial_limit, so protection holds from the first tick.
type SLOConcurrencyController struct {
	InitialLimit    *float64 `json:"initial_limit"`
	MinLimit        *float64 `json:"min_limit"`
	MaxLimit        *float64 `json:"max_limit"`
	MinGradient     *float64 `json:"min_gradient"`
	SlowStartFactor *float64 `json:"slow_start_factor"`
	Utilization     *float64 `json:"utilization"`

	initial, minLimit, maxLimit, minGradient, slowStart, utilization float64

	limit       float64
	slowStartOn bool
	started     bool
}

// Ports: latency_ms, setpoint_ms, in_flight, oldest_in_flight_ms? → limit, is_overload.
func (c *SLOConcurrencyController) Ports() Ports {
	return Ports{In: []Port{
		{Name: "latency_ms", Required: true}, {Name: "setpoint_ms", Required: true, Bounds: NonNegative},
		{Name: "in_flight", Required: true}, {Name: "oldest_in_flight_ms"},
	}, Out: []string{"limit", "is_overload"}}
}

// Provision applies the defaults and checks the parameters.
func (c *SLOConcurrencyController) Provision(Env) error {
	c.initial, c.minLimit, c.maxLimit = 10, 1, 100000
	c.minGradient, c.slowStart, c.utilization = 0.5, 2, 0.8
	for _, p := range []struct {
		v   *float64
		dst *float64
	}{{c.InitialLimit, &c.initial}, {c.MinLimit, &c.minLimit}, {c.MaxLimit, &c.maxLimit},
		{c.MinGradient, &c.minGradient}, {c.SlowStartFactor, &c.slowStart}, {c.Utilization, &c.utilization}} {
		if p.v != nil {
			*p.dst = *p.v
		}
	}
	switch {
	case c.minLimit < 1:
		return errors.New("min_limit must be >= 1")
	case c.maxLimit < c.minLimit:
		return errors.New("max_limit must be >= min_limit")
	case c.initial < c.minLimit || c.initial > c.maxLimit:
		return errors.New("initial_limit must be within [min_limit, max_limit]")
	case c.minGradient <= 0 || c.minGradient > 1:
		return errors.New("min_gradient must be in (0, 1]")
	case c.slowStart < 1:
		return errors.New("slow_start_factor must be >= 1")
	case c.utilization <= 0 || c.utilization > 1:
		return errors.New("utilization must be in (0, 1]")
	}
	return nil
}

// Execute runs one tick.
func (c *SLOConcurrencyController) Execute(in, out []float64) {
	latency, setpoint, inFlight := in[0], in[1], in[2]
	if !IsValid(latency) && IsValid(in[3]) && in[3] > 0 {
		latency = in[3]
	}
	if !c.started {
		c.limit, c.slowStartOn, c.started = c.initial, true, true
	}
	binding := IsValid(inFlight) && inFlight >= c.utilization*c.limit
	overload := 0.0
	switch {
	case !IsValid(setpoint) || setpoint <= 0:
		// No setpoint: hold.
	case IsValid(latency) && latency > setpoint:
		c.limit *= math.Max(c.minGradient, setpoint/latency)
		c.slowStartOn, overload = false, 1
	case IsValid(latency) && binding && c.slowStartOn:
		c.limit *= c.slowStart
	case IsValid(latency) && binding:
		c.limit += math.Max(1, math.Sqrt(c.limit))
	}
	c.limit = math.Min(c.maxLimit, math.Max(c.minLimit, c.limit))
	out[0], out[1] = c.limit, overload
}
