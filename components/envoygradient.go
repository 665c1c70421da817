package components

import (
	"errors"
	"math"
	"math/rand/v2"
	"time"
)

func init() {
	Register(Info{Type: "EnvoyGradientController", New: func() Component { return &EnvoyGradientController{} },
		Params: []Param{envoyMinRTTCalcInterval, envoyJitterPct, envoyMinRTTRequestCount, envoyMinConcurrency,
			envoyBufferPct, envoyMaxConcurrencyLimit}})
}

// envoyMinLimitRuns is how many consecutive sample windows may set the limit
// to min_concurrency before the minRTT is measured again (Envoy's
// GradientController::updateConcurrencyLimit).
const envoyMinLimitRuns = 5

// EnvoyGradientController is Envoy's adaptive-concurrency gradient controller
// (source/extensions/filters/http/adaptive_concurrency/controller/
// gradient_controller.cc). It alternates two kinds of window:
//
//   - minRTT windows: the limit is pinned to min_concurrency until
//     min_rtt_request_count requests have completed; their latency becomes
//     minRTT, and the limit returns to its value before the window. The next
//     window starts min_rtt_calc_interval plus a random jitter of up to
//     jitter_pct % of it later, or at once when 5 consecutive sample windows
//     set the limit to min_concurrency.
//
//   - sample windows, in between, each of which updates the limit from the
//     window's latency percentile sampleRTT:
//
//     gradient = clamp((minRTT + minRTT·buffer_pct/100) / sampleRTT, 0.5, 2)
//     limit    = gradient·limit
//     newLimit = clamp(⌊limit + √limit⌋, min_concurrency, max_concurrency_limit)
//
// Defaults are Envoy's: min_concurrency 3, min_rtt_request_count 50,
// jitter_pct 15, buffer_pct 25, max_concurrency_limit 1000. Envoy has no
// default minRTT interval; min_rtt_calc_interval defaults to the 60 s of
// Envoy's documented example configuration.
//
// Envoy's sample window is concurrency_update_interval; here it is one tick.
// rtt_ms is the tick's latency percentile (Envoy's
// sample_aggregate_percentile, default p50: wire FluxMeter latency_p50_ms),
// completed_rps × interval the number of samples, and in_flight the count
// at the end of the tick. A tick that completed nothing leaves the limit
// alone, as an empty Envoy histogram does. Timers become tick counts: a
// window due after D ms starts at the tick during which D elapses,
// ⌈D/interval⌉ ticks later; that tick's samples are discarded, as Envoy
// clears its histogram on entering the window.
//
// Envoy takes the percentile of the minRTT window's requests, and discards
// requests sent before the window began. A tick cannot tell when a request
// was sent, so a tick counts toward minRTT only when the previous tick
// ended with at most min_concurrency requests in flight (the pin has taken
// hold; the first tick never counts), and minRTT is the completion-weighted
// mean of the counted ticks' rtt_ms. The window closes at the end of the
// first tick whose count reaches min_rtt_request_count.
//
// The jitter comes from a PCG generator seeded (1, 2), so runs are
// reproducible. Envoy's later options fixed_value (a configured minRTT) and
// min_concurrency_limit (a floor that does not pin) are not offered.
//
// The controller starts in a minRTT window, as Envoy does, so the control
// point is limited to min_concurrency from the first tick. min_rtt_ms is
// invalid until the first window closes.
type EnvoyGradientController struct {
	MinRTTCalcInterval  *Duration `json:"min_rtt_calc_interval"`
	MinRTTRequestCount  *int      `json:"min_rtt_request_count"`
	JitterPct           *float64  `json:"jitter_pct"`
	MinConcurrency      *int      `json:"min_concurrency"`
	BufferPct           *float64  `json:"buffer_pct"`
	MaxConcurrencyLimit *int      `json:"max_concurrency_limit"`

	interval        time.Duration
	minRTTInterval  time.Duration
	requestCount    float64
	jitter, buffer  float64 // fractions of 1
	minConcurrency  float64
	maxLimit        float64
	intervalSeconds float64
	rng             *rand.Rand

	limit         float64
	minRTTMs      float64
	inWindow      bool
	deferredLimit float64
	windowCount   float64 // requests counted toward minRTT
	windowSumMs   float64 // Σ rtt_ms × count over the counted ticks
	ticksToWindow int     // until the next minRTT window, outside one
	minLimitRuns  int
	prevInFlight  float64
}

// Ports: rtt_ms, completed_rps, in_flight → limit, min_rtt_ms.
func (e *EnvoyGradientController) Ports() Ports {
	return Ports{In: []Port{
		{Name: "rtt_ms", Required: true}, {Name: "completed_rps", Required: true}, {Name: "in_flight", Required: true},
	}, Out: []string{"limit", "min_rtt_ms"}}
}

