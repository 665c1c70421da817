package components

import (
	"errors"
	"math"
	"time"
)

func init() {
	Register(Info{Type: "Gradient2Controller", New: func() Component { return &Gradient2Controller{} },
		Params: []Param{gradient2InitialLimit, gradient2MinLimit, gradient2MaxLimit, gradient2Smoothing,
			gradient2QueueSize, gradient2LongWindow, gradient2RTTTolerance}})
}

// gradient2LongWarmup is how many samples the long RTT averages arithmetically
// before it becomes an exponential average (Netflix's ExpAvgMeasurement(window, 10)).
const gradient2LongWarmup = 10

// Gradient2Controller is Netflix concurrency-limits' Gradient2Limit: a
// concurrency limit driven by the ratio of a long-term exponentially averaged
// RTT to the current RTT. Per sample:
//
//	longRtt  = EMA(rtt)                      (mean of the first 10 samples, then α = 2/(N+1))
//	if longRtt/rtt > 2:  longRtt ×= 0.95     (recovering after a long overload; this sample still uses the undecayed value)
//	if in_flight < limit/2: limit is held    (app-limited: do not grow)
//	gradient = clamp(rtt_tolerance·longRtt/rtt, 0.5, 1)
//	newLimit = limit·gradient + queue_size
//	limit    = clamp(limit·(1−smoothing) + newLimit·smoothing, min_limit, max_limit)
//
// Defaults are Gradient2Limit.Builder's: initial_limit 20, min_limit 20,
// max_limit 200, smoothing 0.2, queue_size 4, rtt_tolerance 1.5, and a long
// window of 600 samples, which is long_window "600s" here (see below).
//
// The Java limit takes one sample per request, or, wrapped in WindowedLimit,
// one per sampling window (default 1 s) with the window's average RTT and
// its maximum in-flight count. A tick is such a window: each tick with a
// valid rtt_ms > 0 and in_flight is one sample, with rtt_ms the tick's
// average latency (wire FluxMeter latency_avg_ms, as AverageSampleWindow
// does) and in_flight the count at the end of the tick. N is
// ceil(long_window / evaluation_interval) ticks. A tick without a sample
// (nothing completed) leaves the state alone.
//
// The output limit is the integer part of the estimate, as the Java limit
// reports it; it is initial_limit (clamped to [min_limit, max_limit]) until
// the first sample, so the control point is protected from the first tick.
// long_rtt_ms is invalid until the first sample.
type Gradient2Controller struct {
	InitialLimit *int      `json:"initial_limit"`
	MinLimit     *int      `json:"min_limit"`
	MaxLimit     *int      `json:"max_limit"`
	Smoothing    *float64  `json:"smoothing"`
	QueueSize    *int      `json:"queue_size"`
	LongWindow   *Duration `json:"long_window"`
	RTTTolerance *float64  `json:"rtt_tolerance"`

	minLimit, maxLimit float64
	smoothing          float64
	queueSize          float64
	tolerance          float64
	longAlpha          float64

	limit     float64
	longRttMs float64
	samples   int
	longSum   float64
}

// Ports: rtt_ms, in_flight → limit, long_rtt_ms.
func (g *Gradient2Controller) Ports() Ports {
	return Ports{In: []Port{
		{Name: "rtt_ms", Required: true}, {Name: "in_flight", Required: true},
	}, Out: []string{"limit", "long_rtt_ms"}}
}

// The parameters of Gradient2Controller (#Gradient2Params), with
// Gradient2Limit.Builder's defaults.
var (
	gradient2InitialLimit = Param{Name: "initial_limit", Kind: Integer, Default: 20, Range: AtLeast(1)}
	gradient2MinLimit     = Param{Name: "min_limit", Kind: Integer, Default: 20, Range: AtLeast(1)}
	gradient2MaxLimit     = Param{Name: "max_limit", Kind: Integer, Default: 200, Range: AtLeast(1)}
	gradient2Smoothing    = Param{Name: "smoothing", Default: 0.2, Range: Above(0).AtMost(1)}
	gradient2QueueSize    = Param{Name: "queue_size", Kind: Integer, Default: 4, Range: AtLeast(0)}
	gradient2LongWindow   = Param{Name: "long_window", Kind: DurationKind, Default: 600 * time.Second, Range: Above(0)}
	gradient2RTTTolerance = Param{Name: "rtt_tolerance", Default: 1.5, Range: AtLeast(1)}
)

// Provision applies the defaults and checks the ranges.
func (g *Gradient2Controller) Provision(env Env) error {
	var r paramReader
	initial := r.Int(gradient2InitialLimit, g.InitialLimit)
	minLimit := r.Int(gradient2MinLimit, g.MinLimit)
	maxLimit := r.Int(gradient2MaxLimit, g.MaxLimit)
	queue := r.Int(gradient2QueueSize, g.QueueSize)
	g.smoothing = r.Float(gradient2Smoothing, g.Smoothing)
	g.tolerance = r.Float(gradient2RTTTolerance, g.RTTTolerance)
	window := r.Duration(gradient2LongWindow, g.LongWindow)
	if r.err != nil {
		return r.err
	}
	if maxLimit < minLimit {
		return errors.New("max_limit must be >= min_limit")
	}
	g.minLimit, g.maxLimit, g.queueSize = float64(minLimit), float64(maxLimit), float64(queue)
	g.longAlpha = 2 / float64(window.Ticks(env.Interval)+1)
	g.limit = math.Max(g.minLimit, math.Min(g.maxLimit, float64(initial)))
	g.longRttMs = Invalid
	return nil
}

// Execute runs one tick: at most one sample.
func (g *Gradient2Controller) Execute(in, out []float64) {
	rttMs, inFlight := in[0], in[1]
	if IsValid(rttMs) && rttMs > 0 && IsValid(inFlight) {
		g.sample(rttMs, inFlight)
	}
	out[0], out[1] = math.Floor(g.limit), g.longRttMs
}

func (g *Gradient2Controller) sample(shortRttMs, inFlight float64) {
	// The long RTT: an arithmetic mean over the warm-up, then an EMA.
	if g.samples < gradient2LongWarmup {
		g.samples++
		g.longSum += shortRttMs
		g.longRttMs = g.longSum / float64(g.samples)
	} else {
		g.longRttMs = g.longRttMs*(1-g.longAlpha) + shortRttMs*g.longAlpha
	}
	longRttMs := g.longRttMs
	if longRttMs/shortRttMs > 2 {
		g.longRttMs *= 0.95
	}
	if inFlight < g.limit/2 {
		return
	}
	gradient := math.Max(0.5, math.Min(1, g.tolerance*longRttMs/shortRttMs))
	newLimit := g.limit*gradient + g.queueSize
	newLimit = g.limit*(1-g.smoothing) + newLimit*g.smoothing
	g.limit = math.Max(g.minLimit, math.Min(g.maxLimit, newLimit))
}
