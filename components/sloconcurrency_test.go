package components_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestSLOConcurrencyController(t *testing.T) {
	nan := components.Invalid
	// sp builds the inputs of the setpoint-only path (no rtt, no
	// completions: every tick is a window): latency_ms, setpoint_ms,
	// in_flight, oldest_in_flight_ms.
	sp := func(latency, setpoint, inFlight, oldest float64) []float64 {
		return []float64{latency, setpoint, inFlight, oldest, nan, nan, nan, nan, nan, nan}
	}
	// in builds every input: latency_ms, setpoint_ms, in_flight,
	// oldest_in_flight_ms, rtt_ms, completed_rps.
	in := func(latency, setpoint, inFlight, oldest, rtt, completed float64) []float64 {
		return []float64{latency, setpoint, inFlight, oldest, rtt, completed, nan, nan, nan, nan}
	}
	// want builds the outputs: limit, is_overload, baseline_ms.
	want := func(limit, overload, baseline float64) []float64 { return []float64{limit, overload, baseline} }
	// The baseline's average over 600 s at 100 ms ticks: α = 2/(6000+1).
	up := 2.0 / 6001
	l3 := 15 + math.Sqrt(20) + math.Sqrt(15+math.Sqrt(20))
	// Eleven windows of 20 ms that the limit did not constrain: the first
	// is no sample, the next ten are the baseline's first.
	warm11 := []tickIO{{in(20, nan, 0, 0, 20, nan), want(10, 0, nan)}}
	for i := 0; i < 10; i++ {
		warm11 = append(warm11, tickIO{in(20, nan, 0, 0, 20, nan), want(10, 0, 20)})
	}
	// A baseline of 250 ms past its warm-up, and a limit of 20 that slow
	// start doubled at the end of a window of one round trip: 1000
	// completions/s, 100 a tick, so every tick has enough. The first
	// window is no sample; the next ten each last one tick, though the
	// baseline they teach is 250 ms.
	roundTrip250 := []tickIO{{in(250, nan, 0, 0, 250, 1000), want(10, 0, nan)}}
	for i := 0; i < 10; i++ {
		roundTrip250 = append(roundTrip250, tickIO{in(250, nan, 0, 0, 250, 1000), want(10, 0, 250)})
	}
	roundTrip250 = append(roundTrip250,
		// 100 and 200 ms < 250 ms: the window holds.
		tickIO{in(250, nan, 9, 0, 250, 1000), want(10, 0, 250)},
		tickIO{in(250, nan, 9, 0, 250, 1000), want(10, 0, 250)},
		// 300 ms: it closes; it bound, slow start doubles.
		tickIO{in(250, nan, 9, 0, 250, 1000), want(20, 0, 250)},
	)
	b11 := 20 + up*(25-20)
	b12 := b11 + up*(5-b11)
	b13 := b12 + up*(15-b12)
	b14 := b13 + up*(5-b13)
	b15 := b14 + up*(5-b14)
	b16 := (b15 + up*(5-b15)) * 0.95
	b17 := (b16 + up*(5-b16)) * 0.95
	c12 := 20 + up*(5-20)
	c13 := c12 + up*(5-c12)
	lq := 10*math.Max(0.5, 1.5*c13/40) + math.Sqrt(10)
	c14 := c13 + up*(5-c13)
	c15 := c14 + up*(5-c14)
	c16 := c15 + up*(5-c15)
	c17 := c16 + up*(5-c16)
	c18 := (c17 + up*(5-c17)) * 0.95
	for _, tc := range []struct {
		name   string
		params string
		ticks  []tickIO
	}{
		{
			name: "slow start doubles a binding limit until the first overload, then cuts by setpoint/latency and adds √limit",
			ticks: []tickIO{
				{sp(20, 100, 9, 0), want(20, 0, nan)},   // 9 ≥ 0.8·10: binding, 10·2
				{sp(30, 100, 16, 0), want(40, 0, nan)},  // 16 ≥ 0.8·20
				{sp(200, 100, 40, 0), want(20, 1, nan)}, // 40·100/200, slow start ends
				{sp(50, 100, 20, 0), want(20+math.Sqrt(20), 0, nan)},
				{sp(50, 100, 24, 0), want(20+math.Sqrt(20)+math.Sqrt(20+math.Sqrt(20)), 0, nan)},
			},
		},
		{
			name: "a limit the traffic does not reach holds",
			ticks: []tickIO{
				{sp(20, 100, 7, 0), want(10, 0, nan)}, // 7 < 0.8·10
				{sp(20, 100, 0, 0), want(10, 0, nan)},
				{sp(nan, 100, 0, 0), want(10, 0, nan)}, // idle: nothing completed
			},
		},
		{
			name: "an overload cuts what the traffic used, floored at min_gradient and min_limit",
			ticks: []tickIO{
				{sp(1000, 100, 10, 0), want(5, 1, nan)},
				{sp(1000, 100, 5, 0), want(2.5, 1, nan)},
				{sp(1000, 100, 2, 0), want(1, 1, nan)}, // min(2.5, 2)·0.5
				{sp(1000, 100, 1, 0), want(1, 1, nan)},
			},
		},
		{
			name: "with nothing completed, the oldest request in flight stands in for the latency",
			ticks: []tickIO{
				{sp(nan, 100, 10, 400), want(5, 1, nan)},            // stalled: 10·max(0.5, 100/400)
				{sp(nan, 100, 5, 50), want(5+math.Sqrt(5), 0, nan)}, // young ones, binding: √limit more
			},
		},
		{
			name:   "parameters",
			params: `{"initial_limit":100,"max_limit":150,"slow_start_factor":1.2,"utilization":0.5,"min_gradient":0.9}`,
			ticks: []tickIO{
				{sp(10, 100, 50, 0), want(120, 0, nan)},
				{sp(10, 100, 60, 0), want(144, 0, nan)},
				{sp(10, 100, 72, 0), want(150, 0, nan)},   // capped at max_limit
				{sp(500, 100, 150, 0), want(135, 1, nan)}, // gradient floored at 0.9
			},
		},
		{
			// deep-chain: a baseline mostly of time no queue adds to, and
			// a bottleneck with hundreds in flight.
			name:   "with many in flight, a queue of more than 4·√base requests is queueing within the tolerance",
			params: `{"initial_limit":400}`,
			ticks: []tickIO{
				{in(20, nan, 380, 0, 20, nan), want(400, 0, nan)},
				{in(20, nan, 380, 0, 20, nan), want(400, 0, 20)},
				// 26 < 1.5·20, but over max(1.25, 1 + 4/√400)·20 = 25:
				// about 400·(1 − 20/26) = 92 requests wait, more than
				// 4·√400.
				{in(26, nan, 400, 0, 26, nan), want(400*1.25*20/26+20, 1, 20)},
				// 24 ≤ 25: no queueing, and slow start is over: +√limit.
				{in(24, nan, 400, 0, 24, nan), want(400*1.25*20/26+20+math.Sqrt(400*1.25*20/26+20), 0, 20)},
			},
		},
		{
			name: "without a setpoint or an rtt, a binding limit grows",
			ticks: []tickIO{
				{sp(500, nan, 10, 0), want(20, 0, nan)},
				{sp(500, 0, 20, 0), want(40, 0, nan)},
			},
		},
		{
			name: "queueing over the baseline cuts by tolerance·baseline/rtt plus √base; the baseline is the lowest rtt of the windows after the first",
			ticks: []tickIO{
				// The first window reads low and is no sample; slow start
				// holds the initial limit until the baseline has one.
				{in(20, nan, 9, 0, 8, nan), want(10, 0, nan)},
				{in(20, nan, 9, 0, 20, nan), want(10, 0, 20)},
				{in(20, nan, 9, 0, 20, nan), want(20, 0, 20)},
				// 40 > 1.5·20 while binding: 20·max(0.5, 30/40) + √20.
				{in(40, nan, 20, 0, 40, nan), want(15+math.Sqrt(20), 1, 20)},
				// 25 ≤ 1.5·20: no queueing; binding after slow start: +√limit.
				{in(25, nan, 19, 0, 25, nan), want(l3, 0, 20)},
				// Not binding: the limit holds, and a queue it did not let
				// in is not its doing.
				{in(90, nan, 2, 0, 90, nan), want(l3, 0, 20)},
				// A lower rtt is the new baseline.
				{in(12, nan, 2, 0, 12, nan), want(l3, 0, 12)},
			},
		},
		{
			name: "slow start holds while more is in flight than the answers account for and their rtt is over the baseline",
			ticks: []tickIO{
				// 1000 answers/s: every tick is a window. The first is no
				// sample; slow start holds the initial limit until the
				// baseline has one.
				{in(20, nan, 0, 0, 20, 1000), want(10, 0, nan)},
				{in(20, nan, 9, 0, 20, 1000), want(10, 0, 20)},
				// Little's law: 1000/s × 20 ms = 20 in flight accounted
				// for; 9, 18 and 36 are under twice that.
				{in(20, nan, 9, 0, 20, 1000), want(20, 0, 20)},
				{in(20, nan, 18, 0, 20, 1000), want(40, 0, 20)},
				{in(20, nan, 36, 0, 20, 1000), want(80, 0, 20)},
				// 64 > 2 × 1000/s × 24 ms, and 24 ms > 20: hold.
				{in(24, nan, 64, 0, 24, 1000), want(80, 0, 20)},
				// 64 > 2 × 20 again, but the rtt is at the baseline: the
				// count alone does not hold.
				{in(20, nan, 64, 0, 20, 1000), want(160, 0, 20)},
			},
		},
		{
			name: "after its first 10 samples the baseline averages over baseline_window, skips queueing windows, and decays while twice the rtt for three windows in a row",
			ticks: slices.Concat(warm11, []tickIO{
				{in(40, nan, 10, 0, 40, nan), want(10*0.75+math.Sqrt(10), 1, 20)},
				{in(25, nan, 0, 0, 25, nan), want(10*0.75+math.Sqrt(10), 0, b11)},
				// Under half the baseline: averaged in, no decay yet.
				{in(5, nan, 0, 0, 5, nan), want(10*0.75+math.Sqrt(10), 0, b12)},
				// A window over half of it ends the run.
				{in(15, nan, 0, 0, 15, nan), want(10*0.75+math.Sqrt(10), 0, b13)},
				{in(5, nan, 0, 0, 5, nan), want(10*0.75+math.Sqrt(10), 0, b14)},
				{in(5, nan, 0, 0, 5, nan), want(10*0.75+math.Sqrt(10), 0, b15)},
				// The third in a row: 5 % off.
				{in(5, nan, 0, 0, 5, nan), want(10*0.75+math.Sqrt(10), 0, b16)},
				{in(5, nan, 0, 0, 5, nan), want(10*0.75+math.Sqrt(10), 0, b17)},
			}),
		},
		{
			name: "a queueing window, or one with no answer, ends a run of low windows",
			ticks: slices.Concat(warm11, []tickIO{
				{in(5, nan, 0, 0, 5, nan), want(10, 0, c12)},
				{in(5, nan, 0, 0, 5, nan), want(10, 0, c13)},
				// Binding and over 1.5·baseline: a cut, and the run ends
				// (the baseline skips a queueing window).
				{in(40, nan, 10, 0, 40, nan), want(lq, 1, c13)},
				{in(5, nan, 0, 0, 5, nan), want(lq, 0, c14)},
				{in(5, nan, 0, 0, 5, nan), want(lq, 0, c15)},
				// Nothing answered: no rtt, no window in a row.
				{in(nan, nan, 0, 0, nan, nan), want(lq, 0, c15)},
				{in(5, nan, 0, 0, 5, nan), want(lq, 0, c16)},
				{in(5, nan, 0, 0, 5, nan), want(lq, 0, c17)},
				// The third in a row since: 5 % off.
				{in(5, nan, 0, 0, 5, nan), want(lq, 0, c18)},
			}),
		},
		{
			name: "once the baseline is learned, a window with room ends slow start: a later surge grows the limit by √limit, not ×2",
			ticks: slices.Concat(warm11, []tickIO{
				{in(20, nan, 0, 0, 20, nan), want(10, 0, 20)},               // room, baseline learned: slow start ends
				{in(20, nan, 9, 0, 20, nan), want(10+math.Sqrt(10), 0, 20)}, // binding, no queue: +√10
			}),
		},
		{
			name:   "a window gathers min_samples completions before deciding",
			params: `{"initial_limit":10,"min_samples":20}`,
			ticks: []tickIO{
				// 50 req/s at 100 ms ticks: 5 completions a tick, 4 ticks.
				{in(10, nan, 9, 0, 10, 50), want(10, 0, nan)},
				// Closed: the first window, which is no sample, on a
				// turnover of the limit's 10 and ten answers (firstEnough).
				{in(10, nan, 3, 0, 20, 50), want(10, 0, nan)},
				{in(10, nan, 3, 0, 10, 50), want(10, 0, nan)},
				{in(10, nan, 3, 0, 20, 50), want(10, 0, nan)},
				{in(10, nan, 9, 0, 10, 50), want(10, 0, nan)},
				// Closed: it bound at its first tick, but slow start waits
				// for this first baseline sample, (10+20+10+20)/4.
				{in(10, nan, 3, 0, 20, 50), want(10, 0, 15)},
			},
		},
		{
			name: "past its warm-up, a window lasts one baseline rtt: a queue is cut once per round trip",
			ticks: slices.Concat(roundTrip250, []tickIO{
				// A queue: one cut after three ticks, not three cuts,
				// 20·max(0.5, 375/400) + √20.
				{in(400, nan, 20, 0, 400, 1000), want(20, 0, 250)},
				{in(400, nan, 20, 0, 400, 1000), want(20, 0, 250)},
				{in(400, nan, 20, 0, 400, 1000), want(20*375.0/400+math.Sqrt(20), 1, 250)},
			}),
		},
		{
			name: "a queueing window cuts from the most it held in flight at any of its ticks, not from its last tick's count",
			ticks: slices.Concat(roundTrip250, []tickIO{
				// A small limit's count swings from tick to tick (a
				// service of two workers behind a limit of four holds
				// 0 to 4): the window ends at a tick with 1 in flight,
				// but it held 20, and that is the concurrency its queue
				// came from: 20·max(0.5, 375/400) + √20, not 1·… + 1.
				{in(400, nan, 20, 0, 400, 1000), want(20, 0, 250)},
				{in(400, nan, 6, 0, 400, 1000), want(20, 0, 250)},
				{in(400, nan, 1, 0, 400, 1000), want(20*375.0/400+math.Sqrt(20), 1, 250)},
			}),
		},
		{
			name: "a window closes after max_window without enough completions",
			// Nine in flight at ten answers a second: 900 ms each (Little).
			params: `{"initial_limit":10,"max_window":"300ms"}`,
			ticks: []tickIO{
				{in(900, nan, 9, 0, 900, 10), want(10, 0, nan)},
				{in(900, nan, 9, 0, 900, 10), want(10, 0, nan)},
				{in(900, nan, 9, 0, 900, 10), want(10, 0, nan)},
				{in(900, nan, 9, 0, 900, 10), want(10, 0, nan)},
				{in(900, nan, 9, 0, 900, 10), want(10, 0, nan)},
				{in(900, nan, 9, 0, 900, 10), want(10, 0, 900)},
				{in(900, nan, 9, 0, 900, 10), want(10, 0, 900)},
				{in(900, nan, 9, 0, 900, 10), want(10, 0, 900)},
				{in(900, nan, 9, 0, 900, 10), want(20, 0, 900)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := tc.params
			if params == "" {
				params = `{"initial_limit":10}` // round numbers
			}
			runTickTable(t, mustProvisionComponent(t, "SLOConcurrencyController", params, 100*time.Millisecond), tc.ticks)
		})
	}
}

func TestSLOConcurrencyControllerRejectsBadParameters(t *testing.T) {
	for params, want := range map[string]string{
		`{"min_limit":0}`:               "min_limit",
		`{"min_limit":5,"max_limit":4}`: "max_limit",
		`{"initial_limit":0.5}`:         "initial_limit",
		`{"min_gradient":0}`:            "min_gradient",
		`{"slow_start_factor":0.5}`:     "slow_start_factor",
		`{"utilization":1.5}`:           "utilization",
		`{"rtt_tolerance":0.9}`:         "rtt_tolerance",
		`{"min_samples":0}`:             "min_samples",
		`{"max_window":"0s"}`:           "max_window",
		`{"relearn_after":"0s"}`:        "relearn_after",
	} {
		_, err := provisionComponent("SLOConcurrencyController", params, time.Second)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want one about %s", params, err, want)
		}
	}
}

