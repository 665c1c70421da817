package components

import (
	"fmt"
	"math"
	"time"
)

func init() {
	Register(Info{Type: "LatencyTargetController", New: func() Component { return &LatencyTargetController{} },
		Params: []Param{latencyTargetTarget, latencyTargetDecFactor, latencyTargetDecThreshold, latencyTargetIncFactor,
			latencyTargetIncThreshold, latencyTargetIncWeight, latencyTargetMinRate, latencyTargetMaxRate,
			latencyTargetNreq, latencyTargetTimeout, latencyTargetAlpha, latencyTargetInitialRate}})
}

// LatencyTargetController steers a token bucket's rate so that the smoothed
// p90 latency of the admitted requests sits at target_latency. It is seed
// 003's overload middleware (a Clojure/Ring handler) run in rounds:
//
//	smoothed = alpha·smoothed + (1−alpha)·p90
//	err      = (smoothed − target) / target
//	overload or err > dec_threshold:  rate = max(rate/dec_factor, min_rate)
//	err < inc_threshold:              rate = min(rate + |err − inc_weight|·inc_factor, max_rate)
//	otherwise:                        rate is held
//
// A round closes after nreq completed requests or after timeout, whichever
// comes first, as the seed's documentation says. The seed's own timer test
// is inverted (it fires while less than a second has passed since start),
// hard-codes 1000 ms instead of :timeout and never re-arms; we implement the
// documented intent, not that code.
//
// The seed sees every request; a component sees one tick. Each tick adds
// completed_rps × interval requests to the round and contributes its
// latency_p90_ms, weighted by that count, to the round's p90: the round's
// p90 is the request-weighted mean of its ticks' p90s. Rounds therefore
// close on tick boundaries, at most once per tick: a tick that completes
// more than nreq requests closes one round, where the seed would close
// several. The timeout is ceil(timeout/interval) ticks.
//
// A round with no valid p90 (an idle service, or an invalid input) leaves
// smoothed alone and moves the rate only if it saw an overload: the seed
// adjusts only when a request completes, so an idle service neither earns
// increases nor pays decreases. overload_seen is optional; any tick of the
// round where it is valid and > 0 makes the round overloaded (the seed's
// "the app answered 503").
//
// smoothed starts at the target and the rate at initial_rate (the seed's
// bucket rate, 10/s). The output is never invalid: before the first round
// it is initial_rate, and after it the rate of the last round.
type LatencyTargetController struct {
	TargetLatency Duration  `json:"target_latency"`
	DecFactor     *float64  `json:"dec_factor"`
	DecThreshold  *float64  `json:"dec_threshold"`
	IncFactor     *float64  `json:"inc_factor"`
	IncThreshold  *float64  `json:"inc_threshold"`
	IncWeight     *float64  `json:"inc_weight"`
	MinRate       *float64  `json:"min_rate"`
	MaxRate       *float64  `json:"max_rate"`
	Nreq          *int      `json:"nreq"`
	Timeout       *Duration `json:"timeout"`
	Alpha         *float64  `json:"alpha"`
	InitialRate   *float64  `json:"initial_rate"`

	targetMs                     float64
	decFactor, decThreshold      float64
	incFactor, incThreshold      float64
	incWeight                    float64
	minRatePerSec, maxRatePerSec float64
	requestsPerRound             float64
	timeoutTicks                 int
	alpha                        float64
	intervalSeconds              float64

	ratePerSec float64
	smoothedMs float64
	round      latencyRound
}

// latencyRound accumulates the ticks since the last rate update.
type latencyRound struct {
	ticks      int
	requests   float64 // completed requests counted toward nreq
	p90SumMs   float64 // Σ p90 × requests over ticks with a valid p90
	p90Weight  float64 // Σ requests over those ticks
	overloaded bool
}

// The parameters of LatencyTargetController (#LatencyTargetParams): seed
// 003's default-latency-algorithm-parameters, its sensible-parameters?
// ranges, and its bucket's rate as the initial rate.
var (
	latencyTargetTarget       = Param{Name: "target_latency", Kind: DurationKind, Range: Above(0)}
	latencyTargetDecFactor    = Param{Name: "dec_factor", Default: 1.2, Range: Above(1)}
	latencyTargetDecThreshold = Param{Name: "dec_threshold", Default: 0.0, Range: AtLeast(0)}
	latencyTargetIncFactor    = Param{Name: "inc_factor", Default: 2.0, Range: Above(0)}
	latencyTargetIncThreshold = Param{Name: "inc_threshold", Default: -0.005, Range: Unbounded.Below(0)}
	latencyTargetIncWeight    = Param{Name: "inc_weight", Default: -0.1, Range: Unbounded.AtMost(0)}
	latencyTargetMinRate      = Param{Name: "min_rate", Default: 0.05, Range: Above(0)}
	latencyTargetMaxRate      = Param{Name: "max_rate", Default: 5000.0, Range: Above(0)}
	latencyTargetNreq         = Param{Name: "nreq", Kind: Integer, Default: 100, Range: Above(0).Multiples(10)}
	latencyTargetTimeout      = Param{Name: "timeout", Kind: DurationKind, Default: time.Second, Range: Above(0)}
	latencyTargetAlpha        = Param{Name: "alpha", Default: 0.7, Range: AtLeast(0).AtMost(1)}
	latencyTargetInitialRate  = Param{Name: "initial_rate", Default: 10.0, Range: Above(0)}
)