// The parameters of EnvoyGradientController (#EnvoyGradientParams), with
// the defaults of Envoy's gradient_controller.cc; min_rtt_calc_interval
// has none there, 60 s is its documented example.
var (
	envoyMinRTTCalcInterval  = Param{Name: "min_rtt_calc_interval", Kind: DurationKind, Default: time.Minute, Range: Above(0)}
	envoyJitterPct           = Param{Name: "jitter_pct", Default: 15.0, Range: AtLeast(0).AtMost(100)}
	envoyMinRTTRequestCount  = Param{Name: "min_rtt_request_count", Kind: Integer, Default: 50, Range: AtLeast(1)}
	envoyMinConcurrency      = Param{Name: "min_concurrency", Kind: Integer, Default: 3, Range: AtLeast(1)}
	envoyBufferPct           = Param{Name: "buffer_pct", Default: 25.0, Range: AtLeast(0).AtMost(100)}
	envoyMaxConcurrencyLimit = Param{Name: "max_concurrency_limit", Kind: Integer, Default: 1000, Range: AtLeast(1)}
)

// Provision applies the defaults, checks the ranges and enters the first
// minRTT window.
func (e *EnvoyGradientController) Provision(env Env) error {
	var r paramReader
	minConcurrency := r.Int(envoyMinConcurrency, e.MinConcurrency)
	requestCount := r.Int(envoyMinRTTRequestCount, e.MinRTTRequestCount)
	maxLimit := r.Int(envoyMaxConcurrencyLimit, e.MaxConcurrencyLimit)
	jitterPct := r.Float(envoyJitterPct, e.JitterPct)
	bufferPct := r.Float(envoyBufferPct, e.BufferPct)
	interval := r.Duration(envoyMinRTTCalcInterval, e.MinRTTCalcInterval)
	if r.err != nil {
		return r.err
	}
	e.minRTTInterval = time.Duration(interval)
	switch {
	case maxLimit < minConcurrency:
		return errors.New("max_concurrency_limit must be >= min_concurrency")
	case env.Interval <= 0:
		return errors.New("the evaluation interval must be > 0")
	}
	e.interval, e.intervalSeconds = env.Interval, env.Interval.Seconds()
	e.minConcurrency, e.maxLimit, e.requestCount = float64(minConcurrency), float64(maxLimit), float64(requestCount)
	e.jitter, e.buffer = jitterPct/100, bufferPct/100
	e.rng = rand.New(rand.NewPCG(1, 2))
	e.minRTTMs, e.prevInFlight = Invalid, Invalid
	e.limit = e.minConcurrency
	e.enterMinRTTWindow()
	return nil
}

// Execute runs one tick: a minRTT window tick or a sample window.
func (e *EnvoyGradientController) Execute(in, out []float64) {
	rttMs, completedRps, inFlight := in[0], in[1], in[2]
	samples := 0.0
	if IsValid(rttMs) && rttMs > 0 && IsValid(completedRps) && completedRps > 0 {
		samples = completedRps * e.intervalSeconds
	}
	switch {
	case e.inWindow:
		if samples > 0 && IsValid(e.prevInFlight) && e.prevInFlight <= e.minConcurrency {
			e.windowCount += samples
			e.windowSumMs += rttMs * samples
		}
		if e.windowCount >= e.requestCount {
			e.minRTTMs = e.windowSumMs / e.windowCount
			e.setLimit(e.deferredLimit)
			e.inWindow = false
			e.ticksToWindow = e.ticksUntilNextWindow()
		}
	default:
		e.ticksToWindow--
		if e.ticksToWindow <= 0 {
			e.enterMinRTTWindow()
			break
		}
		if samples > 0 {
			e.setLimit(e.newLimit(rttMs))
			if e.minLimitRuns >= envoyMinLimitRuns {
				e.enterMinRTTWindow()
			}
		}
	}
	e.prevInFlight = inFlight
	out[0], out[1] = e.limit, e.minRTTMs
}

// newLimit is Envoy's calculateNewLimit for a sampleRTT of sampleRttMs.
func (e *EnvoyGradientController) newLimit(sampleRttMs float64) float64 {
	bufferedMinRTTMs := e.minRTTMs + e.minRTTMs*e.buffer
	gradient := math.Max(0.5, math.Min(2, bufferedMinRTTMs/sampleRttMs))
	limit := e.limit * gradient
	headroom := math.Sqrt(limit)
	return math.Max(e.minConcurrency, math.Min(e.maxLimit, math.Floor(limit+headroom)))
}

// setLimit is Envoy's updateConcurrencyLimit: it counts the consecutive
// sample windows that set the limit to min_concurrency.
func (e *EnvoyGradientController) setLimit(limit float64) {
	old := e.limit
	e.limit = limit
	if !e.inWindow && old == e.minConcurrency && limit == e.minConcurrency {
		e.minLimitRuns++
	} else {
		e.minLimitRuns = 0
	}
}

func (e *EnvoyGradientController) enterMinRTTWindow() {
	e.inWindow = true
	e.deferredLimit = e.limit
	e.setLimit(e.minConcurrency)
	e.windowCount, e.windowSumMs = 0, 0
}

// ticksUntilNextWindow is Envoy's applyJitter in ticks: the interval plus
// a uniformly random 0 to ⌈interval·jitter⌉−1 ms, rounded up to ticks.
func (e *EnvoyGradientController) ticksUntilNextWindow() int {
	delayMs := e.minRTTInterval.Milliseconds()
	if rangeMs := uint64(math.Ceil(float64(delayMs) * e.jitter)); rangeMs > 0 {
		delayMs += int64(e.rng.Uint64() % rangeMs)
	}
	return Duration(time.Duration(delayMs) * time.Millisecond).Ticks(e.interval)
}
