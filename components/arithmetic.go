package components

import (
	"fmt"
	"math"
)

func init() {
	Register(Info{Type: "Arithmetic", New: func() Component { return &Arithmetic{} },
		Params: []Param{{Name: "operator", Kind: String}}})
}

// Arithmetic combines two signals: add, sub, mul, div or pow. Division by
// zero and any non-finite result are invalid.
type Arithmetic struct {
	Operator string `json:"operator"`
	op       func(a, b float64) float64
}

// Ports: lhs, rhs → output.
func (a *Arithmetic) Ports() Ports {
	return Ports{In: []Port{{Name: "lhs", Required: true}, {Name: "rhs", Required: true}}, Out: []string{"output"}}
}

var arithmeticOps = map[string]func(a, b float64) float64{
	"add": func(a, b float64) float64 { return a + b },
	"sub": func(a, b float64) float64 { return a - b },
	"mul": func(a, b float64) float64 { return a * b },
	"div": func(a, b float64) float64 {
		if b == 0 {
			return Invalid
		}
		return a / b
	},
	"pow": math.Pow,
}

// Provision checks the operator.
func (a *Arithmetic) Provision(Env) error {
	a.op = arithmeticOps[a.Operator]
	if a.op == nil {
		return fmt.Errorf("operator %q: want add, sub, mul, div or pow", a.Operator)
	}
	return nil
}

// Execute runs one tick.
func (a *Arithmetic) Execute(in, out []float64) {
	out[0] = finite(a.op(in[0], in[1]))
}

// finite maps ±Inf to invalid; NaN stays invalid.
func finite(v float64) float64 {
	if math.IsInf(v, 0) {
		return Invalid
	}
	return v
}
