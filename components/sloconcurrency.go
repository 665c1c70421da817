package components

import (
	"errors"
	"math"
	"math/bits"
	"time"
)

func init() {
	Register(Info{Type: "SLOConcurrencyController", New: func() Component { return &SLOConcurrencyController{} },
		Params: []Param{sloInitialLimit, sloMinLimit, sloMaxLimit, sloMinGradient, sloSlowStartFactor,
			sloUtilization, sloRTTTolerance, sloBaselineWindow, sloMinSamples, sloMaxWindow, sloRelearnAfter}})
}

// SLOConcurrencyController sets a concurrency limit that keeps queueing
// short: relative to the latency the service shows when it is not queueing
// (a learned baseline, as Netflix's Gradient2 does), and absolutely under a
// setpoint the user knows (a fraction of the SLO), which holds from the
// first tick, before any baseline exists.
//
// A concurrency limit charges each request for the time it holds the
// service, so an API twenty times as expensive holds its slots twenty times
// as long (Little's law) and cheap requests are not starved behind it: the
// admitted mix is the offered mix. Each window (below), with base =
// min(limit, the most in_flight of its ticks) (what the traffic actually
// used; at least min_limit):
//
//   - latency above setpoint (overload): limit ← base × max(min_gradient,
//     setpoint/latency); slow start ends. Only if the setpoint is over
//     (1+rtt_tolerance)/2 × the latency without a queue, as the baseline
//     so far shows it (a setpoint under the service's own latency cannot
//     be met by admission); once the baseline is learned, only while rtt
//     is over (1+rtt_tolerance)/2 × baseline (a queue a cut can drain),
//     never deeper than that queue, plus √base of headroom as below;
//     where the window also queues (below), no higher than the queueing
//     cut;
//   - rtt above t × baseline while the limit binds (queueing the limit
//     let in), with t = min(rtt_tolerance, max(1.25, 1 + 4/√base)) (with
//     many in flight, a standing queue of at most about 4·√base requests:
//     queueAllowance; on a relearned baseline's lease that the lease
//     probe can check, an allowance of the settled baseline's over it,
//     and never under the leased latency: queueThreshold): limit ← base × g + √base with g = max(min_gradient,
//     t·baseline/rtt), Envoy's headroom, whose equilibrium is a queue of
//     about √limit; slow start ends;
//   - otherwise, when the limit binds (in_flight ≥ utilization × limit):
//     during slow start (until the first overload or queueing, or the
//     first window with room once the baseline is learned) limit ←
//     limit × slow_start_factor, once the baseline has its first sample,
//     taken at the initial limit (where the service is slower than a
//     tick, once per turnover of the limit's requests instead, and from
//     the first window, whose rtt stands in for the baseline until its
//     first sample: probe), and held while the window's most in
//     flight is over twice what its answers account for (throughput ×
//     (rtt + 2 standard errors), Little's law) and its rtt is over the
//     baseline: the requests the last doubling let in are waiting; after
//     a run of queueing windows that cut
//     the limit to an eighth of where it began (an outage), limit ←
//     limit × slow_start_factor while no window queues, up to half of that
//     start (TCP's slow start to its threshold), so that the limit does
//     not climb back from the bottom by √limit a window; otherwise limit ←
//     limit + √limit; in slow start, once the probe has doubled, a tick
//     of at least ten answers (completed_rps) whose mean rtt is over
//     (1+rtt_tolerance)/2 × baseline by two of its standard errors
//     (rtt_sem_ms) ends the slow start where it stands;
//   - a window in which the limit refused requests with every slot taken
//     (full_rps, optional; with completed_rps and rtt_ms), though no tick
//     bound, fewer than a tenth of its answers and refusals together,
//     with no queue in its rtt, slow start over and the baseline learned:
//     limit ← limit + √limit, as when it binds (bursts under capacity
//     that the count at the ticks' ends does not see);
//   - a window that queues (the second case) while the limit bound in
//     fewer than two of the last three windows, refused under a third of
//     its requests (full_rps), with the latency within the setpoint and
//     the worst API's tail (below) under 0.75 of its own, once slow
//     start is over and the baseline learned: a burst under capacity,
//     which the service drains on its own; no cut, and limit ← limit +
//     √limit while a full limit would answer within twice the setpoint
//     at the window's throughput (Little's law); if the next window
//     queues too, the burst was an onset, and its growth is undone;
//   - otherwise the limit holds: a limit the traffic does not reach says
//     nothing about capacity, and growing it would leave no protection for
//     the next surge.
//
// With api_latency_ms and api_setpoint_ms (both optional: the worst API's
// own latency over the last seconds, FluxMeter's worst_api_latency, and
// what it must stay under), t's allowance over 1 shrinks by an eighth
// every half second while the first is over the second and the limit
// binds, down to a fifth of itself, and grows back by a sixteenth every
// half second while it is under 0.75 of it (followTail): the standing
// queue is sized by the API that pays it most dearly. Each shrinking is a
// trial, given up for a minute (doubling while trials fail in a row, to
// 16 minutes) where the throughput over the last 4 s falls under 0.93 of
// its best since the trial began, or where 8 s at the tightest leave the
// tail over the setpoint, over 0.85 of where it was, and with more than
// two thirds of its excess over the setpoint: a tail no queue made.
//
// The baseline is the lowest rtt of the 10 windows after the first (the
// first starts with nothing in flight, so its short requests finish first
// and it reads low; the next is measured at the initial limit, which keeps
// the queue short even when the service starts overloaded, or else the
// first counts too: probe; with rtt_sem_ms,
// where the windows' means are that noisy, plus 1.54 of their typical standard
// error: learnFirst), then an exponential average over
// baseline_window (default 600 s, Gradient2's long window) that skips
// queueing windows, so a standing queue does not become the new normal, and
// decays by 5 % a window while it is more than twice the rtt (from the
// third such window in a row: lowRunWindows), as Gradient2's
// does after a long overload. Where slow start's doublings bought no
// throughput over what the initial limit delivers at the baseline, that
// limit queued already, and so did the baseline's windows: once, in the
// warm-up, a drain probe holds the limit at what the throughput needs at
// half the baseline until what is in flight has drained, and an rtt it
// then measures under 0.8 × the baseline replaces it (startDrain,
// drain). A queueing run that has halved the limit and
// still shows the same rtt after relearn_after more is the service's own
// latency, not a queue (a slower dependency): its lowest rtt becomes the
// baseline, on a lease that decays back to the one it replaced (relearn,
// expireLease), and so is one whose halving drained part of the rtt but
// cost throughput (a saturated service's queue keeps it; throughputFell),
// and, without waiting, one whose cuts took what is in flight to 0.75 of
// the run's most while, in three windows in a row, the rtt stayed and
// the throughput fell with the limit (drainedNothing).
// So is one whose small cuts hold the limit above half, where
// the rtt did not fall with the limit and the throughput did. Either of
// the last two is undone if the limit it restores buys no throughput
// (relearnEarly, checkEarly).
// Once the baseline is past its warm-up, a window also lasts at least one
// baseline rtt, so that each decision sees the effect of the one before:
// a service slower than the tick is not cut again for a queue already cut.
// When nothing completed in a tick, the age of the oldest request in flight
// (oldest_in_flight_ms, optional) stands in for the latency, so a stalled
// service is an overload rather than silence. rtt is optional: without it
// only the setpoint applies. The limit stays within [min_limit, max_limit].
type SLOConcurrencyController struct {
	InitialLimit    *float64  `json:"initial_limit"`
	MinLimit        *float64  `json:"min_limit"`
	MaxLimit        *float64  `json:"max_limit"`
	MinGradient     *float64  `json:"min_gradient"`
	SlowStartFactor *float64  `json:"slow_start_factor"`
	Utilization     *float64  `json:"utilization"`
	RTTTolerance    *float64  `json:"rtt_tolerance"`
	BaselineWindow  *Duration `json:"baseline_window"`
	MinSamples      *float64  `json:"min_samples"`
	MaxWindow       *Duration `json:"max_window"`
	RelearnAfter    *Duration `json:"relearn_after"`

	initial, minLimit, maxLimit, minGradient, slowStart, utilization, tolerance float64
	alpha, samples                                                              float64
	minSamples                                                                  float64
	maxWindowTicks, interval, relearnTicks, windowTicks                         float64

	// The window being gathered: ticks, completions, Σ rtt·completions,
	// Σ (completions·rtt_sem)², the highest latency of its ticks, whether
	// the limit bound, and whether a tick with an rtt had no rtt_sem.
	winTicks, winN, winRTT, winSemSq, winLatency float64
	winBinding, winSemMissing                    bool
	// winSemN counts the answers of the window's ticks with an
	// rtt_sem, whose spread winSemSq sums (pooledSE).
	winSemN float64
	// winFull counts the window's requests refused at the full limit
	// (full_rps).
	winFull     float64
	winInFlight float64 // the most in flight at a tick of the window
	// idleTicks counts the ticks since the limit was last used (validate),
	// and idlePeak is the most in flight in them.
	idleTicks, idlePeak float64
	lowRun              int // windows in a row with the rtt under half the baseline
	// bound holds whether the limit bound in each of the last windows,
	// the latest in the lowest bit.
	bound uint8
	// burstFrom is the limit before the last window's burst grew it
	// (Invalid if the last window was no burst).
	burstFrom float64
	// The baseline's warm-up windows: their lowest mean rtt, and the sum
	// and count of the squares of the standard errors of those that had
	// one.
	warmMin, warmSemSq, warmSems float64

	limit    float64
	baseline float64
	// latencyRatio is latency_ms over rtt without a queue, learned with
	// the baseline (its warm-up takes the lowest of each, latencyMin);
	// latencyRatio × baseline is latency_ms without a queue.
	latencyRatio, latencyMin float64
	// settled is the baseline a relearn replaced, while the relearned one
	// is on lease (expireLease), and relearns counts the relearns since;
	// leased is the baseline the last relearn took, before any decay, and
	// leaseLimit the limit it left in force.
	settled, leased, leaseLimit float64
	relearns                    int
	// carried is the relearns of a lease that decayed to its end, which
	// a relearn within carryWindows (carriedTicks since) continues.
	carried      int
	carriedTicks float64
	slowStartOn  bool
	started      bool
	// firstWindowSeen is set once a window with an rtt has closed.
	firstWindowSeen bool
	firstRTT        float64 // its mean rtt: the probe's reference until the baseline's first sample
	// A run of queueing windows is on (streak): the limit when it began
	// and the worst rtt before it halved; the rtt of the first window at
	// half that limit or less, whether one was at a quarter, and the ticks,
	// tick-weighted rtt sum and lowest rtt of those windows.
	streak, quartered, second                                         bool
	streakLimit, streakRTT, lowRTT, streakTicks, streakSum, streakMin float64
	streakN                                                           float64 // the answers of those windows
	// recoverTo, once a run of queueing windows has cut the limit to an
	// eighth of where it began (an outage: a dependency that hung, a
	// capacity that vanished), is half of that start, until the limit is
	// back there or a doubling towards it queues (doubled).
	recoverTo float64
	doubled   bool
	// stale is the room kept after a lease ended for the requests it let
	// in, staleRTT the leased baseline they answer at, and staleStep the
	// least the room shrinks a tick (endLease, drainStale).
	stale, staleStep, staleRTT float64
	// The slow-start probe (probe): the current stretch's answers, their
	// rtt sum, its ticks and whether the limit bound in it; whether the
	// probe doubled in the current window, and whether it has stopped for
	// this slow start. probeSkip is how many answers are still to come
	// from the requests in flight when it last doubled, and probeNewN and
	// probeNewRTT count the stretch's answers after those. probeSemN and
	// probeSemSq are the answers of the stretch's ticks with a standard
	// error and Σ (answers·rtt_sem)² over them (pooledSE).
	probeN, probeRTT, probeTicks   float64
	probeSemN, probeSemSq          float64
	probeSkip, probeNewN           float64
	probeNewRTT                    float64
	probeBinding, probed, probeOff bool
	probedAny                      bool
	// A run's evidence for a relearn before the limit has halved
	// (relearnEarly): completions and ticks of its windows at the limits
	// it began with (the reference throughput), and the ticks, tick-
	// weighted rtt sum, lowest rtt and completions of its windows since
	// the limit fell under earlyFraction of where it began.
	refN, refTicks                 float64
	earlyTicks, earlySum, earlyMin float64
	earlyN                         float64
	// After an early relearn (checkEarly): the throughput of the windows
	// it was taken from, the limit before it, the ticks and completions
	// since, and whether the check is on.
	earlyX, earlyLimit, checkTicks, checkN float64
	checking                               bool
	// The reference window of the current run of queueing windows for
	// drainedNothing (cutBase Invalid outside one): its most in flight,
	// its rtt (the worst of the run's windows since), standard error and
	// throughput (answers a tick), and the ticks since; and the windows in
	// a row that showed the cuts since drained nothing, with their lowest
	// and their last rtt.
	cutBase, cutRTT, cutSem, cutX float64
	cutTicks                      float64 // the ticks since the reference's window
	undrained                     int
	undrainedMin, undrainedLast   float64
	// jitter is an exponential average (alpha jitterAlpha) of how far, in
	// log, a window's mean rtt lies from the one before's (lastRTT):
	// answers in one window share its queue, so the windows' means
	// differ by more than their standard errors say.
	jitter, lastRTT float64
	// The drain probe (drain): the highest limit of slow start, whether
	// the probe has run; while it runs, its phase, target, ticks, the most
	// it may take to drain and the throughput before it, and its
	// measuring phase's ticks, answers, Σ rtt·answers, Σ in flight and
	// the answers still to skip.
	peak                                                                   float64
	drained, refill                                                        bool
	drainPhase                                                             drainPhase
	drainTarget, drainTicks, drainMax, drainThroughput                     float64
	drainMeasureTicks, drainAnswers, drainRTTSum, drainInFlight, drainSkip float64
	// The lease probe (startLeaseProbe) runs the drain probe on a lease:
	// whether the drain running is one (drainLease), and the ticks since
	// the lease began or its last probe.
	drainLease      bool
	leaseProbeTicks float64
	// The relearn probe (startRelearnProbe) runs the drain probe after a
	// relearn at a small limit: whether the drain running is one
	// (drainRelearn), and the throughput of the window that relearned
	// (answers a second), which Execute keeps for it (relearnX).
	drainRelearn bool
	relearnX     float64
	drainCounted float64 // ticks a relearn probe has counted, after its skip
	// tightness, from 0 to 1, is how much of the queue tolerance's
	// allowance over the baseline the worst API's tail (api_latency_ms
	// over api_setpoint_ms) has taken away (queueTolerance), and
	// tailTicks the ticks since it last moved.
	tightness, tailTicks float64
	// The trial of a tightness (followTail): the throughput averaged
	// over tailHorizon and its best since the trial began, the tail's
	// latency it is judged against, and the throughput when the trial
	// began or was last judged again (tailFromX); the ticks at
	// maxTightness, and those left before another trial may begin.
	tailX, tailPeakX, tailFrom, tailFromX float64
	tailRTT                               float64 // the rtt averaged over tailHorizon
	tailAtMax, tailBackoff                float64
	// tailAtMaxMean is the mean of the tail's readings at maxTightness,
	// over the last tailTrial (NaN below maxTightness).
	tailAtMaxMean float64
	tailFails     float64 // trials given up in a row
}

