package components

import "errors"

func init() {
	Register(Info{Type: "Variable", New: func() Component { return &Variable{} },
		Params: []Param{{Name: "value", Range: Unbounded}}})
}

// Variable emits a constant that can be changed at run time with Set.
type Variable struct {
	Value *float64 `json:"value"`
	v     float64
}

// Ports: → output.
func (*Variable) Ports() Ports { return Ports{Out: []string{"output"}} }

// Provision requires a value.
func (v *Variable) Provision(Env) error {
	if v.Value == nil {
		return errors.New("value is required")
	}
	v.v = *v.Value
	return nil
}

// Set changes the value from the next tick on (dynamic config).
func (v *Variable) Set(x float64) { v.v = x }

// Reset returns to the declared value.
func (v *Variable) Reset() { v.v = *v.Value }

// Execute runs one tick.
func (v *Variable) Execute(_, out []float64) { out[0] = v.v }
