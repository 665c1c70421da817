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

// The gradient parameters of GradientController (#GradientParams).
var (
	gradientSlope       = Param{Name: "slope", Default: -1.0, Range: Unbounded.WithoutZero()}
	gradientMinGradient = Param{Name: "min_gradient", Default: 0.1, Range: Unbounded}
	gradientMaxGradient = Param{Name: "max_gradient", Default: 1.0, Range: Unbounded}
)

// provision applies the defaults and checks the ranges of slope,
// min_gradient and max_gradient, and that min_gradient <= max_gradient.
func (g *gradient) provision(slope, minGradient, maxGradient Param) error {
	var err error
	if g.slope, err = slope.Float(g.Slope); err != nil {
		return err
	}
	if g.lo, err = minGradient.Float(g.MinGradient); err != nil {
		return err
	}
	if g.hi, err = maxGradient.Float(g.MaxGradient); err != nil {
		return err
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
	Register(Info{Type: "GradientController", New: func() Component { return &GradientController{} },
		Params: []Param{gradientSlope, gradientMinGradient, gradientMaxGradient}})
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
func (c *GradientController) Provision(Env) error {
	return c.provision(gradientSlope, gradientMinGradient, gradientMaxGradient)
}

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