// drainPhase is where the drain probe is (drain).
type drainPhase int

const (
	drainOff drainPhase = iota
	drainDraining
	drainMeasuring
)

// Ports: latency_ms, setpoint_ms?, in_flight, oldest_in_flight_ms?,
// rtt_ms?, completed_rps?, rtt_sem_ms?, full_rps?, api_latency_ms?,
// api_setpoint_ms? → limit, is_overload, baseline_ms.
func (c *SLOConcurrencyController) Ports() Ports {
	return Ports{In: []Port{
		{Name: "latency_ms", Required: true}, {Name: "setpoint_ms", Bounds: NonNegative},
		{Name: "in_flight", Required: true}, {Name: "oldest_in_flight_ms"}, {Name: "rtt_ms"},
		{Name: "completed_rps"}, {Name: "rtt_sem_ms", Bounds: NonNegative},
		{Name: "full_rps", Bounds: NonNegative}, {Name: "api_latency_ms", Bounds: NonNegative},
		{Name: "api_setpoint_ms", Bounds: NonNegative},
	}, Out: []string{"limit", "is_overload", "baseline_ms"}}
}

// The parameters of SLOConcurrencyController (#SLOConcurrencyController).
var (
	sloInitialLimit    = Param{Name: "initial_limit", Default: 3.0, Range: AtLeast(1)}
	sloMinLimit        = Param{Name: "min_limit", Default: 1.0, Range: AtLeast(1)}
	sloMaxLimit        = Param{Name: "max_limit", Default: 100000.0, Range: AtLeast(1)}
	sloMinGradient     = Param{Name: "min_gradient", Default: 0.5, Range: Above(0).AtMost(1)}
	sloSlowStartFactor = Param{Name: "slow_start_factor", Default: 2.0, Range: AtLeast(1)}
	sloUtilization     = Param{Name: "utilization", Default: 0.8, Range: Above(0).AtMost(1)}
	sloRTTTolerance    = Param{Name: "rtt_tolerance", Default: 1.5, Range: AtLeast(1)}
	sloBaselineWindow  = Param{Name: "baseline_window", Kind: DurationKind, Default: 600 * time.Second, Range: Above(0)}
	sloMinSamples      = Param{Name: "min_samples", Default: 50.0, Range: AtLeast(1)}
	sloMaxWindow       = Param{Name: "max_window", Kind: DurationKind, Default: 2 * time.Second, Range: Above(0)}
	sloRelearnAfter    = Param{Name: "relearn_after", Kind: DurationKind, Default: 3 * time.Second, Range: Above(0)}
)

// Provision applies the defaults and checks the parameters.
func (c *SLOConcurrencyController) Provision(env Env) error {
	var err error
	for _, p := range []struct {
		param Param
		v     *float64
		dst   *float64
	}{{sloInitialLimit, c.InitialLimit, &c.initial}, {sloMinLimit, c.MinLimit, &c.minLimit}, {sloMaxLimit, c.MaxLimit, &c.maxLimit},
		{sloMinGradient, c.MinGradient, &c.minGradient}, {sloSlowStartFactor, c.SlowStartFactor, &c.slowStart},
		{sloUtilization, c.Utilization, &c.utilization}, {sloRTTTolerance, c.RTTTolerance, &c.tolerance},
		{sloMinSamples, c.MinSamples, &c.minSamples}} {
		if *p.dst, err = p.param.Float(p.v); err != nil {
			return err
		}
	}
	window, err := sloBaselineWindow.Duration(c.BaselineWindow)
	if err != nil {
		return err
	}
	maxWindow, err := sloMaxWindow.Duration(c.MaxWindow)
	if err != nil {
		return err
	}
	switch {
	case c.maxLimit < c.minLimit:
		return errors.New("max_limit must be >= min_limit")
	case c.initial < c.minLimit || c.initial > c.maxLimit:
		return errors.New("initial_limit must be within [min_limit, max_limit]")
	}
	relearn, err := sloRelearnAfter.Duration(c.RelearnAfter)
	if err != nil {
		return err
	}
	c.maxWindowTicks = float64(maxWindow.Ticks(env.Interval))
	c.relearnTicks = float64(relearn.Ticks(env.Interval))
	c.interval = env.Interval.Seconds()
	c.windowTicks = float64(window.Ticks(env.Interval))
	c.alpha = 2 / (c.windowTicks + 1)
	return nil
}

// baselineWarmup is how many windows the baseline averages arithmetically
// before it becomes an exponential average (Gradient2 uses 10 samples).
const baselineWarmup = 10

// withinRoundTrip reports whether the window is shorter than one
// baseline rtt, once the baseline is past its warm-up: the requests that
// complete in a shorter window were admitted before the last decision, so
// deciding again would act on the same queue twice (TCP changes its window
// once per round trip for the same reason). With a baseline under one
// tick it never holds.
func (c *SLOConcurrencyController) withinRoundTrip() bool {
	return c.samples >= baselineWarmup && c.winTicks*c.interval*1000 < c.baseline
}

// relearn counts a queueing window into the current run of them and, once
// the run has cut the limit to half of what it was when the run began
// (or less far, with the evidence relearnEarly asks for), the
// longer of relearn_after and two rtts has passed since, and the excess of
// those last windows' rtt over the baseline is on average still at least
// 0.6 of the highest excess before the halving (a queue's falls by more
// than half), or their throughput fell with the limit (throughputFell: no
// queue was left to drain), takes their lowest rtt as the baseline, puts the
// limit back to where the run began, and reports that it did. A queue
// shrinks when the limit does; an rtt that does not fall as the limit
// halves is not a queue: the service's own latency rose (a slower
// dependency, a costlier mix), and the baseline must follow it, or the
// limit falls to Little's law's share of a latency that no cut can lower.
// A limit that hovers at the queueing threshold, cut a little and grown
// back, is a queue the controller holds, and teaches the baseline nothing.
// A run that begins under twice the floor cuts settle at
// ((1/(1-min_gradient))², 4 by default) cannot halve, and never relearns.
// One whose excess did fall but that the cuts took to an eighth of where it
// began, and that is still slow after another relearn_after, relearns
// once with that later window as its reference (second), and only when no
// relearned baseline is on lease; the limit then stays where it is.
// A run whose limit is back where it began starts over from the limit in
// force: where a standing queue reads as queueing at every window and
// each cut's √limit gives back what it took, the run never ends, and it
// kept the limit of whatever dip it began in as its reference, so that a
// dependency that slowed later was cut from above it and never reached
// half of it (random-1028: 20 s at 0.6 of proportional).
func (c *SLOConcurrencyController) relearn(rtt, ticks, n float64) bool {
	if !c.streak || c.limit >= c.streakLimit {
		c.streak, c.streakLimit, c.streakRTT, c.lowRTT, c.second = true, c.limit, rtt, Invalid, false
		c.streakTicks, c.streakSum, c.streakMin, c.streakN, c.quartered = 0, 0, Invalid, 0, false
		c.refN, c.refTicks, c.earlyTicks, c.earlySum, c.earlyMin, c.earlyN = 0, 0, 0, 0, Invalid, 0
	}
	if c.relearnEarly(rtt, ticks, n) {
		return true
	}
	if c.limit > c.streakLimit/2 {
		// The reference is the worst rtt at the limits the run began
		// with: a capacity loss that struck during a run must show its
		// queue there, not in the rtt of the run's first window.
		c.streakRTT = math.Max(c.streakRTT, rtt)
		return false
	}
	if !IsValid(c.lowRTT) {
		c.lowRTT = rtt
	}
	c.quartered = c.quartered || c.limit <= c.streakLimit/4
	if !(c.streakMin <= rtt) {
		c.streakMin = rtt
	}
	c.streakTicks += ticks
	c.streakSum += ticks * rtt
	c.streakN += n
	// The requests admitted before a cut finish within about one rtt of
	// it: the run must outlast two, however slow the service.
	if c.samples < baselineWarmup || c.streakTicks < c.relearnTicks || c.streakTicks*c.interval*1000 < 2*rtt {
		return false
	}
	// A queue's excess over the baseline falls by more than half when the
	// limit halves. The excess must not have: since the worst rtt before
	// the halving, or, once the limit has halved again, since the first
	// window after the first halving (a costlier mix queues at the old
	// limit before it is cut, and that queue is drained by then).
	excess := c.streakSum/c.streakTicks - c.baseline
	if c.second && excess < 0.6*(c.lowRTT-c.baseline) {
		c.streak = false // it fell after all
		return false
	}
	if !c.second && excess < 0.6*(c.streakRTT-c.baseline) && !(c.quartered && excess >= 0.6*(c.lowRTT-c.baseline)) {
		// The rtt fell with the limit: a queue, and the cuts work. But
		// where they took the limit to an eighth of where the run began
		// and the service is still slow another relearn_after later, with
		// this window as the reference, the rtt that stays is the
		// service's own, or a queue of a capacity cut eightfold: a
		// baseline not on lease may relearn it, once, on a lease.
		if c.throughputFell() {
			return c.takeBaseline()
		}
		if IsValid(c.settled) || c.limit > c.streakLimit/8 {
			c.streak = false
			return false
		}
		c.streakRTT, c.lowRTT, c.streakTicks, c.streakSum, c.streakMin, c.streakN = rtt, rtt, 0, 0, Invalid, 0
		c.second = true
		return false
	}
	return c.takeBaseline()
}

// drainedNothing weighs whether the cuts of a run of queueing windows
// drained a queue, on this window (base in flight at most, mean rtt with
// standard error sem, n answers over ticks, accounted what they account
// for in flight) against the run's reference window (cutBase), and
// relearns once undrainedCuts windows in a row show they did not. Cuts
// that took what is in flight to r of what it was drain a queue at a
// constant throughput (Little's law), and the rtt falls to about r of its
// own; a slower dependency's rtt stays where it is, and its throughput
// falls with the limit instead. A window that ends two rtts after the
// reference (pastLag), with r at most undrainedShare and its answers
// accounting for what is in flight, whose rtt fell by under
// (1 − undrainedBy) of what a queue's would and rose by no more than
// undrainedRise (both by cutMargin), while the throughput fell by at
// least undrainedBy of what is in flight did, drained nothing. The lowest
// rtt of those windows becomes the baseline, as relearn does, on the
// same probation as an early relearn (checkEarly), and only off a lease
// (a lease is renewed by relearn). Relearn itself waits for the cuts to
// halve the limit and then for relearn_after, and each cut on the way
// lengthens the windows (fewer answers a second): at nearly every slower
// dependency of the suite, 3 to 7 s at under 0.7 of proportional, the
// first 2–3 at 0.1–0.3, with the latency within the SLO.
//
// The reference is the run's window with the most in flight whose
// answers account for it (base ≤ aheadOfAnswers × accounted), renewed by
// such a window after relearn_after or once the rtt has risen over
// undrainedRise × the reference's (a new step of the latency), and its
// rtt is the worst of the run's windows since: the rtt lags what is in
// flight, by its own length and, where a queue is deep or an API visits
// it more than once, by more. A window whose rtt fell since the last
// undrained one's (by cutMargin) is a queue draining slower than the
// cuts, and ends the count. Each of these held a false relearn back:
//   - a limit that grew faster than its answers (repeat-visits: 212 in
//     flight while the answers accounted for 22) takes seconds to show
//     its queue, which the cuts then seemed not to drain;
//   - a reference older than a slow drift of the capacity saw the drift's
//     rise (many-servers: relearned at 600 ms, p99 1.1 × the SLO);
//   - an API's own queue at its own two workers went on growing under
//     the cuts (own-bottleneck's report: 104 → 246 → 277 ms, relearned,
//     p99 1.9 × its SLO);
//   - windows of heavy-tailed answers, whose means swing by ±40 % where
//     their standard errors say ±8 %, read two rises in a row as a
//     latency that stayed (random-1024: p99s over their SLOs in three
//     scenarios; cutMargin);
//   - with two windows, a queue of 69 in flight that showed in the rtt
//     for 300 ms after the cuts (repeat-visits' steady overload, whose
//     feed calls the database three times: p99 1.7 × its SLO); hence
//     three.
func (c *SLOConcurrencyController) drainedNothing(base, rtt, sem, ticks, n, accounted float64) bool {
	r := base / c.cutBase
	if !IsValid(c.cutBase) || !(r <= undrainedShare) || !c.pastLag(ticks, rtt) {
		return false // no evidence either way
	}
	se := c.cutMargin(sem)
	if !IsValid(rtt) || !IsValid(sem) || !IsValid(c.cutSem) || !(n > 0) || c.second || c.samples < baselineWarmup || IsValid(c.settled) ||
		!(base <= aheadOfAnswers*accounted) || c.cutRose(rtt, sem) ||
		!(c.cutRTT-rtt+se < (1-undrainedBy)*(1-r)*c.cutRTT) || !(n/ticks <= (1-undrainedBy*(1-r))*c.cutX) {
		c.undrained, c.undrainedMin = 0, Invalid
		return false
	}
	if c.undrained > 0 && rtt < c.undrainedLast-se {
		// Falling since the last such window: a queue that drains
		// slower than the cuts (repeat-visits' cold start: 44, 41, 33
		// ms as the limit fell from 25 to 16).
		c.undrained, c.undrainedMin = 0, Invalid
		return false
	}
	c.undrained++
	c.undrainedLast = rtt
	if !(c.undrainedMin <= rtt) {
		c.undrainedMin = rtt
	}
	if c.undrained < undrainedCuts || !c.streak {
		return false
	}
	c.streakMin = c.undrainedMin
	c.cutBase, c.undrained, c.undrainedMin = Invalid, 0, Invalid
	c.startCheck(n / ticks)
	return c.takeBaseline()
}

