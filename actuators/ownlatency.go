package actuators

import (
	"cmp"
	"math"
	"slices"
)

// An API of a shared concurrency limiter whose latency rises while the
// others' does not has latency of its own: a dependency only it calls got
// slower, or a bottleneck only it crosses is queueing. The first is no
// queue a cut can drain: a controller of the shared limit that reads it as
// one cuts every API, and starves them all. Separate tells the two apart
// per partition:
//
//   - Each partition learns the latency its answered requests show without
//     a queue (its baseline: the lowest one-second mean, drifting slowly
//     within a quarter over it, and falling over a few seconds to a lower
//     mean plus two of its standard errors, where that is lower: a mean
//     lower by chance alone does not move it; until it settles, rising
//     to the mean of its calm answers less two of their standard errors
//     where that is a fifth over it and within what chance could have put
//     a first baseline of that few answers under it), and each tick its
//     excess over it.
//   - The excess most requests share (the completion-weighted median over
//     the partitions) is the shared queue. A partition measured for
//     ownSettle seconds whose excess is mostly its own, by half its
//     baseline or more and by three standard errors of its mean, and
//     whose answers account for what it holds in flight (aheadOfAnswers),
//     is tested (with every partition whose own excess is a quarter of its
//     baseline, or that is at or above the shared excess with an excess
//     over its baseline of a quarter of the largest among those due: APIs
//     that share a bottleneck the others do not cross must be tested
//     together, and one that visits it three times shows three times the
//     queue of one that visits it once, which may be the median; but
//     only where that leaves a measured partition outside the test, to
//     compare): its
//     requests in flight are capped at half for three seconds or three of
//     its latencies. A slower dependency's latency stays; a queue's falls.
//     The verdict is a slower dependency only if the own excess was a
//     quarter of the baseline at its peak, stayed within 0.8 of that peak
//     during the test, the cap refused a tenth of the demand, and the
//     slots the cap freed did not go to a queue that may be the same: the
//     partitions that showed a queue beyond the shared one when the test
//     began (watched) took no more than a quarter of them
//     (backfillShare), or none of them shows an excess that four visits
//     to its queue would make the tested one's; nor may the partitions
//     measured and not separated when it began take more than a quarter
//     of them, together, where four visits to the shared queue would make
//     the tested one's excess, or, where the tested one's excess has
//     moved with the shared one by more than one visit's worth
//     (followsShared), their excess as a share of their baselines,
//     twice over, would make the tested one's of its own (a service
//     whose workers every call shares: sharingSlack). Else one of them
//     may cross the same bottleneck, and fill its queue back.
//   - A slower dependency is separated: uncapped, and its latency beyond
//     its baseline plus the shared queue, up to ownSlowerBound times the
//     own excess its test found, is its own (ReleaseAfter,
//     Window.SharedLatencyAvgMs), left out of the latency a controller of
//     the shared limit reads, which, no longer seeing a queue, grows the
//     limit to hold the slower requests. It is tested again should its
//     excess double, and joins again once its excess is gone, or has
//     been under half of what its test found for ownRecovered seconds:
//     what is left is not what the test found, and may be a queue it
//     shares (random-4870's slow API: api3's
//     dependency recovered, and its 26 ms of queue at svc4, under a
//     quarter of its 198, stayed out of the shared signal while the
//     others there kept 0.53 and 0.56 of their shares; 0.98 and 0.91
//     rejoined).
//   - Tests that overlap end together, at the latest end of theirs. A
//     test of several partitions that end it together, each with its
//     excess fallen by 30 % and its demand held back, while a measured
//     partition stayed outside and either none outside fell by a third
//     as much as they did on average as a share of its excess, or none
//     by a third of the least member's fall in milliseconds (a fall of a
//     few milliseconds at another service a member also crosses, against
//     the tens the members' queue loses, is no sign that the outside
//     partition waits in their queue), and none outside fell by a third
//     of that least fall over three standard errors of its mean (it
//     waits in their queue, whatever share of its excess that is),
//     found a queue of theirs, one
//     verdict for
//     all of them: they keep their caps as a group, cut
//     together by a fifth when any one of them is cut, and the room the
//     caps grow into is split by what each refused times its latency (the
//     slots it is short of), so that each keeps the same fraction of its
//     demand. Each member judges the queue they share against the
//     geometric mean of its own baseline and the group's (the members'
//     baselines weighted by their answers; tolBaseNs) instead of its own
//     (below), and a test's members count cuts in a row (below) in the
//     room of the test's members' caps, not their own. A partition not due
//     for a test of its own, with ownMinInFlight requests in flight, that
//     shows, when a group's or an own queue's cap is cut, half that
//     queue's excess beyond the shared one, and a quarter of its own
//     baseline, joins it under a cap of what it holds.
//   - A queue of its own keeps its cap, as its own limit, if the test was
//     of this partition alone, its excess over its baseline fell by 30 %
//     from its highest and by three standard errors of its mean, and no
//     other partition's did, neither as a share of its own highest nor
//     in milliseconds by a third of the tested one's fall (ownQueue): a
//     bottleneck no other API crosses, which the shared limit could
//     drain only by cutting every API. The cap is cut
//     by a fifth while the excess beyond the others' is over half the
//     baseline (the shared limit's controller's tolerance with few in
//     flight), grows while it refuses requests and the excess is under
//     that, and goes once it has refused nothing for ownHoldoff seconds;
//     the partition's latency beyond its baseline plus the others' excess
//     is its own, as a slower dependency's is. Cuts in a row that halve
//     the cap and leave the excess within 0.8 of where they began are not
//     the answer: where no other partition shows a quarter of that excess
//     over its baseline and the partition's answers a second fell with the
//     cap, a dependency only this partition calls slowed, and the cap
//     takes its time as part of the latency without a queue and goes back
//     to where the cuts began; else the partition joins, as after the next
//     case.
//   - Anything else (a queue others share, or no clear verdict) is the
//     shared limit's to control, as without Separate, and is not tested
//     again for ownHoldoff seconds, twice as long after each such verdict
//     in a row. Where another partition's excess fell with the tested
//     one's, they share the bottleneck, and the tested one only visits it
//     more often or is its largest user: a cap of its own would hold it
//     to less than its share while the others fill the queue.
//   - Every answer counts in the shared latency as a reference latency
//     (the partitions' baselines, weighted by their shares of the
//     requests over the last hour) plus its excess over its own API's
//     baseline: each partition's offset, its baseline less the
//     reference, is part of its own latency, negative for an API
//     cheaper than the mix. Where APIs'
//     latencies differ twentyfold, the plain mean of a window of fifty
//     answers moves with how many costly ones it happened to hold by more
//     than the queue a controller must see, and the lowest of ten such
//     windows, its first baseline, is a fraction of the mix's latency.
//     The excess counts √(ref ÷ the API's baseline) times (bounded): a
//     queue is judged against the latency of the requests it delays as
//     well as against the mix's, since goodput counts requests; and at
//     least ref ÷ the latency of the mix answering now times, where that
//     mix is cheaper than the reference's. Until a partition
//     settles, its answers count at the reference if it first came after
//     the limiter's first seconds (a new API), and at their own latency
//     if it was there from the start, as in the mix every controller's
//     baseline learned.
//
// With fewer than two partitions measured (after ownSharedHold) nothing
// is separate but a queue of its own, whose bottleneck is still its own
// while the others hang or go quiet: it keeps its cap if it is measured
// or hangs itself (separate). Nothing is tested while the limit is
// unlimited, nor while a partition is unanswered (Rebalance): a hang's
// slots shape every API's latency then.
type ownState struct {
	// n, sumNs and sqUs are the measured requests, their latency sum and
	// their sum of squared latencies in µs², over the last second or so,
	// exponentially weighted.
	n, sumNs, sqUs float64
	baseNs         float64 // NaN until learned
	separate       bool
	phase          ownPhase
	// A test of a separate partition halves its cap (capSlots) for
	// window seconds, of which elapsed have passed; ref is the highest own
	// excess during it (once it found a slower dependency, the excess
	// then), and refRate the throughput when it began, whose demand the
	// cap must have refused in part.
	elapsed, window, ref, refRate, capSlots float64
	// dither is the fraction added to capSlots before it is published
	// whole (publishCap), stepped once a tick by the golden ratio's
	// fraction: over ticks it spreads evenly over [0, 1), and the slots
	// published average capSlots.
	dither float64
	// freed is the requests in flight a test's cap took from the
	// partition when it began (inFlightOf less the cap), and watched, for
	// a partition not under test that showed a queue beyond the shared
	// one when the last test began, its requests in flight then (Little's
	// law's count; NaN: not watched). seen is the same for every
	// partition measured and not separated then, queue or not (NaN for
	// the others, and for those under a test then).
	freed, watched, seen float64
	// started marks a test begun this tick; solo, a test that no other
	// partition's overlapped. atTest is the partition's highest excess
	// over its baseline since the last test began with no other under
	// way, a solo one or a group's, its own or another's (NaN:
	// unmeasured).
	started, solo bool
	atTest        float64
	// startEx is the partition's excess over its baseline when the last
	// test began with no other under way (NaN: unmeasured).
	startEx float64
	// holdoff is the time left before the partition may be tested again
	// after a test found a queue of its own, and queues counts such
	// verdicts in a row.
	holdoff, queues float64
	// measured is how long the partition has been measured, in seconds.
	measured float64
	// fw, fx, fy, fxx, fyy and fxy are the exponentially weighted moments
	// of the shared excess (x) and the partition's excess over its
	// baseline (y) over the last ownFollowHorizon seconds, fw the weight
	// they carry (follow).
	fw, fx, fy, fxx, fyy, fxy float64
	// under is how long a slower dependency's own excess has been under
	// half of what its test found, in seconds (recovered).
	under float64
	// inFlightNow is the partition's requests in flight this tick
	// (inFlightOf), read once for every decision of the tick.
	inFlightNow float64
	// proven is the own excess a slower-dependency verdict found (0:
	// none), kept out of the shared latency (up to ownSlowerBound times
	// it) while a re-test runs.
	proven float64
	// In an own queue's phase, hits is the cap refusals (capHits) seen
	// so far, sinceCut the seconds since the cap was last cut, and quiet
	// those since it last held back a request or its queue last showed.
	// streakCap and streakOwn are the cap and the own excess when the
	// cuts in a row began (streakCap 0: no cuts in a row), and streakRate
	// its answers a second (n) then. extraNs is the time of a dependency
	// only this partition calls, learned as part of its latency without a
	// queue when cuts left the excess (ownQueue).
	hits, sinceCut, quiet, streakCap, streakOwn, streakRate, extraNs float64
	// slots is the room cuts in a row are measured in: for a member of
	// the group test that found its queue, the caps of that test's
	// members still under them (members of them); else its own cap
	// (alone, or a late member). streakSlots and streakMembers are those
	// when the cuts in a row began.
	slots, streakSlots     float64
	members, streakMembers int
	// tolBaseNs is the baseline an own queue's excess is judged against:
	// its own, or, in a group, the geometric mean of its own and the
	// group's (its members' baselines weighted by their answers).
	tolBaseNs float64
	// group, for an own queue found by a test of several partitions
	// together, or joined by a partition that queues there too (0: one
	// partition's alone), names the partitions whose caps are cut
	// together and whose growth is split by what each is short of
	// (Separate), and capBefore is the cap before this tick's decisions.
	group     uint64
	capBefore float64
	// late marks a member that joined a group's queue after the test
	// that found it (joinQueue).
	late bool
	// groupOver is a group's reading of its queue this tick (Separate):
	// 1 over its tolerance, -1 within it, 0 for no group's.
	groupOver int8
	// aligned marks a test stretched to end with the others under way
	// (Separate).
	aligned bool
	// refusedN is the requests refused (capRefused) over the last
	// second or so, weighted as n is, and refusedAt the count last read.
	refusedN, refusedAt float64
	// testN and testSumNs count the answers since one latency (cutNs)
	// into the test, and their latencies: a low-rate API's test is judged
	// by them when its one-second mean has too few.
	testN, testSumNs, cutNs float64
	// weight is the partition's share of the measured requests, averaged
	// over time (Separate): its part in the reference latency, once
	// settled. born is the limiter's clock when its baseline was first
	// learned (NaN before).
	weight, born float64
	// early marks a partition measured in the limiter's first ownSettle
	// seconds of requests: until it settles, its answers count at their
	// own latency, not at the reference (Separate).
	early bool
	// rampCap is the cap a test that found no own latency leaves on its
	// way out (0: none), rampMark and rampHits the cap and its refusals
	// when it last doubled, and rampLeft the doublings it may still take
	// (endTest).
	rampCap, rampMark, rampHits float64
	rampLeft                    int
	// capWas is the cap published before this tick's update (Separate),
	// and quietDrop marks a cap dropped this tick because it held
	// nothing back. moved marks a test during which another
	// partition's cap went while it held requests back: the demand it
	// let in at once moved the latencies the test is judged by.
	capWas           int64
	quietDrop, moved bool
	// cut marks an own queue's cap cut this tick (ownQueue), even where
	// its floor of one slot kept it.
	cut bool
	// cleanN and cleanSumNs count, until the baseline is learned, the
	// answers of the ticks that showed no queue (Separate, cleanQueue),
	// and their latencies.
	cleanN, cleanSumNs float64
	// lowN, lowSumNs and lowSqUs count those of them at the first limits
	// (low), their latencies and the squares of those in µs².
	lowN, lowSumNs, lowSqUs float64
	// firstN is how many answers the first baseline was learned from, and
	// rising marks a first baseline the calm answers began to raise.
	firstN float64
	rising bool
	// calmN, calmSumNs and calmSqUs count the answers of the calm ticks
	// (Separate: the limit under half full, no queue found), decayed over
	// ownCalmWindow, their latencies and the squares of those in µs².
	calmN, calmSumNs, calmSqUs float64
	// answers counts the partition's answers. aheadFor is how long a
	// slower dependency has held more in flight than its answers account
	// for, in a row, and aheadMark, aheadFrom and aheadRate the answers,
	// the requests in flight and n when that began (queuesAhead).
	answers, aheadFor, aheadMark, aheadFrom, aheadRate float64
}