// A service in front of w workers, always offered more than its limit:
// the rtt is its own latency plus, past w in flight, a queue of 16/w ms per
// request. Cutting the limit drains that queue; it cannot lower the own
// latency. The controller must learn a rise of the own latency (a slower
// dependency: 20 → 60 ms) within relearn_after, give it back once the
// latency returns, check a lasting rise ever more rarely, and never learn
// a queue, not even one a capacity loss causes in the middle of a run.
func TestSLOConcurrencyControllerRelearnsOnlyWhatNoCutLowers(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":8}`, 100*time.Millisecond)
	out := make([]float64, 3)
	workers := 8.0
	// run drives ticks at an own latency and returns the last limit and
	// baseline, the highest baseline, and how many ticks raised the
	// baseline by more than 10 ms (relearns).
	run := func(own float64, ticks int) (limit, baseline, highest float64, relearns int) {
		for range ticks {
			limit := out[0]
			if limit == 0 {
				limit = 8
			}
			before := out[2]
			rtt := own + 16/workers*math.Max(0, limit-workers)
			c.Execute([]float64{rtt, components.Invalid, limit, 0, rtt, 1000, components.Invalid, components.Invalid}, out)
			highest = math.Max(highest, out[2])
			if out[2] > before+10 {
				relearns++
			}
		}
		return out[0], out[2], highest, relearns
	}
	if _, b, _, _ := run(20, 300); math.Abs(b-20) > 1e-9 {
		t.Fatalf("baseline %.1f ms after 30 s at 20 ms, want 20", b)
	}
	// The queue alone: 2 ms per request past 8 reads as queueing once the
	// limit passes 23, and the cuts hold it.
	if _, _, h, _ := run(20, 600); h > 21 {
		t.Fatalf("the baseline learned a queue that cuts hold: %.1f ms", h)
	}
	// Six of the eight workers die: a queue the run's first window did not
	// show, which halving the limit shrinks.
	workers = 2
	if _, _, h, _ := run(20, 2400); h > 21 {
		t.Fatalf("the baseline learned the queue of a capacity loss: %.1f ms", h)
	}
	workers = 8
	run(20, 600)
	// The own latency triples: every window reads as queueing and no cut
	// lowers it.
	l, b, _, _ := run(60, 30)
	if b > 21 || l > 8 {
		t.Fatalf("limit %.1f, baseline %.1f ms 3 s into the shift, want the limit cut and the baseline not yet relearned", l, b)
	}
	l, b, _, _ = run(60, 50)
	if b < 45 || b > 65 {
		t.Fatalf("baseline %.1f ms 8 s into a shift to 60 ms, want it relearned near 60 (and decaying on its lease)", b)
	}
	if l < 14 {
		t.Fatalf("limit %.1f 8 s into the shift, want it back where the run began", l)
	}
	// The dependency is fast again: the lease runs out and 20 ms returns.
	if _, b, _, _ = run(20, 1800); b > 21 {
		t.Fatalf("baseline %.1f ms 3 minutes after the latency returned to 20 ms, want 20", b)
	}
	// A lull ends a lease at once: a shift learned again, then the load
	// falls under the limit while the latency is back at 20 ms.
	if _, b, _, _ := run(60, 80); b < 45 {
		t.Fatalf("baseline %.1f ms 8 s into a second shift to 60 ms, want it relearned", b)
	}
	lull := func(ticks int) float64 {
		for range ticks {
			c.Execute([]float64{20, components.Invalid, 1, 0, 20, 1000, components.Invalid, components.Invalid}, out)
		}
		return out[2]
	}
	if b := lull(2); b > 21 {
		t.Fatalf("baseline %.1f ms after a lull at 20 ms, want the lease ended at 20", b)
	}
	// A shift that lasts 20 minutes: each relearn's lease is twice as long
	// as the last, up to baseline_window.
	if _, _, _, n := run(60, 12000); n < 2 || n > 7 {
		t.Fatalf("%d relearns in 20 minutes of a lasting shift, want 2 to 7", n)
	}
	// And it still gives the baseline back when the shift ends.
	if _, b, _, _ = run(20, 24000); b > 21 {
		t.Fatalf("baseline %.1f ms 40 minutes after a 20-minute shift ended, want 20", b)
	}
}

// A min_gradient near 1 cuts gently: the limit then takes longer to
// halve, and a queue must still never be learned.
func TestSLOConcurrencyControllerRelearnsNoQueueAtAHighMinGradient(t *testing.T) {
	for _, g := range []string{"0.8", "0.9", "1"} {
		c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":8,"min_gradient":`+g+`}`, 100*time.Millisecond)
		out := make([]float64, 3)
		for i := range 3000 {
			limit := out[0]
			if limit == 0 {
				limit = 8
			}
			rtt := 20 + 2*math.Max(0, limit-8)
			c.Execute([]float64{rtt, components.Invalid, limit, 0, rtt, 1000, components.Invalid, components.Invalid}, out)
			if i > 300 && out[2] > 21 {
				t.Fatalf("min_gradient %s: the baseline learned the queue: %.1f ms at tick %d", g, out[2], i)
			}
		}
	}
}

// A setpoint under the service's own latency (the tightest SLO of APIs
// whose latencies differ tenfold: p90 40 ms without a queue, setpoint
// 10 ms) cannot be met by admission. Once the baseline is learned the
// controller ignores it and keeps the limit where the queue shows (8
// workers, 2 ms per request past them); cutting by setpoint/latency, as
// before, took the limit to min_limit and the service to one request at a
// time. A feasible one cuts no deeper than the queue, with the queueing
// cut's √base of headroom: with a dozen in flight that headroom is as
// large as the cut, and the limit settles where the queueing cut puts it.
// Nor a setpoint that the own latency passes in most windows: until the
// baseline was learned, latency over the setpoint cut whatever the rtt,
// once a window under it had shown the setpoint to be within reach, and
// the cut's floor, the initial limit, held slow start there. With its
// SLOs stated, random-4163's cold start (scaled p90 16–21 ms at 3 in
// flight against a setpoint of 15, one window of 10.6) held 3 for 6 s:
// 0.42 of proportional in its first 10 s, 0.75 once the setpoint asks,
// from the baseline's first sample on, for an rtt over it as well.
func TestSLOConcurrencyControllerSlowStartsPastANoisySetpoint(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":3}`, 100*time.Millisecond)
	out := make([]float64, 3)
	// A service that never queues: 30 ms a request; the p90 reads 10 ms
	// for the first second, 18 ms after, against a setpoint of 15.
	limit := 3.0
	for i := range 60 {
		p90 := 18.0
		if i < 10 {
			p90 = 10
		}
		c.Execute([]float64{p90, 15, limit, 0, 30, limit / 0.030, 1, components.Invalid}, out)
		limit = out[0]
	}
	if limit < 48 {
		t.Errorf("limit %.1f after 6 s, want at least 48 (four doublings)", limit)
	}
}

func TestSLOConcurrencyControllerIgnoresASetpointUnderTheOwnLatency(t *testing.T) {
	for _, tc := range []struct {
		setpoint float64
		min, max float64
	}{
		{10, 10, 30},   // infeasible: as without a setpoint (17.7)
		{55, 10, 17.7}, // feasible: p90 = 2·rtt ≤ 55, rtt near 27, L near 12 without the headroom
	} {
		c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":8}`, 100*time.Millisecond)
		out := make([]float64, 3)
		lowest := math.Inf(1)
		for i := range 600 {
			limit := out[0]
			if limit == 0 {
				limit = 8
			}
			rtt := 20 + 2*math.Max(0, limit-8)
			c.Execute([]float64{2 * rtt, tc.setpoint, limit, 0, rtt, 1000, components.Invalid, components.Invalid}, out)
			if i >= 100 {
				lowest = math.Min(lowest, out[0])
			}
		}
		if lowest < tc.min || out[0] > tc.max {
			t.Errorf("setpoint %v ms: limit fell to %.1f and ends at %.1f, want within [%v, %v]", tc.setpoint, lowest, out[0], tc.min, tc.max)
		}
	}
}