// pastLag reports whether a window of ticks with this rtt ends two rtts
// after the reference's (drainedNothing): most of its answers were
// admitted after the reference's.
func (c *SLOConcurrencyController) pastLag(ticks, rtt float64) bool {
	return (c.cutTicks+ticks)*c.interval*1000 >= 2*rtt
}

// cutRose reports whether an rtt (with standard error sem) rose over
// undrainedRise × the reference's (drainedNothing), by one standard error
// of the two: a queue still growing, or a new step of the latency, which
// the window then anchors.
func (c *SLOConcurrencyController) cutRose(rtt, sem float64) bool {
	return rtt > undrainedRise*c.cutRTT+c.cutMargin(sem)
}

// cutMargin is how far a window's mean rtt (with standard error sem) may
// lie from the reference's by chance: one standard error of the two, or,
// where the windows' means differ by more than that (jitter; a mean
// absolute difference of 1.13 standard deviations for normal noise, so
// one of the difference of two is about 1.25 × it), that.
func (c *SLOConcurrencyController) cutMargin(sem float64) float64 {
	return math.Max(math.Sqrt(sem*sem+c.cutSem*c.cutSem), 1.25*c.jitter*c.cutRTT)
}

// drainedNothing's constants: undrainedShare is the most of the
// reference's in flight a window may hold to be weighed, undrainedCuts
// how many windows in a row relearn, undrainedBy the least part of a
// queue's fall of the rtt that counts as a fall (and of the limit's the
// throughput must fall by), undrainedRise the rise that re-anchors the
// reference, and jitterAlpha the weight of each window in jitter.
const (
	undrainedShare = 0.75
	undrainedCuts  = 3
	undrainedBy    = 0.5
	undrainedRise  = 1.25
	jitterAlpha    = 0.05
)

// throughputFell reports, for a run whose rtt's excess fell by the halving
// as a queue's does, whether its throughput fell with the limit: under
// earlyThroughputShare of the throughput at the limits the run began with
// (relearnEarly's reference). A queue stands only where the service is
// saturated, and a saturated service answers as many a second at half the
// limit; one whose answers fell with the limit had no queue left to
// drain, and the rtt that stays is its own latency. The worst rtt before
// the halving can hold a queue and a slower dependency at once, as where
// a dependency slows under a standing queue: the queue's requests pay the
// dependency's time too, the halving drains the queue and leaves the
// dependency's, and that fall passed for a queue's. random-5's slow
// dependency under default-slo held its limit at 7 (the run began at 25)
// for 20 s, at 0.45 of the throughput before it. The same holds on a
// lease the lease probe can check (a renewal: relearnEarly). Where the
// rtt's own relearn_after
// windows have no answers to count, the excess alone decides. The
// relearn is on probation, as
// an early one is (checkEarly): a capacity lost during the run also cuts
// the throughput, and the limit back where the run began buys it no more
// answers, and the relearn is undone.
func (c *SLOConcurrencyController) throughputFell() bool {
	if !c.mayRenew() || !(c.refN > 0) || !(c.streakN > 0) || !(c.streakTicks > 0) {
		return false
	}
	x := c.streakN / c.streakTicks
	if x > earlyThroughputShare*c.refN/c.refTicks {
		return false
	}
	c.startCheck(x)
	return true
}

// earlyFraction is the share of the limit a run began with under which
// relearnEarly weighs its evidence: where a queue's rtt falls with the
// limit at a constant throughput (Little's law), a limit cut to f of it
// takes an rtt of r × baseline to f·r × baseline, an excess under 0.6 of
// the one before for f < 0.6 + 0.4/r; 0.5 + 0.4/r keeps a margin, at
// most 0.75 and never under the halving.
func (c *SLOConcurrencyController) earlyFraction() float64 {
	if !IsValid(c.baseline) || !(c.streakRTT > c.baseline) {
		return 0.5
	}
	return math.Min(0.75, 0.5+0.4*c.baseline/c.streakRTT)
}

// relearnEarly is relearn before the limit has halved. Where the rtt's
// excess over the baseline is under the baseline, each cut is small, and
// the √limit a cut adds back holds the limit above half of where the run
// began: random-3's slow dependency held it at 0.6 to 0.7 of it for 20 s,
// at 0.6 of its proportional share, and never relearned. Once windows with
// the limit under earlyFraction of where the run began (not necessarily
// in a row) last relearn_after and two rtts, a queue's excess has fallen
// under 0.6 of the run's worst (streakRTT, the worst at limits above half)
// while its throughput held (the service is as busy as before); a slower
// dependency's has not, and its throughput fell with the limit (Little's
// law at a constant rtt). Both together take the lowest rtt of those
// windows as the baseline, as relearn does; otherwise that evidence
// starts over and the halving still decides. On a lease that the lease
// probe can check (leaseProbeFits), the throughput alone decides: the
// run's worst rtt was read against a baseline that has decayed since, and
// a lease whose decayed baseline reads the dependency's latency as a
// queue again is renewed as soon as its cuts cost throughput, not after
// they have halved the limit (hetero-cost's slow dependency: 0.92 of
// proportional over the steady half, 0.96 with the renewal). On one the
// probe cannot check, those cuts are what finds a dependency fast again
// (queueThreshold), and only the halving renews it. Without
// completed_rps there is no throughput to weigh, and only the halving
// relearns.
func (c *SLOConcurrencyController) relearnEarly(rtt, ticks, n float64) bool {
	if c.second {
		return false
	}
	if c.limit > c.streakLimit*c.earlyFraction() {
		c.refN += n
		c.refTicks += ticks
		return false
	}
	if c.limit <= c.streakLimit/2 {
		return false
	}
	c.earlyTicks += ticks
	c.earlySum += ticks * rtt
	c.earlyN += n
	if !(c.earlyMin <= rtt) {
		c.earlyMin = rtt
	}
	if c.samples < baselineWarmup || c.earlyTicks < c.relearnTicks || c.earlyTicks*c.interval*1000 < 2*rtt || !(c.refN > 0) || !(c.earlyN > 0) {
		return false
	}
	excess := c.earlySum/c.earlyTicks - c.baseline
	x := c.earlyN / c.earlyTicks
	fell := x <= earlyThroughputShare*c.refN/c.refTicks
	lowest := c.earlyMin
	c.earlyTicks, c.earlySum, c.earlyMin, c.earlyN = 0, 0, Invalid, 0
	if !c.mayRenew() {
		return false
	}
	if (!IsValid(c.settled) && excess < 0.6*(math.Max(c.streakRTT, rtt)-c.baseline)) || !fell {
		return false
	}
	c.streakMin = lowest
	c.startCheck(x)
	return c.takeBaseline()
}

// checkEarly tests an early relearn (relearnEarly) on the windows after
// it, which the limit, back where the run began, opens to more requests:
// a slower dependency answers them (Little's law at a constant rtt), so
// the throughput rises; a service with no room for them (a costlier mix,
// each request holding a worker longer) queues them, and its throughput
// stays where it was. Once those windows last relearn_after and two
// baseline rtts, a throughput under earlyRise of the one before undoes
// the relearn: the baseline and the limit go back to what they were, and
// the run ends; the next one starts from that limit. The requests the
// restored limit let in finish within about an rtt, while the old limit
// turns new ones away, as any cut of a queue does.
// startCheck puts a relearn taken at throughput x (answers a tick) and
// the limit in force on probation (checkEarly).
func (c *SLOConcurrencyController) startCheck(x float64) {
	c.earlyX, c.earlyLimit, c.checkTicks, c.checkN, c.checking = x, c.limit, 0, 0, true
}

func (c *SLOConcurrencyController) checkEarly(ticks, n float64) {
	if !c.checking {
		return
	}
	if !IsValid(c.settled) {
		c.checking = false // the lease ended already
		return
	}
	c.checkTicks += ticks
	c.checkN += n
	if c.checkTicks < c.relearnTicks || c.checkTicks*c.interval*1000 < 2*c.baseline {
		return
	}
	c.checking = false
	if c.checkN/c.checkTicks >= earlyRise*c.earlyX {
		return
	}
	c.baseline, c.settled, c.relearns = c.settled, Invalid, 0
	c.limit = c.earlyLimit
	c.streak, c.lowRun = false, 0
}

// earlyRise is how much more throughput than before an early relearn the
// windows after it must show (checkEarly).
const earlyRise = 1.1

// earlyThroughputShare is the most of the reference throughput a run's
// windows under earlyFraction may keep for relearnEarly: a queue's keeps
// about all of it.
const earlyThroughputShare = 0.85

// takeBaseline ends a run that relearns: the run's lowest rtt (streakMin)
// becomes the baseline, on a lease (expireLease), and the limit goes back
// to where the run began.
func (c *SLOConcurrencyController) takeBaseline() bool {
	fresh := !IsValid(c.settled)
	if fresh {
		c.settled, c.relearns = c.baseline, c.carried
	}
	c.carried = 0
	c.relearns++
	// The limit the run began with served the traffic; √limit growth
	// finds what the new latency needs beyond it. (Scaling it by the new
	// latency over the old over-admits when a costlier mix, not a slower
	// dependency, raised the latency.)
	before := c.limit
	if !c.second {
		c.limit = math.Max(c.limit, c.streakLimit)
	}
	c.baseline, c.streak, c.lowRun = c.streakMin, false, 0
	c.leased, c.leaseProbeTicks = c.baseline, 0
	if fresh {
		c.leaseLimit = c.limit
	}
	c.startRelearnProbe(before)
	return true
}

// drainMeasureMax is the most ticks a relearn probe measures
// (startRelearnProbe): twice max_window, or, if longer, the time the
// throughput before it turns over probeTickAnswers answers in (five at
// the half of it the probe may keep), up to relearnProbeWindows ×
// relearn_after: a service whose answers take seconds (two workers of
// 1.2 s) gave three in twice max_window, and five of a lognormal's
// spread read 1.56 s.
func (c *SLOConcurrencyController) drainMeasureMax() float64 {
	most := 2 * c.maxWindowTicks
	if c.drainThroughput > 0 {
		most = math.Max(most, math.Min(math.Ceil(probeTickAnswers/c.drainThroughput/c.interval), relearnProbeWindows*c.relearnTicks))
	}
	return most
}

// relearnProbeWindows is how many relearn_afters a relearn probe
// measures at most (drainMeasureMax).
const relearnProbeWindows = 4

// relearnProbeFloors is how many times the floor the queueing cuts settle
// at ((1/(1-min_gradient))², 4 by default) a limit may be at most for a
// relearn there to be probed (startRelearnProbe).
const relearnProbeFloors = 2

// startRelearnProbe runs the drain probe after a relearn that took its
// baseline at a small limit (before, at most relearnProbeFloors × the
// cuts' floor): the limit in force drops to what the relearning window's
// throughput needs in flight at half the new baseline (Little's law),
// and the answers of the requests admitted after show the latency
// without a queue. A service of fewer workers than that floor holds a
// queue at every limit the cuts reach, and the relearn took it as the
// service's own latency: on two workers of 600 ms slowed to 1.2 s, it
// took 2.4 s at the floor of 4, and the limit the lease let grow held
// 18 in flight, answers 7 s late (two-slow-workers' slow service: 0.39
// of proportional over the steady half). Where the probe reads the
// latency lower (drain), that becomes the baseline; where it reads it at
// or under the settled baseline, the relearn was a queue all along, and
// the lease ends; either way the limit is then at most what the
// throughput needs at the tolerance over the baseline. Nothing reads
// lower while a request in flight is older than the tolerance over the
// reading, where oldest_in_flight_ms is wired. The probe costs, where
// there was no queue, half the throughput the cut limit had for a few
// rtts, once per relearn, and the limit the relearn put back: a slower
// dependency behind a limit of 12, relearned at 4.7, held 3 for 5 s and
// grew back from 5.8 over 6 more (takeBaseline's limit where the run
// began is the better guess where the cuts took it from a limit that
// served the traffic, but the window after the probe read the queue the
// probe had drained and grew from it: random-5's slow service, in drain).
// Not where the warm-up's windows were as noisy as a
// mix of cheap and costly APIs makes them (noisyWarmup, as startDrain):
// the cheap answers come first, and on slo-spread's cold start (2 ms
// and 500 ms) a probe read 18 ms of a mix of 67, ended the lease and
// cut the limit to 2.5 (0.52 → 0.35 of proportional in the first 10 s).
func (c *SLOConcurrencyController) startRelearnProbe(before float64) {
	floor := 1 / (1 - c.minGradient)
	if !(before <= relearnProbeFloors*floor*floor) || !(c.relearnX > 0) || !IsValid(c.baseline) || c.drainPhase != drainOff || c.noisyWarmup() {
		return
	}
	// Little's law must account for what is in flight: an rtt_ms that
	// is a ratio to each API's baseline (topfull's queue guard, about 1)
	// read as milliseconds needs no requests in flight at all.
	if c.relearnX*c.baseline/1000 < before/2 {
		return
	}
	target := math.Max(c.minLimit, math.Ceil(c.relearnX*c.baseline/2/1000))
	if target >= before {
		return
	}
	c.drainPhase, c.drainTarget, c.drainTicks, c.drainThroughput, c.drainRelearn = drainDraining, target, 0, c.relearnX, true
	// The requests in flight answer within about the relearned rtt;
	// where they hang, the probe gives up max_window after two of them,
	// or after relearn_after (a dependency that hangs, answered by
	// timeouts, holds the slots whatever the limit).
	c.drainMax = c.maxWindowTicks + math.Min(math.Ceil(2*c.baseline/(c.interval*1000)), c.relearnTicks)
	c.drainMeasureTicks, c.drainAnswers, c.drainRTTSum, c.drainInFlight, c.drainSkip, c.drainCounted = 0, 0, 0, 0, 0, 0
}

