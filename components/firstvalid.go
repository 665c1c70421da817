package components

func init() { Register(Info{Type: "FirstValid", New: func() Component { return &FirstValid{} }}) }

// FirstValid emits the first valid of its inputs, or invalid.
type FirstValid struct{}

// Ports: inputs (variadic) → output.
func (*FirstValid) Ports() Ports {
	return Ports{In: []Port{{Name: "inputs", Required: true, Variadic: true}}, Out: []string{"output"}}
}

// Execute runs one tick.
func (*FirstValid) Execute(in, out []float64) {
	out[0] = Invalid
	for _, x := range in {
		if IsValid(x) {
			out[0] = x
			return
		}
	}
}
