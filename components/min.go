package components

import "math"

func init() {
	Register(Info{Type: "Min", New: func() Component { return &Extreme{pick: math.Min} }})
	Register(Info{Type: "Max", New: func() Component { return &Extreme{pick: math.Max} }})
}

// Extreme is the Min or Max of its inputs; invalid if any input is.
type Extreme struct {
	pick func(a, b float64) float64
}

// Ports: inputs (variadic) → output.
func (m *Extreme) Ports() Ports {
	return Ports{In: []Port{{Name: "inputs", Required: true, Variadic: true}}, Out: []string{"output"}}
}

// Execute runs one tick.
func (m *Extreme) Execute(in, out []float64) {
	if len(in) == 0 {
		out[0] = Invalid
		return
	}
	v := in[0]
	for _, x := range in {
		// Checked here: math.Min(-Inf, NaN) is -Inf, not NaN.
		if !IsValid(x) {
			out[0] = Invalid
			return
		}
		v = m.pick(v, x)
	}
	out[0] = v
}