type ownPhase uint8

const (
	ownTesting ownPhase = iota // the concurrency is halved: does the latency fall?
	ownSlower                  // it did not: a slower dependency
	ownQueue                   // it did, by half: a queue of its own, under a cap of its own
)

const (
	// ownMinSamples is the smoothed count of measured requests a
	// partition needs before its latency means anything.
	ownMinSamples = 10
	// cleanQueue is the excess of a tick's answers over their
	// partitions' baselines, as a fraction of those, that shows a queue:
	// a partition first measured then learns its baseline from its
	// answers of the ticks before (cleanN), where it has enough of them.
	cleanQueue = 0.25
	// cleanRatio: the answers before the queue stand in for a first mean
	// that is that many times theirs or more, mostly queue. A slow API's
	// answers in a cold start's first seconds are its short ones, the
	// long ones still in flight: slo-spread's batch (500 ms) had 374 ms
	// before the queue and 425 at its first mean, and learned from the
	// first it read a queue of its own, 0.48 of its share.
	cleanRatio = 2
	// lowRatio is cleanRatio for a first mean measured in a tick the
	// queued test found clean, at a limit past twice the lowest (low): the
	// pooled test does not see a queue a cheap API pays many times over,
	// and a cold start's survivors (above) read a slow API's answers low
	// by a quarter at most, so half over them is a queue.
	lowRatio = 1.5
	// ownBaseWindow is the time constant of the baseline's drift, and
	// ownBaseDown that of its fall to a lower mean.
	ownBaseWindow = 600.0
	ownBaseDown   = 5.0
	// ownWindow is the time constant of a partition's latency mean.
	ownWindow = 1.0
	// ownCalmWindow is the time constant of the calm answers' mean, and
	// ownCalmSamples the decayed count of them it needs to raise a
	// baseline: ten one-second means' worth.
	ownCalmWindow  = 10.0
	ownCalmSamples = 10 * ownMinSamples
	// ownCalmRise: the calm answers begin to raise a baseline they are a
	// fifth over, less two of their standard errors, and raise it all the
	// way to that: under it, the drift below follows, and a half-loaded
	// service's own queueing (a tenth or so) is not learned.
	ownCalmRise = 1.2
	// ownHoldoff is the wait before a partition in which a test found a
	// queue is tested again, doubling with each such verdict in a row.
	ownHoldoff = 10.0
	// ownSettle is how long a partition is measured before it may be
	// separated: a baseline first learned under overload (a cold start)
	// must have seen its queue drained, and a controller of the shared
	// limit learns its own baseline meanwhile from the mix it will see.
	ownSettle = 10.0
	// ownSharedHold is how long the shared excess outlives the last tick
	// that measured at least two partitions, for the tests under way (twice
	// the longest window, of a latency near a client timeout) and the
	// partitions separated.
	ownSharedHold = 15.0
	// ownMixWindow is the time constant of the weights of the partitions'
	// baselines in the reference latency: five times that of a
	// controller's baseline, so that the baseline follows the reference's
	// drift (an API that appears, or goes quiet for good) closely enough
	// not to read it as a queue. A partition first measured after the
	// limiter's first ownSettle seconds of requests enters the reference
	// over ownMixWindow; one there from the start, at once.
	ownMixWindow = 3000.0
	// ownMixScaleMax bounds how many times an answer's excess counts:
	// under a hundredth of the reference, an API's latency is mostly the
	// jitter of the host, not its work, and the scale multiplies that
	// noise too.
	ownMixScaleMax = 10.0
	// ownQueueCut is the factor an own queue's cap is cut by, at most once
	// a second or one of its latencies, while its own excess is over half
	// its baseline; ownQueueGrow the share of it added per second while the
	// cap holds back requests and the excess is under that.
	ownQueueCut  = 0.8
	ownQueueGrow = 0.1
	// ownMinInFlight is the fewest requests in flight a partition is
	// tested with: at least two slots under test.
	ownMinInFlight = 4
	// ownRateFell is the most of its answers a second at the start of an
	// own queue's cuts in a row that a partition whose excess the cuts
	// left may keep, for that excess to be a dependency's time (ownQueue):
	// a queue at a saturated bottleneck keeps them all.
	ownRateFell = 0.85
	// ownRampDouble is the shortest time a test's cap takes to double on
	// its way out (endTest): a few of the shared limit's windows, each of
	// which sees the queue the partition's returning requests make.
	ownRampDouble = 0.5
	// ownRampDoublings is the most doublings a cap on its way out takes
	// before it goes, whatever it still holds back.
	ownRampDoublings = 4
)

// mixScaleOne is a scale of 1 in Partition.scale's fixed point.
const mixScaleOne = 1024

// atReference is a partition's offset while it has not settled: each of
// its answers counts at the reference latency (ReleaseAfter).
const atReference = math.MinInt64

// measuredExcess is one partition's excess and the weight of its
// requests, for the median.
// queue marks a partition under a cap of its own (ownQueue).
type measuredExcess struct {
	excess, weight float64
	queue          bool
	p              *Partition
}

// medianExcess is the completion-weighted median of the excesses
// sorted in ms, of the partitions under a cap of their own too with
// queues true, or NaN with none.
func medianExcess(ms []measuredExcess, queues bool) float64 {
	return medianExcessWithout(ms, queues, nil)
}

// medianExcessWithout is medianExcess without the excess of partition
// without (nil: none left out).
func medianExcessWithout(ms []measuredExcess, queues bool, without *Partition) float64 {
	var total, acc float64
	for _, m := range ms {
		if (queues || !m.queue) && (without == nil || m.p != without) {
			total += m.weight
		}
	}
	for _, m := range ms {
		if (!queues && m.queue) || (without != nil && m.p == without) {
			continue
		}
		if acc += m.weight; acc >= total/2 {
			return m.excess
		}
	}
	return math.NaN()
}

// ReleaseAfter is ReleaseIn for a request that took latencyNs (negative:
// unknown), measured for Separate. It returns, for the flux meters' shared
// latency, the part of latencyNs that is the partition's own if Separate
// found it separate (its latency beyond its ceiling, up to its bound: a
// slower dependency's own is at most ownSlowerBound times what its test
// found; else 0), and the
// partition's offset: its baseline less the limiter's reference latency
// (negative for an API cheaper than the mix; 0 with one partition or with
// Separate off), which a meter of every API's requests leaves out too and
// a meter of this API's alone does not.
func (c *ConcurrencyLimiter) ReleaseAfter(p *Partition, use Use, latencyNs int64) (ownNs, offsetNs int64) {
	c.ReleaseIn(p, use)
	if use != Useful || latencyNs < 0 {
		return 0, 0
	}
	p.latN.Add(1)
	p.latSumNs.Add(latencyNs)
	// Capped at 4.2 s for the spread only, so that a tick's sum of
	// squares cannot wrap short of a million such answers.
	us := min(uint64(latencyNs/1000), 1<<22)
	p.latSqUs.Add(us * us)
	if ceiling := p.ceilingNs.Load(); ceiling > 0 && latencyNs > ceiling {
		ownNs = latencyNs - ceiling
		if most := p.ownMaxNs.Load(); most > 0 && ownNs > most {
			ownNs = most
		}
	}
	offsetNs = p.offsetNs.Load()
	if offsetNs == atReference {
		offsetNs = latencyNs - c.refNs.Load()
	} else if k := p.scale.Load(); k > mixScaleOne {
		// The answer's excess over its baseline counts k times:
		// √(ref ÷ its API's baseline), at least the mix's scale
		// (Separate).
		ref := c.refNs.Load()
		answered := latencyNs - ownNs
		shared := ref + (answered-(offsetNs+ref))*k/mixScaleOne
		offsetNs = answered - shared
	}
	return ownNs, offsetNs
}