// The first baseline is the lowest of ten windows' means. Where their
// typical standard error is over a fifth of their mean, the lowest is
// chance's: the baseline is then the lowest mean plus 1.54 typical
// errors, how far under the mean the lowest of ten lies on average, not
// plus the lowest window's own error (a window that chance gave few
// costly answers has a low mean and a low error both). With the error
// small, or unknown, it is the lowest mean as measured.
func TestSLOConcurrencyControllerFirstBaselineOfNoisyWindows(t *testing.T) {
	rtts := []float64{15, 9, 12, 15, 18, 21, 10, 14, 16, 20, 11} // the first window is not a sample
	var sq float64
	for _, rtt := range rtts[1:] {
		sq += (0.25 * rtt) * (0.25 * rtt)
	}
	for _, tc := range []struct {
		name string
		sem  func(rtt float64) float64
		want float64
	}{
		{"noisy", func(float64) float64 { return 3.5 }, 9 + 1.539*3.5},
		{"noisy, the error with the mean", func(rtt float64) float64 { return 0.25 * rtt }, 9 + 1.539*math.Sqrt(sq/10)},
		{"steady", func(float64) float64 { return 1 }, 9},
		{"unknown", func(float64) float64 { return components.Invalid }, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":8}`, 100*time.Millisecond)
			out := make([]float64, 3)
			for _, rtt := range rtts {
				c.Execute([]float64{rtt, components.Invalid, 1, 0, rtt, 1000, tc.sem(rtt), components.Invalid}, out)
			}
			if math.Abs(out[2]-tc.want) > 1e-9 {
				t.Errorf("baseline %.2f ms after the first ten windows, want %.2f", out[2], tc.want)
			}
		})
	}
}

// A cold start's first windows may hold a queue: their mean is then far
// over the latency without one, and the windows' noise (3.5 ms on a
// lowest mean of 9) is judged against what the lowest of ten implies
// (9 + 1.54·3.5), not against that mean (22.9), under which it would
// pass for small and the lowest, chance's lowest, would be the baseline.
func TestSLOConcurrencyControllerFirstBaselineOfQueuedWindows(t *testing.T) {
	rtts := []float64{15, 60, 40, 9, 12, 10, 14, 11, 50, 13, 10} // the first window is not a sample
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":8}`, 100*time.Millisecond)
	out := make([]float64, 3)
	for _, rtt := range rtts {
		c.Execute([]float64{rtt, components.Invalid, 1, 0, rtt, 1000, 3.5, components.Invalid}, out)
	}
	if want := 9 + 1.539*3.5; math.Abs(out[2]-want) > 1e-9 {
		t.Errorf("baseline %.2f ms after the first ten windows, want %.2f", out[2], want)
	}
}

// A lease also ends on a window faster than 0.8 of the baseline as the
// relearn took it, by two standard errors, though the baseline has since
// decayed under that: a dependency still slow never answers faster than
// it was relearned at. A window as fast but within its errors of that
// line does not end it.
func TestSLOConcurrencyControllerEndsALeaseBelowTheRelearnedBaseline(t *testing.T) {
	for _, tc := range []struct {
		sem      float64
		wantBase func(float64) bool
		want     string
	}{
		{1, func(b float64) bool { return b < 21 }, "the settled 20 ms back"},
		{5, func(b float64) bool { return b > 30 }, "the lease kept"},
	} {
		c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":8}`, 100*time.Millisecond)
		out := make([]float64, 3)
		// run drives ticks at an own latency, with a queue of 2 ms per
		// request past 8 in flight, as in the relearn test above.
		run := func(own, sem float64, ticks int) {
			for range ticks {
				limit := out[0]
				if limit == 0 {
					limit = 8
				}
				rtt := own + 2*math.Max(0, limit-8)
				c.Execute([]float64{rtt, components.Invalid, limit, 0, rtt, 1000, sem, components.Invalid}, out)
			}
		}
		run(20, 0.5, 300)
		run(60, 0.5, 80) // relearned near 60 ms
		leased := out[2]
		if leased < 45 {
			t.Fatalf("baseline %.1f ms 8 s into a shift to 60 ms, want it relearned", leased)
		}
		run(60, 0.5, 100) // the lease decays
		decayed := out[2]
		if decayed > 0.9*leased {
			t.Fatalf("baseline %.1f ms 10 s into its lease at %.1f, want it decayed", decayed, leased)
		}
		// Under 0.8 of the relearned baseline, over 0.8 of the decayed one.
		rtt := 0.8*leased - 3
		if rtt <= 0.8*decayed {
			t.Fatalf("the test needs a decayed baseline over %.1f ms, got %.1f", rtt/0.8, decayed)
		}
		c.Execute([]float64{rtt, components.Invalid, out[0], 0, rtt, 1000, tc.sem, components.Invalid}, out)
		if !tc.wantBase(out[2]) {
			t.Errorf("a window at %.1f ms ± %.0f (relearned %.1f, decayed %.1f): baseline %.1f, want %s", rtt, tc.sem, leased, decayed, out[2], tc.want)
		}
	}
}

// A limit that grew on a lease was room for the leased latency: when the
// lease ends, the limit goes back to at most what it was when the lease
// began. After a dependency hung, every answer a timeout, a lease took the
// timeouts as the service's latency and its limit grew a hundredfold; with
// the latency back and the limit far above what is in flight, nothing cut
// it (a queue counts only while the limit binds).
func TestSLOConcurrencyControllerEndsALeaseWithTheLimitItBeganWith(t *testing.T) {
	_, out, tick, queued := leaseRig(t)
	queued(20, 300)
	queued(60, 80) // a slower dependency: relearned near 60 ms, on lease
	if out[2] < 45 {
		t.Fatalf("baseline %.1f ms 8 s into a shift to 60 ms, want it relearned", out[2])
	}
	began := out[0]
	for range 50 { // the limit binds with no queue: it grows
		tick(60, out[0])
	}
	grown := out[0]
	if grown < 2*began {
		t.Fatalf("limit %.1f 5 s into the lease that began at %.1f: the test needs it grown", grown, began)
	}
	tick(20, 4) // the dependency is fast again: the lease ends
	if out[2] > 21 {
		t.Fatalf("baseline %.1f ms after a window at 20 ms, want the settled 20 ms back", out[2])
	}
	if out[0] > began {
		t.Errorf("limit %.1f after the lease ended (it began at %.1f, grew to %.1f): want at most %.1f", out[0], began, grown, began)
	}
}

// With many in flight the queueing test is tighter than rtt_tolerance
// (queueAllowance). A rise of the service's own latency just over it reads
// as a queue that no cut lowers: the cuts settle where base·t·baseline/rtt
// + √base = base and every window there queues, so a relearn that waits
// for the limit to halve never comes. With t at 1 + 4/√base alone, 10 %
// at 4,000 in flight held the limit at 2,601 with no queue at all; the
// floor of 1.25 (minQueueTolerance) keeps such ordinary rises out of it.
func TestSLOConcurrencyControllerTakesASmallRiseWithManyInFlight(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":1000}`, 100*time.Millisecond)
	out := make([]float64, 3)
	// run drives ticks with more demand than the limit lets in: the
	// service's workers hold 4,000 requests for 20 ms each and its own
	// latency, here its dependency's time, holds none, so 4,000·own/20
	// are in flight without a queue and more wait.
	run := func(own float64, ticks int) (limit, baseline float64) {
		for range ticks {
			inFlight := out[0]
			if inFlight == 0 {
				inFlight = 1000
			}
			rtt := own * math.Max(1, inFlight/(4000*own/20))
			c.Execute([]float64{rtt, components.Invalid, inFlight, 0, rtt, inFlight / rtt * 1000, components.Invalid, components.Invalid}, out)
		}
		return out[0], out[2]
	}
	l, b := run(20, 600)
	if math.Abs(b-20) > 0.5 || l < 4000 || l > 5500 {
		t.Fatalf("limit %.0f, baseline %.1f ms after a minute at 20 ms, want the limit over the 4,000 the workers hold, with a queue of at most a quarter, and the baseline 20", l, b)
	}
	// The dependency's time rises 10 %: 4,400 fit without a queue.
	if l, _ = run(22, 600); l < 4400 {
		t.Fatalf("limit %.0f a minute after the own latency rose to 22 ms, want at least the 4,400 that fit without a queue", l)
	}
}

func TestSLOConcurrencyControllerClimbsPerTurnoverOnASlowService(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	// 512 workers hold each request for 500 ms, five ticks, and more is
	// offered than any limit lets in: a window of min_samples answers
	// lasts max_window at a small limit.
	out, reached := climb(c, 500, 512, components.Invalid, 512, 200)
	// The first window at the initial limit lasts max_window (2 s) and
	// is not a baseline sample; its rtt stands in for the baseline until
	// the first sample, and one doubling per 500 ms turnover reaches 512
	// at tick 60. Waiting for that sample, another max_window, took
	// until tick 80; a doubling per window took until tick 123.
	if reached == 0 || reached > 65 {
		t.Fatalf("limit reached 512 at tick %d, want by tick 65 (6.5 s)", reached)
	}
	if out[0] > 2*512 {
		t.Fatalf("limit %.0f after 20 s, want at most twice the 512 that fit without a queue", out[0])
	}
}

func TestSLOConcurrencyControllerKeepsRoomForWhatALeaseLetIn(t *testing.T) {
	c, out, tick, queued := leaseRig(t)
	queued(20, 300)
	queued(1000, 120) // a dependency that hangs for a second: relearned, on lease
	if out[2] < 500 {
		t.Fatalf("baseline %.1f ms 12 s into a shift to 1 s, want it relearned", out[2])
	}
	began := out[0]
	for range 30 { // the limit binds with no queue: it grows
		tick(1000, out[0])
	}
	grown := out[0]
	if grown < began+20 {
		t.Fatalf("limit %.1f 3 s into the lease that began at %.1f: the test needs it grown", grown, began)
	}
	// The dependency answers at once again; the requests it held are
	// still in flight and finish over the next second.
	for i := 0; i < 20 && out[2] > 21; i++ {
		tick(20, grown)
	}
	if out[2] > 21 {
		t.Fatalf("baseline %.1f ms after a window at 20 ms, want the settled 20 ms back", out[2])
	}
	if out[0] < grown-1 {
		t.Errorf("limit in force %.1f as the lease ended with %.0f in flight, want room kept for them", out[0], grown)
	}
	// Over the next second the old requests answer, a tenth a tick at the
	// leased latency, beside a hundred new ones a tick at 20 ms.
	for i := range 10 {
		old, fresh := grown/10, 100.0
		rtt := (old*1000 + fresh*20) / (old + fresh)
		c.Execute([]float64{rtt, components.Invalid, math.Max(began, grown*(1-float64(i+1)/10)), 0, rtt, (old + fresh) * 10, 0.5, components.Invalid}, out)
	}
	if out[0] > (grown+began)/2 {
		t.Errorf("limit in force %.1f a leased rtt after the lease ended (it began at %.1f, grew to %.1f), want the room gone", out[0], began, grown)
	}
}

// leaseRig is a controller at an initial limit of 8 in front of a service
// that queues 2 ms per request past 8 in flight, the limit binding, as in
// the relearn tests above: tick feeds it one tick of 1,000 answers a
// second, queued feeds it ticks at its own limit.
func leaseRig(t *testing.T) (c components.Component, out []float64, tick func(rtt, inFlight float64), queued func(own float64, ticks int)) {
	c = mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":8}`, 100*time.Millisecond)
	out = make([]float64, 3)
	tick = func(rtt, inFlight float64) {
		c.Execute([]float64{rtt, components.Invalid, inFlight, 0, rtt, 1000, 0.5, components.Invalid}, out)
	}
	queued = func(own float64, ticks int) {
		for range ticks {
			limit := out[0]
			if limit == 0 {
				limit = 8
			}
			tick(own+2*math.Max(0, limit-8), limit)
		}
	}
	return c, out, tick, queued
}

