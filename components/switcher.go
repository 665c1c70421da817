package components

func init() { Register(Info{Type: "Switcher", New: func() Component { return &Switcher{} }}) }

// Switcher emits on_signal when switch is non-zero, off_signal when it is
// zero, and invalid when switch is invalid.
type Switcher struct{}

// Ports: on_signal, off_signal, switch → output.
func (*Switcher) Ports() Ports {
	return Ports{In: []Port{{Name: "on_signal", Required: true}, {Name: "off_signal", Required: true}, {Name: "switch", Required: true}}, Out: []string{"output"}}
}

// Execute runs one tick.
func (*Switcher) Execute(in, out []float64) {
	switch {
	case !IsValid(in[2]):
		out[0] = Invalid
	case in[2] != 0:
		out[0] = in[0]
	default:
		out[0] = in[1]
	}
}