// Separate measures each partition's latency against its baseline and the
// excess the partitions share, and separates those whose excess is their
// own (see ownState); with on false, none is. dt is the time since the
// last call, in seconds. The caller calls it once per tick, after
// Rebalance, from one goroutine.
func (c *ConcurrencyLimiter) Separate(on bool, dt float64) {
	// The limit in force over the tick measured: the one set after the
	// last call (low, below).
	slots := c.lastSlots
	c.lastSlots = c.slots.Load()
	ps := c.parts.Load()
	if ps == nil || !(dt > 0) {
		return
	}
	alpha := -math.Expm1(-dt / ownWindow)
	drift := -math.Expm1(-dt / ownBaseWindow)
	down := -math.Expm1(-dt / ownBaseDown)
	mix := -math.Expm1(-dt / ownMixWindow)
	c.clock += dt
	all := c.scratch[:0]
	var refSum, refWeight, total float64
	// A partition whose one-second mean first has enough answers in a
	// tick that queued learns its baseline from its answers of the ticks
	// before, where it has enough of them and they are lower. An API
	// with a tenth of a cold start's few answers has too few for a mean
	// until the limit's doublings have filled the bottleneck, and learned
	// its baseline in that queue: cheap-minority's lookup learned 34.4
	// ms (4.0 after a warm-up), read its queue as none for the rest of
	// the run, and kept 0.43 of its share.
	//
	// queued: this tick's answers of the partitions measured for a
	// second (ownMinSamples) exceed their baselines by cleanQueue of
	// them, together, and by three standard errors of that sum (each
	// answer's variance its partition's over the last second: a tick may
	// hold one answer). Without the errors, a tick of a few answers at
	// the first limit passed by chance, and random-903's slow-api
	// learned an API's baseline at 43.8 ms, not 48.2: api2's p99 went
	// from 0.59 to 1.51 × its SLO, api5's from 1.25 to 3.35.
	var excess, base, variance float64
	for _, p := range *ps {
		if p != nil && !math.IsNaN(p.own.baseNs) && p.own.n >= ownMinSamples {
			o := &p.own
			n, se := float64(p.latN.Load()), o.errorNs()
			excess += float64(p.latSumNs.Load()) - n*o.baseNs
			base += n * o.baseNs
			variance += n * se * se * o.n
		}
	}
	queued := base > 0 && excess > cleanQueue*base && excess > 3*math.Sqrt(variance)
	// low: the tick ran at a limit within twice the lowest the limiter has
	// had (or at none). Only such ticks teach a first baseline. The queued
	// test above weighs every partition's excess together, so the costly
	// APIs set it: at the doublings of a cold start, a cheap API that
	// visits a small pool the costly ones fill waits there many times its
	// own latency while the sum stays clean (random-4154: api1, 6 ms
	// without a queue, learned 11.4 ms from the ticks up to 24 in flight;
	// its excess then counted against that, and at 1.64 times, not 2.24).
	if slots > 0 && (c.lowSlots == 0 || slots < c.lowSlots) {
		c.lowSlots = slots
	}
	low := slots < 0 || slots > 0 && slots-c.lowSlots <= c.lowSlots
	// calm: the tick ran with the limit far from full (or none), and the
	// queued test found none: what the partitions answered is the
	// service's own latency (see calmN). Far from full over the tick, not
	// only at its end: the answers' latencies over the tick's length are
	// what it held in flight on average (Little's law), and a tick full
	// until just before its end holds its limit's worth.
	var tickNs float64
	for _, p := range *ps {
		if p != nil {
			tickNs += float64(p.latSumNs.Load())
		}
	}
	held := math.Max(float64(c.counted.Load()), tickNs/(dt*1e9))
	calm := !queued && (slots < 0 || slots > 0 && 2*held <= float64(slots))
	calmKeep := math.Exp(-dt / ownCalmWindow)
	for _, p := range *ps {
		if p == nil {
			continue
		}
		o := &p.own
		n, sum, sq := float64(p.latN.Swap(0)), float64(p.latSumNs.Swap(0)), float64(p.latSqUs.Swap(0))
		if math.IsNaN(o.baseNs) && !queued {
			o.cleanN += n
			o.cleanSumNs += sum
			if low {
				o.lowN += n
				o.lowSumNs += sum
				o.lowSqUs += sq
			}
		}
		o.n = (1-alpha)*o.n + n
		o.answers += n
		o.sumNs = (1-alpha)*o.sumNs + sum
		o.sqUs = (1-alpha)*o.sqUs + sq
		o.calmN, o.calmSumNs, o.calmSqUs = calmKeep*o.calmN, calmKeep*o.calmSumNs, calmKeep*o.calmSqUs
		if calm {
			o.calmN += n
			o.calmSumNs += sum
			o.calmSqUs += sq
		}
		refused := float64(p.capRefused.Load())
		if refused < o.refusedAt {
			o.refusedAt = 0 // a test began: the count started over
		}
		o.refusedN = (1-alpha)*o.refusedN + refused - o.refusedAt
		o.refusedAt = refused
		if o.testing() && o.elapsed*1e9 >= o.cutNs {
			o.testN += n
			o.testSumNs += sum
		}
		if n > 0 && c.mixAge <= ownSettle {
			o.early = true
		}
		lat := o.latencyNs()
		switch {
		case math.IsNaN(lat):
		case math.IsNaN(o.baseNs):
			o.baseNs, o.born, o.firstN = lat, c.clock, o.n
			if queued && o.cleanN >= ownMinSamples && o.cleanSumNs/o.cleanN*cleanRatio < lat {
				o.baseNs, o.firstN = o.cleanSumNs/o.cleanN, o.cleanN
			} else if !low && o.lowN >= ownMinSamples {
				// A tick at a limit the cold start's doublings took
				// past twice its lowest: the answers at the first
				// limits stand in where the first mean is lowRatio
				// times theirs, and over them by three of their
				// standard errors (a few answers of an API whose times
				// spread widely read half under their mean by chance).
				first := o.lowSumNs / o.lowN
				se := spreadNs(o.lowN, o.lowSumNs, o.lowSqUs) / math.Sqrt(o.lowN)
				if first*lowRatio < lat && lat-first > 3*se {
					o.baseNs, o.firstN = first, o.lowN
				}
			}
		case lat+2*o.errorNs() < o.baseNs:
			// Down to a lower mean over a few seconds, not at once, and
			// only to what the mean may be short of by chance (two
			// standard errors over it): the lowest of many noisy means is
			// below the true one, by more the fewer requests each holds.
			o.baseNs += down * (lat + 2*o.errorNs() - o.baseNs)
		case !o.settled(c.clock) && o.calmN >= ownCalmSamples && o.calmLowNs() > o.baseNs &&
			(o.rising || o.calmLowNs() > ownCalmRise*o.baseNs && o.firstByChance()):
			o.rising = true // once begun, all the way
			// Until it settles, up to what the calm answers show, less
			// two of their standard errors, over a few seconds, once
			// that is ownCalmRise over it and chance could have put the
			// first baseline that far under them (firstByChance; after
			// it settles, a rise may be a queue of its own, which the
			// tests find): a first baseline from ten
			// answers of an API whose times spread widely is too low as
			// often as too high, and the cases above only ever lower
			// it, or raise it within a quarter (random-11: api2, 52 ms
			// without a queue, learned 36.6 from its first answers, read
			// the rest as a queue of its own, and was held to 0.53 of
			// its share under a cap of its own).
			o.baseNs += down * (o.calmLowNs() - o.baseNs)
		case lat <= 1.25*o.baseNs:
			o.baseNs += drift * (lat - o.baseNs)
		}
		if !math.IsNaN(lat) {
			all = append(all, measuredExcess{lat - o.baseNs, o.n, o.separate && o.phase == ownQueue, p})
		}
		total += o.n
	}
	c.scratch = all
	// Each partition's part in the mix is its share of the requests,
	// averaged over time: over the limiter's first ownSettle seconds of
	// requests, then exponentially over ownMixWindow. A share, not a
	// rate: while a limit throttles a start, the rates are a fraction of
	// the offered ones but the shares are the offered mix's, and a surge
	// of one API moves its share at the pace of the average, not in
	// proportion to its count (a cheap API forty times as busy a minute
	// into a limiter's life outweighed the minute before it within a
	// second).
	a := 0.0 // the weights' step this tick; none without requests
	if total > 0 {
		c.mixAge += dt
		a = mix
		if c.mixAge <= ownSettle {
			a = dt / c.mixAge
		}
	}
	// nowSum ÷ nowN is the latency of the mix answering now: the settled
	// baselines weighted by their last second's requests (below).
	var nowSum, nowN float64
	for _, p := range *ps {
		if p == nil {
			continue
		}
		o := &p.own
		if total > 0 {
			o.weight += a * (o.n/total - o.weight)
		}
		if !o.settled(c.clock) {
			continue
		}
		if o.weight > 0 {
			refSum += o.weight * o.baseNs
			refWeight += o.weight
		}
		if o.n > 0 {
			nowSum += o.n * o.baseNs
			nowN += o.n
		}
	}
	// The reference latency is the settled baselines' mean, weighted by
	// each partition's share of the requests over the last hour or so:
	// each answer's latency is counted as the reference plus its excess
	// over its own API's baseline. A window's mean latency then reads a
	// queue, not which APIs happened to answer in it: where one API's
	// requests cost twenty times another's, the count of expensive ones
	// in a window of fifty moves the plain mean by more than a queue the
	// limit must keep. Partitions count once settled: a baseline learned in a cold
	// start's queue is not one, and partitions that learned theirs at
	// different depths of it would read each other's as a queue. Until
	// one has, nothing is subtracted (a cold start reads its queue raw);
	// after, an API not yet settled counts at the reference if it is new,
	// and raw if it was measured in the first ownSettle seconds.
	// An API that goes quiet or hangs keeps its part in the reference,
	// fading over that hour; a new one's part grows as slowly: a
	// controller's baseline follows a drift that slow, and would read a
	// faster one as a queue. With one partition the offset is 0; with on
	// false, every one is.
	//
	// The reference first: an answer that finds its partition's offset
	// at the reference must find the reference too.
	ref := refSum / refWeight
	if on && refWeight > 0 {
		c.refNs.Store(int64(ref))
	}
	// Each answer's excess over its API's baseline counts √(ref ÷ that
	// baseline) times (at most ownMixScaleMax), and at least cheaper times,
	// where the mix answering now (nowSum ÷ nowN) is that many times cheaper
	// than the reference's. The first judges a queue against the
	// geometric mean of the reference and the latency of the requests it
	// delays. At the reference alone (the mix's mean, Little's law's view
	// of the throughput a queue buys), where 95 % of the answers take
	// 1 ms and 5 % take 300 ms, the queue a controller allows, half the
	// reference's 16 ms, is eight times the latency of most requests
	// (cheap-majority: 0.78 to 0.89 of proportional); at each request's
	// own latency (goodput's view: how many times slower it makes each
	// request), an app of thirty APIs whose cheap ones cross busy
	// bottlenecks held every limit too tight (many-apis: 0.84 of
	// proportional, 0.93 at the reference). The second is for a
	// controller's baseline, which follows the reference over minutes:
	// after a shift to a cheaper mix it would allow a queue sized for
	// the old one, to every API, including a costly one behind a
	// bottleneck the cheap ones do not cross (random-913's priority-mix,
	// whose cheap API makes up nine tenths of the requests there: its
	// costly APIs' answers timed out without it).
	cheaper := 1.0
	if on && refWeight > 0 && nowSum > 0 {
		cheaper = math.Min(ownMixScaleMax, math.Max(1, ref/(nowSum/nowN)))
	}
	for _, p := range *ps {
		if p == nil {
			continue
		}
		off, k := int64(0), int64(0)
		switch {
		case !on || !(refWeight > 0):
		case !p.own.settled(c.clock) && p.own.early:
			// Measured from the start, it is in the mix every
			// controller's baseline learned; only the settled
			// partitions' answers leave it.
		case !p.own.settled(c.clock):
			off = atReference
		default:
			off = int64(p.own.baseNs - ref)
			k = int64(mixScaleOne * math.Min(ownMixScaleMax, math.Max(cheaper, math.Sqrt(ref/p.own.baseNs))))
		}
		p.scale.Store(k)
		p.offsetNs.Store(off)
	}
	// others is the excess the partitions not under a cap of their own
	// share: the queue that a partition under one shows with the rest,
	// and not its own. Partitions that share a bottleneck the rest do not
	// cross, each under its own cap, all read that bottleneck's queue
	// against it, where the median of every partition could be one of
	// theirs. 0 with no others measured.
	shared, others := math.NaN(), 0.0
	switch {
	case !on:
		c.sharedAge = math.Inf(1)
	case len(all) < 2:
		// A partition under test may measure nothing for a while (its
		// cap halved its answers): the shared excess it is judged
		// against stays the last one, for a few seconds.
		c.sharedAge += dt
		if c.sharedAge <= ownSharedHold {
			shared = c.shared
		}
	default:
		slices.SortFunc(all, func(a, b measuredExcess) int { return cmp.Compare(a.excess, b.excess) })
		shared = medianExcess(all, true)
		if e := medianExcess(all, false); !math.IsNaN(e) {
			others = e
		}
		c.shared, c.sharedAge = shared, 0
		// Every measured partition's excess against the shared one, for
		// the slope it follows it by (follows).
		a := -math.Expm1(-dt / ownFollowHorizon)
		for _, p := range *ps {
			if p == nil || (p.own.separate && p.own.phase == ownSlower) || !p.own.settled(c.clock) {
				continue
			}
			if e := p.own.latencyNs() - p.own.baseNs; !math.IsNaN(e) {
				p.own.follow(shared, e, a)
			}
		}
	}
	// A test needs a limit to cap against, and answers that measure
	// latency: while an API's requests go unanswered (a hang the
	// bulkhead holds apart), their slots and their clients' retries
	// shape every API's latency, and no test starts (one under way ends
	// with no verdict). A new test needs two partitions measured now,
	// not a shared excess held from before.
	limited := c.slots.Load() != unlimitedSlots
	for _, p := range *ps {
		if p != nil && p.unanswered.Load() {
			limited = false
		}
	}
	// APIs that share a bottleneck the others do not cross all show its
	// queue: a test of one alone would halve its part of that queue's
	// throughput while the others keep the queue, as a slower
	// dependency would. They are tested together: when one must be (and
	// can be, with enough requests in flight), every one whose excess is
	// its own (if not by half its baseline yet) is too, and so is every
	// one at or above the shared excess that shows a quarter of the
	// largest excess over its baseline of those due (groupNs; member).
	// Each partition's requests in flight are read once a tick
	// (inFlightNow), so that a due partition that starts a group is the
	// one tested.
	group, groupNs := false, 0.0
	for _, p := range *ps {
		if p == nil {
			continue
		}
		p.own.inFlightNow = p.inFlightOf(p.own.latencyNs())
		if !math.IsNaN(shared) && limited && c.sharedAge == 0 && p.own.dueAfter(shared, 0.5, dt) &&
			p.own.inFlightNow >= ownMinInFlight {
			group, groupNs = true, math.Max(groupNs, p.own.latencyNs()-p.own.baseNs)
		}
	}
	// A group test leaves a measured partition outside it (one not
	// separated, neither due nor a member): with every one under test,
	// the test halves every API's requests in flight, which is the
	// shared limit's own cut, and with no latency outside to compare, a
	// queue that fell cannot be told the group's from everyone's. The
	// due partitions are tested without the members. Two APIs at one
	// service, one of them with a queue of its own at a second one, were
	// both halved for three seconds every 10 to 25 (random-20: 0.68 of
	// proportional while it ran; over a slower service's steady half,
	// 0.89 → 0.96).
	if group {
		outside := 0
		for _, p := range *ps {
			if p == nil || p.own.separate {
				continue
			}
			lat := p.own.latencyNs()
			if math.IsNaN(lat) {
				continue
			}
			if !p.own.dueAfter(shared, 0.5, dt) && !p.own.member(shared, lat, groupNs) {
				outside++
			}
		}
		if outside == 0 {
			group = false
		}
	}
	// How far did the other partitions' excesses fall from their highest
	// during a test (since a solo one, or a group's with no other under
	// way, began; of those whose excess reached a quarter of their
	// baselines), as a share of it, at most? And by how much, in time,
	// where both that fall and the highest excess are over three
	// standard errors of its mean (for all of them)? A queue is paid in
	// the same milliseconds by every request that waits in it: an API
	// many times as costly as the tested one shows it as a sliver of its
	// baseline.
	var othersFell ownFall
	for _, p := range *ps {
		if p == nil {
			continue
		}
		lat := p.own.latencyNs()
		if math.IsNaN(lat) {
			continue
		}
		if raw := lat - p.own.baseNs; math.IsNaN(p.own.atTest) || raw > p.own.atTest {
			p.own.atTest = raw
		}
		if p.own.testing() {
			continue
		}
		d := p.own.atTest - (lat - p.own.baseNs) // the fall
		if p.own.atTest > 0.25*p.own.baseNs {
			othersFell.share = math.Max(othersFell.share, d/p.own.atTest)
		}
		othersFell.rawNs = math.Max(othersFell.rawNs, d)
		if rise := lat - p.own.baseNs - p.own.startEx; rise > 3*p.own.errorNs() {
			othersFell.riseNs = math.Max(othersFell.riseNs, rise)
		}
		if math.Min(d, p.own.atTest) > 3*p.own.errorNs() {
			othersFell.ns = math.Max(othersFell.ns, d)
		}
	}
	// How many more requests in flight do the partitions watched since the
	// last test began hold now (Little's law's counts, whether or not
	// they are under a test of their own since: a member that joins a
	// group test late has its cap set from what it took)?
	//
	// And how many more, net, do the partitions measured when it began
	// hold now, of those not separated since (one under a test or a cap
	// of its own holds what that lets it)? Under a limit that binds, the
	// slots a test's cap frees go to the others whatever their latencies,
	// and an API that visits the bottleneck they share three times shows
	// three times their queue: an excess beyond the shared one, which the
	// halving leaves where it was, as it would a slower dependency's.
	// random-4574's api3 and api5 cross svc2, where every API waits,
	// three times and twice. The APIs that took what their caps freed
	// cross it once, sat at the shared excess, and were not watched; both
	// tests read slower dependencies, their waits left the limit's
	// signal, and the queue at svc2 grew until api2, whose answers take
	// 1.5 ms against a 30 ms SLO, kept 0.66 of its share at 10 × capacity
	// (0.97 with this). Their queue is the larger of the shared excess
	// and the mean excess of those that gained, weighted by what each
	// gained: the shared excess is a median over every API, and where
	// most answers come from APIs that cross no bottleneck it is theirs,
	// none, while the APIs that took the slots wait in a queue they
	// filled (random-4715's surge: api1 filled svc1, which api4 visits
	// twice, during a test of api4 that drained svc2; the shared excess
	// was 0.4 ms, set by the cheap api3, api1's 18 ms; api4 read a slower
	// dependency, and its p99 went to 1.4 × its SLO). A partition
	// separated as a slower dependency takes freed slots too, and its
	// requests cross the same bottlenecks: its gain counts, and its queue
	// is its excess beyond what its own test found (ref). random-4796's
	// slow API: api1, a slower dependency, took 67 slots while a test
	// halved api2 at the service both cross, 43 ms beyond its dependency's
	// time; api2 read a slower dependency, the service's queue left the
	// signal and grew to 150 ms, and api2 kept 0.31 of its share (0.74
	// with this).
	var backfill ownBackfill
	for _, p := range *ps {
		if p == nil {
			continue
		}
		if slower := p.own.separate && p.own.phase == ownSlower; !math.IsNaN(p.own.seen) && (!p.own.separate || slower) {
			gain := p.own.little() - p.own.seen
			backfill.all += gain
			e := p.own.latencyNs() - p.own.baseNs
			if slower {
				e = math.Max(0, e-p.own.ref)
			}
			if gain > 0 && !math.IsNaN(e) {
				backfill.gainedNs += gain * e
				backfill.gained += gain
				if p.own.baseNs > 0 {
					backfill.gainedShare += gain * e / p.own.baseNs
				}
			}
		}
		if !math.IsNaN(p.own.watched) {
			backfill.slots += math.Max(0, p.own.little()-p.own.watched)
			if e := p.own.latencyNs() - p.own.baseNs; e > backfill.excessNs {
				backfill.excessNs = e
			}
		}
	}
	// The two largest excesses over their baselines, and whose the
	// largest is, of the partitions measured and not separated as a slower
	// dependency (whose excess is no queue): the largest queue any other
	// partition shows (ownQueue); and the same of the excesses as shares
	// of the baselines of the partitions not separated, the largest
	// slowdown under the shared limit (sharingSlack).
	var top1, top2, rtop1, rtop2 float64
	var topOf, rtopOf *Partition
	for _, p := range *ps {
		if p == nil || (p.own.separate && p.own.phase == ownSlower) {
			continue
		}
		e := p.own.latencyNs() - p.own.baseNs
		switch {
		case math.IsNaN(e):
		case e > top1:
			top1, top2, topOf = e, top1, p
		case e > top2:
			top2 = e
		}
		if p.own.separate || !(p.own.baseNs > 0) {
			continue // a cap of its own holds its own queue's share
		}
		switch r := e / p.own.baseNs; {
		case math.IsNaN(r):
		case r > rtop1:
			rtop1, rtop2, rtopOf = r, rtop1, p
		case r > rtop2:
			rtop2 = r
		}
	}
	testing := 0
	// Did every partition under a group test hold back requests and see
	// its excess fall by 30 % or more, at the test's end, while some
	// measured partition stayed outside it, and either no partition
	// outside fell by a third as much as the members did on average (or
	// a tenth) as a share of its excess, or none by a third of the least
	// fall of a member in milliseconds (whatever its errors, and however
	// small its excess was: a costly API shows a queue it shares as a
	// sliver of its baseline)? A queue is paid in the same
	// milliseconds by every request that waits in it, once a visit, and
	// every member visits it at least once: an outside partition that
	// waits in it falls by as many milliseconds as the member that visits
	// least, or by a third of them if that member visits three times. One
	// whose excess fell by half, but by a few milliseconds, waits at
	// another service a member also crosses (repeat-visits' surge: report
	// crosses search, where home's and search's excesses of 5.5 ms fell by
	// 2.9 ms with report's cap, while report's fell by 15 ms and feed's,
	// three visits to db, by 46), and judged by its share alone it handed
	// the group back to the shared limit after every test. But one whose
	// fall is a third of the least member's in milliseconds, with the
	// fall and its highest excess over three standard errors of its
	// mean, waits in their queue whatever
	// share of its excess that is (an API with a queue elsewhere too):
	// random-2's slow service with closed-loop users, an outside API fell
	// by 4.0 ms with the members' 3.5 and 8 % of its excess, and the
	// members, capped as an own queue, kept 0.61 and 0.69 of their
	// shares while it took their slots (0.78 and 0.81 without). Then the
	// bottleneck they queue at is theirs together, not
	// the one all share (groupID names them). The verdict is the group's,
	// one for all its members: judged each against its own fall, the
	// member whose queue fell least was handed to the shared limit while
	// the others kept their caps as a group without it (repeat-visits at
	// seed 2: report's cap held db's queue alone, and feed's p99 went
	// from 180 to 349 ms).
	// Tests aligned to end together (below) end in one tick: each one's
	// elapsed time is its own sum of ticks, and two such sums to the
	// same end differ in their last bits, which left one test a tick
	// longer than the other.
	ending := false
	for _, p := range *ps {
		if p != nil && p.own.testing() && p.own.aligned && p.own.elapsed+dt >= p.own.window {
			ending = true
		}
	}
	for _, p := range *ps {
		if p != nil && ending && p.own.testing() && p.own.aligned {
			p.own.window = math.Min(p.own.window, p.own.elapsed+dt)
		}
	}
	groupFell, members, outside, fellSum, leastFellNs := true, 0, 0, 0.0, math.Inf(1)
	for _, p := range *ps {
		if p != nil {
			p.own.capWas, p.own.quietDrop, p.own.cut = p.capSlots.Load(), false, false
			lat := p.own.latencyNs()
			switch {
			case p.own.testing():
				// A member ends its test this tick (as every member of
				// one group test does together, overlapping tests
				// included: below).
				members++
				fellNs := p.own.atTest - (lat - p.own.baseNs)
				fell := fellNs / p.own.atTest
				fellSum += fell
				leastFellNs = math.Min(leastFellNs, fellNs)
				groupFell = groupFell && !math.IsNaN(lat) && fell >= 0.3 && p.own.elapsed+dt >= p.own.window &&
					p.own.heldBack(float64(p.capRefused.Load()), p.own.elapsed+dt)
			case !math.IsNaN(lat):
				outside++
			}
		}
	}
	var groupID uint64
	if groupFell && members > 1 && outside > 0 && (othersFell.share < math.Max(0.1, fellSum/float64(members)/3) || othersFell.rawNs < leastFellNs/3) &&
		othersFell.ns < leastFellNs/3 {
		c.groups++
		groupID = c.groups
	}
	for _, p := range *ps {
		if p != nil {
			p.own.capBefore = p.own.capSlots
		}
	}
	// Cuts in a row are measured in the room of the group, for a member
	// of the test that found its queue: a joint cut takes a fifth of
	// each cap, and the growth goes to the members short of slots, so a
	// member's own cap may halve while the group's room does not
	// (repeat-visits' slow dependency: feed's cap fell by half as
	// report's grew, its excess stayed, and the streak's verdict handed
	// feed's queue to the shared limit, where its p99 went to 1.7 × its
	// SLO). A late member's cap is no part of that room, and its own
	// cuts in a row are measured in its own cap: the test that found the
	// queue did not find it there (random-902's retry storm: api5 joined
	// api1's own queue with 24 slots, and in a room that counted them,
	// api1's cuts at its floor of one slot, its excess unmoved, never
	// made a streak; api1 kept 0.32 of its share).
	//
	// The members of a group see the same queue, in the same
	// milliseconds a visit, and judge it against the geometric mean of
	// their own baselines and the group's (weighted by their answers), as
	// the shared latency weighs an answer's excess (ReleaseAfter): each
	// against its own, the cheapest member read a queue of a millisecond
	// as over its tolerance, and cut every cap of the group while the
	// costly members' growth waited (random-3615's retry storm: a 2 ms
	// and a 62 ms API at one service, the costly one's p99 559 ms
	// against its 270 ms SLO, 193 with the geometric mean).
	for _, p := range *ps {
		if p == nil {
			continue
		}
		o := &p.own
		o.slots, o.members, o.tolBaseNs = o.capSlots, 1, o.baseNs
		if o.group == 0 {
			continue
		}
		var sum, n, slots float64
		members := 0
		for _, q := range *ps {
			if q != nil && q.own.group == o.group && q.own.phase == ownQueue && q.own.separate {
				if !q.own.late {
					slots += q.own.capSlots
					members++
				}
				if q.own.n > 0 && !math.IsNaN(q.own.baseNs) {
					sum += q.own.n * q.own.baseNs
					n += q.own.n
				}
			}
		}
		if !o.late {
			o.slots, o.members = slots, members
		}
		// A member that left took its cap out of the room: no cut did.
		if o.streakCap != 0 && o.members != o.streakMembers {
			o.streakCap = 0
		}
		if n > 0 {
			o.tolBaseNs = math.Sqrt(o.baseNs * sum / n)
		}
	}
	// A group's queue is one queue, and the group reads it as one: its
	// caps are cut while the members' excesses beyond the others', each
	// over half its tolerance and weighted by its answers, average over
	// one, with some member's excess over three standard errors of its
	// mean (groupOver), and grow, each that holds requests back, while
	// they do not. Each member's excess is that queue's, in as many
	// visits as it makes, plus whatever else it crosses: decided by each
	// member alone, a member that also waits at another bottleneck (a
	// queue outside the group's, which no cut of theirs drains) was over
	// its tolerance at every tick, cut with each of the others' cuts and
	// never grown, while the others took the room (random-3626: api2,
	// which crosses svc3 with an API outside the group, held a cap of
	// one slot and 0.14 of its share, and api1, its partner at svc1,
	// 1.32 of its own).
	for _, p := range *ps {
		if p != nil {
			p.own.groupOver = 0
		}
	}
	for _, p := range *ps {
		if p == nil || p.own.group == 0 || p.own.phase != ownQueue || !p.own.separate || p.own.groupOver != 0 {
			continue
		}
		var ratio, n float64
		seen := false
		for _, q := range *ps {
			if q == nil || q.own.group != p.own.group || q.own.phase != ownQueue || !q.own.separate {
				continue
			}
			own := q.own.latencyNs() - q.own.baseNs - others - q.own.extraNs
			if math.IsNaN(own) || !(q.own.n > 0) || !(q.own.tolBaseNs > 0) {
				continue
			}
			ratio += q.own.n * own / (0.5 * q.own.tolBaseNs)
			n += q.own.n
			seen = seen || own > 3*q.own.errorNs()
		}
		verdict := int8(-1)
		if n > 0 && ratio > n && seen {
			verdict = 1
		}
		for _, q := range *ps {
			if q != nil && q.own.group == p.own.group {
				q.own.groupOver = verdict
			}
		}
	}
	for _, p := range *ps {
		if p != nil {
			widest := top1
			if p == topOf {
				widest = top2
			}
			widestShare := rtop1
			if p == rtopOf {
				widestShare = rtop2
			}
			// A slower dependency's excess is its own: the queue it is
			// judged against, and may share, is the others' (random-2803's
			// slow API, separated, took most of the answers once the
			// shared limit grew, its excess became the median, it read
			// "everyone is slow" and rejoined, and the limit fell from 92
			// to 12).
			sharedFor := shared
			if p.own.separate && p.own.phase == ownSlower && c.sharedAge == 0 {
				if e := medianExcessWithout(all, true, p); !math.IsNaN(e) {
					sharedFor = e
				}
			}
			p.separate(sharedFor, others, widest, widestShare, groupNs, othersFell, backfill, dt, group, groupID, limited, c.sharedAge == 0)
			if p.own.testing() {
				testing++
			}
		}
	}
	// The caps of an own queue found by a group test are cut together:
	// where one is cut, the others of its group still under their own
	// queue's cap are cut by the same factor, at the same time. Each cut on
	// its own excess over its own baseline, the one with the lowest
	// baseline read the queue they share as over its tolerance first, and
	// was cut alone, again and again, while the others' caps grew into
	// the room (random-11's slow dependency: api2 at 0.49 of its share;
	// 0.74 with the joint cuts).
	for _, p := range *ps {
		if p == nil || p.own.group == 0 || p.own.phase != ownQueue || !p.own.separate || !p.own.cut {
			continue
		}
		for _, q := range *ps {
			if q == nil || q == p || q.own.group != p.own.group || q.own.phase != ownQueue || !q.own.separate || q.own.cut {
				continue
			}
			// A member at its floor of one slot is cut all the same: the
			// others' requests fill the queue it reads.
			q.own.capSlots, q.own.sinceCut, q.own.cut = math.Max(1, q.own.capSlots*ownQueueCut), 0, true
			q.publishCap()
		}
	}
	// A partition that shows, when an own queue's cap is cut, half that
	// queue's excess or more beyond the shared one, and was no part of
	// the test that found it, queues there too: it came to that
	// bottleneck since (a ramp of its demand), or was too light then to
	// show it. Its requests fill the room each cut frees, and the cuts,
	// taken on the queue they make together, fall on the capped one
	// alone: random-3525's ramp found api4's queue at its bottleneck
	// while api1, which crosses it too, sent a tenth of its peak; api1's
	// requests in flight there went from 3 to 26 as api4's cap went from
	// 13 to 1, and api4 kept 0.32 of its share. It joins the queue's
	// group, under a cap of what it holds now, and the group's caps are
	// cut together and grow by what each is short of (below). Its excess
	// must be a quarter of its own baseline too, as a group test's
	// members' must (member): an own queue's excess may be a millisecond,
	// half of which APIs that do not cross its bottleneck show as well
	// (random-3615: two of them joined a 2 ms API's queue, and its slow
	// drift kept 0.86 of proportional, 0.97 with the quarter).
	for _, p := range *ps {
		if p == nil {
			continue
		}
		o := &p.own
		if o.phase != ownQueue || !o.separate || !o.cut || math.IsNaN(shared) {
			continue
		}
		excess := o.latencyNs() - o.baseNs - others - o.extraNs
		if !(excess > 0) {
			continue
		}
		for _, q := range *ps {
			// Not one a test of its own is due for: an excess of half
			// its baseline may be a dependency of its own, which its
			// cap's cuts, joint with the group's, would not drain. Nor
			// one a test ended on lately (holdoff), nor one whose test
			// cap is on its way out, nor one with fewer requests in
			// flight than a test needs: a cap of one or two slots holds
			// too little to fill a queue, and only starves it
			// (random-3523's ramp: api2, which crosses two other
			// services, joined api4's queue at a millisecond of excess,
			// under a cap of one).
			if q == nil || q.own.separate || q.own.rampCap > 0 || q.own.holdoff > 0 || q.unanswered.Load() ||
				q.own.measured < ownSettle || q.own.due(shared, 0.5) || !(q.own.inFlightNow >= ownMinInFlight) {
				continue
			}
			if e := q.own.latencyNs() - q.own.baseNs - shared; !(e >= excess/2 && e >= q.own.baseNs/4 && e > 3*q.own.errorNs() && e > shared) {
				continue
			}
			if o.group == 0 {
				c.groups++
				o.group = c.groups
			}
			q.own.joinQueue(q.own.inFlightNow, float64(q.capHits.Load()), o.group)
			q.publishCap()
		}
	}
	// The room the caps of a group grew into this tick is split by what
	// each member's cap held back: its refused requests times its
	// latency, the slots it is short of (Little's law). Each grew by a
	// share of its own cap, and the cuts take the same share of each,
	// so the split a test left would stay whatever the members' demand:
	// random-3525's api1 and api4 share a bottleneck, a test left their
	// caps about equal (9 and 10 slots), and api4, with nearly four times
	// api1's demand in slots, kept 0.69 of its proportional share while
	// api1 kept 2.25 of its own. Growth in proportion to what is short
	// makes each member's cap converge to the same fraction of its
	// demand (as additive increase with multiplicative decrease
	// converges to fair shares).
	for _, p := range *ps {
		if p == nil || p.own.group == 0 || !p.own.grew() {
			continue
		}
		var grown, short float64
		for _, q := range *ps {
			if q != nil && q.own.group == p.own.group && q.own.grew() {
				grown += q.own.capSlots - q.own.capBefore
				short += q.own.shortSlots()
			}
		}
		if short > 0 {
			for _, q := range *ps {
				if q != nil && q.own.group == p.own.group && q.own.grew() {
					q.own.capSlots = q.own.capBefore + grown*q.own.shortSlots()/short
					q.own.capBefore = q.own.capSlots // done: not split again
					q.publishCap()
				}
			}
		}
	}
	// A cap that went while it held requests back (a verdict of slower
	// dependency, or a partition that joins on no verdict) lets its
	// demand in at once: every other test under way saw the others'
	// latencies move by more than its own cap did, and ends with no
	// verdict (moved). random-1010's api1 and api2 cross a service api3
	// does not; api2's slower dependency was proven and uncapped, its
	// requests filled that service while api1's test ran, api1's excess
	// rose from 1 to 8 ms under its cap and read as a slower dependency
	// of its own, and the re-tests that followed let in 370 of api2's
	// requests (the p99 4.8 × the SLO).
	for _, p := range *ps {
		if p == nil || p.own.capWas == 0 || p.capSlots.Load() != 0 || p.own.quietDrop {
			continue
		}
		for _, q := range *ps {
			if q != nil && q != p && q.own.testing() {
				q.own.moved = true
			}
		}
	}
	// A test that begins records what its cap took, and the requests in
	// flight of every other partition that shows a queue beyond the shared
	// one (over the shared excess by three standard errors) and is not
	// separated: those that would fill the tested one's queue back, at a
	// bottleneck they share. It also records the requests in flight of
	// every partition measured that is not separated or is a slower
	// dependency (seen), for the gains since. Where tests overlap, the
	// last to begin sets what is watched, and the earlier ones see the
	// backfill since.
	begins := false
	for _, p := range *ps {
		if p != nil && p.own.started {
			begins = true
			p.own.freed = math.Max(0, p.inFlightOf(p.own.latencyNs())-p.own.capSlots)
		}
	}
	for _, p := range *ps {
		if p == nil || !begins {
			continue
		}
		p.own.seen = math.NaN()
		if p.own.testing() {
			continue
		}
		p.own.watched = math.NaN()
		if !p.own.separate && p.own.queueBeyond(shared) {
			p.own.watched = p.own.little()
		}
		if (!p.own.separate || p.own.phase == ownSlower) && !math.IsNaN(p.own.latencyNs()) {
			p.own.seen = p.own.little()
		}
	}
	// Tests that overlap end together, at the latest end of theirs: a
	// test that another overlapped, begun earlier or later, judges
	// nothing of the other's queue alone, and only tests that end in one
	// tick are judged as a group (groupID). Two APIs at a service no other
	// crosses began their tests 0.6 s apart (random-3807, a 2-worker
	// service that api2 visits three times and api3 once): each one's
	// excess fell by half or more, each verdict was the shared limit's,
	// and the service stayed at full utilisation with 22 ms of queue
	// (api2's p99 192 ms against its 150 ms SLO; 85 ms ending together).
	if begins {
		var end float64
		under := 0
		for _, p := range *ps {
			if p != nil && p.own.testing() {
				end = math.Max(end, p.own.window-p.own.elapsed)
				under++
			}
		}
		for _, p := range *ps {
			if under > 1 && p != nil && p.own.testing() {
				p.own.window, p.own.aligned = p.own.elapsed+end, true
			}
		}
	}
	// A test that began alone records every other partition's excess, and
	// so does a group's that began with no other under way: each member's
	// fall and each outside partition's are measured from the test's
	// start. From the highest since the last solo test, which may be a
	// cold start's first queue, the members of random-4751's first group
	// test read falls of 43 % (18 % since it began) while an API outside
	// refilled their queue, and were capped as an own queue: they kept
	// 0.30 and 0.35 of their shares.
	fresh := testing > 1
	for _, p := range *ps {
		if p != nil && p.own.testing() && !p.own.started {
			fresh = false
		}
	}
	if fresh {
		for _, q := range *ps {
			if q != nil {
				q.own.atTest = q.own.latencyNs() - q.own.baseNs
				q.own.startEx = q.own.atTest
			}
		}
	}
	for _, p := range *ps {
		if p == nil || !p.own.testing() {
			continue
		}
		switch {
		case testing > 1:
			p.own.solo = false
		case p.own.started:
			p.own.solo = true
			for _, q := range *ps {
				if q != nil {
					q.own.atTest = q.own.latencyNs() - q.own.baseNs
					q.own.startEx = q.own.atTest
				}
			}
		}
		p.own.started = false
	}
	c.ditherCaps()
}