// expireLease lets a relearned baseline decay back towards the one it
// replaced (settled), by e every 10 × relearn_after, twice as slowly
// after each relearn on the same lease, at most baseline_window: under a
// standing queue no window shows the latency without one, so only a
// baseline that must be learned again, or the lease probe's drop
// (startLeaseProbe), can find out that the dependency is fast again.
// Where the lease probe can check the lease, the decay trims the queue
// the lease lets stand down to none over the leased latency
// (queueThreshold), and a window over that, while the cuts cost
// throughput, renews the lease (relearnEarly); where it cannot, the
// decayed baseline reads the leased latency as a queue once more, and
// halving the limit relearns it. Decayed to its end,
// the lease gives the settled baseline back; if the dependency is still
// slow, the cuts find it again, and a relearn within carryWindows counts
// as one more on the same lease (carried). Each such renewal makes the
// next check come twice as late. A window faster than 0.8 × the leased
// baseline, by two of its standard errors where it has them, ends the
// lease at once: the settled baseline is back. (Without the errors, where
// one API's dependency slowed, a window that held few of its answers
// read fast, ended the lease, and the limit fell to its floor:
// random-2803's slow-api under default-slo, 0.83 → 0.65 of
// proportional.) So does
// one faster, by two of its standard errors (sem), than 0.8 × the baseline
// as the relearn took it (leased), before any decay: a dependency still
// slow never answers faster than that, while the limit the lease allowed
// fills a recovered dependency's freed latency with a queue, whose rtt
// follows the decaying baseline down and stays above 0.8 of it (two-tier's
// slow-api: ten seconds at 0.3–0.8 of its share). The standard errors keep
// a noisy window of few answers from ending a lease it should not.
// Not the window's rtt as the settled baseline: the first window after a
// dependency recovers still holds the slow answers of the requests that
// started before, and a baseline taken from it would read a queue the
// limit let in as the service's own latency. If the dependency is only
// partly faster, the settled baseline reads the rest as a queue, and a
// relearn finds it.
func (c *SLOConcurrencyController) expireLease(ticks, rtt, sem, inFlight float64) {
	if !IsValid(c.settled) {
		if c.carried > 0 {
			c.carriedTicks += ticks
			if c.carriedTicks > carryWindows*c.relearnTicks {
				c.carried = 0
			}
		}
		return
	}
	if !IsValid(c.baseline) {
		return
	}
	margin := 0.0
	if IsValid(sem) {
		margin = 2 * sem
	}
	if rtt+margin < 0.8*c.baseline || (IsValid(sem) && rtt+2*sem < 0.8*c.leased) {
		c.endLease(inFlight)
		return
	}
	tau := math.Min(10*c.relearnTicks*math.Pow(2, float64(c.relearns-1)), c.windowTicks)
	c.baseline = c.settled + (c.baseline-c.settled)*math.Exp(-ticks/tau)
	if c.baseline < 1.05*c.settled {
		relearns := c.relearns
		c.endLease(inFlight)
		c.carried, c.carriedTicks = relearns, 0
	}
}

// carryWindows is how many relearn_afters after a lease that decayed to
// its end a relearn still counts as one more on that lease (carried): the
// dependency was slow all along, and its next lease decays twice as
// slowly, as a relearn during the decay's does.
const carryWindows = 10

// endLease puts the settled baseline back, and with it at most the limit
// the lease began with: what the limit grew by on lease was room for the
// leased latency, and, the latency back, it would let a queue in that the
// settled baseline sees only while the limit binds (after a dependency
// hung, every answer a timeout, the lease took the timeouts as the
// latency and its limit grew a hundredfold). The requests in flight
// beyond that limit (inFlight, now) were admitted at the leased latency
// and take about that long to finish: the limit in force keeps room for
// them (stale), less those of them that answer (drainStale). Cut to that
// limit at once, the requests a hung dependency still held took every
// slot: on two-tier's hung dependency nothing new was admitted for 1.3 s
// after the dependency answered again.
func (c *SLOConcurrencyController) endLease(inFlight float64) {
	leased := math.Max(c.baseline, c.leased) // before it decayed
	c.baseline, c.settled, c.relearns, c.lowRun, c.carried = c.settled, Invalid, 0, 0, 0
	if c.limit > c.leaseLimit {
		c.limit = c.leaseLimit
	}
	if IsValid(inFlight) && inFlight > c.limit {
		c.stale, c.staleRTT = inFlight-c.limit, leased
		c.staleStep = c.stale / math.Max(1, c.relearnTicks)
	}
}

// drainStale takes from the room kept after a lease (endLease) the
// answers of a tick (n, mean rtt) that came from the requests the lease
// let in: the share of them that puts the mean where it is between the
// baseline (a new request's rtt) and the leased one (staleRTT), and at
// least a relearn_after's share of the room, so that it is gone by then
// whatever the answers say. A drain timed by the leased baseline read as
// milliseconds lasted a tick behind topfull's queue guard, whose rtt is
// a ratio to each API's baseline, and a drain timed by the lease's
// answers per second lasted tens of seconds where its last windows had
// few (many-servers' hung dependency).
func (c *SLOConcurrencyController) drainStale(n, rtt float64) {
	if !(c.stale > 0) {
		return
	}
	take := c.staleStep
	if n > 0 && IsValid(rtt) && c.staleRTT > c.baseline {
		share := math.Min(1, math.Max(0, (rtt-c.baseline)/(c.staleRTT-c.baseline)))
		take = math.Max(take, n*share)
	}
	c.stale = math.Max(0, c.stale-take)
}

// inForce is the limit with the room kept for the requests a lease let
// in (endLease).
func (c *SLOConcurrencyController) inForce() float64 {
	return math.Min(c.maxLimit, c.limit+c.stale)
}

// binds reports whether the limit constrains traffic: in flight at least
// utilization × limit, or no room for one more request.
func (c *SLOConcurrencyController) binds(inFlight float64) bool {
	return IsValid(inFlight) && (inFlight >= c.utilization*c.limit || inFlight+1 > c.limit)
}

