package components

import (
	"math"
	"time"
)

func init() {
	Register(Info{Type: "AIMDController", New: func() Component { return &AIMDController{} },
		Params: []Param{aimdSlope, aimdMinGradient, gradientMaxGradient, aimdMaxLoadMultiplier, aimdLinearIncrement}})
}

// The parameters of AIMDController (#AIMDParams). A latency controller
// must shed load when latency rises (slope < 0), and never cuts the
// multiplier's gradient to 0.
var (
	aimdSlope             = Param{Name: "slope", Default: -1.0, Range: Unbounded.Below(0)}
	aimdMinGradient       = Param{Name: "min_gradient", Default: 0.1, Range: Above(0).AtMost(1)}
	aimdMaxLoadMultiplier = Param{Name: "max_load_multiplier", Default: 2.0, Range: AtLeast(1)}
	aimdLinearIncrement   = Param{Name: "load_multiplier_linear_increment", Default: 0.0025, Range: AtLeast(0)}
)

// aimdHold is how long the AIMD controller holds its last multiplier while
// its inputs are invalid, before it stops limiting.
const aimdHold = 5 * time.Second

// AIMDController turns a latency signal and its setpoint into a rate limit.
//
// overload = signal > setpoint. The increment integrator adds
// load_multiplier_linear_increment every tick without overload (capped at
// max_load_multiplier) and is reset to 0 on overload. With observed =
// accepted/incoming of the last tick and g the clamped latency gradient,
// load_multiplier = min(max_load_multiplier, observed·g + increment) and
// rate_limit = load_multiplier × incoming.
//
// Before its first valid tick the controller emits invalid (no limiting),
// and its integrator starts at max_load_multiplier: a service that has not
// been overloaded yet is not limited below twice its incoming rate. When the
// inputs turn invalid the last multiplier is held for 5 s.
type AIMDController struct {
	gradient
	MaxLoadMultiplier *float64 `json:"max_load_multiplier"`
	LinearIncrement   *float64 `json:"load_multiplier_linear_increment"`

	maxMult, step float64
	holdTicks     int

	started    bool
	increment  float64
	multiplier float64
	rateLimit  float64
	overload   float64
	invalidRun int
}

// Ports: signal, setpoint, incoming, accepted → load_multiplier, rate_limit, is_overload.
func (a *AIMDController) Ports() Ports {
	return Ports{In: []Port{
		{Name: "signal", Required: true}, {Name: "setpoint", Required: true},
		{Name: "incoming", Required: true}, {Name: "accepted", Required: true},
	}, Out: []string{"load_multiplier", "rate_limit", "is_overload"}}
}

// Provision applies the defaults.
func (a *AIMDController) Provision(env Env) error {
	if err := a.provision(aimdSlope, aimdMinGradient, gradientMaxGradient); err != nil {
		return err
	}
	var err error
	if a.maxMult, err = aimdMaxLoadMultiplier.Float(a.MaxLoadMultiplier); err != nil {
		return err
	}
	if a.step, err = aimdLinearIncrement.Float(a.LinearIncrement); err != nil {
		return err
	}
	a.holdTicks = Duration(aimdHold).Ticks(env.Interval)
	a.increment = a.maxMult
	return nil
}

// Execute runs one tick.
func (a *AIMDController) Execute(in, out []float64) {
	signal, setpoint, incoming, accepted := in[0], in[1], in[2], in[3]
	g := a.of(signal, setpoint)
	if !IsValid(g) || !IsValid(incoming) || !IsValid(accepted) {
		a.invalidRun++
		if !a.started || a.invalidRun > a.holdTicks {
			out[0], out[1], out[2] = Invalid, Invalid, Invalid
			return
		}
		out[0], out[2] = a.multiplier, a.overload
		out[1] = a.rateLimit
		if IsValid(incoming) && incoming > 0 {
			out[1] = a.multiplier * incoming
		}
		return
	}
	a.invalidRun = 0
	a.started = true
	if signal > setpoint {
		a.overload, a.increment = 1, 0
	} else {
		a.overload = 0
		a.increment = math.Min(a.increment+a.step, a.maxMult)
	}
	observed := 1.0
	if incoming > 0 {
		observed = accepted / incoming
	}
	a.multiplier = math.Min(a.maxMult, observed*g+a.increment)
	a.rateLimit = Invalid // an idle API is never limited to 0
	if incoming > 0 {
		a.rateLimit = a.multiplier * incoming
	}
	out[0], out[1], out[2] = a.multiplier, a.rateLimit, a.overload
}