// A run whose cuts hold the limit above half of where it began relearns
// when its rtt does not fall with the limit and its throughput does
// (Little's law at a constant rtt: a slower dependency), and does not
// when its rtt falls with the limit and its throughput holds (a queue at
// a service that lost capacity). The service: 13 workers of 14 ms held at
// the queue the controller keeps (rtt about 1.8 × baseline), in flight
// 0.93 of the limit.
func TestSLOConcurrencyControllerRelearnsASlowerDependencyBeforeTheLimitHalves(t *testing.T) {
	offered := 12.0 // what the clients keep in flight
	rig := func() (run func(rttOf func(inFlight float64) (rtt, rps float64), ticks int) (limit, baseline float64)) {
		c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":13}`, 100*time.Millisecond)
		out := make([]float64, 3)
		return func(rttOf func(inFlight float64) (rtt, rps float64), ticks int) (float64, float64) {
			for range ticks {
				limit := out[0]
				if limit == 0 {
					limit = 13
				}
				inFlight := math.Min(0.93*limit, offered)
				rtt, rps := rttOf(inFlight)
				c.Execute([]float64{rtt, components.Invalid, inFlight, 0, rtt, rps, components.Invalid, components.Invalid}, out)
			}
			return out[0], out[2]
		}
	}
	// workers serving 14 ms each, and a dependency that adds extra ms
	// holding none of them.
	service := func(workers, extra float64) func(float64) (float64, float64) {
		return func(inFlight float64) (float64, float64) {
			capacity := workers / 14 // per ms
			rtt := math.Max(14+extra, inFlight/capacity)
			return rtt, inFlight / rtt * 1000
		}
	}
	held := func(run func(func(float64) (float64, float64), int) (float64, float64)) float64 {
		t.Helper()
		offered = 12
		run(service(13, 0), 600)
		offered = math.Inf(1)
		limit, baseline := run(service(13, 0), 600)
		if math.Abs(baseline-14) > 0.5 || limit < 20 || limit > 32 {
			t.Fatalf("held queue: limit %.1f, baseline %.2f ms; want the limit near 25 and the baseline 14", limit, baseline)
		}
		return limit
	}

	slower := rig()
	began := held(slower)
	// Old: the cuts held the limit at 0.6 of where the run began, and 0.58
	// of the service's throughput, for good.
	// The highest limit of the tenth second: the lease probe drops it
	// for a few ticks now and then.
	slower(service(13, 12), 90)
	var limit, baseline float64
	for range 10 {
		l, b := slower(service(13, 12), 1)
		limit, baseline = math.Max(limit, l), b
	}
	if need := 13.0 * 26 / 14; baseline < 20 || 0.93*limit < need {
		t.Fatalf("10 s into a dependency 12 ms slower: limit %.1f at most (the run began at %.1f), baseline %.2f ms; want the baseline relearned near 26 and room for the %.1f in flight the service answers at full throughput", limit, began, baseline, need)
	}

	// The same rtt with the throughput held (Little's law's other
	// witness disagrees: no cut has starved the service) is left to the
	// halving.
	steady := rig()
	held(steady)
	full := 13.0 / 14 * 1000
	if _, baseline := steady(func(inFlight float64) (float64, float64) { return 26, full }, 100); baseline > 15 {
		t.Fatalf("10 s at a constant rtt and throughput: baseline %.2f ms, want 14 until the limit halves", baseline)
	}

	// The limit back where the run began must buy throughput, as it does
	// from a slower dependency; where the service has no room for it (a
	// costlier mix: each request holds a worker longer), the relearn is
	// undone. The service here is full at the throughput it had when the
	// relearn came.
	roomless := rig()
	held(roomless)
	var at float64 // the throughput when the relearn came, per ms
	for range 200 {
		if _, b := roomless(service(13, 12), 1); b > 20 {
			break
		}
		limit, _ := roomless(func(float64) (float64, float64) { return 0, 0 }, 0)
		at = 0.93 * limit / 26
	}
	if _, b := roomless(func(float64) (float64, float64) { return 0, 0 }, 0); b < 20 || at == 0 {
		t.Fatalf("no early relearn in 20 s of a slower dependency: baseline %.2f ms", b)
	}
	limit, baseline = roomless(func(inFlight float64) (float64, float64) {
		rtt := math.Max(26, inFlight/at)
		return rtt, inFlight / rtt * 1000
	}, 60)
	if baseline > 15 || limit > 20 {
		t.Fatalf("6 s after an early relearn that bought no throughput: limit %.1f, baseline %.2f ms; want both back (under 20, 14)", limit, baseline)
	}
	// and the same evidence does not relearn early again.
	if _, baseline = roomless(func(inFlight float64) (float64, float64) {
		rtt := math.Max(26, inFlight/at)
		return rtt, inFlight / rtt * 1000
	}, 300); baseline > 15 {
		t.Fatalf("30 s after an early relearn was undone: baseline %.2f ms, want 14", baseline)
	}

	// Without completed_rps there is no throughput to weigh.
	blind := rig()
	held(blind)
	if _, baseline := blind(func(float64) (float64, float64) { return 26, components.Invalid }, 100); baseline > 15 {
		t.Fatalf("10 s at a constant rtt without completed_rps: baseline %.2f ms, want 14 until the limit halves", baseline)
	}

	lost := rig()
	held(lost)
	for s := range 6 {
		if _, baseline := lost(service(8, 0), 100); baseline > 15 {
			t.Fatalf("%d s after 5 of 13 workers died: baseline %.2f ms, want 14: the queue of a capacity loss is no baseline", 10*(s+1), baseline)
		}
	}
}

// fifoService is a service of workers that hold each request for holds
// ticks (in turn, the admitted split evenly among them) and take the
// admitted first in, first out, offered more than any limit lets in. Each
// call runs one tick: it feeds the controller the tick's answers (mean
// rtt, standard error, count) and admits up to the limit it returns.
// Unlike a service whose rtt follows what is in flight at once, the queue
// a doubling builds shows a turnover later, in the answers of the
// requests it let in.
func fifoService(c components.Component, workers int, holds []int) func(out []float64) {
	type cohort struct{ admitted, started, count, hold int }
	var waiting, running []cohort
	inFlight, tick := 0, 0
	return func(out []float64) {
		n, sum, sq := 0, 0.0, 0.0
		still := running[:0]
		for _, r := range running {
			if tick-r.started >= r.hold {
				n += r.count
				rtt := float64(tick-r.admitted) * 100
				sum += float64(r.count) * rtt
				sq += float64(r.count) * rtt * rtt
				inFlight -= r.count
			} else {
				still = append(still, r)
			}
		}
		running = still
		busy := 0
		for _, r := range running {
			busy += r.count
		}
		for len(waiting) > 0 && busy < workers {
			w := &waiting[0]
			take := min(w.count, workers-busy)
			running = append(running, cohort{w.admitted, tick, take, w.hold})
			busy += take
			if w.count -= take; w.count == 0 {
				waiting = waiting[1:]
			}
		}
		rtt, sem := components.Invalid, components.Invalid
		if n > 0 {
			rtt = sum / float64(n)
		}
		if n > 1 {
			sem = math.Sqrt(math.Max(0, sq/float64(n)-rtt*rtt) / float64(n-1))
		}
		c.Execute([]float64{rtt, components.Invalid, float64(inFlight), 0, rtt, float64(n) * 10, sem, components.Invalid}, out)
		if admit := int(out[0]) - inFlight; admit > 0 {
			for i, hold := range holds {
				part := admit / len(holds)
				if i == len(holds)/2 {
					part += admit % len(holds)
				}
				if part > 0 {
					waiting = append(waiting, cohort{tick, 0, part, hold})
				}
			}
			inFlight += admit
		}
		tick++
	}
}

func TestSLOConcurrencyControllerEndsSlowStartWhenATicksAnswersRise(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	// 512 workers hold each request three to seven ticks (500 ms on
	// average).
	const workers = 512
	step := fifoService(c, workers, []int{3, 4, 5, 6, 7})
	peak, low := 0.0, math.Inf(1)
	for range 200 {
		step(out)
		peak = math.Max(peak, out[0])
		if peak >= workers {
			low = math.Min(low, out[0])
		}
	}
	// A doubling from 384 to 768 queues; the stretch that decides the
	// next doubling still holds answers from before the queue, and its
	// mean passed: the limit went on to 1,536, three times the workers,
	// the requests it let in waited over a second, and the cuts that
	// followed took it to 216. A tick whose answers are over the bound by
	// two standard errors ends the slow start where it stands.
	if peak > 2*workers {
		t.Fatalf("limit peaked at %.0f in slow start, want at most %d, twice the workers", peak, 2*workers)
	}
	if low < workers/2 {
		t.Fatalf("limit fell to %.0f after it reached the %d workers, want at least half of them", low, workers)
	}
}

func TestSLOConcurrencyControllerLearnsTheBaselineAtTheInitialLimitOnOneWorker(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	// One worker holds each request for two ticks: the initial limit of 3
	// queues from the first request, and the first window's rtt, 400 to
	// 600 ms, holds that queue. The probe doubles on it before the
	// baseline's first sample (a rise of a quarter passes against it), and
	// that sample, taken at the doubled limit, held its queue: 780 ms.
	step := fifoService(c, 1, []int{2})
	for range 300 {
		step(out)
		if components.IsValid(out[2]) {
			break
		}
	}
	if !components.IsValid(out[2]) {
		t.Fatal("no baseline after 30 s")
	}
	if out[2] > 700 {
		t.Fatalf("first baseline %.0f ms, want at most the 600 ms of the queue at the initial limit of 3", out[2])
	}
}

func TestSLOConcurrencyControllerUndoesADoublingThatQueuedBeforeTheBaseline(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	// Six workers of 500 ms: the first window (2 s at the limit of 3)
	// reads 500 ms, the doubling to 6 passes, and the one to 12 takes the
	// rtt to 1 s, twice the first window's, before the baseline's first
	// sample. A rise that far over rtt_tolerance is the doubling's queue,
	// not the first window reading low: it is undone at once. Held until
	// the baseline spoke, 12 stayed for 2 s.
	at12 := 0
	for range 100 {
		closedLoopTick(c, out, 3, func(inFlight float64) float64 { return 500 * math.Max(1, inFlight/6) })
		if out[0] >= 12 {
			at12++
		} else if at12 > 0 {
			break
		}
	}
	if at12 == 0 {
		t.Fatal("the limit never reached 12: the test needs the doubling that queues")
	}
	if at12 > 12 {
		t.Fatalf("limit at 12 for %d ticks with twice the first window's rtt, want at most 12 (one turnover and a tick)", at12)
	}
}

func TestSLOConcurrencyControllerDrainsToFindTheLatencyWithoutAQueue(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	// One worker that holds each request for two ticks: every window of
	// the cold start holds a queue, and the baseline learns 567 ms, not
	// the 300 ms of a request alone. The cuts then settle where the rtt
	// is rtt_tolerance × that, for as long as the service runs. Slow start
	// ended within two doublings of the initial limit: the drain probe
	// drops the limit under what the worker turns over, and what it
	// measures there, without a queue, becomes the baseline.
	step := fifoService(c, 1, []int{2})
	limits := 0.0
	for i := range 900 {
		step(out)
		if i >= 600 {
			limits += out[0]
		}
	}
	if out[2] > 330 {
		t.Fatalf("baseline %.0f ms after 90 s, want at most 330 (alone, a request waits a tick to start and holds the worker for two: 300 ms)", out[2])
	}
	// The cuts' floor, where a halving and √limit meet, is 4: a queue of
	// three. On the baseline of the queue, the limit held 6.7 on average.
	if mean := limits / 300; mean > 4.5 {
		t.Fatalf("mean limit %.1f over the last 30 s, want at most 4.5 (the cuts' floor of 4, one request served and three waiting)", mean)
	}
}