// Execute runs one tick.
func (c *SLOConcurrencyController) Execute(in, out []float64) {
	latency, setpoint, inFlight, oldest, rtt, completedRps, rttSem, full := in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7]
	// api_latency_ms and api_setpoint_ms: the tail's ports are the last
	// two, both optional.
	apiTail, apiSetpoint := Invalid, Invalid
	if len(in) > 9 {
		apiTail, apiSetpoint = in[8], in[9]
		c.followTail(in[8], in[9], inFlight, completedRps, rtt)
	}
	if !c.started {
		c.limit, c.slowStartOn, c.baseline, c.started = c.initial, true, Invalid, true
		c.latencyRatio, c.latencyMin = Invalid, Invalid
		c.settled = Invalid
		c.winLatency = Invalid
		c.recoverTo = Invalid
		c.winInFlight = Invalid
		c.tailX, c.tailRTT = Invalid, Invalid
		c.burstFrom = Invalid
		c.cutBase, c.undrainedMin = Invalid, Invalid
		c.jitter, c.lastRTT = Invalid, Invalid
	}
	// Gather the tick into the window: a decision needs min_samples
	// completions and one baseline rtt (or max_window), or one slow
	// request's latency would read as queueing and a queue already cut
	// would be cut again. Without completed_rps every tick is a window.
	n := 0.0
	if IsValid(completedRps) && c.interval > 0 {
		n = completedRps * c.interval
	}
	if c.slowStartOn {
		c.peak = math.Max(c.peak, c.limit)
	}
	if c.drainPhase != drainOff && c.drain(n, rtt, inFlight, oldest) {
		out[0], out[1], out[2] = math.Min(c.inForce(), c.drainTarget), 0, c.baseline
		return
	}
	c.drainStale(n, rtt)
	if IsValid(rtt) && rtt > 0 && n > 0 {
		c.winRTT += rtt * n
		c.winN += n
		if IsValid(rttSem) {
			c.winSemSq += (n * rttSem) * (n * rttSem)
			c.winSemN += n
		} else {
			c.winSemMissing = true
		}
	}
	if IsValid(latency) && !(latency <= c.winLatency) {
		c.winLatency = latency
	}
	c.winTicks++
	binding := c.binds(inFlight)
	c.winBinding = c.winBinding || binding
	if full > 0 && c.interval > 0 {
		c.winFull += full * c.interval
	}
	if IsValid(inFlight) && !(inFlight <= c.winInFlight) {
		c.winInFlight = inFlight
	}
	overload := 0.0
	c.probe(n, rtt, rttSem, inFlight, binding)
	if IsValid(completedRps) && c.winTicks < c.maxWindowTicks && (c.winN < c.minSamples || c.withinRoundTrip()) && !c.firstEnough() {
		out[0], out[1], out[2] = c.inForce(), overload, c.baseline
		return
	}
	latency, binding = c.winLatency, c.winBinding
	if !IsValid(completedRps) {
		latency, binding = in[0], c.binds(inFlight)
	}
	// The window's standard error: unknown if any of its ticks had an rtt
	// but no error (one answer, or rtt_sem_ms not wired).
	windowRTT, windowSem := rtt, rttSem
	if IsValid(completedRps) {
		windowRTT, windowSem = Invalid, Invalid
		if c.winN > 0 {
			windowRTT = c.winRTT / c.winN
			if !c.winSemMissing {
				windowSem = math.Sqrt(c.winSemSq) / c.winN
			}
		}
	}
	windowTicks, windowN := c.winTicks, c.winN
	// Little's law: what the window's answers account for in flight, its
	// throughput times their mean rtt, plus two standard errors of it
	// (Invalid without completed_rps).
	accounted := Invalid
	if IsValid(completedRps) && c.winN > 0 && c.interval > 0 {
		upper := windowRTT
		if IsValid(windowSem) {
			upper += 2 * windowSem
		}
		accounted = c.winN / (c.winTicks * c.interval) * upper / 1000
	}
	// The most in flight at any tick of the window, not the last tick's
	// count: a small limit's count swings from tick to tick (a service of
	// two workers behind a limit of four holds 0 to 4), and a cut from
	// the count at a tick with one in flight took the limit to about two,
	// which rejected a fifth of the requests at half of capacity and,
	// with clients that retry, most of them (random-917 retry-storm: 0.24
	// of proportional; 0.91 from the window's most).
	last := inFlight // the idle check below asks whether any is in flight now
	if IsValid(completedRps) {
		inFlight = c.winInFlight
	}
	refused := c.winFull
	c.winFull = 0
	probed := c.probed // the probe doubled during this window
	c.winInFlight, c.probed = Invalid, false
	pooledSem := pooledSE(c.winSemSq, c.winSemN, windowN)
	c.winTicks, c.winN, c.winRTT, c.winSemSq, c.winLatency, c.winBinding, c.winSemMissing = 0, 0, 0, 0, Invalid, false, false
	c.winSemN = 0
	if !IsValid(latency) && IsValid(oldest) && oldest > 0 {
		latency = oldest
	}
	rtt = windowRTT

	c.checkEarly(windowTicks, windowN)
	base := c.limit
	if IsValid(inFlight) {
		base = math.Max(c.minLimit, math.Min(c.limit, inFlight))
	}
	// Queueing counts only while the limit binds: below it, a slow window is
	// the service's own doing (or noise), and cutting would starve traffic
	// the limit was never constraining.
	threshold := c.queueThreshold(base)
	slow := IsValid(rtt) && rtt > 0 && IsValid(c.baseline) && rtt > threshold+c.warmupMargin(pooledSem)
	// Over the threshold, within the warm-up's noise: slow start holds
	// (warmupMargin).
	unsure := !slow && IsValid(rtt) && IsValid(c.baseline) && rtt > threshold
	// A queue the service drains on its own: with the latency within the
	// setpoint and the worst API's tail (where wired) under tailRelax of
	// its own, a window that queues while the limit bound in fewer than
	// burstBinds of the last burstWindows is a burst under capacity (a
	// clump of costly requests at a shared bottleneck), not an overload,
	// which fills the limit window after window until a cut. Cutting it
	// refused requests the service had room for: on hetero-cost at 0.8 of
	// capacity, the cuts at each clump refused 3 % of the requests, and
	// clients that retry answered those late (lookup's steady p99 1.37 ×
	// its SLO; the oracle's, admitting all, 0.26). A window that refused
	// burstRefused of its requests or more met at least 1.5 × what it
	// admitted: an overload's onset, cut at once (let through as a burst,
	// the onsets' runs began a window later and relearned a slower
	// dependency less often: hetero-cost's slow dependency 0.96 → 0.92
	// of proportional over the steady half). Without a setpoint
	// the controller cannot tell such a burst from one that costs the
	// SLO (one worker of 200 ms at 0.8 of capacity, whose bursts must be
	// refused), and cuts both.
	c.bound = c.bound<<1 | boolBit(binding)
	burst := binding && slow && c.samples >= baselineWarmup && !c.slowStartOn &&
		bits.OnesCount8(c.bound&(1<<burstWindows-1)) < burstBinds &&
		IsValid(latency) && IsValid(setpoint) && setpoint > 0 && latency <= setpoint &&
		!(apiTail > tailRelax*apiSetpoint) && !(refused >= burstRefused*(refused+windowN))
	queueing := binding && slow && !burst
	// The window after a burst queues as well: the burst was the onset of
	// an overload or of a slower dependency. Its growth is undone, so
	// that the run of queueing windows begins at the limit before it
	// (relearn compares once the limit has halved from there: grown
	// from 24 to 29 at two-tier's slower dependency, the limit settled
	// at 14–18, over half of 29, and the baseline relearned only once
	// the limit had been cut to 6; 0.72 of proportional over the steady
	// half).
	if from := c.burstFrom; queueing && from < c.limit {
		c.limit = from
	}
	c.burstFrom = Invalid
	// The limit refused requests (full_rps) though no tick ended with it
	// near full, and the rtt shows no queue: bursts under capacity that
	// the count at the ticks' ends does not see (a single worker at 0.8
	// of its capacity holds 0 to 20 requests from one millisecond to the
	// next). The limit grows as when it binds, while the refusals are
	// under burstShare of the window's requests: an overload of 1/(1 -
	// burstShare) or more must have that share refused, whatever the
	// limit.
	refusedOnly := refused > 0 && refused < burstShare*(refused+windowN) && !binding && !slow && IsValid(rtt) &&
		!c.slowStartOn && c.samples >= baselineWarmup && !c.refill // a drain probe's lower limit refused those
	c.relearnX = 0
	if windowTicks > 0 && c.interval > 0 {
		c.relearnX = windowN / (windowTicks * c.interval)
	}
	// A run of queueing windows begins with one that binds; a small
	// limit may leave a window with a free slot at every tick, and such a
	// window, still slow, does not end the run.
	if (queueing || (c.streak && slow)) && c.drainedNothing(base, rtt, windowSem, windowTicks, windowN, accounted) {
		// This window is the new latency's evidence, not a queue. Cut
		// again from what is in flight now, the limit the relearn
		// restored fell back to the bottom of the cuts (huge-capacity's
		// slow API: 76 where the run began at 691, and 6 s at 0.1–0.6 of
		// proportional to grow back).
		queueing = false
	} else if (queueing || (c.streak && slow)) && c.relearn(rtt, windowTicks, windowN) {
		threshold = c.queueThreshold(base)
		queueing = binding && rtt > threshold && !burst
	}
	if !slow && (IsValid(rtt) || !(last > 0)) {
		// A window with no rtt while requests are in flight (nothing
		// finished: everything hangs) neither continues a run nor ends
		// it; an idle one ends it, so that a run does not resume after a
		// lull with the evidence from before it.
		if c.streak && c.limit <= c.streakLimit/8 && !(c.recoverTo >= c.streakLimit/2) {
			c.recoverTo = c.streakLimit / 2
		}
		c.streak = false
	}
	// Latency over the setpoint is an overload from the first tick, if
	// the setpoint leaves room of half the tolerance over the latency
	// without a queue (latencyRatio × baseline, from the first window
	// that samples the baseline): a setpoint under the latency of the
	// slowest APIs (the tightest SLO of APIs whose latencies differ
	// tenfold) cannot be met by admission, and would otherwise cut the
	// limit to min_limit, or, before the baseline is learned, hold slow
	// start at the initial limit for its ten windows (random-3914's cold
	// start with its SLOs stated: 3 in flight for 8 s, 0.23 of
	// proportional in the first 10 s). Once the baseline is learned, only
	// while the rtt shows a queue (half the tolerance over the baseline)
	// that a cut can drain.
	learned := c.samples >= baselineWarmup && IsValid(rtt)
	overSetpoint := IsValid(latency) && IsValid(setpoint) && setpoint > 0 && latency > setpoint &&
		!(setpoint < (1+c.tolerance)/2*c.latencyRatio*c.baseline) &&
		(c.samples == 0 || !(rtt <= (1+c.tolerance)/2*c.baseline) && (binding || !learned))
	switch {
	case overSetpoint:
		g := setpoint / latency
		if learned {
			// No deeper than the cut that would drain the queue.
			g = math.Max(g, (1+c.tolerance)/2*c.baseline/rtt)
		}
		c.limit = base * math.Max(c.minGradient, g)
		if learned {
			// The queueing cut's headroom. A limit just at what the
			// throughput needs without a queue (Little's law) leaves the
			// bottleneck idle whenever its requests are elsewhere on
			// their chain: a closed system's throughput nears capacity
			// only some way past that knee. Cut to the setpoint's target
			// alone, random-1020's limit sawed from 8 to 3 around the 6
			// its bottleneck needs, and kept 0.86 of proportional over
			// the steady half (0.95 with the headroom; 0.96 without
			// slo).
			c.limit += math.Sqrt(base)
		}
		if !IsValid(rtt) {
			c.slowStartOn = false
		} else {
			// Never under the initial limit, which keeps a queue short
			// whatever the service; before the baseline can tell a queue
			// from a setpoint under the service's own latency, leave slow
			// start to the baseline's verdict.
			c.limit = math.Max(c.limit, math.Min(c.initial, base))
			c.slowStartOn = c.slowStartOn && !learned
		}
		if queueing {
			// A latency just over the setpoint asks for a small cut, and
			// the √base of headroom turned it into a rise: the window's
			// queue, over the baseline's tolerance, still gets the
			// queueing cut, which the setpoint only deepens.
			c.limit = math.Min(c.limit, c.queueCut(base, threshold, rtt))
			c.slowStartOn = false
		}
		overload = 1
	case queueing:
		c.limit = c.queueCut(base, threshold, rtt)
		c.slowStartOn, overload = false, 1
	case binding && IsValid(latency) && c.slowStartOn && IsValid(rtt) && c.samples == 0:
		// Hold the initial limit until the baseline has a sample measured
		// at it: a service overloaded from its first second must not teach
		// the baseline a queue. (The probe may double a service slower
		// than a tick before then; the first window, taken at the initial
		// limit, then bounds the sample: learnFirst.)
	case binding && IsValid(latency) && c.slowStartOn && inFlight > aheadOfAnswers*accounted && rtt > c.baseline:
		// Hold: more is in flight than the window's answers account for,
		// and their rtt has begun to rise. The answers come from requests
		// admitted before the last doubling; the requests it let in are
		// waiting, and the rtt shows them a window or more later.
		// Doubling each one-tick window on that rtt took random-11's
		// cold start from 24 to 768 in six ticks, on a service that
		// turns over 22 at a time: 656 in flight before the rtt passed
		// the tolerance, and answers 1.8 s late. Where the answers
		// catch up (a service slower than a window), the next window
		// doubles. Not on the count alone: where a few costly answers
		// make a window's mean noisy, it holds by chance, and a held
		// warm-up took cheap-majority into a baseline far under its mix
		// (docs/simulator.md).
	case binding && IsValid(latency) && c.slowStartOn && (probed || c.probedAny && !c.probeOff):
		// The probe doubled during this window, or clocks this slow start
		// (it has doubled before and goes on): once the limit is large, a
		// window of min_samples answers is shorter than a turnover, and a
		// doubling on each took many-servers from 96 to 1536 in 0.8 s,
		// three times its 512 workers.
	case binding && IsValid(latency) && c.slowStartOn && unsure:
		// A window over the threshold within its noise proves neither a
		// queue nor room: the limit holds for another window.
	case binding && IsValid(latency) && c.slowStartOn:
		c.limit *= c.slowStart
	case burst:
		// The burst's refusals were of requests the service had room
		// for: the limit grows as when it binds, while a full limit
		// would answer within burstRoom × the setpoint at the window's
		// throughput (Little's law), so that the bursts fit; beyond,
		// each slot would hold a queue the SLO cannot afford (one
		// worker of 200 ms at 0.8 of capacity: 1 s a slot), and the
		// limit holds.
		c.burstFrom = c.limit
		if x := windowN / (windowTicks * c.interval); (c.limit+math.Sqrt(c.limit))/x*1000 <= burstRoom*setpoint {
			c.limit += math.Max(1, math.Sqrt(c.limit))
		}
	case binding && IsValid(latency) && c.limit < c.recoverTo && IsValid(rtt) && rtt <= (1+c.tolerance)/2*c.baseline:
		// Back from an outage, with no queue: double towards half of
		// where the cuts began, as TCP's slow start does towards its
		// threshold, rather than add √limit a window from the bottom.
		c.limit = math.Min(c.limit*c.slowStart, c.recoverTo)
		c.doubled = true
	case (binding || refusedOnly) && IsValid(latency):
		c.limit += math.Max(1, math.Sqrt(c.limit))
	case !binding && c.samples >= baselineWarmup:
		// The limit has room and the baseline is learned: the service
		// runs below its limit, so slow start has found what this load
		// needs. A later surge grows the limit by √limit a window, which
		// gives a queue time to show before the limit outruns it, and
		// an outage's doubling back is over.
		c.slowStartOn = false
		c.recoverTo = Invalid
	}
	c.validate(binding || refusedOnly || slow || overload == 1, inFlight, windowTicks)
	c.limit = math.Min(c.maxLimit, math.Max(c.minLimit, c.limit))
	if c.limit >= c.recoverTo || (overload == 1 && c.doubled) {
		c.recoverTo = Invalid // back, or the doubling found a queue
	}
	if overload == 1 || c.limit >= c.recoverTo || !IsValid(c.recoverTo) {
		c.doubled = false
	}
	if IsValid(rtt) && rtt > 0 {
		switch {
		case c.refill:
			// The first window after a drain probe starts with few in
			// flight, and reads low as the first window does.
			c.refill = false
		case !c.firstWindowSeen:
			// The first window starts with nothing in flight: its short
			// requests finish first and long ones have not yet, so its
			// rtt reads low. It is not a sample of the baseline.
			c.firstWindowSeen = true
			c.firstRTT = rtt
		case c.samples < baselineWarmup:
			c.samples++
			c.learnFirst(rtt, windowSem)
			if IsValid(latency) && !(latency >= c.latencyMin) {
				c.latencyMin = latency
			}
			c.latencyRatio = c.latencyMin / c.baseline
		case !queueing:
			if r := latency / rtt; IsValid(r) && !IsValid(c.latencyRatio) {
				c.latencyRatio = r
			} else if IsValid(r) {
				c.latencyRatio += c.alpha * (r - c.latencyRatio)
			}
			c.baseline += c.alpha * (rtt - c.baseline)
			// Recovering from a long overload, as Gradient2: the baseline
			// decays while the rtt stays under half of it, for
			// lowRunWindows windows in a row. One such window is noise
			// where a mix's windows differ in how many costly answers
			// they hold: 95 % of answers at 1 ms and 5 % at 300 ms give
			// a window of fifty only cheap answers one time in thirteen,
			// and decaying on each took the baseline to half the mix's
			// latency before the shared latency set the mix aside, after
			// which every window read as a queue and the limit never grew.
			c.lowRun++
			if !(c.baseline > 2*rtt) {
				c.lowRun = 0
			} else if c.lowRun >= lowRunWindows {
				c.baseline *= 0.95
			}
		default:
			c.lowRun = 0
		}
	} else {
		c.lowRun = 0 // a window with no answer is no window in a row
	}
	if IsValid(rtt) && rtt > 0 {
		if d := math.Abs(math.Log(rtt / c.lastRTT)); !IsValid(c.jitter) && IsValid(d) {
			c.jitter = d
		} else if IsValid(d) {
			c.jitter += jitterAlpha * (d - c.jitter)
		}
		c.lastRTT = rtt
	}
	if !queueing {
		c.cutBase, c.undrained, c.undrainedMin = Invalid, 0, Invalid
	} else if windowN > 0 && IsValid(rtt) && (!(base < c.cutBase) || c.cutTicks > c.relearnTicks || c.cutRose(rtt, windowSem)) && base <= aheadOfAnswers*accounted {
		c.cutBase, c.cutRTT, c.cutSem, c.cutX, c.cutTicks = base, rtt, windowSem, windowN/windowTicks, 0
	} else {
		// The rtt lags what is in flight: the queue of the window with
		// the most shows in the windows after it.
		if rtt > c.cutRTT {
			c.cutRTT, c.cutSem = rtt, windowSem
		}
		c.cutTicks += windowTicks
	}
	c.expireLease(windowTicks, rtt, windowSem, last)
	c.startDrain(windowTicks, windowN, rtt)
	c.startLeaseProbe(windowTicks, windowN, binding)
	out[0], out[1], out[2] = c.inForce(), overload, c.baseline
	if c.drainRelearn {
		// A relearn probe holds its target from this tick on: the
		// relearn put the limit back up where its run began (but on
		// its second reference), and the requests it let in for a
		// tick took the drain three turnovers of two slow workers to
		// let go.
		out[0] = math.Min(out[0], c.drainTarget)
	}
}

// validate takes back room the limit has not used (used: the window bound,
// refused, queued or was cut): once it has gone relearn_after without
// binding, the limit drops to twice the most in flight since, if that is
// lower, by half at most, and the count starts over. Room is won while the
// limit binds, and what binds it may not be the traffic that comes next:
// requests hung on a dependency hold their slots, so the limit grows by
// √limit a window for as long as the hang lasts, and a test that holds one
// API back frees slots the others take. Kept, such room lets a herd in at
// the next surge before any queue shows (random-91's hung dependency: the
// limit grew to 70 over about 20 in flight, and a later run of cuts began
// from 70). TCP validates an idle window the same way (RFC 2861). Twice
// the most in flight keeps room for a doubling of the load at the same
// latency, and for bursts that a tick's end does not see.
func (c *SLOConcurrencyController) validate(used bool, inFlight, ticks float64) {
	if used || c.slowStartOn || c.streak || c.samples < baselineWarmup || !IsValid(inFlight) {
		c.idleTicks, c.idlePeak = 0, 0
		return
	}
	c.idleTicks += ticks
	c.idlePeak = math.Max(c.idlePeak, inFlight)
	if c.idleTicks < c.relearnTicks {
		return
	}
	if target := math.Max(c.initial, validateRoom*c.idlePeak); c.limit > target {
		c.limit = math.Max(target, c.limit/2)
	}
	c.idleTicks, c.idlePeak = 0, 0
}

// validateRoom is how many times the most in flight an unused limit keeps
// (validate).
const validateRoom = 2

// drainPeak is how many times the initial limit slow start may have
// reached, at most, for the drain probe to follow it, and drainRise how
// many times what the initial limit delivers at the baseline the
// throughput of the window that ends slow start may be (startDrain).
const (
	drainPeak = 4
	drainRise = 1.25
)