// ditherCaps steps each partition's dither and publishes its cap again.
// An own queue's cap is a share of a bottleneck's room, in slots and
// their fractions; published whole, it was floor(cap), and a cap of 1.9
// let one request in at a time, half of what it was worth (random-4643's
// api3, whose cap in a group of two swung from 1.7 to 2.2: 0.70 of its
// share at a bottleneck it shares with api2). Published as floor(cap +
// dither), it averages cap over the ticks. A test's cap is whole, and
// stays what it is.
func (c *ConcurrencyLimiter) ditherCaps() {
	ps := c.parts.Load()
	if ps == nil {
		return
	}
	for _, p := range *ps {
		if p != nil {
			p.own.dither = math.Mod(p.own.dither+ditherStep, 1)
			if p.capSlots.Load() != 0 && p.own.separate && p.own.phase != ownSlower {
				p.publishCap()
			}
		}
	}
}

// joinQueue puts a partition under a cap of inFlight slots as a member of
// an own queue's group, with hits its cap refusals so far.
func (o *ownState) joinQueue(inFlight, hits float64, group uint64) {
	o.separate = true
	o.capSlots = math.Max(1, math.Ceil(inFlight))
	o.capBefore = o.capSlots
	o.enterQueue(hits, group)
	o.late = true
}

