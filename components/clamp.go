package components

func init() { Register(Info{Type: "Clamp", New: func() Component { return &Clamp{} }}) }

// Clamp bounds its input to [min, max]. An invalid or unwired bound is not
// applied; min > max is invalid.
type Clamp struct{}

// Ports: input, min, max → output.
func (*Clamp) Ports() Ports {
	return Ports{In: []Port{{Name: "input", Required: true}, {Name: "min"}, {Name: "max"}}, Out: []string{"output"}}
}

// Execute runs one tick.
func (*Clamp) Execute(in, out []float64) {
	x, lo, hi := in[0], in[1], in[2]
	if IsValid(lo) && IsValid(hi) && lo > hi {
		out[0] = Invalid
		return
	}
	if IsValid(x) && IsValid(lo) && x < lo {
		x = lo
	}
	if IsValid(x) && IsValid(hi) && x > hi {
		x = hi
	}
	out[0] = x
}
