package components

import "fmt"

func init() {
	Register(Info{Type: "Decider", New: func() Component { return &Decider{} },
		Params: []Param{{Name: "operator", Kind: String}}})
}

// Decider compares two signals and emits 1 or 0: gt, lt, gte, lte, eq, neq.
type Decider struct {
	Operator string `json:"operator"`
	cmp      func(a, b float64) bool
}

var deciderOps = map[string]func(a, b float64) bool{
	"gt":  func(a, b float64) bool { return a > b },
	"lt":  func(a, b float64) bool { return a < b },
	"gte": func(a, b float64) bool { return a >= b },
	"lte": func(a, b float64) bool { return a <= b },
	"eq":  func(a, b float64) bool { return a == b },
	"neq": func(a, b float64) bool { return a != b },
}

// Ports: lhs, rhs → output.
func (d *Decider) Ports() Ports {
	return Ports{In: []Port{{Name: "lhs", Required: true}, {Name: "rhs", Required: true}}, Out: []string{"output"}}
}

// Provision checks the operator.
func (d *Decider) Provision(Env) error {
	d.cmp = deciderOps[d.Operator]
	if d.cmp == nil {
		return fmt.Errorf("operator %q: want gt, lt, gte, lte, eq or neq", d.Operator)
	}
	return nil
}

// Execute runs one tick; an invalid input gives an invalid output.
func (d *Decider) Execute(in, out []float64) {
	switch {
	case !IsValid(in[0]) || !IsValid(in[1]):
		out[0] = Invalid
	case d.cmp(in[0], in[1]):
		out[0] = 1
	default:
		out[0] = 0
	}
}