// startDrain starts the drain probe, once, when the first window with
// answers after a cold start's slow start shows that its doublings (a peak
// of slow_start_factor to drainPeak × the initial limit) bought no
// throughput: no more than drainRise × what the initial limit delivers at
// the baseline (Little's law), while the baseline is still in its warm-up.
// Then the service turned over fewer requests than the initial limit,
// which queued already, and every window the baseline learned from held
// that queue. On one worker of 200 ms (tiny-capacity), the limit of 3
// reads about 600 ms, and the baseline learns 534; the cuts settle where
// the rtt is rtt_tolerance × that, 5 to 9 in flight, 1 to 2 s against the
// 1 s SLO, for as long as the service runs: 0.3 to 0.5 of proportional. No
// window shows the latency without a queue unless the limit drops under
// what the service turns over, so the probe drops it to what the window's
// throughput needs at half the baseline, for as long as drain takes (BBR's
// ProbeRTT and Envoy's minRTT recalculation drop it periodically; here
// once, on that evidence, as it costs half the throughput where there was
// no queue). A service that slow start took past drainPeak × the initial
// limit, or whose throughput rose with the doublings, had room at the
// initial limit, and is not drained.
func (c *SLOConcurrencyController) startDrain(ticks, n, rtt float64) {
	if c.slowStartOn {
		return
	}
	if c.drained || c.samples < 1 || c.samples >= baselineWarmup || !IsValid(c.baseline) || !(n > 0) || !IsValid(rtt) {
		return
	}
	c.drained = true
	x := n / (ticks * c.interval)
	// What the initial limit delivers at the baseline (Little's law):
	// slow start's doublings bought no more than that. Not where the
	// warm-up's windows are as noisy as learnFirst allows for (a mix of
	// cheap and costly APIs): their baseline is chance's lowest mean, the
	// rtt's rise over it is the mix, and after a drain the cheap
	// requests it held back answer first and read lower still
	// (slo-spread, 2 ms and 500 ms: 0.70 of proportional under
	// retry-storm fell to 0.27).
	if c.noisyWarmup() || c.peak < c.slowStart*c.initial || c.peak > drainPeak*c.initial || !(x <= drainRise*c.initial/c.baseline*1000) {
		return
	}
	target := math.Max(c.minLimit, x*c.baseline/2/1000)
	if target >= c.inForce() {
		return
	}
	c.drainPhase, c.drainTarget, c.drainTicks, c.drainThroughput = drainDraining, target, 0, x
	c.drainMax = c.maxWindowTicks + math.Ceil(3*rtt/(c.interval*1000))
	c.drainMeasureTicks, c.drainAnswers, c.drainRTTSum, c.drainInFlight = 0, 0, 0, 0
}

// leaseProbeWindows is how many relearn_afters apart the lease probe runs
// (startLeaseProbe).
const leaseProbeWindows = 2

// leaseProbeShare is how many lease probes would fill relearn_after, at
// most: a probe's drain, its skipped midpoint rtt and a tick to measure
// last no longer than relearn_after ÷ leaseProbeShare, a sixth of the
// time between probes.
const leaseProbeShare = 3

// leaseMinRise is how much slower than the settled baseline a lease must
// be for the lease probe to tell the two apart.
const leaseMinRise = 1.25

// startLeaseProbe runs the drain probe on a relearned baseline's lease,
// every leaseProbeWindows × relearn_after of windows that bind: the limit
// in force drops to what the last window's throughput needs in flight at
// the settled baseline (Little's law), and once the requests in flight are
// down to that, the answers of those admitted after show the latency
// without a queue. Under the midpoint of the settled and the leased
// baselines, the dependency is fast again, and the lease ends
// (endLease); otherwise it goes on. Where the bottleneck is saturated,
// nothing else can tell: the rtt is the limit ÷ the throughput whether
// the dependency is slow or the limit its slowness let in now queues at
// the bottleneck, and the lease's decay took 40 s to find the settled
// baseline again (deep-chain's slow dependency: 0.72–0.75 of
// proportional over the steady half). The probe costs, while the
// dependency is still slow, the requests the limit turns away until the
// in-flight count is back: about one rtt at settled ÷ leased of the
// throughput, every few seconds. It waits for the count to fall for
// twice the time the throughput takes to drain it, at most: requests
// that hang do not leave, and the probe does not hold the limit under
// them. A probe whose drain, skipped rtt and a tick to measure would
// take more than relearn_after ÷ leaseProbeShare (ten ticks at the
// defaults) is not run, and one that runs decides on what it has once
// that budget is spent. The drain takes about twice the excess of the
// rtt over the settled baseline, so at the defaults a probe fits where
// that twice, plus the midpoint, is under 0.8 s (deep-chain's rtt of
// 300 ms over a settled 163 ms: 0.47 s); a slower lease is left to the
// decay.
func (c *SLOConcurrencyController) startLeaseProbe(ticks, n float64, binding bool) {
	if !IsValid(c.settled) {
		return
	}
	if binding {
		c.leaseProbeTicks += ticks
	}
	if c.leaseProbeTicks < leaseProbeWindows*c.relearnTicks || !binding || c.checking || c.slowStartOn ||
		c.drainPhase != drainOff || !(n > 0) || !(c.leased >= leaseMinRise*c.settled) {
		return
	}
	c.leaseProbeTicks = 0
	x := n / (ticks * c.interval)
	target := math.Max(c.minLimit, x*c.settled/1000)
	if target >= c.inForce() {
		return
	}
	wait := 1 + math.Ceil(2*(c.inForce()-target)/x/c.interval)
	if wait+math.Ceil(c.leaseMidpoint()/1000/c.interval)+1 > c.leaseProbeBudget() {
		// Too long a probe for what it finds: a lease whose answers are
		// slow or few (a dependency that hangs, answered by timeouts),
		// which the first fast window ends anyway (expireLease).
		return
	}
	c.drainPhase, c.drainTarget, c.drainTicks, c.drainThroughput, c.drainLease = drainDraining, target, 0, x, true
	c.drainMax = wait
	c.drainMeasureTicks, c.drainAnswers, c.drainRTTSum, c.drainInFlight = 0, 0, 0, 0
}

// leaseProbeFits reports whether the lease probe can check the lease at
// all: its drain, about twice the leased latency's excess over the
// settled one, and the midpoint rtt it then waits for fit its budget
// (startLeaseProbe weighs the same with the throughput of the moment).
// Where it cannot, the decay is what finds a dependency that is fast
// again, under the queue the lease's limit lets into the freed time:
// only cuts that read the leased latency as a queue drain it.
func (c *SLOConcurrencyController) leaseProbeFits() bool {
	tick := c.interval * 1000
	return 2+math.Ceil(2*(c.leased-c.settled)/tick)+math.Ceil(c.leaseMidpoint()/tick) <= c.leaseProbeBudget()
}

// leaseProbeBudget is the most ticks a lease probe runs, all phases.
func (c *SLOConcurrencyController) leaseProbeBudget() float64 {
	return c.relearnTicks / leaseProbeShare
}

// leaseMidpoint is the rtt under which the lease probe ends a lease: half
// way from the settled baseline to the leased one.
func (c *SLOConcurrencyController) leaseMidpoint() float64 {
	return (c.settled + c.leased) / 2
}

// drain runs a tick of the drain probe (startDrain) and reports whether
// it goes on; while it does, the limit in force is its target and no
// window gathers. It waits for the requests in flight to fall to the
// target (drainMax ticks at most), then measures the rtt there: the
// higher of the answers' mean and what Little's law makes of the ticks'
// in flight and throughput (a mix's cheap answers come first, and a
// short mean reads low). It ends once it has min_samples answers over
// two rtts by Little's law, or after probeTickAnswers/rtt_tolerance
// baselines (max_window at least, twice max_window at most). A measured
// rtt under 0.8 × the baseline over at least ten answers
// (probeTickAnswers: one slow answer cannot decide), or under the
// baseline over the tolerance over at least five, becomes the baseline,
// and the limit falls to what the throughput before the probe needs at
// the tolerance over it.
//
// At one request in flight, ten answers come within that many baselines
// only where the rtt is under the baseline over the tolerance: where the
// baseline held more queue than the tolerance lets stand, and the probe
// is worth the workers it idles. One worker behind the initial limit of
// 3 reads a baseline of 2 to 2.7 service times; two workers read 1.3,
// and their second worker idles while the probe runs: a probe of twice
// max_window cost them a third of the first 10 s of a cold start, for a
// baseline a quarter lower. Where one worker's answers are slow enough
// that fewer than ten come within it, five under the baseline over the
// tolerance still show the queue.
//
// After a cold start's slow start, no lease, stale room or early relearn
// exists yet to skip while it runs: all need the baseline past its
// warm-up. On a lease (drainLease, startLeaseProbe) the probe runs with
// the lease's own test instead: the mean of the answers after one
// midpoint rtt, against the midpoint, within the probe's budget; the
// windows, and with them the lease's decay and any early relearn's
// check, wait while it runs. After a relearn at a small limit
// (drainRelearn, startRelearnProbe) it counts nothing until the skipped
// answers are in, decides as soon as it has the answers the baseline's
// test needs over an rtt (drainMeasureMax at most), reads nothing lower
// while an older request is still in flight, and what it finds replaces
// the relearned baseline, or ends the lease.
func (c *SLOConcurrencyController) drain(n, rtt, inFlight, oldest float64) bool {
	c.drainTicks++
	if c.drainPhase == drainDraining {
		if IsValid(inFlight) && inFlight <= c.drainTarget {
			// The requests still in flight were admitted before the
			// drain and waited in its queue: their answers are skipped.
			c.drainPhase, c.drainSkip = drainMeasuring, inFlight
		} else if c.drainTicks >= c.drainMax {
			c.drainPhase, c.refill, c.drainLease, c.drainRelearn = drainOff, true, false, false
		}
		return c.drainPhase != drainOff
	}
	c.drainMeasureTicks++
	if c.drainLease && c.drainMeasureTicks*c.interval*1000 <= c.leaseMidpoint() {
		// A lease probe skips the answers of the first midpoint rtt:
		// until then the requests admitted since the drop are still in
		// flight, and only the fastest of them answer.
		c.drainSkip -= math.Min(n, c.drainSkip)
		return true
	}
	if c.drainRelearn && c.drainSkip > 0 {
		// A relearn probe counts nothing until the requests admitted
		// before the drop have answered, the tick they finish in
		// included: while they were in flight, the count held requests
		// whose answers are skipped, and Little's law read high (on two
		// workers of 1.2 s, eight answers read 1.55 s); the answers
		// after them in that tick are the fastest of the new ones.
		c.drainSkip -= math.Min(n, c.drainSkip)
		if c.drainMeasureTicks < c.drainMeasureMax() {
			return true
		}
		// Requests that hang are never skipped: the probe decides on
		// what it has, as at drainMeasureMax.
		n = 0
	}
	if c.drainRelearn {
		c.drainCounted++
	}
	if skip := math.Min(n, c.drainSkip); skip > 0 {
		// A tick's answers come oldest first: those of the requests
		// admitted before the drain leave the count, and the rest
		// count at the tick's mean rtt, which theirs may raise.
		c.drainSkip -= skip
		n -= skip
	}
	if IsValid(rtt) && rtt > 0 && n > 0 {
		c.drainAnswers += n
		c.drainRTTSum += n * rtt
	}
	if IsValid(inFlight) {
		c.drainInFlight += inFlight
	}
	little := Invalid
	if c.drainAnswers > 0 {
		little = c.drainInFlight / c.drainAnswers * c.interval * 1000
	}
	measured := math.Max(little, c.drainRTTSum/c.drainAnswers)
	if c.drainLease {
		// The answers of the requests admitted after the drop, one
		// midpoint rtt on: their mean. The count in flight includes
		// those not yet answered, so Little's law reads high here.
		measured = c.drainRTTSum / c.drainAnswers
	}
	// Ten answers no faster than the baseline: the initial limit had no
	// queue after all (a mix whose baseline chance read low), and the
	// probe stops costing throughput. A lease probe's ten answers no
	// faster than its midpoint: the dependency is still slow.
	floor := c.baseline
	if c.drainLease {
		floor = c.leaseMidpoint()
	}
	done := c.drainAnswers >= probeTickAnswers && measured >= floor
	measuredMs := c.drainMeasureTicks * c.interval * 1000
	enough := c.drainAnswers >= c.minSamples && measuredMs >= 2*little
	if c.drainLease {
		// min_samples answers, or the probe's budget spent: it decides
		// on what it has.
		enough = c.drainAnswers >= c.minSamples || c.drainTicks >= c.leaseProbeBudget()
		if !done && !enough {
			return true
		}
	} else if c.drainRelearn {
		// A relearn probe decides as soon as it can, once it has
		// counted for the rtt Little's law reads (a mix's cheap answers
		// come first: seven in a tick read 29 ms of a mix of 43): it
		// costs throughput where the relearn was right.
		decided := c.drainCounted*c.interval*1000 >= little &&
			(c.drainAnswers >= probeTickAnswers || c.drainAnswers >= probeTickAnswers/2 && measured < c.baseline/c.tolerance)
		if !decided && c.drainMeasureTicks < c.drainMeasureMax() {
			return true
		}
	} else if !done && !enough && (measuredMs < probeTickAnswers/c.tolerance*c.baseline || c.drainMeasureTicks < c.maxWindowTicks) && c.drainMeasureTicks < 2*c.maxWindowTicks {
		return true
	}
	c.drainPhase, c.refill = drainOff, true
	if c.drainLease {
		c.drainLease = false
		if c.drainAnswers >= probeTickAnswers && measured < floor && IsValid(c.settled) {
			c.endLease(inFlight)
		}
		return false
	}
	lower := c.drainAnswers >= probeTickAnswers && measured < 0.8*c.baseline || c.drainAnswers >= probeTickAnswers/2 && measured < c.baseline/c.tolerance
	if c.drainRelearn && lower && oldest > c.tolerance*measured {
		// A request in flight is older than the tolerance over what
		// the probe measured: a costly API's requests are still out,
		// and the mix's cheap answers came first (random-4740's slow
		// API: twenty answers in two ticks read 20 ms of a mix of 61,
		// and the lease ended under a slow API).
		lower = false
	}
	if c.drainRelearn {
		// Whatever it found, the limit is at most what the throughput
		// before the probe needs at the tolerance over the baseline
		// (Little's law): the relearn put it back where its run began,
		// and the first window after the probe read the queue it had
		// drained and grew it further (random-5's slow service: 23.6 →
		// 28.5, then an rtt of 65 ms over a baseline of 24).
		c.drainRelearn = false
		if lower {
			// The probe measured the latency an early relearn's check
			// (checkEarly) would infer from throughput at the limit it
			// caps: the check, which needs the throughput to rise with a
			// limit the probe has just lowered, put the settled 920 ms
			// back over two workers of 1.2 s.
			c.checking = false
		}
		if lower && measured <= c.settled {
			c.endLease(inFlight)
		} else if lower {
			c.baseline, c.leased = measured, measured
		}
		c.limit = math.Max(c.minLimit, math.Min(c.limit, c.drainThroughput*c.tolerance*c.baseline/1000))
		return false
	}
	if !lower {
		return false
	}
	// The warm-up's lowest latency_ms and its windows' standard errors
	// were taken with the queue too: the latency scales with the rtt,
	// and the errors start over.
	c.latencyMin *= measured / c.baseline
	c.baseline, c.warmMin, c.lowRun, c.streak = measured, measured, 0, false
	c.warmSemSq, c.warmSems = 0, 0
	// What the throughput before the probe needs in flight at the
	// tolerance over the new baseline (Little's law): the windows after
	// a drain read the short queue it left and would grow the limit back
	// past the one that queued.
	c.limit = math.Max(c.minLimit, math.Min(c.limit, c.drainThroughput*c.tolerance*c.baseline/1000))
	return false
}