// enterQueue starts an own queue's phase under the cap the partition has,
// as a member of group (0: alone), with hits its cap refusals so far.
func (o *ownState) enterQueue(hits float64, group uint64) {
	o.phase, o.group, o.late = ownQueue, group, false
	o.hits, o.sinceCut, o.quiet, o.streakCap, o.extraNs = hits, 0, 0, 0, 0
}

// grew reports whether an own queue's cap grew this tick.
func (o *ownState) grew() bool {
	return o.phase == ownQueue && o.separate && o.capSlots > o.capBefore
}

// shortSlots is the slots a partition's cap is short of its demand: its
// refused requests a second times its latency, in seconds (0 unmeasured).
func (o *ownState) shortSlots() float64 {
	lat := o.latencyNs()
	if math.IsNaN(lat) {
		return 0
	}
	return o.refusedN / ownWindow * lat / 1e9
}

// settled reports whether the partition's baseline was learned at least
// ownSettle seconds before clock: one learned in a cold start's queue has
// seen it drained by then.
func (o *ownState) settled(clock float64) bool { return clock-o.born >= ownSettle }

// due reports whether a partition not separated, nor waiting after a
// test, has an excess of its own over the shared one by at least
// fraction of its baseline, more than the shared one and three standard
// errors of its mean, and has been measured long enough to be tested.
func (o *ownState) due(shared, fraction float64) bool { return o.dueAfter(shared, fraction, 0) }