func TestSLOConcurrencyControllerDoesNotDrainWhereSlowStartFoundRoom(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	// Four workers that hold each request for two ticks: slow start ends
	// within two doublings of the initial limit of 3 (12 queues), but the
	// doublings raised the throughput by a third, so the initial limit had
	// room and its windows no queue. The drain probe, which costs half the
	// throughput while it runs, has nothing to find, and does not run.
	step := fifoService(c, 4, []int{2})
	peak := 0.0
	for range 900 {
		step(out)
		if peak >= 12 && out[0] < 3 {
			t.Fatalf("limit %.1f after slow start reached %.0f: a drain where the throughput rose with the limit", out[0], peak)
		}
		peak = math.Max(peak, out[0])
	}
	if peak < 12 {
		t.Fatalf("slow start peaked at %.0f: the test needs it at 12, within two doublings", peak)
	}
	if out[2] < 270 || out[2] > 330 {
		t.Fatalf("baseline %.0f ms after 90 s, want 270 to 330 (alone, a request waits a tick to start and holds a worker for two: 300 ms)", out[2])
	}
}

func TestSLOConcurrencyControllerDrainProbeCostsAtMostTenAnswersOverTheTolerance(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	// Two workers that hold each request for three ticks: slow start's
	// doubling of the initial limit of 3 buys no throughput, as on one
	// worker, and the drain probe runs at one request in flight, which
	// idles the second worker. Its baseline held a third of a request's
	// wait, not the two of one worker: ten answers at one in flight take
	// longer than ten baselines over the tolerance, and the probe stops
	// there rather than after twice max_window.
	step := fifoService(c, 2, []int{3})
	probing, base := 0, 0.0
	for range 300 {
		step(out)
		if out[0] < 2 {
			probing++
			base = out[2]
		}
	}
	if probing == 0 {
		t.Fatal("no tick at a limit under 2: the test needs the drain probe to run")
	}
	// The drain to one in flight takes a few ticks (under five); then
	// ten answers over the tolerance (1.5) of baselines. Twice max_window
	// made 44 ticks in all.
	if most := 10/1.5*base/100 + 5; float64(probing) > most {
		t.Fatalf("%d ticks at a limit under 2 on a baseline of %.0f ms, want at most %.0f", probing, base, most)
	}
}

// A lease ends once the dependency is fast again, even where the limit
// the lease grew to keeps the bottleneck saturated. Behind it the rtt is
// the count in flight over the throughput whether the dependency is slow
// or the requests it no longer holds queue at the bottleneck, so no
// window shows the recovery: the lease probe drops the limit to what the
// throughput needs at the settled baseline, and the answers there do. The
// service: 800 requests a second at most, behind a dependency of 160 ms
// that slows to 240 ms for 20 s (deep-chain's slow dependency), more
// offered than any limit lets in.
func TestSLOConcurrencyControllerLeaseProbeFindsTheDependencyFastAgain(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":100}`, 100*time.Millisecond)
	out := make([]float64, 3)
	run := func(own float64, ticks int) {
		for range ticks {
			inFlight := out[0]
			if inFlight == 0 {
				inFlight = 100
			}
			rtt := math.Max(own, inFlight/800*1000)
			c.Execute([]float64{rtt, components.Invalid, inFlight, 0, rtt, inFlight / rtt * 1000, 1, components.Invalid}, out)
		}
	}
	run(160, 600)
	if out[2] < 150 || out[2] > 170 {
		t.Fatalf("baseline %.1f ms after a minute at 160 ms, want about 160", out[2])
	}
	run(240, 200)
	if out[2] < 200 {
		t.Fatalf("baseline %.1f ms 20 s into a shift to 240 ms, want it relearned", out[2])
	}
	back := -1
	for i := range 200 {
		run(160, 1)
		if back < 0 && out[2] < 170 {
			back = i
		}
	}
	// Two relearn_afters between probes, and one probe of a few ticks.
	if back < 0 || back > 80 {
		t.Fatalf("baseline back under 170 ms %d ticks after the dependency recovered (-1: not in 20 s), want within 8 s", back)
	}
	if q := out[0]/800*1000 - 160; q > 0.5*160 {
		t.Errorf("limit %.0f 20 s after the recovery: a queue of %.0f ms at the bottleneck, want under half the 160 ms baseline", out[0], q)
	}
}

// On a service slower than a tick, the first window closes once it has a
// turnover of the initial limit's requests and probeTickAnswers answers,
// not min_samples: at the initial limit of 3 such a service answers a few
// requests a second, and min_samples took max_window (2 s) of a cold
// start before the probe could double. The service: 170 ms a request
// and room for 150 in flight (deep-chain's chain), more offered than any
// limit lets in.
func TestSLOConcurrencyControllerFirstWindowOfASlowServiceIsATurnover(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	reached := 0
	for tick := 1; tick <= 100 && reached == 0; tick++ {
		closedLoopTick(c, out, 3, func(inFlight float64) float64 { return 170 * math.Max(1, inFlight/150) })
		if out[0] >= 96 {
			reached = tick
		}
	}
	// Ten answers at 3 in flight take six ticks; then one doubling per
	// turnover (two ticks at least) from 3 to 96 takes about ten: tick 16.
	// Before, the first window lasted max_window: tick 30.
	if reached == 0 || reached > 25 {
		t.Fatalf("limit reached 96 at tick %d (0: not in 10 s), want by tick 25", reached)
	}
}

// closedLoopTick runs one tick of a controller in front of a service that
// more is offered to than any limit lets in: the limit in force (initial
// before the first tick) is in flight, answered at rtt(in flight) ms, with
// no standard error.
func closedLoopTick(c components.Component, out []float64, initial float64, rtt func(inFlight float64) float64) {
	inFlight := out[0]
	if inFlight == 0 {
		inFlight = initial
	}
	r := rtt(inFlight)
	c.Execute([]float64{r, components.Invalid, inFlight, 0, r, inFlight / r * 1000, components.Invalid, components.Invalid}, out)
}

// TestSLOConcurrencyControllerGrowsWhereBurstsUnderCapacityAreRefused
// checks full_rps: a limit that refused requests within the ticks, though
// no tick ended with it near full and the rtt shows no queue, grows as
// when it binds; refused with a queue showing, or not refused, it holds.
func TestSLOConcurrencyControllerGrowsWhereBurstsUnderCapacityAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rtt, full  float64
		wantGrowth bool
	}{
		{"refused, no queue", 10, 40, true},
		{"refused, a queue", 20, 40, false},
		{"nothing refused", 10, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":20}`, 100*time.Millisecond)
			out := make([]float64, 3)
			// Five in flight at 10 ms: 500 answers a second, the limit
			// never near full at a tick's end, the baseline 10 ms.
			tick := func(rtt, full float64) {
				c.Execute([]float64{rtt, components.Invalid, 5, 0, rtt, 500, components.Invalid, full}, out)
			}
			for range 300 {
				tick(10, 0)
			}
			before := out[0]
			if before != 20 || math.Abs(out[2]-10) > 0.1 {
				t.Fatalf("limit %.1f, baseline %.2f after 30 s at five in flight, want 20 and 10", before, out[2])
			}
			for range 10 {
				tick(tc.rtt, tc.full)
			}
			if grew := out[0] > before; grew != tc.wantGrowth {
				t.Errorf("limit %.1f after 1 s of this, from %.1f: grew %v, want %v", out[0], before, grew, tc.wantGrowth)
			}
		})
	}
}

// A clump of costly requests at a shared bottleneck under capacity queues
// for a window and drains on its own; an overload fills the limit window
// after window. With the latency within the setpoint, the first is let
// through and the limit grows to fit it, while a full limit answers within
// twice the setpoint; the second is cut as before, and so is the first
// where no setpoint is wired.
func TestSLOConcurrencyControllerLetsABurstUnderCapacityThrough(t *testing.T) {
	nan := components.Invalid
	for _, tc := range []struct {
		name      string
		setpoint  float64
		every     int     // a burst window every this many windows
		rps       float64 // the answers a second
		tail      float64 // the worst API's p99 against its setpoint of 100
		full      float64 // refused a second in a burst
		wantCut   bool
		wantGrown bool
	}{
		{"bursts under capacity grow the limit", 50, 5, 500, nan, 20, false, true},
		{"a queue in every window is cut", 50, 1, 500, nan, 20, true, false},
		{"bursts without a setpoint are cut", nan, 5, 500, nan, 20, true, false},
		{"bursts where a full limit would pass twice the setpoint hold", 50, 5, 200, nan, 20, false, false}, // (20+√20)/200 s > 100 ms
		{"bursts with the worst API's tail under 0.75 of its setpoint grow the limit", 50, 5, 500, 70, 20, false, true},
		{"bursts with the worst API's tail over 0.75 of its setpoint are cut", 50, 5, 500, 80, 20, true, false},
		{"bursts that refused a third of their requests are cut", 50, 5, 500, nan, 250, true, false}, // 25 of 75
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Ten answers make a window: every tick is one.
			c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":20,"min_samples":10}`, 100*time.Millisecond)
			out := make([]float64, 3)
			// latency_ms, setpoint_ms, in_flight, oldest_in_flight_ms,
			// rtt_ms, completed_rps, rtt_sem_ms, full_rps,
			// api_latency_ms, api_setpoint_ms.
			tick := func(inFlight, rtt, full float64) {
				c.Execute([]float64{1.5 * rtt, tc.setpoint, inFlight, 0, rtt, tc.rps, nan, full, tc.tail, 100}, out)
			}
			for range 300 {
				tick(5, 10, 0)
			}
			before := out[0]
			if before != 20 || math.Abs(out[2]-10) > 0.1 {
				t.Fatalf("limit %.1f, baseline %.2f after 30 s at five in flight, want 20 and 10", before, out[2])
			}
			// The bursts: the limit full, at twice the baseline, 30 ms
			// of latency, within the setpoint of 50.
			low := before
			for i := range 10 {
				if i%tc.every == 0 {
					tick(out[0], 20, tc.full)
				} else {
					tick(5, 10, 0)
				}
				low = math.Min(low, out[0])
			}
			if cut := low < before; cut != tc.wantCut {
				t.Errorf("lowest limit %.1f over 2 s of this, from %.1f: cut %v, want %v", low, before, cut, tc.wantCut)
			}
			if grown := out[0] > before; grown != tc.wantGrown {
				t.Errorf("limit %.1f after 2 s of this, from %.1f: grew %v, want %v", out[0], before, grown, tc.wantGrown)
			}
		})
	}
}

// A dependency slows under a standing queue: the queue's requests pay the
// dependency's time as well, so the run's worst rtt holds both; the cuts
// drain the queue and leave the dependency's time, an excess under 0.6 of
// that worst, as a drained queue's is. The throughput tells them apart: a
// saturated service answers as many a second at half the limit, and this
// one's answers fell with the limit.
func TestSLOConcurrencyControllerRelearnsWhereTheHalvingCostThroughput(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":26}`, 100*time.Millisecond)
	out := make([]float64, 3)
	offered := 20.0 // what the clients keep in flight
	run := func(rttOf func(inFlight float64) float64, ticks int) (limit, baseline, rps float64) {
		for range ticks {
			limit := out[0]
			if limit == 0 {
				limit = 26
			}
			inFlight := math.Min(0.93*limit, offered)
			rtt := rttOf(inFlight)
			rps = inFlight / rtt * 1000
			c.Execute([]float64{rtt, components.Invalid, inFlight, 0, rtt, rps, components.Invalid, components.Invalid}, out)
		}
		return out[0], out[2], rps
	}
	// 14 ms without a queue, and room: the limit of 26 does not bind.
	run(func(float64) float64 { return 14 }, 600)
	// Then overload at 600 answers a second, and a dependency that adds
	// 18 ms holding no worker: the first three windows hold the queue's
	// requests, which pay both.
	offered = math.Inf(1)
	run(func(float64) float64 { return 60 }, 3)
	slower := func(inFlight float64) float64 { return math.Max(32, inFlight/0.6) }
	limit, baseline, rps := run(slower, 100)
	if baseline < 25 || rps < 0.9*600 {
		t.Fatalf("10 s into a dependency 18 ms slower: limit %.1f, baseline %.2f ms, %.0f answers a second; want the baseline relearned near 32 and the service's 600", limit, baseline, rps)
	}
}

