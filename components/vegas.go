package components

import (
	"errors"
	"math"
	"math/rand/v2"
)

func init() {
	Register(Info{Type: "VegasController", New: func() Component { return &VegasController{} },
		Params: []Param{vegasInitialLimit, vegasMaxLimit, vegasSmoothing, vegasProbeMultiplier}})
}

// VegasController is Netflix concurrency-limits' VegasLimit, TCP Vegas
// applied to a concurrency limit: the queue is estimated from how far the
// RTT is above the no-load RTT, and the limit moves to keep that queue
// between alpha and beta. Per sample, with lg = max(1, ⌊log10(⌊limit⌋)⌋)
// (Log10RootIntFunction):
//
//	every probe_multiplier·limit·jitter samples (jitter uniform in [0.5, 1)):
//	    rttNoLoad = rtt, limit held                (probe: forget an old minimum)
//	if no rttNoLoad yet or rtt < rttNoLoad: rttNoLoad = rtt, limit held
//	queue = ⌈limit·(1 − rttNoLoad/rtt)⌉
//	if in_flight·2 < limit: limit held             (app-limited)
//	queue ≤ lg (threshold):  newLimit = limit + 6·lg   (beta: no queue, grow fast)
//	queue < 3·lg (alpha):    newLimit = limit + lg
//	queue > 6·lg (beta):     newLimit = limit − lg
//	otherwise:               limit held
//	limit = (1−smoothing)·limit + smoothing·clamp(newLimit, 1, max_limit)
//
// Defaults are VegasLimit.Builder's: initial_limit 20, max_limit 1000,
// smoothing 1, probe_multiplier 30, and its alpha 3·lg, beta 6·lg,
// threshold lg, increase limit + lg and decrease limit − lg.
//
// The Java limit takes one sample per request. Here a tick is one sample:
// rtt_ms is the tick's average latency (wire FluxMeter latency_avg_ms) and
// in_flight the count at the end of the tick, as Netflix's WindowedLimit
// feeds a window's average RTT and in-flight count to the limit it wraps. A
// tick with no valid rtt_ms > 0 or in_flight is no sample and leaves the
// state alone. The probe interval counts samples, so it is ticks here: at
// 500 ms ticks and a limit of 20, a probe every 150 to 300 s. The jitter
// comes from a PCG generator seeded (1, 2), so runs are reproducible. The
// Java limit's didDrop (a timed-out request forces a decrease) has no input
// here: a drop shows as a high RTT instead.
//
// The output limit is the integer part of the estimate, as the Java limit
// reports it; it is initial_limit until the first update, so the control
// point is protected from the first tick. rtt_noload_ms is invalid until
// the first sample.
type VegasController struct {
	InitialLimit    *int     `json:"initial_limit"`
	MaxLimit        *int     `json:"max_limit"`
	Smoothing       *float64 `json:"smoothing"`
	ProbeMultiplier *int     `json:"probe_multiplier"`

	maxLimit        float64
	smoothing       float64
	probeMultiplier float64

	limit       float64
	rttNoLoadMs float64
	probeCount  int
	probeJitter float64
	rng         *rand.Rand
}

// Ports: rtt_ms, in_flight → limit, rtt_noload_ms.
func (v *VegasController) Ports() Ports {
	return Ports{In: []Port{
		{Name: "rtt_ms", Required: true}, {Name: "in_flight", Required: true},
	}, Out: []string{"limit", "rtt_noload_ms"}}
}

// The parameters of VegasController (#VegasParams), with
// VegasLimit.Builder's defaults.
var (
	vegasInitialLimit    = Param{Name: "initial_limit", Kind: Integer, Default: 20, Range: AtLeast(1)}
	vegasMaxLimit        = Param{Name: "max_limit", Kind: Integer, Default: 1000, Range: AtLeast(1)}
	vegasSmoothing       = Param{Name: "smoothing", Default: 1.0, Range: Above(0).AtMost(1)}
	vegasProbeMultiplier = Param{Name: "probe_multiplier", Kind: Integer, Default: 30, Range: AtLeast(1)}
)

// Provision applies the defaults and checks the ranges.
func (v *VegasController) Provision(Env) error {
	initial, err := vegasInitialLimit.Int(v.InitialLimit)
	if err != nil {
		return err
	}
	maxLimit, err := vegasMaxLimit.Int(v.MaxLimit)
	if err != nil {
		return err
	}
	probe, err := vegasProbeMultiplier.Int(v.ProbeMultiplier)
	if err != nil {
		return err
	}
	if v.smoothing, err = vegasSmoothing.Float(v.Smoothing); err != nil {
		return err
	}
	if maxLimit < initial {
		return errors.New("max_limit must be >= initial_limit")
	}
	v.limit, v.maxLimit, v.probeMultiplier = float64(initial), float64(maxLimit), float64(probe)
	v.rttNoLoadMs = Invalid
	v.rng = rand.New(rand.NewPCG(1, 2))
	v.resetProbeJitter()
	return nil
}

// Execute runs one tick: at most one sample.
func (v *VegasController) Execute(in, out []float64) {
	rttMs, inFlight := in[0], in[1]
	if IsValid(rttMs) && rttMs > 0 && IsValid(inFlight) {
		v.sample(rttMs, inFlight)
	}
	out[0], out[1] = math.Floor(v.limit), v.rttNoLoadMs
}

func (v *VegasController) resetProbeJitter() { v.probeJitter = 0.5 + 0.5*v.rng.Float64() }

func (v *VegasController) sample(rttMs, inFlight float64) {
	v.probeCount++
	if v.probeJitter*v.probeMultiplier*v.limit <= float64(v.probeCount) {
		v.resetProbeJitter()
		v.probeCount = 0
		v.rttNoLoadMs = rttMs
		return
	}
	if !IsValid(v.rttNoLoadMs) || rttMs < v.rttNoLoadMs {
		v.rttNoLoadMs = rttMs
		return
	}
	queue := math.Ceil(v.limit * (1 - v.rttNoLoadMs/rttMs))
	if inFlight*2 < v.limit {
		return
	}
	lg := vegasLog10(v.limit)
	alpha, beta, threshold := 3*lg, 6*lg, lg
	var newLimit float64
	switch {
	case queue <= threshold:
		newLimit = v.limit + beta
	case queue < alpha:
		newLimit = v.limit + lg
	case queue > beta:
		newLimit = v.limit - lg
	default:
		return
	}
	newLimit = math.Max(1, math.Min(v.maxLimit, newLimit))
	v.limit = (1-v.smoothing)*v.limit + v.smoothing*newLimit
}

// vegasLog10 is Netflix's Log10RootIntFunction of the integer part of
// limit: max(1, ⌊log10(⌊limit⌋)⌋), so 1 below 100, 2 up to 999, and so on.
func vegasLog10(limit float64) float64 {
	n := math.Floor(limit)
	if n < 1 {
		return 1
	}
	return math.Max(1, math.Floor(math.Log10(n)))
}
