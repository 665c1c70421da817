package components

import (
	"fmt"
	"math"
)

// gradient holds the parameters shared by GradientController and
// AIMDController: g = clamp((signal/setpoint)^slope, min_gradient,
// max_gradient), defaults -1, 0.1 and 1.
type gradient struct {
	Slope       *float64 `json:"slope"`
	MinGradient *float64 `json:"min_gradient"`
	MaxGradient *float64 `json:"max_gradient"`
	slope       float64
	lo, hi      float64
}

func (g *gradient) provision() error {
	g.slope, g.lo, g.hi = -1, 0.1, 1
	if g.Slope != nil {
		g.slope = *g.Slope
	}
	if g.MinGradient != nil {
		g.lo = *g.MinGradient
	}
	if g.MaxGradient != nil {
		g.hi = *g.MaxGradient
	}
	if g.slope == 0 {
		return fmt.Errorf("slope must not be 0")
	}
	if g.lo > g.hi {
		return fmt.Errorf("min_gradient %g is greater than max_gradient %g", g.lo, g.hi)
	}
	return nil
}

// of returns the clamped gradient, or invalid when signal or setpoint is
// invalid or the setpoint is 0. (signal/setpoint)^slope may be +Inf (for
// example 0^-1); clamping maps it to max_gradient.
func (g *gradient) of(signal, setpoint float64) float64 {
	if !IsValid(signal) || !IsValid(setpoint) || setpoint == 0 {
		return Invalid
	}
	v := math.Pow(signal/setpoint, g.slope)
	if !IsValid(v) {
		return Invalid
	}
	return math.Min(math.Max(v, g.lo), g.hi)
}

func init() {
	Register(Info{Type: "GradientController", New: func() Component { return &GradientController{} }})
}

// GradientController scales control_variable by the gradient of signal
// against setpoint: output = clamp(g·control_variable + optimize, min, max).
type GradientController struct {
	gradient
}

// Ports: signal, setpoint, control_variable, optimize, min, max → output.
func (c *GradientController) Ports() Ports {
	return Ports{In: []Port{
		{Name: "signal", Required: true}, {Name: "setpoint", Required: true}, {Name: "control_variable", Required: true},
		{Name: "optimize"}, {Name: "min"}, {Name: "max"},
	}, Out: []string{"output"}}
}

// Provision applies the defaults and checks the gradient bounds.
func (c *GradientController) Provision(Env) error { return c.provision() }

// Execute runs one tick.
func (c *GradientController) Execute(in, out []float64) {
	g := c.of(in[0], in[1])
	cv, optimize, lo, hi := in[2], in[3], in[4], in[5]
	if !IsValid(g) || !IsValid(cv) {
		out[0] = Invalid
		return
	}
	v := g * cv
	if IsValid(optimize) {
		v += optimize
	}
	if IsValid(lo) {
		v = math.Max(v, lo)
	}
	if IsValid(hi) {
		v = math.Min(v, hi)
	}
	out[0] = finite(v)
}