// dueAfter is due once dt more seconds are measured.
func (o *ownState) dueAfter(shared, fraction, dt float64) bool {
	own := o.latencyNs() - o.baseNs - shared
	return !o.separate && o.holdoff <= 0 && o.measured+dt >= ownSettle &&
		own > fraction*o.baseNs && own > shared && own > 3*o.errorNs()
}

// member reports whether a partition measured long enough to be tested is
// part of a group test whose largest excess due is groupNs: its own excess
// is a quarter of its baseline, over the shared one and three standard
// errors, or it is at or above the shared excess and its excess over its
// baseline is a quarter of groupNs and three standard errors. The second are
// the APIs that cross the group's bottleneck when its queue is the median
// excess: an API that visits that bottleneck once shows its queue as the
// shared excess and nothing of its own, and one that visits it three
// times shows three times that queue, two of them its own, and is due
// first; halving only the second leaves the queue the first make, as a
// slower dependency would. An API whose excess is under a quarter of the
// group's largest crosses another bottleneck, or this one less often than
// a chain of four visits would: halving it would cost its goodput for
// nothing.
func (o *ownState) member(shared, lat, groupNs float64) bool {
	excess := lat - o.baseNs
	return o.due(shared, 0.25) ||
		(groupNs > 0 && o.measured >= ownSettle && excess >= shared && excess >= groupNs/4 && excess > 3*o.errorNs())
}

// latencyNs is the partition's smoothed mean latency, or NaN with too few
// measured requests.
func (o *ownState) latencyNs() float64 {
	if o.n < ownMinSamples {
		return math.NaN()
	}
	return o.sumNs / o.n
}

// calmLowNs is the mean of the calm answers (calmN) less two of their
// standard errors.
func (o *ownState) calmLowNs() float64 {
	return o.calmSumNs/o.calmN - 2*o.calmSDNs()/math.Sqrt(o.calmN)
}

// calmSDNs is the standard deviation of the calm answers' latencies.
func (o *ownState) calmSDNs() float64 { return spreadNs(o.calmN, o.calmSumNs, o.calmSqUs) }

// spreadNs is the standard deviation, in ns, of n latencies whose sum is
// sumNs and whose squares in µs² sum to sqUs.
func spreadNs(n, sumNs, sqUs float64) float64 {
	meanUs := sumNs / n / 1000
	return math.Sqrt(math.Max(0, sqUs/n-meanUs*meanUs)) * 1000
}

// firstByChance reports whether the calm answers' mean is over the
// baseline by no more than chance could have put the first baseline
// under it: three standard errors of a mean of firstN answers with the
// calm answers' spread. A first baseline of ten answers of an API whose
// times spread widely may be that far off; a queue of its own in the
// first seconds raises a steady API's mean by more, and is the tests'.
func (o *ownState) firstByChance() bool {
	return o.firstN > 0 && o.calmSumNs/o.calmN-o.baseNs <= 3*o.calmSDNs()/math.Sqrt(o.firstN)
}

// errorNs is the standard error of latencyNs: how far the mean of the
// requests measured may be from their latency's by chance.
func (o *ownState) errorNs() float64 { return spreadNs(o.n, o.sumNs, o.sqUs) / math.Sqrt(o.n) }

// separate updates one partition, given the shared excess (NaN: nothing
// is separate).
func (p *Partition) separate(shared, others, widest, widestShare, groupNs float64, othersFell ownFall, backfill ownBackfill, dt float64, group bool, groupID uint64, limited, fresh bool) {
	o := &p.own
	if !limited && o.testing() {
		p.join() // no verdict, and none needed: nothing was judged
		return
	}
	lat := o.latencyNs()
	p.rampOut(lat, dt, limited)
	// A queue of its own keeps its cap while no other partition is
	// measured (the others hang, or went quiet): its bottleneck is still
	// its own, and the shared limit, which no longer sees the others,
	// would let it fill. So does one that hangs itself (unanswered): its
	// cap holds its hung requests to fewer slots than the bulkhead's
	// quarter. One answered but too seldom to be measured (a low rate)
	// cannot run its cap, and goes as before.
	ownCap := o.separate && o.phase == ownQueue && !math.IsNaN(o.baseNs) && (!math.IsNaN(lat) || p.unanswered.Load())
	if (math.IsNaN(shared) && !ownCap) || math.IsNaN(o.baseNs) {
		if o.testing() {
			p.endTest()
		} else {
			p.join()
		}
		return
	}
	if math.IsNaN(lat) && o.testing() && o.elapsed >= o.window && o.testN >= ownMinSamples {
		lat = o.testSumNs / o.testN // a low-rate API: the answers of the whole test
	}
	own := lat - o.baseNs - shared
	if math.IsNaN(lat) {
		// Too few answers to measure. A separated partition stays so; a
		// test waits for answers to judge by, up to twice its length,
		// and then ends with no verdict, which counts as a queue.
		if o.testing() {
			if o.elapsed += dt; o.elapsed >= 2*o.window {
				p.endTest()
			}
		} else if o.separate && o.phase == ownQueue && o.capSlots < ownMinInFlight && p.capHeld() {
			// Held back at fewer slots than any test begins with, and
			// too few answers to measure: the cap grows as when it
			// holds requests back under a queue that has gone (ownQueue),
			// until they can be measured.
			o.growCap(dt)
			p.publishCap()
		}
		return
	}
	if o.holdoff > 0 {
		// A test found a queue of its own: the shared limit's to drain.
		// Another test waits, ten seconds after the first such verdict
		// and twice as long after each one that follows it.
		wait := o.holdoff - dt
		if !o.changed(own) {
			o.holdoff = wait
			return
		}
		// A new excess may be tested now; the wait goes on if no test
		// begins this tick.
		o.holdoff = 0
		defer func() {
			if !o.testing() && !o.separate {
				o.holdoff = max(o.holdoff, wait)
			}
		}()
	}
	o.measured += dt
	if !o.separate {
		if own < 0.25*o.baseNs {
			o.queues = 0 // the excess is gone: the next verdict is a first
		}
		member := group && o.member(shared, lat, groupNs)
		if !limited || !fresh || (!o.due(shared, 0.5) && !member) {
			return
		}
		if o.inFlightNow < ownMinInFlight || p.aheadOfAnswers() {
			return
		}
		o.separate = true
		p.capRefused.Store(0)
		o.test(o.inFlightNow, own, lat)
		p.publishCap()
	}
	o.elapsed += dt
	switch o.phase {
	case ownTesting:
		// ref is the highest own excess of the test: one that began
		// while the excess was still rising is judged against its peak.
		o.ref = math.Max(o.ref, own)
		if o.elapsed < o.window {
			break
		}
		// Halving the requests in flight leaves a slower dependency's
		// latency, and a queue's falls. Anything else is a queue too: a
		// dependency is judged slower only on clear evidence, and only
		// if its requests were held back (the cap, or the shared limit
		// where it bound first, refused a tenth of the demand it had):
		// clients that went away prove nothing.
		//
		// A queue the halving drained by 30 % or more, in a test of this
		// partition alone, while no other partition's excess fell by a
		// third as much (or a tenth) with it, is the partition's own: a
		// bottleneck that no other crosses. Nor by a third of its fall in
		// milliseconds: random-3615's api3 (2 ms) and api4 (62 ms) share a
		// service, a test of api3 drained 2 of its 3.6 ms, and api4's
		// excess fell by 3.9 ms with it, a sixteenth of api4's baseline;
		// read as api3's own, its queue held api3 to 0.53 of its share
		// under a cap while api4 took the room (ownFall). And by three
		// standard errors of the partition's mean: a fall measured from
		// the test's highest excess is a fall from a high draw of the
		// noise, and a spread API's excess over a baseline learned from
		// a few lucky first answers is mostly noise. random-4063's api1
		// (σ 0.73) showed 15–20 ms over a baseline 0.7 of its mean at
		// half load; a test's fall of 9 ms, under three of its 3–4 ms
		// standard errors, kept it under a cap of its own for the whole
		// run, at 0.35–0.7 of its share while the others took the room.
		// Nor where another partition's excess rose during the test by a
		// third of that fall (and three of its standard errors): it took
		// the slots the cap freed and waits in the same queue, and a fall
		// of the tested one from a high of its excess is its return to
		// the usual (random-20's api1 and api2 at one service: a cap of
		// api1's own held it to 0.64 of its share while api2 took 1.14).
		// The excesses are over the baselines, not the shared excess: the
		// others may take the room the cap leaves at a bottleneck they
		// share, and raise the shared excess by what this one's excess
		// keeps.
		// The shared limit cannot drain it without cutting every API; the
		// cap can. It stays, as the partition's own limit. Where another's
		// excess fell too, they share the bottleneck (this one visits it
		// more often, or is its largest user): its queue is the shared
		// limit's, which holds them all.
		//
		// The slots the cap frees go to the others. If the APIs that
		// showed a queue beyond the shared one when the test began took
		// more than a quarter of them, and one of them now shows a
		// queue that four visits would make this one's own excess, it
		// may cross the same bottleneck and have filled its queue back:
		// a latency that stayed proves nothing, and the test ends as a
		// queue's does (ownBackfill). On random-11's surge, api2 took
		// 8.5 of the 17 slots a test of api1 freed at the service both
		// cross, and api1's queue read as a slower dependency: its
		// latency left the limit's signal, and the limit grew
		// threefold. A watched API whose count rose by chance, its
		// queue a tenth of the tested one's own excess, does not stop
		// a verdict of slower dependency (random-909's slow-api).
		held := o.heldBack(float64(p.capRefused.Load()), o.elapsed)
		fell := 1 - (lat-o.baseNs)/o.atTest
		switch {
		case groupID == 0 && held && own >= 0.8*o.ref && !backfill.explains(own, o.freed, shared, o.baseNs, o.followsShared()):
			o.phase, o.ref, o.queues, o.proven, o.under = ownSlower, own, 0, 0, 0
		case groupID != 0,
			held && o.solo && fell >= 0.3 && fell*o.atTest > 3*o.errorNs() && othersFell.share < math.Max(0.1, fell/3) && othersFell.ns < fell*o.atTest/3 &&
				othersFell.riseNs < fell*o.atTest/3:
			group := uint64(0)
			if !o.solo {
				group = groupID
			}
			o.enterQueue(float64(p.capHits.Load()), group)
		default:
			p.endTest()
			return
		}
	case ownSlower:
		recovered := o.recovered(own, dt)
		switch {
		case !(own > 0.25*o.baseNs && own > 0.5*shared), recovered:
			// The dependency is fast again, or everyone is slow, or what
			// is left is not what the test found.
			p.join()
			return
		case p.queuesAhead(dt) && own > o.ref: // counted every tick
			p.join()
			return
		case own > 2*o.ref && limited && !p.aheadOfAnswers():
			o.proven = o.ref
			p.capRefused.Store(0)
			o.test(p.inFlightOf(lat), own, lat)
		}
	case ownQueue:
		if !p.ownQueue(lat-o.baseNs-others, lat, widest, widestShare, dt) {
			return
		}
	}
	p.publishCap()
	// A slower dependency's own latency is what its test found, with room
	// for its spread: what a request takes beyond ownSlowerBound times
	// that is a queue again, the shared limit's to see, until a re-test
	// (at twice the excess) says otherwise. A bound is stored before the
	// ceiling it bounds and cleared after the ceiling it no longer
	// bounds, so that a request released between the two stores never
	// finds a ceiling without its bound.
	var ceiling, most float64 // most 0: no bound
	switch {
	case o.phase == ownQueue:
		ceiling = o.baseNs + math.Max(others, 0)
	case o.phase == ownSlower:
		ceiling, most = o.baseNs+math.Max(shared, 0), slowerBound(o.ref)
	case o.proven > 0:
		ceiling, most = o.baseNs+math.Max(shared, 0), slowerBound(o.proven)
	default:
		// ceiling 0: a queue of its own is the shared limit's until a
		// test says otherwise
	}
	if most > 0 {
		p.ownMaxNs.Store(int64(most))
		p.ceilingNs.Store(int64(ceiling))
	} else {
		p.ceilingNs.Store(int64(ceiling))
		p.ownMaxNs.Store(0)
	}
}