// probe doubles the limit during slow start, once the baseline has its
// first sample (or, where the service is slower than a tick, once the
// first window has closed: its rtt stands in until then), each time the
// answers of a stretch number at least the
// limit (a turnover of every request it admits, about one rtt: TCP's
// slow start, clocked by acknowledgements) and the stretch lasted two
// ticks or more, if the limit bound during it, the stretch's mean rtt is
// within half the tolerance over the baseline, and its answers account
// for what is in flight (Little's law, as a window's slow start holds).
// A window needs min_samples answers or max_window, so a service slower
// than a tick doubled once per max_window at a small limit: deep-chain
// (about 170 ms) and many-servers (500 ms, 512 workers) spent 10 s
// climbing from 3 and kept 0.09 and 0.01 of proportional in the first
// 10 s of a cold start. A window in which the probe doubled does not
// double again; the windows still decide everything else, and a
// stretch's few answers are no baseline sample (where a mix's answers
// differ a hundredfold, a handful of cheap ones read far under its
// mean). Services faster than a tick turn over within one, and their
// windows close in a few ticks: the probe leaves them to the windows (a
// stretch that closes within a tick stops it). A rise is one by two
// standard errors of the answers it is read from (pooledSE); within them,
// the limit holds for another stretch. A stretch whose rtt rose (over the
// answers after those of the requests in
// flight at the last doubling) stops the probe; if the probe had doubled, it
// also undoes one doubling, unless the rise is of those answers and
// within the tolerance, and ends the slow start. So does, without the
// undo, one tick whose own answers show the rise (probeTickAnswers).
func (c *SLOConcurrencyController) probe(n, rtt, sem, inFlight float64, binding bool) {
	// Before the baseline's first sample, on a service slower than a
	// tick, the first window's rtt is the reference: it reads low, if
	// anything (its short requests finish first), which makes the test
	// stricter. A rise against it only holds the limit, unless it is over
	// rtt_tolerance × the reference, which no low reading explains: the
	// doubling queued, and it is undone as against the baseline. At the
	// initial limit such a service answers a few requests a second, and
	// the first sample's window lasts max_window: many-servers (500 ms)
	// held 3 for 4 s. A faster one's first sample takes a few ticks,
	// measured at the initial limit. Where the probe doubled before it,
	// the first sample is no higher than the first window's rtt
	// (learnFirst): on one worker, the initial limit queues already, and
	// a sample at the doubled limit holds twice that queue.
	ref, provisional := c.baseline, c.samples == 0
	if provisional {
		ref = Invalid
		if c.firstRTT > c.interval*1000 {
			ref = c.firstRTT
		}
	}
	if !c.slowStartOn || c.probeOff || !(ref > 0) {
		c.resetStretch()
		c.probeSkip = 0
		return
	}
	if !provisional && c.probedAny && n >= probeTickAnswers && IsValid(sem) && rtt-2*sem > (1+c.tolerance)/2*c.baseline {
		// This tick's answers alone show the rise, by two standard
		// errors: the stretch's mean still holds the answers from before
		// it, and doubling on it took many-servers from 768 to 1536 with
		// 512 workers. Slow start ends at the limit it reached.
		c.slowStartOn, c.probeOff = false, true
		c.resetStretch()
		return
	}
	if IsValid(rtt) && rtt > 0 && n > 0 {
		c.probeN += n
		c.probeRTT += rtt * n
		if IsValid(sem) {
			c.probeSemN += n
			c.probeSemSq += (n * sem) * (n * sem)
		}
		skip := math.Min(n, c.probeSkip)
		c.probeSkip -= skip
		if fresh := n - skip; fresh > 0 {
			c.probeNewN += fresh
			c.probeNewRTT += fresh * rtt
		}
	}
	c.probeTicks++
	c.probeBinding = c.probeBinding || binding
	if c.probeN < c.limit || c.probeN == 0 {
		return
	}
	mean := c.probeRTT / c.probeN
	// Little's law, as for a window: answers that account for less than
	// half of what is in flight are the quick ones of a mix; the slow
	// ones the last doubling let in are still running.
	accounted := c.probeN / (c.probeTicks * c.interval) * mean / 1000
	bound := c.probeBinding && c.probeTicks >= 2 && !(inFlight > aheadOfAnswers*accounted && mean > ref)
	// Answers come oldest first: a stretch after a doubling begins with
	// those of the requests in flight before it, which queued no more
	// than they did at the old limit. What the doubling let in is judged
	// on the answers after them. Two workers of 600 ms doubled from 6 to
	// 12 on a stretch whose answers rose from 737 to 1,290 ms, but whose
	// mean (994) held the first two, admitted before the doubling.
	rise, fresh, oneTick := mean, c.probeNewN > 0, c.probeTicks < 2
	riseSE := pooledSE(c.probeSemSq, c.probeSemN, c.probeN)
	if fresh {
		rise = c.probeNewRTT / c.probeNewN
		riseSE = pooledSE(c.probeSemSq, c.probeSemN, c.probeNewN)
	}
	c.resetStretch()
	if !(rise-2*riseSE <= (1+c.tolerance)/2*ref) {
		if provisional && mean-2*riseSE <= c.tolerance*ref {
			return // the provisional reference may read low
		}
		// The rtt rose: the last doubling queued, or the one before it
		// whose answers only now arrive (a stretch of a few answers can
		// pass by chance). Undo one and end the slow start, as TCP
		// does when a delay rise shows it overshot. Where the rise is of
		// the answers the last doubling let in, it is the rtt at the
		// limit in force: within the tolerance, a queue the windows
		// keep, and slow start ends there (as HyStart leaves TCP's).
		if c.probedAny {
			if !(fresh && rise <= c.tolerance*ref) {
				c.limit = math.Max(c.minLimit, c.limit/c.slowStart)
			}
			c.slowStartOn = false
		}
		c.probeOff = true
		return
	}
	if !(rise <= (1+c.tolerance)/2*ref) {
		// Over the bound, but within the noise: no proof of a queue,
		// and none of its absence. The limit holds for another stretch.
		// Doubled on such a stretch, a heavy-tailed service (a 4 ms
		// mean, a few answers of a second) took its first baseline
		// sample at twice the limit and learned its queue
		// (early-latency's cold start at seed 3, with a probe that ran
		// on every service: 0.74 → 0.63 of proportional).
		return
	}
	if oneTick {
		// The service turned the limit over within a tick: it is
		// faster than a tick, and the windows clock its slow start.
		// Judged here, such a stretch could never double (bound needs
		// two ticks), and once the probe had doubled the windows left
		// the slow start to it: random-3913, once noise no longer
		// ended its slow start, held 12 from the third second on (0.32
		// of proportional in its first 10 s), and a service that never
		// queues stuck so in 22 of 40 seeds
		// (TestSLOConcurrencyControllerSlowStartSeesThroughAMixsNoise).
		c.probeOff = true
		return
	}
	if bound {
		c.limit = math.Min(c.maxLimit, c.limit*c.slowStart)
		c.probed, c.probedAny = true, true
		c.probeSkip = 0
		if IsValid(inFlight) {
			c.probeSkip = inFlight
		}
	}
}

// resetStretch starts the slow-start probe's stretch over.
func (c *SLOConcurrencyController) resetStretch() {
	c.probeN, c.probeRTT, c.probeTicks, c.probeBinding = 0, 0, 0, false
	c.probeNewN, c.probeNewRTT = 0, 0
	c.probeSemN, c.probeSemSq = 0, 0
}

// pooledSE is the standard error of the mean of n answers whose ticks'
// standard errors sum to semSq = Σ (answers·rtt_sem)² over the ticks
// that had one, which held semN answers: one answer's variance is
// rtt_sem² × the tick's answers, pooled over them, over n. 0 where no
// tick had one (the probe then reads its mean as it is; the windows'
// warmupMargin adds nothing). A probe's rise within two of it is no
// rise: where the APIs' costs differ tenfold, the mean of a dozen
// answers moves by half with the mix they hold, and a stretch at six in
// flight on a service of five and seven workers read one as a queue,
// undid its doubling and ended slow start at 3 (random-3914's cold
// start: 0.45 of proportional in its first 10 s).
func pooledSE(semSq, semN, n float64) float64 {
	if !(semN > 0) || !(n > 0) {
		return 0
	}
	return math.Sqrt(semSq / semN / n)
}

// learnFirst takes one of the baseline's warm-up windows (mean rtt and
// its standard error, Invalid if unknown). The first baseline is the
// lowest of their means. Where the windows' typical standard error (the
// root mean square of those known) is a large part of their mean (a mix
// whose costly API's latency spreads widely), the lowest mean is chance's
// lowest, so far under the latency without a queue that every window
// reads as one, and the cuts take the limit to the floor: the baseline
// is then the lowest mean plus that typical error times how far under
// their mean the lowest of that many windows lies on average (lowestOf:
// 1.54 for ten), which is what the mean is expected to be, and at least
// one error while fewer than four windows are in (noiseFloor).
// One typical error, as before, left it a third under the mean for a mix
// of 90 % 2 ms and 10 % 500 ms answers, and once the shared latency read
// the mix's mean every window read as a queue. The typical error, not
// the lowest window's own: a window that chance gave few costly answers
// has a low mean and a low error both. The mean it is
// judged against is the one the lowest implies (the lowest plus
// lowestOfTen typical errors), not the windows' own: in a cold start
// some of them hold a queue, whose mean would make any noise look small.
func (c *SLOConcurrencyController) learnFirst(rtt, sem float64) {
	if c.samples == 1 {
		c.warmMin, c.warmSemSq, c.warmSems = rtt, 0, 0
		if c.probedAny && c.firstRTT > 0 {
			// The probe doubled on the first window's rtt (probe), so
			// this sample was not taken at the initial limit: where the
			// service queues from the first requests (one worker), it
			// holds the queue of the doubled limit. The first window
			// was taken there.
			c.warmMin = math.Min(rtt, c.firstRTT)
		}
	}
	c.warmMin = math.Min(c.warmMin, rtt)
	if IsValid(sem) {
		c.warmSemSq += sem * sem
		c.warmSems++
	}
	c.baseline = c.warmMin
	if c.noisyWarmup() {
		c.baseline += math.Max(1, lowestOf[int(min(c.samples, baselineWarmup))-1]) * math.Sqrt(c.warmSemSq/c.warmSems)
	}
}

// noisyWarmup reports whether the baseline's warm-up windows are noisy
// enough for learnFirst to raise their lowest mean: their typical
// standard error is over noiseFloor × the mean the lowest implies.
func (c *SLOConcurrencyController) noisyWarmup() bool {
	if !(c.warmSems > 0) {
		return false
	}
	typical := math.Sqrt(c.warmSemSq / c.warmSems)
	return typical > c.noiseFloor()*(c.warmMin+lowestOfTen*typical)
}

// warmupMargin is how far over the threshold a window's rtt (with
// standard error sem, from the spread of the answers of its ticks with
// more than one: a tick with a single answer has none, and a slow
// service's windows hold many) must be to read as a queue while the
// baseline is still the lowest of its first windows (learnFirst): two
// standard errors, since the lowest of a few noisy means lies under
// their mean and the next window at the same limit reads over it by
// chance. On a mix whose answers spread from 10 to 100 ms (random-3916),
// the second window at the initial limit of 3 read 38 ms against a
// baseline of 21, a queue no service of three workers or more can hold,
// and its cut ended slow start there. Such a window holds the limit in
// slow start rather than doubling it: it is no proof of room either.
// Once the baseline is learned, the windows' own tolerance stands.
func (c *SLOConcurrencyController) warmupMargin(sem float64) float64 {
	if c.samples >= baselineWarmup || !IsValid(sem) {
		return 0
	}
	return 2 * sem
}

// lowestOf[n-1] is how far under their mean, in standard deviations,
// the lowest of n samples of a normal distribution lies on average.
var lowestOf = [baselineWarmup]float64{0, 0.564, 0.846, 1.029, 1.163, 1.267, 1.352, 1.424, 1.485, 1.539}

// aheadOfAnswers is how many times what a window's answers account for
// in flight (Little's law: throughput × rtt, about the count in flight in
// any steady state, queue or not) may be in flight before slow start
// holds: up to twice that while a doubling's requests wait for a service
// slower than the window.
const aheadOfAnswers = 2

// A queueing window is a burst under capacity, when the latency is within
// the setpoint, if the limit bound in fewer than burstBinds of the last
// burstWindows windows (this one among them) and it refused under
// burstRefused of its requests; such a burst grows the limit while a full
// limit answers within burstRoom × the setpoint (Execute).
const (
	burstWindows = 3
	burstBinds   = 2
	burstRoom    = 2
	burstRefused = 1.0 / 3
)