// Ports: latency_p90_ms, completed_rps, overload_seen → rate_limit,
// latency_smoothed_ms. rate_limit is in requests per second.
func (c *LatencyTargetController) Ports() Ports {
	return Ports{In: []Port{
		{Name: "latency_p90_ms", Required: true},
		{Name: "completed_rps", Required: true},
		{Name: "overload_seen"},
	}, Out: []string{"rate_limit", "latency_smoothed_ms"}}
}

// Provision applies the seed's defaults and checks its "sensible
// parameters" (the schema checks them too, at the user's line).
func (c *LatencyTargetController) Provision(env Env) error {
	if err := latencyTargetTarget.Check(float64(c.TargetLatency)); err != nil {
		return err
	}
	var err error
	for _, p := range []struct {
		param Param
		v     *float64
		dst   *float64
	}{{latencyTargetDecFactor, c.DecFactor, &c.decFactor}, {latencyTargetDecThreshold, c.DecThreshold, &c.decThreshold},
		{latencyTargetIncFactor, c.IncFactor, &c.incFactor}, {latencyTargetIncThreshold, c.IncThreshold, &c.incThreshold},
		{latencyTargetIncWeight, c.IncWeight, &c.incWeight}, {latencyTargetMinRate, c.MinRate, &c.minRatePerSec},
		{latencyTargetMaxRate, c.MaxRate, &c.maxRatePerSec}, {latencyTargetAlpha, c.Alpha, &c.alpha}} {
		if *p.dst, err = p.param.Float(p.v); err != nil {
			return err
		}
	}
	initial, err := latencyTargetInitialRate.Float(c.InitialRate)
	if err != nil {
		return err
	}
	nreq, err := latencyTargetNreq.Int(c.Nreq)
	if err != nil {
		return err
	}
	timeout, err := latencyTargetTimeout.Duration(c.Timeout)
	if err != nil {
		return err
	}
	switch {
	case !(c.maxRatePerSec > c.minRatePerSec):
		return fmt.Errorf("max_rate %g must be > min_rate %g", c.maxRatePerSec, c.minRatePerSec)
	case !(initial >= c.minRatePerSec && initial <= c.maxRatePerSec):
		return fmt.Errorf("initial_rate %g must be within [min_rate %g, max_rate %g]", initial, c.minRatePerSec, c.maxRatePerSec)
	}
	c.targetMs = float64(c.TargetLatency.std()) / float64(time.Millisecond)
	c.requestsPerRound = float64(nreq)
	c.timeoutTicks = timeout.Ticks(env.Interval)
	c.intervalSeconds = env.Interval.Seconds()
	c.ratePerSec = initial
	c.smoothedMs = c.targetMs // the seed's :smoothed-estimate starts at the target
	c.round = latencyRound{}
	return nil
}

// Execute runs one tick.
func (c *LatencyTargetController) Execute(in, out []float64) {
	p90Ms, completedRps, overloadSeen := in[0], in[1], in[2]
	r := &c.round
	r.ticks++
	if finiteNonNegative(completedRps) && completedRps > 0 {
		requests := completedRps * c.intervalSeconds
		r.requests += requests
		if finiteNonNegative(p90Ms) {
			r.p90SumMs += p90Ms * requests
			r.p90Weight += requests
		}
	}
	if IsValid(overloadSeen) && overloadSeen > 0 {
		r.overloaded = true
	}
	if r.requests >= c.requestsPerRound || r.ticks >= c.timeoutTicks {
		c.closeRound()
	}
	out[0], out[1] = c.ratePerSec, c.smoothedMs
}

// closeRound applies seed 003's update (update-latency-estimate, then
// calculate-new-rate) and starts the next round.
func (c *LatencyTargetController) closeRound() {
	r := c.round
	c.round = latencyRound{}
	if r.p90Weight == 0 {
		if r.overloaded {
			c.decrease()
		}
		return
	}
	p90Ms := r.p90SumMs / r.p90Weight
	c.smoothedMs = c.alpha*c.smoothedMs + (1-c.alpha)*p90Ms
	errRatio := (c.smoothedMs - c.targetMs) / c.targetMs
	switch {
	case r.overloaded || errRatio > c.decThreshold:
		c.decrease()
	case errRatio < c.incThreshold:
		c.ratePerSec = math.Min(c.ratePerSec+math.Abs(errRatio-c.incWeight)*c.incFactor, c.maxRatePerSec)
	}
}

func (c *LatencyTargetController) decrease() {
	c.ratePerSec = math.Max(c.ratePerSec/c.decFactor, c.minRatePerSec)
}

// finiteNonNegative reports whether v is a usable count or latency.
func finiteNonNegative(v float64) bool { return v >= 0 && !math.IsInf(v, 1) }