// slowerBound is the bound on a slower dependency's own latency, in ns,
// given the own excess its test found: ownSlowerBound times it, at least
// 1 ns (an excess that is not a number bounds at 1 ns: none of it is
// left out).
func slowerBound(excessNs float64) float64 {
	if b := ownSlowerBound * excessNs; b >= 1 {
		return b
	}
	return 1
}

// ownSlowerBound bounds a slower dependency's own latency, a request's
// beyond its baseline and the shared excess, at that many times the own
// excess its test found (ReleaseAfter). Unbounded, the queue that formed
// behind the dependency's requests was left out of the shared latency
// too: random-4730's slow service (a bounded service crossed by three of
// four APIs doubled its call times) read as three slower dependencies,
// and the shared limit, seeing none of the queue, grew from 25 to 315 in
// four seconds, answers 1.5 s late (p99s 3.5, 5.4 and 4.7 × their SLOs
// over the steady half; within them with the bound). Bounded at the
// excess itself, the spread of a slower dependency's own times read as a
// queue (slow-api cells at 0.66–0.83 of proportional).
const ownSlowerBound = 2

// ownQueue runs one tick of a partition's own limit, given its own excess
// and its mean latency lat: the cap is cut while the excess is over half
// the baseline it is judged by (tolBaseNs; and three standard errors),
// once a second or once a latency, whichever is longer, so that each cut
// shows before the next; else it grows while it holds back requests. Cuts
// in a row that halve the cap (for a member of a group test, the group's
// room: o.slots) and leave the excess within 0.8 of where they began do
// not drain a queue: where no other partition's excess over its baseline
// (widest, the largest) is a quarter of it, nor, where this one's excess
// has moved with the shared one (followsShared), is half of this one's
// as a share of each one's baseline (widestShare, the largest such
// share; sharingSlack), and the partition's answers a
// second fell with the cap, the excess is an own dependency's time, which
// the cap learns (extraNs) before it goes back to where the cuts began;
// else the partition joins, and waits as after a test that found a queue.
// Once it has held nothing back and its queue has not shown for ownHoldoff
// seconds, the bottleneck has room again (the demand fell, or its capacity
// came back), and the partition joins the shared limit; it reports whether
// it did not.
func (p *Partition) ownQueue(own, lat, widest, widestShare, dt float64) bool {
	o := &p.own
	// The dependency's learned time follows a faster one down at once (to
	// what two standard errors allow), and decays over ownHoldoff: the
	// requests the cap lets in once the dependency is fast again queue
	// at the bottleneck as fast as the mean latency falls, and that queue
	// would pass for the learned time. A dependency still slow shows its
	// time as an excess again, and the cuts learn it again.
	o.extraNs *= math.Exp(-dt / ownHoldoff)
	if own < o.extraNs {
		o.extraNs = math.Max(0, math.Min(o.extraNs, own+2*o.errorNs()))
	}
	own -= o.extraNs
	held := p.capHeld()
	o.sinceCut += dt
	over := own > 0.5*o.tolBaseNs && own > 3*o.errorNs()
	if o.groupOver != 0 {
		over = o.groupOver > 0 // the group's queue, read as one (Separate)
	}
	switch {
	case over:
		o.quiet = 0
		if o.sinceCut < math.Max(ownWindow, lat/1e9) {
			break
		}
		if o.streakCap == 0 {
			o.streakCap, o.streakSlots, o.streakOwn, o.streakRate, o.streakMembers = o.capSlots, o.slots, own, o.n, o.members
		}
		next := o.capSlots * ownQueueCut
		if o.slots*ownQueueCut < o.streakSlots/2 {
			if own > 0.8*o.streakOwn {
				// Cuts in a row halved the cap and the excess stays: the
				// latency does not follow the cap. Where no other
				// partition shows a quarter of that excess over its
				// baseline (widest), nor, where its excess moved with
				// the shared one, the same slowdown within sharingSlack
				// (widestShare), and the partition's answers a
				// second fell with the cap (to under ownRateFell of
				// where the cuts began: at a constant latency, Little's
				// law; a deep queue still draining keeps its saturated
				// bottleneck's rate), it is
				// this partition's alone: a dependency only it calls
				// slowed (its time holds no worker at the bottleneck,
				// which is still its own). The cap learns that time as
				// part of the latency without a queue (extraNs) and goes
				// back to where the cuts began. Handed to the shared
				// limit, the slower answers read as a queue of every
				// API: random-2608's slow-api (its api1 alone crosses a
				// 10-worker service, then waits 330 ms more on its own
				// dependency) cut the shared limit from 33 to 4 for
				// 15 s, and the other three APIs kept 0.03 of their
				// goodput. Without the rate's test, random-2710's surge
				// took a queue of 80 that four cuts had not drained for
				// 400 ms of dependency, and held it (p99 7 × the SLO).
				if widest < 0.25*own && !(o.followsShared() && sharingSlack*widestShare*o.baseNs >= own) && o.n <= ownRateFell*o.streakRate {
					o.extraNs += own
					o.capSlots, o.sinceCut, o.streakCap = o.streakCap, 0, 0
					return true
				}
				// Else the queue is no longer (or not only) its own: a
				// bottleneck others cross binds now (a capacity drop, a
				// shift of the mix). The shared limit takes it back, as
				// after a test that found no clear answer, the excess the
				// cuts saw being what the wait is about (changed).
				o.ref = math.Max(own, o.streakOwn)
				p.endTest()
				return false
			}
			o.streakCap, o.streakSlots, o.streakOwn, o.streakRate, o.streakMembers = o.capSlots, o.slots, own, o.n, o.members
		}
		o.capSlots, o.sinceCut, o.cut = math.Max(1, next), 0, true
	case held:
		o.quiet = 0
		o.growCap(dt)
		o.streakCap = 0
	default:
		o.streakCap = 0
		if o.quiet += dt; o.quiet >= ownHoldoff {
			p.join()
			o.quietDrop = true
			o.queues = 0
			return false
		}
	}
	return true
}

// inFlightOf is the partition's requests in flight, given its mean
// latency lat: Little's law's count, or the requests in flight now if
// more.
func (p *Partition) inFlightOf(lat float64) float64 {
	return math.Max(float64(p.InFlight()), p.own.littleAt(lat))
}

// aheadOfAnswers reports whether the partition holds more requests in
// flight than ownAhead times what its answers account for (Little's law
// on its last second), and more than that count by three of its Poisson
// deviations (its square root: a few answers a second put one or two in
// flight over twice their count by chance, and many-apis' thirty APIs
// went untested): its queue is still filling, and the latency its
// answers show lags what the requests in flight will wait. A test begun
// then compares the latency under its cap with a latency of fewer in
// flight than the cap leaves, and reads a queue as a slower dependency:
// random-4218's api1 (4 workers, 60 ms) held 23 at a surge's onset while
// its answers accounted for 7; halved to 11, its latency rose from 94 to
// 113 ms, the verdict let it fill the limit, and its queue reached the
// client timeout.
func (p *Partition) aheadOfAnswers() bool {
	little := p.own.little()
	return float64(p.InFlight())-little > math.Max((ownAhead-1)*little, 3*math.Sqrt(little))
}

// queuesAhead reports whether the partition has held more in flight than
// its answers account for (aheadOfAnswers) for longer than a slower
// dependency's would, given dt since the last call, while its answers a
// second did not rise. A dependency that slows in a step holds its new
// latency's worth in flight while the mean of its answers still shows
// the old one: the requests in flight when that began are answered within
// the new latency, and twice as many answers later the mean holds that
// latency. One whose requests are let in faster and faster (the shared
// limit grows once its latency is its own) stays ahead as long as that
// lasts, and its answers come faster with it. A queue stays ahead for as
// long as it grows, however many it answers, and its answers come at its
// bottleneck's rate: each answer's latency is what the queue was when it
// came. At least ownWindow, the mean's own lag.
func (p *Partition) queuesAhead(dt float64) bool {
	o := &p.own
	if !p.aheadOfAnswers() {
		o.aheadFor = 0
		return false
	}
	if o.aheadFor == 0 {
		o.aheadMark, o.aheadFrom, o.aheadRate = o.answers, float64(p.InFlight()), o.n
	}
	o.aheadFor += dt
	return o.aheadFor >= ownWindow && o.answers-o.aheadMark >= 2*o.aheadFrom &&
		o.n <= o.aheadRate+3*math.Sqrt(o.aheadRate)
}

// capHeld reports whether the cap refused requests since the last call
// (capHits over hits, which it then takes).
func (p *Partition) capHeld() bool {
	hits := float64(p.capHits.Load())
	held := hits > p.own.hits
	p.own.hits = hits
	return held
}

// changed reports whether a partition waiting after a test (holdoff)
// shows an own excess that is no longer what the test judged: over
// ownHoldoffBreak times the highest the test saw (ref; for an own queue
// handed back, the most its last cuts saw), by its baseline and three
// standard errors of its mean at least. The wait keeps a test from
// judging the same queue again; a dependency that slowed since is a new
// question. Under a service whose workers every call shares, costly APIs
// show the shared slowdown as an excess of their own, tests of them end
// with no verdict, and the waits doubled to 40 s: multi-bottleneck's
// report, whose own dependency then slowed by 500 ms, waited out its
// holdoff with its slow requests filling the shared limit, cut to 4, and
// the others kept 0.03–0.07 of proportional for 20 s.
func (o *ownState) changed(own float64) bool {
	return own > ownHoldoffBreak*o.ref && own > o.baseNs && own > 3*o.errorNs()
}

// ownHoldoffBreak: see changed.
const ownHoldoffBreak = 4

// growCap grows an own queue's cap over dt seconds while it holds
// requests back: by ownQueueGrow of it a second, at least a slot.
func (o *ownState) growCap(dt float64) { o.capSlots += dt * math.Max(1, ownQueueGrow*o.capSlots) }