// boolBit is 1 for true and 0 for false.
func boolBit(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// burstShare bounds the share of a window's requests refused at the full
// limit for the refusals to be bursts under capacity (Execute).
const burstShare = 0.1

// firstEnough reports whether the first window has answers enough: a
// turnover of the limit's requests and probeTickAnswers, over two ticks.
// On a service slower than a tick its rtt stands in for the baseline for
// the probe; on any other it is no sample at all (it reads low). At the
// initial limit a slow service answers a few requests a second, and
// min_samples took max_window: deep-chain (170 ms) and many-servers
// (500 ms) held the initial limit for 2 s of a cold start, and random-4254
// (74 ms, faster than a tick) 1.3 s before its first sample's window began.
func (c *SLOConcurrencyController) firstEnough() bool {
	if c.firstWindowSeen || c.winTicks < 2 || !(c.winN > 0) {
		return false
	}
	return c.winN >= math.Max(c.limit, probeTickAnswers)
}

// probeTickAnswers is how many answers a tick needs for its own mean rtt
// to end slow start: the mean's standard error is then under a third of
// one answer's spread (1/√10), and one slow answer cannot decide.
const probeTickAnswers = 10

// lowRunWindows is how many windows in a row must read under half the
// baseline before it decays.
const lowRunWindows = 3

// lowestOfTen is how far under their mean, in standard deviations, the
// lowest of ten samples of a normal distribution lies on average.
const lowestOfTen = 1.54

// noiseFloor is the windows' typical standard error, as a part of their
// mean rtt, past which the lowest of the baseline's first windows is
// expected to read the mean low enough (by 1 - 1/rtt_tolerance) that a
// window without a queue reads as queueing: 0.22 at the default
// tolerance of 1.5.
func (c *SLOConcurrencyController) noiseFloor() float64 {
	return (1 - 1/c.tolerance) / lowestOfTen
}

// queueAllowance bounds the queue the tolerance lets stand, in requests:
// about queueAllowance·√base. rtt_tolerance is relative to the baseline.
// That fits a service whose baseline is its bottleneck's own service
// time, and is too loose where most of the baseline is time no queue adds
// to. Behind deep-chain's unbounded 150 ms call (a baseline of 161 ms),
// 1.5 × the baseline let 80 ms of queue stand at a 4-worker bottleneck:
// p99 reached 1.4 × the 300 ms SLO, and goodput fell to 0.78 of
// proportional. With many requests in flight, Little's law turns a
// relative excess into a count: at base in flight and the rtt at t × the
// baseline, about base·(1 − 1/t) are waiting. A tolerance of at most
// 1 + queueAllowance/√base keeps that under queueAllowance·√base, four
// times the √limit that Envoy's headroom lets stand. It binds from
// (queueAllowance/(rtt_tolerance − 1))² in flight (64 at the default 1.5),
// where a window of one baseline rtt holds that many answers. Other
// factors tried (docs/simulator.md, "A queue counted in requests"):
//   - at 2, apps whose bottlenecks need a deeper buffer to stay busy (thirty
//     APIs of mixed costs across five services) lost goodput;
//   - at 6, deep-chain kept most of its queue.
const queueAllowance = 4

// minQueueTolerance is the floor of that tighter tolerance. A rise of the
// service's own latency just over the tolerance reads as a queue that no
// cut lowers. The cuts settle where base·t·baseline/rtt + √base = base, a
// cut of up to a half. Every window there queues, so the relearn, which
// waits for a halving, never comes. The old tolerance had the same band
// just over 1.5. Without the floor, the band fell to 6–11 % at 4,000 in
// flight: a dependency 10 % slower held such a service at 2,601 with no
// queue at all. With the floor, the band is 25–28 % over the baseline at
// 4,000 in flight, and 25–35 % at 400.
const minQueueTolerance = 1.25

// queueTolerance is the rtt over the baseline, as a multiple, above which a
// window with base in flight is queueing: rtt_tolerance, and with many in
// flight less (queueAllowance), down to minQueueTolerance.
// At base 0, 4/√0 is +Inf, which leaves rtt_tolerance.
func (c *SLOConcurrencyController) queueTolerance(base float64) float64 {
	t := math.Min(c.tolerance, math.Max(minQueueTolerance, 1+queueAllowance/math.Sqrt(base)))
	return 1 + (t-1)*(1-c.tightness)
}

// followTail moves tightness once every tailStep: up by tailRate (to
// maxTightness) while the worst API's latency over the last seconds
// (api_latency_ms) is over api_setpoint_ms, the baseline is learned and
// the limit binds, and down by half that while it is under tailRelax ×
// api_setpoint_ms. The queue that the tolerance allows is paid by every
// API that crosses it, and most dearly by a cheap one whose SLO is made
// for its own few milliseconds: with the costly APIs setting the
// baseline, a standing rtt of twice it put such an API's p99 at 1.33 ×
// its SLO (cheap-minority), while a threshold a tenth over the baseline
// held it at 0.86 and cost no throughput there.
//
// Shrinking the queue is a trial, given up (tightness back to 0, and no
// new trial for tailBackoff, doubled for each trial given up in a row)
// where it does not pay: where the throughput, averaged over
// tailHorizon, falls under tailKeep of its best since the trial began
// (the queue kept bottlenecks busy: many-apis
// kept 0.69 of proportional at the tightest, 0.86 without), or where the
// tail has held over the setpoint at maxTightness for tailTrial and has
// not fallen (tailFell: it is still over tailFutile of what it was, and
// its excess over the setpoint over tailLeft of what it was): the API's
// own latency, which no admission lowers, as a heavy-tailed API's is.
// Unless the throughput rose meanwhile by more than a trial may cost
// (over 1/tailKeep of what it was when the tail was read): the trial
// began while the limit still grew into the overload, and the tail and
// the throughput are read again, for another tailTrial. A
// tail under 1/tailFutile of the setpoint cannot fall by 15 % without
// going under the setpoint: random-4175's api1 (30 ms SLO, 33.7 ms at
// the trial's start) read 30–32 ms at the tightest, and the trial, given
// up on the fall alone, left it at 40–44 ms for the rest of the run.
func (c *SLOConcurrencyController) followTail(apiLatency, setpoint, inFlight, completedRps, rtt float64) {
	if IsValid(completedRps) && c.interval > 0 {
		if !IsValid(c.tailX) {
			c.tailX = completedRps
		}
		c.tailX += c.interval / tailHorizon.Seconds() * (completedRps - c.tailX)
	}
	if IsValid(rtt) && c.interval > 0 {
		if !IsValid(c.tailRTT) {
			c.tailRTT = rtt
		}
		c.tailRTT += c.interval / tailHorizon.Seconds() * (rtt - c.tailRTT)
	}
	c.tailTicks++
	c.tailBackoff = math.Max(0, c.tailBackoff-1)
	if c.tightness > 0 && IsValid(c.tailX) {
		c.tailPeakX = math.Max(c.tailPeakX, c.tailX)
	}
	switch {
	case c.tightness < maxTightness:
		c.tailAtMax, c.tailAtMaxMean = 0, math.NaN()
	case c.tailAtMax == 0:
		// The tail reads its last seconds: at the trial's start, or
		// where it lags the cuts, as it reached the most.
		c.tailAtMax = 1
		if IsValid(apiLatency) {
			c.tailFrom = math.Max(c.tailFrom, apiLatency)
		}
	default:
		c.tailAtMax++
	}
	if c.tailAtMax > 0 && IsValid(apiLatency) {
		if !IsValid(c.tailAtMaxMean) {
			c.tailAtMaxMean = apiLatency
		}
		c.tailAtMaxMean += c.interval / tailTrial.Seconds() * (apiLatency - c.tailAtMaxMean)
	}
	if c.tailTicks*c.interval < tailStep.Seconds() || !IsValid(apiLatency) || !IsValid(setpoint) || setpoint <= 0 {
		return
	}
	over := apiLatency > setpoint
	futile := over && c.tailAtMax*c.interval >= tailTrial.Seconds() && !c.tailFell(apiLatency, setpoint)
	if futile && IsValid(c.tailX) && c.tailX*tailKeep > c.tailFromX {
		// The tail did not fall, but the throughput rose by more than a
		// trial may cost since its tail was read: the trial began while
		// the limit still grew into the overload, and its tail is
		// judged again from the load it holds now.
		c.tailAtMax, c.tailAtMaxMean, c.tailFrom, c.tailFromX = 0, math.NaN(), apiLatency, c.tailX
		futile = false
	}
	switch {
	case c.tightness > 0 && IsValid(c.tailX) && c.tailX < tailKeep*c.tailPeakX, futile:
		c.tightness, c.tailBackoff = 0, math.Ceil(tailBackoff.Seconds()*math.Exp2(math.Min(c.tailFails, 4))/c.interval)
		c.tailFails++
	case over && c.binds(inFlight) && c.samples >= baselineWarmup && c.tailBackoff == 0 &&
		(c.tightness > 0 || apiLatency > tailStart*setpoint && apiLatency-setpoint <= tailVisits*(c.tailRTT-c.baseline)):
		if c.tightness == 0 {
			c.tailPeakX, c.tailFrom, c.tailFromX = c.tailX, apiLatency, c.tailX
		}
		c.tightness = math.Min(maxTightness, c.tightness+tailRate)
	case apiLatency < tailRelax*setpoint:
		c.tightness = math.Max(0, c.tightness-tailRate/2)
		if c.tightness > 0 {
			c.tailFails = 0 // the trial paid
		}
	default:
		return
	}
	c.tailTicks = 0
}

// The steps and verdicts of followTail.
const (
	tailStep  = 500 * time.Millisecond
	tailRate  = 0.125
	tailRelax = 0.75
	// maxTightness leaves a fifth of the allowance: a threshold at the
	// baseline itself cut on the noise of a window's mean, and kept 0.92
	// of proportional where a tenth over it kept 0.96 (cheap-minority).
	maxTightness = 0.8
	tailHorizon  = 4 * time.Second
	tailKeep     = 0.93
	tailTrial    = 8 * time.Second
	tailFutile   = 0.85
	tailLeft     = 2.0 / 3
	tailBackoff  = 60 * time.Second
	// tailVisits: a trial begins only where the tail's excess over the
	// setpoint is within twice the standing queue's (the rtt over the
	// baseline, both averaged over tailHorizon): an API may cross the
	// bottleneck's queue twice (cheap-minority's lookup does), and a tail
	// over the setpoint by more than the queue could account for is the
	// API's own (many-apis: api05's tail read 30 ms over its SLO, more
	// than twice the queue the rtt showed, and no trial begins there).
	tailVisits = 2
	// tailStart: a trial begins only on a tail a tenth over the setpoint,
	// half a bin of its estimate (a quarter of an octave): trials on tails
	// within that of the SLO were given up within seconds, and moved the
	// bulkhead's mix where they began (random-3010's cold start: api2 0.89
	// → 0.61 of its share).
	tailStart = 1.1
)

// tailFell reports whether a trial at maxTightness paid: its tail fell to
// tailFutile of where it began, or its excess over the setpoint to
// tailLeft of what it was. The tail is the lower of the latest reading
// and the mean of the last tailTrial at the tightest: a noisy tail's
// reading may be a high one (random-4175: 33.6 ms at the eighth second,
// 31.8 over the trial), and the tail of the last seconds lags a trial
// that works (random-4154's cold start: the mean read 82 ms where the
// latest read 67, and a trial given up on it took api1 from 0.95 to 0.58
// of its share). NaN readings give the trial up, as the old rule did.
func (c *SLOConcurrencyController) tailFell(apiLatency, setpoint float64) bool {
	tail := apiLatency
	if IsValid(c.tailAtMaxMean) {
		tail = math.Min(tail, c.tailAtMaxMean)
	}
	return tail <= math.Max(tailFutile*c.tailFrom, setpoint+tailLeft*math.Max(0, c.tailFrom-setpoint))
}

// queueCut is the limit a queueing window leaves: base × the gradient to
// the threshold (at least min_gradient), plus √base of headroom.
func (c *SLOConcurrencyController) queueCut(base, threshold, rtt float64) float64 {
	return base*math.Max(c.minGradient, threshold/rtt) + math.Sqrt(base)
}

// mayRenew reports whether the throughput may relearn a baseline before a
// halving (relearnEarly, throughputFell): off a lease, and on one the
// lease probe can check (queueThreshold).
func (c *SLOConcurrencyController) mayRenew() bool {
	return !IsValid(c.settled) || c.leaseProbeFits()
}

// queueThreshold is the rtt above which a window with base in flight is
// queueing: queueTolerance(base) × the baseline. On a relearned
// baseline's lease (a slower dependency) that the lease probe can check
// (leaseProbeFits), the queue's allowance over the baseline is the
// settled baseline's instead, and the decaying lease trims that allowance
// but never reads the leased latency itself as a queue:
//
//	max(baseline + (queueTolerance(b) − 1) × settled, leased),
//
// with b = base × settled/baseline, about what is in flight at the
// bottleneck. The leased part of the baseline is latency without a
// queue: the requests that wait it out hold no worker at the bottleneck,
// which turns over as many as before, so the queue it needs to stay busy
// is what it needed before. Scaled with the leased baseline, the standing
// queue grew with the dependency's time: on random-3's slow dependency
// (10 ms over a settled 14), from 11 to 18 ms, and api2's p99 from 0.65
// to 1.1–1.5 of its SLO, where the dependency's own time alone leaves it
// at 0.9. Under the leased latency, the decay read a dependency still
// slow as a queue, and the cuts took the throughput with the limit until
// a new run had halved it: on a two-minute slow dependency, random-3 and
// two-tier fell to 0.67 and 0.45 of capacity for 10–20 s, every 40 s.
// Whether the dependency is fast again is then the lease probe's to find
// (and a window under 0.8 of the leased latency's: expireLease). Where
// the probe cannot run, the decay is what finds it: the queue the
// lease's limit lets into the freed time drains only under cuts that
// read the leased latency as a queue, and the threshold decays with the
// baseline, as it did before (deep-chain's slow-api, 300 ms over a
// settled 160: kept at the leased latency, the queue stayed at 2 × its
// SLO for the 20 s after the dependency recovered).
// The cut's √base of headroom stays √base: the count at the dependency
// swings by about the square root of what it holds, and every swing up
// takes a slot from the bottleneck (random-20, whose nine workers answer
// with a lognormal spread, kept 0.88 of proportional with √b).
func (c *SLOConcurrencyController) queueThreshold(base float64) float64 {
	if IsValid(c.settled) && c.settled < c.baseline && c.leaseProbeFits() {
		b := base * c.settled / c.baseline
		return math.Max(c.baseline+(c.queueTolerance(b)-1)*c.settled, c.leased)
	}
	return c.queueTolerance(base) * c.baseline
}
