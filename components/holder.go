package components

func init() {
	Register(Info{Type: "Holder", New: func() Component { return &Holder{} }, Params: []Param{holderHoldFor}})
}

// holderHoldFor is Holder's parameter (#Holder).
var holderHoldFor = Param{Name: "hold_for", Kind: DurationKind, Range: Above(0)}

// Holder latches a valid input and emits it for hold_for (in ticks, the
// latching tick included); then it latches the next valid input. A valid,
// non-zero reset drops the hold at once.
type Holder struct {
	HoldFor Duration `json:"hold_for"`
	k       int
	left    int
	held    float64
}

// Ports: input, reset → output.
func (h *Holder) Ports() Ports {
	return Ports{In: []Port{{Name: "input", Required: true}, {Name: "reset"}}, Out: []string{"output"}}
}

// Provision converts hold_for to ticks.
func (h *Holder) Provision(env Env) error {
	if err := holderHoldFor.Check(float64(h.HoldFor)); err != nil {
		return err
	}
	h.k = h.HoldFor.Ticks(env.Interval)
	return nil
}

// Execute runs one tick.
func (h *Holder) Execute(in, out []float64) {
	x, reset := in[0], in[1]
	if IsValid(reset) && reset != 0 {
		h.left = 0
	}
	if h.left == 0 && IsValid(x) {
		h.held, h.left = x, h.k
	}
	if h.left == 0 {
		out[0] = Invalid
		return
	}
	out[0] = h.held
	h.left--
}