// A dependency that slows under an overload: the cuts take what is in
// flight down and the rtt stays where the dependency put it, while the
// throughput falls with the limit. Three windows in a row that show the
// cuts drained nothing relearn the baseline at once, not after the limit
// has halved and relearn_after more (3 s at a third of capacity and less). The same cuts
// against a capacity that halved drain a queue: the rtt falls with what
// is in flight, and the baseline stays through the first second.
func TestSLOConcurrencyControllerRelearnsWhenTheCutsDrainNothing(t *testing.T) {
	for _, tc := range []struct {
		name        string
		own, rps    float64 // after the change: the latency without a queue, and the capacity
		wantRelearn bool
	}{
		{"a dependency three times slower", 60, 1000, true},
		{"a capacity that halved", 20, 500, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":10}`, 100*time.Millisecond)
			out := make([]float64, 3)
			// Overload: the limit binds at every tick. The rtt is the
			// latency without a queue or, past what the capacity turns over
			// in it, what is in flight over the capacity (Little's law);
			// each tick's answers are a window, with a standard error of
			// 2 % of their rtt.
			own, capacity := 20.0, 1000.0
			tick := func() {
				inFlight := out[0]
				if inFlight == 0 {
					inFlight = 10
				}
				rtt := math.Max(own, inFlight/capacity*1000)
				c.Execute([]float64{rtt, components.Invalid, inFlight, 0, rtt, inFlight / rtt * 1000, 0.02 * rtt, components.Invalid}, out)
			}
			for range 600 {
				tick()
			}
			if math.Abs(out[2]-20) > 1 {
				t.Fatalf("baseline %.2f ms after 60 s, want 20", out[2])
			}
			own, capacity = tc.own, tc.rps
			relearned := -1
			for i := range 10 {
				tick()
				if relearned < 0 && out[2] > 40 {
					relearned = i + 1
				}
			}
			if tc.wantRelearn && relearned < 0 {
				t.Errorf("baseline %.2f ms 1 s after the dependency slowed to 60, want it relearned", out[2])
			}
			if !tc.wantRelearn && relearned >= 0 {
				t.Errorf("baseline %.2f ms after %d ticks of a halved capacity, want it kept near 20", out[2], relearned)
			}
		})
	}
}

// leaseBench drives an SLOConcurrencyController against a bottleneck of
// 600 answers a second whose requests take 14 ms without a queue (8.4 in
// flight keep it busy, and each one more waits 1/0.6 ms), behind an entry
// whose dependency adds extra ms, holding no worker: its requests wait
// there, not at the bottleneck.
type leaseBench struct {
	c     components.Component
	out   []float64
	extra float64
	// jitter alternates the rtt of successive ticks by ± that many ms:
	// a lowest window under the mean.
	jitter float64
	tick   int
}

func newLeaseBench(t *testing.T) *leaseBench {
	return &leaseBench{c: mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":8}`, 100*time.Millisecond), out: make([]float64, 3)}
}

// run drives ticks at an offered load the limit always binds, and
// returns, over the last n of them, the mean throughput and the mean
// queue (the rtt over the latency without one) of the ticks at which the
// bottleneck was busy.
func (b *leaseBench) run(ticks, n int) (rps, queue float64) {
	busy := 0
	for i := range ticks {
		limit := b.out[0]
		if limit == 0 {
			limit = 8
		}
		inFlight := 0.93 * limit
		rtt := b.extra + math.Max(14, (inFlight-b.extra*0.6)/0.6)
		x := inFlight / rtt * 1000
		b.tick++
		if b.tick%2 == 0 {
			rtt += b.jitter
		} else {
			rtt -= b.jitter
		}
		b.c.Execute([]float64{rtt, components.Invalid, inFlight, 0, rtt, x, components.Invalid, components.Invalid}, b.out)
		if i < ticks-n {
			continue
		}
		rps += x / float64(n)
		if x > 0.99*600 {
			queue += rtt - b.extra - 14
			busy++
		}
	}
	return rps, queue / float64(busy)
}

func TestSLOConcurrencyControllerKeepsTheBottlenecksQueueOnALease(t *testing.T) {
	b := newLeaseBench(t)
	_, before := b.run(1200, 300)
	// The dependency slows by 20 ms: the cuts halve the limit with the
	// rtt still at 34 ms and the throughput fallen, and the baseline is
	// relearned on a lease. The queue the limit then lets stand is the
	// bottleneck's, as before: the old code scaled it with the leased
	// baseline, 11.6 → 17 ms.
	b.extra = 20
	b.run(50, 1)
	rps, during := b.run(100, 100)
	if !(b.out[2] > 25) || !(before > 0) || during > 1.25*before+1 || rps < 0.95*600 {
		t.Fatalf("a dependency 20 ms slower: baseline %.2f ms, queue %.1f ms (%.1f ms before), %.0f answers a second; want the baseline relearned (34 ms, decaying), the bottleneck's queue kept within a quarter, and its 600 answers", b.out[2], during, before, rps)
	}
}

func TestSLOConcurrencyControllerKeepsTheThroughputThroughALongSlowDependency(t *testing.T) {
	b := newLeaseBench(t)
	b.run(1200, 1)
	// The dependency slows by 20 ms for three minutes. The leased
	// baseline decays towards the settled one. The old code read the
	// dependency's latency as a queue once the decayed baseline's
	// tolerance fell under it, and cut the throughput with the limit at
	// the same rtt until a new run had halved it and relearned: 368, 268
	// and 215 answers a second in the 10 s spans from 50 s to 80 s.
	b.extra = 20
	b.run(100, 1) // the cuts and the relearn
	for sec := 20; sec <= 180; sec += 10 {
		if rps, _ := b.run(100, 100); rps < 0.7*600 {
			t.Fatalf("%d s into a dependency 20 ms slower: %.0f answers a second over the last 10 s (limit %.1f, baseline %.2f ms); want at least 0.7 of the service's 600 in every 10 s", sec, rps, b.out[0], b.out[2])
		}
	}
}

func TestSLOConcurrencyControllerSetpointNeverWeakensTheQueueingCut(t *testing.T) {
	// The 600-answer bottleneck of leaseBench, whose p90 latency (the
	// setpoint's input) is 0.8 × its mean rtt: the setpoint of 20 ms is
	// crossed at an rtt of 25 ms, about where the queueing cuts alone
	// hold it. A window just over the setpoint asked for a cut of a few
	// per cent, whose √base of headroom made it a rise, and, tested
	// first, it replaced the queueing cut: the standing queue grew from
	// 11.6 ms to 15.8 ms with the SLO stated, and on random-3's capacity
	// drop api2's p99 from 0.87 to 1.24 of its SLO.
	queue := func(setpoint float64) float64 {
		c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":8}`, 100*time.Millisecond)
		out := make([]float64, 3)
		sum := 0.0
		for i := range 1500 {
			limit := out[0]
			if limit == 0 {
				limit = 8
			}
			inFlight := 0.93 * limit
			rtt := math.Max(14, inFlight/0.6)
			c.Execute([]float64{0.8 * rtt, setpoint, inFlight, 0, rtt, inFlight / rtt * 1000, components.Invalid, components.Invalid}, out)
			if i >= 1200 {
				sum += (rtt - 14) / 300
			}
		}
		return sum
	}
	without, with := queue(components.Invalid), queue(20)
	if !(without > 0) || with > without+0.5 {
		t.Fatalf("standing queue %.1f ms with a setpoint of 20 ms, %.1f ms without one; want no more with it", with, without)
	}
}

func TestSLOConcurrencyControllerKeepsALeaseThroughOneNoisyFastWindow(t *testing.T) {
	// On a lease, one window whose mean is under 0.8 of the baseline, but
	// not by two of its standard errors, is noise: where one API's
	// dependency slowed (random-2803's slow-api), a window that happens
	// to hold few of its answers reads fast. The old code ended the lease
	// on it, and the limit fell to its floor (0.83 → 0.65 of proportional
	// with the SLO stated).
	b := newLeaseBench(t)
	b.run(1200, 1)
	b.extra = 20
	b.run(60, 1)
	leased := b.out[2]
	if leased < 25 {
		t.Fatalf("baseline %.1f ms after a dependency 20 ms slower, want it relearned", leased)
	}
	fast := 0.75 * leased
	b.c.Execute([]float64{fast, components.Invalid, 0.93 * b.out[0], 0, fast, 600, 5, components.Invalid}, b.out)
	if b.out[2] < 0.9*leased {
		t.Fatalf("baseline %.1f ms after one window at %.1f ± 5 ms, want the lease (%.1f ms) kept", b.out[2], fast, leased)
	}
	// A window as fast with a small standard error ends it.
	b.c.Execute([]float64{fast, components.Invalid, 0.93 * b.out[0], 0, fast, 600, 0.5, components.Invalid}, b.out)
	if b.out[2] > 15 {
		t.Fatalf("baseline %.1f ms after a window at %.1f ± 0.5 ms, want the settled 14 ms back", b.out[2], fast)
	}
}

// TestSLOConcurrencyControllerSizesTheQueueByTheWorstAPIsTail: in front of
// ten workers of 20 ms each, offered more than any limit lets in, the
// controller keeps a standing queue of about the tolerance over the
// baseline. A cheap API that waits in that queue twice over its own 2 ms
// reads its tail (api_latency_ms) over api_setpoint_ms: the tolerance's
// allowance shrinks, and the standing rtt with it, while the workers stay
// busy. Once the tail reads well under the setpoint the allowance comes
// back.
func TestSLOConcurrencyControllerSizesTheQueueByTheWorstAPIsTail(t *testing.T) {
	rttOf := func(inFlight float64) float64 { return 20 * math.Max(1, inFlight/10) }
	run := func(apiSetpoint float64, c components.Component, out []float64, ticks int) (rtt, busy float64) {
		for i := range ticks {
			inFlight := out[0]
			if inFlight == 0 {
				inFlight = 3
			}
			r := rttOf(inFlight)
			tail := 2 + 2*(r-20)
			c.Execute([]float64{r, components.Invalid, inFlight, 0, r, inFlight / r * 1000, components.Invalid, components.Invalid,
				tail, apiSetpoint}, out)
			if i >= ticks/2 {
				rtt += r / float64(ticks-ticks/2)
				busy += math.Min(1, out[0]/10) / float64(ticks-ticks/2)
			}
		}
		return rtt, busy
	}
	newC := func() (components.Component, []float64) {
		return mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond), make([]float64, 3)
	}
	c, out := newC()
	loose, _ := run(1000, c, out, 1200)
	c, out = newC()
	tight, busy := run(15, c, out, 1200)
	if !(loose > 28) {
		t.Fatalf("standing rtt %.1f ms without a tail over its setpoint, want a queue over 28 (the tolerance's)", loose)
	}
	if tight > 0.85*loose || busy < 0.97 {
		t.Errorf("with the tail over its setpoint: standing rtt %.1f ms (%.1f without), the workers %.2f busy; want ≤ 0.85 × and ≥ 0.97", tight, loose, busy)
	}
	back, _ := run(1000, c, out, 1200)
	if back < 0.95*loose {
		t.Errorf("after the tail fell under its setpoint: standing rtt %.1f ms, want the tolerance's %.1f back", back, loose)
	}
}

