package components

import (
	"fmt"
	"time"
)

func init() {
	Register(Info{Type: "EMA", New: func() Component { return &EMA{} },
		Params: []Param{emaWindow, emaWarmup, emaMaxCorrection, emaMinCorrection, emaValidDuringWarmup}})
}

// The parameters of EMA (#EMAParams).
var (
	emaWindow            = Param{Name: "ema_window", Kind: DurationKind, Range: Above(0)}
	emaWarmup            = Param{Name: "warmup_window", Kind: DurationKind, Default: time.Duration(0), Range: AtLeast(0)}
	emaMaxCorrection     = Param{Name: "correction_factor_on_max_envelope_violation", Default: 1.0, Range: Above(0).AtMost(1)}
	emaMinCorrection     = Param{Name: "correction_factor_on_min_envelope_violation", Default: 1.0, Range: AtLeast(1)}
	emaValidDuringWarmup = Param{Name: "valid_during_warmup", Kind: Bool, Default: false}
)

// EMA is an exponential moving average with a warm-up and envelopes.
//
// N = ceil(ema_window/interval) and α = 2/(N+1). The first W =
// ceil(warmup_window/interval) valid samples are averaged; that mean is the
// first output. After warm-up an invalid input re-emits the last output, and
// N consecutive invalid inputs restart the warm-up. When the output leaves
// [min_envelope, max_envelope] the output and the state are multiplied by
// the matching correction factor.
type EMA struct {
	Window            Duration `json:"ema_window"`
	Warmup            Duration `json:"warmup_window"`
	MaxCorrection     *float64 `json:"correction_factor_on_max_envelope_violation"`
	MinCorrection     *float64 `json:"correction_factor_on_min_envelope_violation"`
	ValidDuringWarmup bool     `json:"valid_during_warmup"`

	alpha          float64
	n, warmupN     int
	maxCorr, minCo float64

	warm      bool // warm-up finished
	samples   int
	sum       float64
	value     float64
	invalidRn int
}

// Ports: input, max_envelope, min_envelope → output.
func (e *EMA) Ports() Ports {
	return Ports{In: []Port{{Name: "input", Required: true}, {Name: "max_envelope"}, {Name: "min_envelope"}}, Out: []string{"output"}}
}

// Provision derives N, α and W from the interval.
func (e *EMA) Provision(env Env) error {
	if err := emaWindow.Check(float64(e.Window)); err != nil {
		return err
	}
	if err := emaWarmup.Check(float64(e.Warmup)); err != nil {
		return err
	}
	if Duration(env.Interval) > e.Window {
		return fmt.Errorf("ema_window %v is shorter than the evaluation interval %v", e.Window.std(), env.Interval)
	}
	e.n = e.Window.Ticks(env.Interval)
	e.alpha = 2 / float64(e.n+1)
	e.warmupN = 0
	if e.Warmup > 0 {
		e.warmupN = e.Warmup.Ticks(env.Interval)
	}
	var err error
	if e.maxCorr, err = emaMaxCorrection.Float(e.MaxCorrection); err != nil {
		return err
	}
	if e.minCo, err = emaMinCorrection.Float(e.MinCorrection); err != nil {
		return err
	}
	e.reset()
	return nil
}

func (e *EMA) reset() {
	e.warm, e.samples, e.sum, e.value, e.invalidRn = false, 0, 0, Invalid, 0
}

// Execute runs one tick.
func (e *EMA) Execute(in, out []float64) {
	x, maxEnv, minEnv := in[0], in[1], in[2]
	if !IsValid(x) {
		e.invalidRn++
		switch {
		case e.warm:
			out[0] = e.value
		case e.ValidDuringWarmup && e.samples > 0:
			out[0] = e.sum / float64(e.samples)
		default:
			out[0] = Invalid
		}
		// The Nth invalid input still re-emits; the reset shows from the next tick.
		if e.invalidRn >= e.n {
			e.reset()
		}
		return
	}
	e.invalidRn = 0
	if !e.warm {
		e.samples++
		e.sum += x
		if e.samples < e.warmupN {
			if e.ValidDuringWarmup {
				out[0] = e.sum / float64(e.samples)
			} else {
				out[0] = Invalid
			}
			return
		}
		e.warm = true
		e.value = e.sum / float64(e.samples)
	} else {
		e.value = e.alpha*x + (1-e.alpha)*e.value
	}
	if IsValid(maxEnv) && e.value > maxEnv {
		e.value *= e.maxCorr
	}
	if IsValid(minEnv) && e.value < minEnv {
		e.value *= e.minCo
	}
	out[0] = e.value
}