// ownAhead: see aheadOfAnswers.
const ownAhead = 2

// test starts halving a separate partition's concurrency, for the longer
// of three seconds and three of its latencies (lat, in ns): the requests
// admitted before the cut must finish, and the rest show what it did.
func (o *ownState) test(inFlight, own, lat float64) {
	o.phase, o.elapsed, o.ref, o.refRate, o.started, o.aligned = ownTesting, 0, own, o.n/ownWindow, true, false
	o.testN, o.testSumNs, o.cutNs, o.moved = 0, 0, lat, false
	o.window = math.Max(3*ownWindow, 3*lat/1e9)
	o.capSlots = math.Max(1, math.Floor(inFlight/2))
}

// endTest ends a test that found no slower dependency: the excess is the
// shared limit's, and the partition waits before another test.
func (p *Partition) endTest() {
	o := &p.own
	o.holdoff = min(ownHoldoff*math.Pow(2, o.queues), ownBaseWindow/2)
	o.queues++
	capSlots := o.capSlots
	p.join()
	if capSlots < 1 {
		return
	}
	// The cap goes the way slow start comes: doubling, while it still
	// holds requests back. Dropped at once, it let in at one go the
	// demand it held, into the room the shared limit had grown into
	// while the test drained the queue (the others took the slots the
	// cap freed): repeat-visits' feed and report, capped at 6 and 3 in
	// a test, came back into a limit grown from 18 to 44, their
	// bottleneck's queue went from 3 to 20 ms within a tick, and the
	// second after each test held feed's p99 at 2.8 × its SLO.
	o.rampCap, o.rampMark, o.rampLeft = capSlots, capSlots, ownRampDoublings
	o.rampHits = float64(p.capHits.Load())
	p.capSlots.Store(int64(capSlots))
}

// rampOut grows a test's cap on its way out (endTest), doubling over
// the longer of ownRampDouble and the partition's latency lat (in ns),
// and drops it once it doubled without holding anything back since the
// last doubling, after ownRampDoublings, or where the partition is
// separate again or the limit unlimited.
func (p *Partition) rampOut(lat, dt float64, limited bool) {
	o := &p.own
	if o.rampCap == 0 {
		return
	}
	if o.separate {
		o.rampCap = 0 // tested again: the test's cap is in force
		return
	}
	if !limited {
		p.join()
		return
	}
	double := ownRampDouble
	if lat/1e9 > double { // false for NaN: too few answers to measure
		double = lat / 1e9
	}
	o.rampCap *= math.Exp2(dt / double)
	if o.rampCap < 2*o.rampMark {
		p.capSlots.Store(int64(o.rampCap))
		return
	}
	hits := float64(p.capHits.Load())
	held := hits > o.rampHits
	o.rampMark, o.rampHits = o.rampCap, hits
	if o.rampLeft--; !held || o.rampLeft == 0 {
		o.rampCap, o.quietDrop = 0, !held
		p.capSlots.Store(0)
		return
	}
	p.capSlots.Store(int64(o.rampCap))
}

// heldBack reports whether a test elapsed seconds long held back the
// partition's demand (refused requests, at its cap or at the limit) by a
// tenth of the rate it had when it began, with its excess a quarter of
// its baseline at the test's highest, and no other cap let its demand in
// meanwhile (moved): clients that went away prove nothing.
func (o *ownState) heldBack(refused, elapsed float64) bool {
	return o.ref > 0.25*o.baseNs && refused >= 0.1*o.refRate*elapsed && !o.moved
}

// testing reports whether a test of the partition is under way.
func (o *ownState) testing() bool { return o.separate && o.phase == ownTesting }

// publishCap publishes the partition's cap (0: none).
func (p *Partition) publishCap() {
	o := &p.own
	if o.phase == ownSlower || !o.separate {
		p.capSlots.Store(0)
		return
	}
	p.capSlots.Store(int64(math.Max(1, o.capSlots+o.dither)))
}

// ditherStep is the fraction of the golden ratio, the step of a cap's
// dither (publishCap): its multiples modulo 1 spread the most evenly of
// any step's over [0, 1).
const ditherStep = 0.6180339887498949

// join ends a partition's separation: no cap (nor one on its way out),
// no own latency.
func (p *Partition) join() {
	p.own.separate, p.own.proven, p.own.rampCap, p.own.aheadFor = false, 0, 0, 0
	p.capSlots.Store(0)
	p.ceilingNs.Store(0)
	p.ownMaxNs.Store(0)
}

// Separated reports whether the last Separate found the partition's
// latency beyond its baseline its own (a slower dependency, or a queue
// of its own under its cap), and the cap on its requests in flight (0:
// none; a test's while one runs, an own queue's while it lasts).
func (p *Partition) Separated() (separate bool, capSlots int64) {
	return p.ceilingNs.Load() > 0, p.capSlots.Load()
}

// queueBeyond reports whether the partition's excess over its baseline is
// over the shared excess by three standard errors of its mean.
func (o *ownState) queueBeyond(shared float64) bool {
	lat := o.latencyNs()
	return !math.IsNaN(shared) && lat-o.baseNs > math.Max(shared, 0)+3*o.errorNs()
}

// little is the partition's requests in flight by Little's law, over the
// last second or so (0 with too few measured).
func (o *ownState) little() float64 {
	lat := o.latencyNs()
	if math.IsNaN(lat) {
		return 0
	}
	return o.littleAt(lat)
}

// littleAt is the partition's requests in flight by Little's law at a
// mean latency of lat ns: its throughput over the last second or so times
// lat.
func (o *ownState) littleAt(lat float64) float64 { return o.n / ownWindow * lat / 1e9 }

// ownFall is how far the excesses of the partitions not under test fell
// during a test, at most: as a share of their highest (share), and in
// nanoseconds (ns), where the fall and the highest are over three
// standard errors; and in nanoseconds whatever their errors and highest
// excesses (rawNs); and the most any of them rose over its excess when
// the test began, where the rise is over three standard errors (riseNs).
// A solo test is judged by share, ns and riseNs, a group's by share,
// rawNs and ns.
type ownFall struct{ share, ns, rawNs, riseNs float64 }

// backfillShare is the most of the slots a test's cap frees that the
// partitions watched when it began may take for a verdict of slower
// dependency (Separate).
const backfillShare = 0.25

// sharingSlack is how far another partition's slowdown may fall short of
// a tested one's and still explain it. A queue at a FIFO bottleneck costs
// every request that waits in it the same milliseconds, once a visit; a
// service whose workers every call in it shares (a Go service's
// goroutines its cores, a database's queries its CPUs) slows every call
// by the same factor instead, so that an API twenty times costlier shows
// twenty times the excess, which, read in milliseconds, is its own. As a
// share of each one's baseline the excesses are alike there, up to what
// the other's baseline holds that the service does not slow (a cheap
// API's own handler), and the costly calls, which last through the
// bursts when calls outnumber the workers, may see more of them (as
// hetero-cost's ramp was tested, report's calls read 2.09 times their
// time alone and lookup's 1.81): hence twice.
// On hetero-cost with a sharing database (40 ms and 2 ms calls, 8
// workers), a test of the costly API freed slots the cheap one took, and
// each excess stayed (the cheap one's 2.6 ms over its 3, the costly
// one's 44 ms over its 40): read in milliseconds, a slower dependency,
// whose latency left the shared signal, and the costly API's p99 went to
// 1.03 × its SLO at steady; on the ramp, cuts of a cap of its own that left the excess
// where it was read as a dependency of its own, and it kept 0.27 of its
// share. In FIFO order a cheap API's few milliseconds of queue are a
// large share of its baseline, and read so they explain a costly API's
// own dependency: random-2608's slow API (330 ms more on api1's own
// dependency, over a 76 ms baseline) was no longer learned as its own
// while another API waited 10 ms over its 4, and the others kept 0.70 of
// their shares where they had kept 0.95. What tells the two apart is
// whether the costly API's excess moved with the shared one before
// (followsShared): under sharing it does, by the cost ratio (hetero-cost's
// report by 16–18 times, correlated at 0.6–0.99); a dependency of its own
// does not (api1's correlation under 0.3 once it slowed), and in FIFO
// order an API that waits in the shared queue follows it one for one.
// docs/simulator.md, "A sharing service's slowdown".
const sharingSlack = 2

// ownBackfill is what the partitions watched since the last test began
// (Separate) took meanwhile: the requests in flight they gained, and the
// largest excess over its baseline among them, now; and all, the requests
// in flight that the partitions measured then and not separated now
// gained, net, with gained the sum of those of them that gained,
// gainedNs the sum of each one's gain times its excess now, and
// gainedShare the same with each excess as a share of its baseline.
type ownBackfill struct{ slots, excessNs, all, gained, gainedNs, gainedShare float64 }

// explains reports whether the backfill may have held a tested
// partition's own excess own where it was, when its cap freed freed
// slots: the watched took more than backfillShare of them, and one of
// them shows a queue that a chain of up to four visits to it makes own
// (as a group test's members); or all the partitions measured took more
// than backfillShare of them, and four visits to the shared queue (the
// shared excess, shared, or the mean excess of those that gained,
// weighted by their gains, if larger) make own, or, where the tested
// partition's excess followed the shared one (follows), the mean excess
// of those that gained as a share of each one's baseline, times
// sharingSlack and the tested partition's baseline base, does.
func (b ownBackfill) explains(own, freed, shared, base float64, follows bool) bool {
	queue := shared
	if takers := b.gainedNs / b.gained; takers > queue || math.IsNaN(queue) {
		queue = takers // NaN with no gain: no queue
	}
	return b.slots > backfillShare*freed && 4*b.excessNs >= own ||
		b.all > backfillShare*freed && (4*queue >= own || follows && sharingSlack*b.gainedShare/b.gained*base >= own)
}

// ownFollowHorizon is the horizon, in seconds, of the moments follows
// reads: long enough to hold several of the shared limit's cuts and
// regrowths, which move the shared excess, and short enough that an
// excess that stopped following it shows within a test's holdoff.
const ownFollowHorizon = 10.0

// follow adds one tick's shared excess x and the partition's excess y to
// their moments, weighted a against the past.
func (o *ownState) follow(x, y, a float64) {
	o.fw += a * (1 - o.fw)
	o.fx += a * (x - o.fx)
	o.fy += a * (y - o.fy)
	o.fxx += a * (x*x - o.fxx)
	o.fyy += a * (y*y - o.fyy)
	o.fxy += a * (x*y - o.fxy)
}

// follows is the slope of the partition's excess on the shared one over
// the last ownFollowHorizon seconds, and their correlation (NaN: too few
// measured).
func (o *ownState) follows() (slope, r float64) {
	if o.fw < 0.5 {
		return math.NaN(), math.NaN()
	}
	mx, my := o.fx/o.fw, o.fy/o.fw
	vx, vy := o.fxx/o.fw-mx*mx, o.fyy/o.fw-my*my
	cv := o.fxy/o.fw - mx*my
	if !(vx > 0) || !(vy > 0) {
		return math.NaN(), math.NaN()
	}
	return cv / vx, cv / math.Sqrt(vx*vy)
}

// followsShared reports whether the partition's excess has moved with the
// shared one over the last ownFollowHorizon seconds (a correlation of a
// half or more), by half again what one visit to its queue would (a
// slope over 1.5; an API that waits in it once reads 0.9–1.1): it pays
// the shared queue as a factor of its cost, as at a service whose
// workers its calls share (sharingSlack), or visits it more than once.
func (o *ownState) followsShared() bool {
	b, r := o.follows()
	return r >= 0.5 && b > 1.5
}

// ownRecovered is how long, in seconds, a slower dependency's own excess
// must stay under half of what its test found before it rejoins: an
// excess that dips there for a moment (a dependency slow by spells, or
// the queue a test's cap let drain) is still what the test found. At
// once, random-4153's slow dependency and cold start rejoined 0.6 s
// sooner, were tested again at other moments, and fell from 0.84 of
// proportional to 0.80 and 0.82.
const ownRecovered = 2.0

// recovered reports whether a slower dependency's own excess own has
// been under half of what its test found for ownRecovered seconds.
func (o *ownState) recovered(own, dt float64) bool {
	if own < 0.5*o.ref {
		o.under += dt
	} else {
		o.under = 0
	}
	return o.under >= ownRecovered
}