// TestSLOConcurrencyControllerGivesUpATailNoQueueMakes: where the worst
// API's tail is its own latency (it reads over the setpoint however short
// the queue), shrinking the queue is a trial that fails: after eight
// seconds at the tightest, the allowance comes back whole, and no new
// trial begins for a minute.
func TestSLOConcurrencyControllerGivesUpATailNoQueueMakes(t *testing.T) {
	rttOf := func(inFlight float64) float64 { return 20 * math.Max(1, inFlight/10) }
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	standing := func(ticks int, tail func(rtt float64) float64) (rtt float64) {
		for i := range ticks {
			inFlight := out[0]
			if inFlight == 0 {
				inFlight = 3
			}
			r := rttOf(inFlight)
			c.Execute([]float64{r, components.Invalid, inFlight, 0, r, inFlight / r * 1000, components.Invalid, components.Invalid,
				tail(r), 15}, out)
			if i >= ticks-100 {
				rtt += r / 100
			}
		}
		return rtt
	}
	loose := standing(600, func(float64) float64 { return 10 })
	// 40 ms whatever the queue: the trial shrinks the queue for a few
	// seconds, then gives it up.
	own := func(float64) float64 { return 40 }
	if got := standing(300, own); got < 0.95*loose {
		t.Errorf("30 s into a tail the queue does not make: standing rtt %.1f ms, want the tolerance's %.1f back", got, loose)
	}
	// A queue-made tail during the back-off does not shrink the queue.
	queued := func(r float64) float64 { return 2 + 2*(r-20) }
	if got := standing(200, queued); got < 0.95*loose {
		t.Errorf("within the back-off: standing rtt %.1f ms, want %.1f", got, loose)
	}
	// After it, it does.
	if got := standing(600, queued); got > 0.85*loose {
		t.Errorf("after the back-off: standing rtt %.1f ms, want ≤ 0.85 × %.1f", got, loose)
	}
}

// TestSLOConcurrencyControllerJudgesATailTrialAtItsLoad: a trial of the
// worst API's tail that begins while the throughput still grows (the
// limit growing into an overload) is not given up because the tail has
// not fallen by its eighth second: the load it is judged at rose by 30 %
// meanwhile, and the trial is judged again from there. Once the growth
// is over the tail falls under its setpoint and the queue stays short.
// Given up, it came back to the tolerance's for a minute (random-11 at a
// service whose workers every call shares, under default-slo: a trial
// begun a second into the overload, at 1,295 answers a second, was given
// up at 1,498, and api1 and api2 kept p99s of 1.24 and 1.33 × their SLOs).
func TestSLOConcurrencyControllerJudgesATailTrialAtItsLoad(t *testing.T) {
	rttOf := func(inFlight float64) float64 { return 20 * math.Max(1, inFlight/10) }
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	standing := func(ticks int, setpoint float64, tail func(i int) float64, grow func(i int) float64) (rtt float64) {
		for i := range ticks {
			inFlight := out[0]
			if inFlight == 0 {
				inFlight = 3
			}
			r := rttOf(inFlight)
			c.Execute([]float64{r, components.Invalid, inFlight, 0, r, grow(i) * inFlight / r * 1000, components.Invalid, components.Invalid,
				tail(i), setpoint}, out)
			if i >= ticks-100 {
				rtt += r / 100
			}
		}
		return rtt
	}
	flat := func(int) float64 { return 1 }
	loose := standing(600, 1000, func(int) float64 { return 10 }, flat)
	// 20 ms against a setpoint of 15 for 15 s while the throughput grows
	// by 30 %, then 12 ms.
	tail := func(i int) float64 {
		if i < 150 {
			return 20
		}
		return 12
	}
	grow := func(i int) float64 { return 1 + 0.3*math.Min(1, float64(i)/150) }
	if rtt := standing(600, 15, tail, grow); rtt > 0.85*loose {
		t.Errorf("a minute into a trial begun while the throughput grew: standing rtt %.1f ms (%.1f without it), want ≤ 0.85 ×", rtt, loose)
	}
}

// Room the limit won while it bound and has not used since goes back: a
// limit grown to 60 over a service that never queued, then left at ten in
// flight for relearn_after, drops to twice the most in flight, by half at
// most each relearn_after, and grows again once the traffic binds it. A
// limit the traffic fills now and then (a tick at 90 % of it every
// second) keeps its room.
func TestSLOConcurrencyControllerTakesBackRoomItDoesNotUse(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":3}`, 100*time.Millisecond)
	out := make([]float64, 3)
	// 20 ms whatever is in flight: no queue.
	tick := func(inFlight float64) {
		c.Execute([]float64{20, components.Invalid, inFlight, 0, 20, inFlight / 20 * 1000, components.Invalid, components.Invalid}, out)
	}
	for range 100 {
		tick(2) // the baseline learned, slow start over
	}
	for out[0] < 60 {
		tick(out[0])
	}
	grown := out[0]
	for range 29 {
		tick(10)
	}
	if out[0] != grown {
		t.Fatalf("limit %.1f after 2.9 s at ten in flight, want the %.1f it grew to until relearn_after has passed", out[0], grown)
	}
	tick(10)
	if want := grown / 2; out[0] != want {
		t.Errorf("limit %.1f after 3 s at ten in flight, want %.1f: half of %.1f", out[0], want, grown)
	}
	for range 60 {
		tick(10)
	}
	if out[0] != 20 {
		t.Errorf("limit %.1f after 9 s at ten in flight, want 20: twice the most in flight", out[0])
	}
	for range 20 {
		tick(out[0])
	}
	if out[0] <= 20 {
		t.Errorf("limit %.1f after 2 s of traffic that binds it, want it grown past 20", out[0])
	}

	kept := out[0]
	for i := range 100 {
		if i%10 == 9 {
			tick(0.9 * out[0])
		} else {
			tick(10)
		}
	}
	if out[0] < kept {
		t.Errorf("limit %.1f after 10 s at ten in flight with a tick at 90 %% of it each second, want the %.1f it had", out[0], kept)
	}
}

// mixService runs a controller in front of a service with more workers
// than any limit in these tests reaches, so that nothing ever queues,
// answering a mix of three latencies: a quarter of the requests at
// mix[0] ms, half at mix[1] and a quarter at mix[2], each ±20 %. More
// is offered than any limit lets in: a freed slot is taken at once. It
// steps in milliseconds and hands the controller each tick's answers:
// their count, mean rtt and its standard error.
func mixService(c components.Component, seed uint64, mix [3]float64) func(out []float64) {
	r := rand.New(rand.NewPCG(seed, 7))
	type request struct{ done, latency float64 }
	var running []request
	now, limit := 0.0, 3.0
	return func(out []float64) {
		n, sum, sq := 0.0, 0.0, 0.0
		for range 100 {
			now++
			still := running[:0]
			for _, q := range running {
				if q.done > now {
					still = append(still, q)
					continue
				}
				n++
				sum += q.latency
				sq += q.latency * q.latency
			}
			running = still
			for float64(len(running)) < limit {
				latency := mix[1]
				switch u := r.Float64(); {
				case u < 0.25:
					latency = mix[0]
				case u >= 0.75:
					latency = mix[2]
				}
				latency *= 0.8 + 0.4*r.Float64()
				running = append(running, request{now + latency, latency})
			}
		}
		rtt, sem := components.Invalid, components.Invalid
		if n > 0 {
			rtt = sum / n
		}
		if n > 1 {
			sem = math.Sqrt(math.Max(0, sq/n-rtt*rtt) / (n - 1))
		}
		c.Execute([]float64{rtt, components.Invalid, float64(len(running)), 0, rtt, n * 10, sem, components.Invalid}, out)
		limit = out[0]
	}
}

// TestSLOConcurrencyControllerSlowStartSeesThroughAMixsNoise: on a mix
// whose answers spread tenfold and a service that never queues, slow
// start must not end on the noise of a window's or a stretch's mean.
// The baseline is the lowest of the first windows, and the next window
// at the same limit read half over it by chance; a stretch of a dozen
// answers read a rise and undid its doubling. Either ended slow start
// at a few in flight, and √limit a window took seconds to climb back
// (random-3914's and random-3916's cold starts: 0.45 and 0.58 of
// proportional in the first 10 s).
func TestSLOConcurrencyControllerSlowStartSeesThroughAMixsNoise(t *testing.T) {
	for _, tc := range []struct {
		mix         [3]float64
		target      float64
		ticks, most int
		before      int
	}{
		// A quarter of the answers at 20 ms, half at 60 and a quarter
		// at 200: a window of 50 answers has a standard error of a
		// seventh of its mean. The first window, the baseline's first
		// sample and five doublings from 3 take about 3 s.
		{[3]float64{20, 60, 200}, 96, 60, 6, 14},
		// At 40, 50 and 150 ms a stretch after the probe's first
		// doubling holds a turnover within a tick: judged there, it
		// never doubled, and the windows had left the slow start to it
		// (22 of the 40 seeds with the standard errors alone; noise
		// ended most slow starts before that on the code before).
		{[3]float64{40, 50, 150}, 96, 60, 2, 5},
	} {
		slow := 0
		for seed := range uint64(40) {
			c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
			out := make([]float64, 3)
			step := mixService(c, seed, tc.mix)
			reached := false
			for range tc.ticks {
				step(out)
				if out[0] >= tc.target {
					reached = true
					break
				}
			}
			if !reached {
				slow++
			}
		}
		// On the code before, `before` of the 40 seeds were not there
		// in time.
		if slow > tc.most {
			t.Errorf("mix %v ms: %d of 40 seeds under %.0f after %d ticks of slow start on a service that never queues, want at most %d (%d before)",
				tc.mix, slow, tc.target, tc.ticks, tc.most, tc.before)
		}
	}
}

// TestSLOConcurrencyControllerWarmupWindowWithinItsNoiseHolds: while the
// baseline is the lowest of its first windows, a window over the
// threshold by less than two of its standard errors is neither a queue
// nor room: slow start holds the limit. Past that margin it is a queue.
func TestSLOConcurrencyControllerWarmupWindowWithinItsNoiseHolds(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":10}`, 100*time.Millisecond)
	out := make([]float64, 3)
	tick := func(rtt float64) {
		// 100 answers a tick, each spreading by 20 ms: a standard error
		// of 2 ms; every tick is a window, and the limit is full.
		c.Execute([]float64{rtt, components.Invalid, out[0], 0, rtt, 1000, 2, components.Invalid}, out)
	}
	out[0] = 10
	tick(20) // the first window: no sample
	tick(20) // the baseline's first: 20 ms, a threshold of 30
	if out[0] != 10 || out[2] != 20 {
		t.Fatalf("limit %v, baseline %v after the first sample, want 10 and 20", out[0], out[2])
	}
	tick(33) // over 30 by less than two standard errors
	if out[0] != 10 || out[1] != 0 {
		t.Fatalf("limit %v, overload %v after a window 1.5 standard errors over the threshold, want 10 held, no overload", out[0], out[1])
	}
	tick(20)
	if out[0] != 20 {
		t.Fatalf("limit %v after a window at the baseline, want 20: slow start goes on", out[0])
	}
	tick(40) // five standard errors over: a queue
	if out[1] != 1 || !(out[0] < 20) {
		t.Fatalf("limit %v, overload %v after a window 5 standard errors over the threshold, want a cut", out[0], out[1])
	}
}

// A setpoint under the service's own latency holds no slow start either.
// Before the baseline was learned (its first ten windows), latency over
// the setpoint cut whatever the baseline, and the cut's floor, the
// initial limit, held the limit there for those ten windows: with its
// SLOs stated, random-3914's cold start, whose p90 at 3 in flight is over
// the setpoint on services of 5 to 7 workers, held 3 for 8 s (0.23 of
// proportional in its first 10 s; 0.62 without the SLOs). From the
// baseline's first sample on, the setpoint is judged against the latency
// the windows show without a queue, as it is once the baseline is learned.
func TestSLOConcurrencyControllerSlowStartsPastASetpointUnderTheOwnLatency(t *testing.T) {
	for _, setpoint := range []float64{35, components.Invalid} {
		c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":3}`, 100*time.Millisecond)
		out := make([]float64, 3)
		// A service that never queues: 60 ms a request, p90 72 ms,
		// over the setpoint of 35 ms at any limit.
		limit := 3.0
		for range 50 {
			c.Execute([]float64{72, setpoint, limit, 0, 60, limit / 0.060, components.Invalid, components.Invalid}, out)
			limit = out[0]
		}
		if limit < 48 {
			t.Errorf("setpoint %v ms: limit %.1f after 5 s, want at least 48 (four doublings)", setpoint, limit)
		}
	}
}

// The first window is no baseline sample (it reads low), and on a service
// faster than a tick it waited for min_samples answers all the same: at
// the initial limit of 3, a service of 74 ms answers 40 a second, and
// random-4254's cold start held 3 in flight for 1.3 s before its first
// sample's window even began (0.59 of proportional in its first 10 s).
// It closes on a turnover of the limit and ten answers, over two ticks,
// whatever the service's speed.
func TestSLOConcurrencyControllerFirstWindowOfAFewAnswers(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{"initial_limit":3}`, 100*time.Millisecond)
	_, reached := climb(c, 74, 64, 2, 48, 100) // 64 workers of 74 ms
	// The first window closes at tick 3 (1.3 s before), the first
	// sample's window at the initial limit takes 1.3 s, and each doubling
	// one window of min_samples answers: 48 at tick 42 (52 before).
	if reached == 0 || reached > 45 {
		t.Fatalf("limit reached 48 at tick %d, want by tick 45", reached)
	}
}

// climb runs c for ticks on a cold start at more load than any limit
// lets in, on workers that hold each request rttMs (a queue beyond them),
// with rtt_sem_ms sem, and returns its last outputs and the first tick at
// which the limit reached target (0: never).
func climb(c components.Component, rttMs, workers, sem, target float64, ticks int) (out []float64, reached int) {
	out = make([]float64, 3)
	for tick := 1; tick <= ticks; tick++ {
		inFlight := out[0]
		if inFlight == 0 {
			inFlight = 3
		}
		rtt := rttMs * math.Max(1, inFlight/workers)
		c.Execute([]float64{rtt, components.Invalid, inFlight, 0, rtt, inFlight / rtt * 1000, sem, components.Invalid}, out)
		if reached == 0 && out[0] >= target {
			reached = tick
		}
	}
	return out, reached
}

// A relearn at the cuts' floor is probed: two workers of 600 ms slow to
// 1.2 s (two-slow-workers' slow service). The cuts cannot take the limit
// under their floor of 4, where the two workers hold a queue of two, and
// the relearn took the rtt there, twice the service's own latency, as
// the baseline; the limit the lease let grow over it reached 18.8 in
// flight (in the simulator, 18: answers 7 s late). The relearn probe
// drops the limit under what the workers turn over, and the answers
// there show the latency without a queue.
func TestSLOConcurrencyControllerProbesARelearnAtTheFloor(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	holds := []int{6}
	step := fifoService(c, 2, holds)
	for range 600 {
		step(out)
	}
	if out[2] > 1000 {
		t.Fatalf("baseline %.0f ms after 60 s at 600 ms, want the service's own latency learned", out[2])
	}
	holds[0] = 12
	most, relearned, probed := 0.0, 0.0, 0.0
	for range 450 {
		step(out)
		most = math.Max(most, out[0])
		if out[2] > 2000 {
			relearned++
		} else if out[2] > 1000 && out[2] < 1500 {
			probed++
		}
	}
	if relearned == 0 {
		t.Fatal("no baseline over 2 s in 45 s slowed: the test needs the relearn at the floor's queue")
	}
	// Alone, a request waits up to a tick to start and holds a worker
	// for twelve: 1.2 to 1.3 s.
	if probed == 0 {
		t.Errorf("the baseline never read 1 to 1.5 s in 45 s slowed: the probe did not find the service's own latency (1.2 to 1.3 s)")
	}
	if most > 8 {
		t.Errorf("limit up to %.1f in 45 s slowed, want at most 8 (the 7.2 the slowdown found; two workers need 2)", most)
	}
	// What the probe found stays: the early relearn's check (checkEarly)
	// must not put the settled 920 ms back, under which the floor's queue
	// of two is a queue no cut can drain (and no relearn can halve).
	if out[2] < 1000 || out[2] > 1500 {
		t.Errorf("baseline %.0f ms after 45 s slowed, want the probe's 1 to 1.5 s kept", out[2])
	}
}

// twoAPIService is a service of two APIs behind one limit, each with its
// own workers and FIFO queue: a request is the costly API's with
// probability costly (from a seeded source), and holds a worker for
// holds[api] ticks of 100 ms. It feeds c the tick's mean rtt and its
// standard error, in flight, the oldest request's age and the
// completions, and admits up to the limit.
func twoAPIService(c components.Component, seed uint64, costly float64, workers [2]int, holds *[2]int) func(out []float64) {
	type request struct{ admitted, started, hold int }
	r := rand.New(rand.NewPCG(seed, 1))
	var waiting, running [2][]request
	inFlight, tick := 0, 0
	return func(out []float64) {
		n, sum, sq := 0, 0.0, 0.0
		for api := range 2 {
			still := running[api][:0]
			for _, q := range running[api] {
				if tick-q.started >= q.hold {
					rtt := float64(tick-q.admitted) * 100
					n, sum, sq, inFlight = n+1, sum+rtt, sq+rtt*rtt, inFlight-1
				} else {
					still = append(still, q)
				}
			}
			running[api] = still
			for len(waiting[api]) > 0 && len(running[api]) < workers[api] {
				q := waiting[api][0]
				waiting[api] = waiting[api][1:]
				q.started = tick
				running[api] = append(running[api], q)
			}
		}
		rtt, sem, oldest := components.Invalid, components.Invalid, 0.0
		if n > 0 {
			rtt = sum / float64(n)
		}
		if n > 1 {
			sem = math.Sqrt(math.Max(0, sq/float64(n)-rtt*rtt) / float64(n-1))
		}
		for api := range 2 {
			for _, q := range running[api] {
				oldest = math.Max(oldest, float64(tick-q.admitted)*100)
			}
			for _, q := range waiting[api] {
				oldest = math.Max(oldest, float64(tick-q.admitted)*100)
			}
		}
		c.Execute([]float64{rtt, components.Invalid, float64(inFlight), oldest, rtt, float64(n) * 10, sem, components.Invalid}, out)
		for admit := int(out[0]) - inFlight; admit > 0; admit-- {
			api := 0
			if r.Float64() < costly {
				api = 1
			}
			waiting[api] = append(waiting[api], request{admitted: tick, hold: holds[api]})
			inFlight++
		}
		tick++
	}
}

// A relearn probe reads nothing lower while a request older than the
// tolerance over what it measured is in flight: a mix's cheap answers
// come first. A cheap API (100 ms, a hundred workers) takes nine requests
// in ten, a costly one (1.2 s, eight workers) the tenth, and the costly
// one's dependency slows fourfold: the cuts take the limit to 4.5, the
// relearn takes 670 ms, and its probe, at a limit of 2, counts five
// answers at 300 ms while a request 1 s old is still in flight. The
// baseline stays what the relearn took (without the guard: 300 ms).
func TestSLOConcurrencyControllerRelearnProbeWaitsForTheOldest(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	holds := [2]int{1, 12}
	step := twoAPIService(c, 3, 0.1, [2]int{100, 8}, &holds)
	for range 600 {
		step(out)
	}
	holds[1] = 48
	relearned, target, ended := components.Invalid, components.Invalid, components.Invalid
	for range 600 {
		before := out[2]
		step(out)
		switch {
		case !(relearned > 0) && out[2] > 2*before && before > 0:
			relearned = out[2] // the relearn; the probe holds the limit from the next tick
		case relearned > 0 && !(target > 0):
			target = out[0]
		case target > 0 && !(ended > 0) && out[0] != target:
			ended = out[2] // the probe's end: the limit leaves its target
		}
	}
	if !(ended > 0) {
		t.Fatalf("no relearn probe seen in 60 s of the slow API (relearned %.0f ms, target %.1f)", relearned, target)
	}
	if !(target <= 2) {
		t.Fatalf("the limit after the relearn was %.1f: no relearn probe (it holds 2)", target)
	}
	if ended < 0.8*relearned {
		t.Errorf("baseline %.0f ms as the probe ended, from the relearn's %.0f: it read lower under an older costly request", ended, relearned)
	}
}

// No relearn probe after a warm-up as noisy as a mix of cheap and costly
// APIs makes it (noisyWarmup): the cheap answers come first, and the
// probe reads them as the service's latency. Half the requests cheap
// (100 ms, a hundred workers) and half costly (2.4 s, four workers), the
// costly one's dependency doubling its time: the relearn at a limit of 6
// leaves the limit where the run began (probed, it held 2 for 10 s and
// then 1.6). Either guard keeps the probe out here: the noisy warm-up,
// and Little's law, whose account of the window's throughput at the
// relearned mean (costly requests hold the slots that cheap answers
// turn over) falls short of half the requests in flight; the test fails
// only with both removed.
func TestSLOConcurrencyControllerNoRelearnProbeAfterANoisyWarmup(t *testing.T) {
	c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
	out := make([]float64, 3)
	holds := [2]int{1, 24}
	step := twoAPIService(c, 3, 0.5, [2]int{100, 4}, &holds)
	for range 600 {
		step(out)
	}
	holds[1] = 48
	for range 600 {
		limit, baseline := out[0], out[2]
		step(out)
		if out[2] > 2*baseline {
			if out[0] < limit {
				t.Fatalf("limit %.1f → %.1f as the baseline relearned %.0f → %.0f ms: a relearn probe after a noisy warm-up", limit, out[0], baseline, out[2])
			}
			return
		}
	}
	t.Fatal("no relearn in 60 s of the slower dependency: the test needs one")
}

// TestSLOConcurrencyControllerKeepsATailTrialThatCloses: a tail a little
// over its setpoint, made mostly by the API's own latency and partly by
// the queue, falls at the tightest only to about the setpoint, short of
// 0.85 of where it began; the trial closed most of the excess, and is
// kept. Given up, the tail went back to 1.4 × its SLO (random-4175's
// steady under default-slo: api1's p99 33.7 ms against 30 at the trial's
// start, 30–32 ms at the tightest, 40–44 ms after it was given up). The
// tail is also noisy: one reading in five is 2.5 ms high, at each of the
// five phases in turn, so that at one of them the verdicts read a high
// one; judged by it alone, that trial is given up. A kept trial still
// ends on a tail no queue makes.
func TestSLOConcurrencyControllerKeepsATailTrialThatCloses(t *testing.T) {
	rttOf := func(inFlight float64) float64 { return 20 * math.Max(1, inFlight/10) }
	for phase := range 5 {
		c := mustProvisionComponent(t, "SLOConcurrencyController", `{}`, 100*time.Millisecond)
		out := make([]float64, 3)
		tick, own := 0, 0.0
		standing := func(ticks int, setpoint float64) (rtt, tail float64) {
			for i := range ticks {
				inFlight := out[0]
				if inFlight == 0 {
					inFlight = 3
				}
				r := rttOf(inFlight)
				tl := 14.2 + own + 0.165*(r-20)
				if tick%5 == phase {
					tl += 2.5
				}
				tick++
				c.Execute([]float64{r, components.Invalid, inFlight, 0, r, inFlight / r * 1000, components.Invalid, components.Invalid,
					tl, setpoint}, out)
				if i >= ticks-100 {
					rtt += r / 100
					tail += tl / 100
				}
			}
			return rtt, tail
		}
		loose, from := standing(600, 1000)
		if from < 1.1*15 {
			t.Fatalf("phase %d: precondition: the tail at the tolerance's queue %.1f ms, want over 1.1 × the setpoint of 15", phase, from)
		}
		// The back-off after a trial given up (a minute) outlasts this.
		rtt, tail := standing(600, 15)
		if rtt > 0.85*loose || tail > 15+(from-15)/2 {
			t.Errorf("phase %d: a minute into the trial: standing rtt %.1f ms (%.1f without it), the tail %.1f ms (%.1f before); want ≤ 0.85 × and the tail's excess over 15 halved",
				phase, rtt, loose, tail, from)
		}
		// Five minutes on, the API's own latency rises by 10 ms, which no
		// queue makes: the trial is given up within seconds, judged by
		// its last seconds at the tightest, not its five minutes.
		standing(3000, 15)
		own = 10
		if rtt, _ := standing(200, 15); rtt < 0.95*loose {
			t.Errorf("phase %d: 20 s after a 10 ms rise of the API's own latency: standing rtt %.1f ms, want the tolerance's %.1f back", phase, rtt, loose)
		}
	}
}
