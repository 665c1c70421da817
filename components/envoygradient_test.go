package components_test

import (
	"math"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestEnvoyGradientController(t *testing.T) {
	nan := components.Invalid
	// in builds the input slots: rtt_ms, completed_rps, in_flight.
	in := func(rttMs, completedRps, inFlight float64) []float64 {
		return []float64{rttMs, completedRps, inFlight}
	}
	// want builds the outputs: limit, min_rtt_ms.
	want := func(limit, minRttMs float64) []float64 { return []float64{limit, minRttMs} }
	// next is Envoy's calculateNewLimit: ⌊g·limit + √(g·limit)⌋.
	next := func(limit, gradient float64) float64 {
		return math.Floor(limit*gradient + math.Sqrt(limit*gradient))
	}

	for _, tc := range []struct {
		name     string
		params   string
		interval time.Duration
		ticks    []tickIO
	}{
		{
			// 1 s ticks, no jitter: the next minRTT window is due 10 ticks after one closes.
			name:     "starts pinned at min_concurrency; gradient = clamp(1.25·minRTT/sampleRTT, 0.5, 2); the limit adds √limit; minRTT is measured again after its interval",
			params:   `{"jitter_pct":0,"min_rtt_calc_interval":"10s","min_rtt_request_count":50}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(20, 100, 3), want(3, nan)},                // the first tick never counts
				{in(10, 30, 3), want(3, nan)},                 // 30 requests at 10 ms
				{in(20, 30, 2), want(3, 15)},                  // 60 ≥ 50: minRTT (300 + 600)/60; the limit before the window, 3
				{in(15, 100, 3), want(next(3, 18.75/15), 15)}, // 3.75 + 1.94 → 5
				{in(9.375, 100, 5), want(next(5, 2), 15)},     // gradient 18.75/9.375 = 2: 10 + 3.16 → 13
				{in(37.5, 100, 13), want(next(13, 0.5), 15)},  // gradient 0.5: 6.5 + 2.55 → 9
				{in(nan, 0, 9), want(9, 15)},                  // nothing completed: no update
				{in(18.75, 100, 9), want(next(9, 1), 15)},     // 12
				{in(18.75, 100, 12), want(next(12, 1), 15)},   // 15
				{in(18.75, 100, 15), want(next(15, 1), 15)},   // 18
				{in(18.75, 100, 18), want(next(18, 1), 15)},   // 22
				{in(18.75, 100, 22), want(next(22, 1), 15)},   // 26
				{in(18.75, 100, 26), want(3, 15)},             // 10 ticks after the window: pinned again, samples discarded
				{in(30, 100, 26), want(3, 15)},                // the last tick ended with 26 in flight: not counted
				{in(30, 100, 3), want(3, 15)},                 // still 26 in flight when this tick began: not counted
				{in(12, 40, 3), want(3, 15)},                  // counted: 40 requests at 12 ms
				{in(14, 20, 3), want(26, (40*12+20*14)/60.0)}, // 60 ≥ 50: minRTT 12.67, back to 26
				{in(14, 100, 26), want(next(26, 1.25*760/60/14), 760/60.0)},
			},
		},
		{
			name:     "the limit is capped at max_concurrency_limit; five sample windows in a row at min_concurrency start a minRTT window at once",
			params:   `{"jitter_pct":0,"min_rtt_request_count":10,"max_concurrency_limit":20}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(10, 100, 0), want(3, nan)},
				{in(10, 100, 0), want(3, 10)},
				{in(1, 100, 3), want(8, 10)},     // gradient 2: 6 + 2.45
				{in(1, 100, 8), want(20, 10)},    // 16 + 4
				{in(1, 100, 20), want(20, 10)},   // 40 + 6.32, capped
				{in(100, 100, 20), want(13, 10)}, // gradient 0.5: 10 + 3.16
				{in(100, 100, 13), want(9, 10)},  // 6.5 + 2.55
				{in(100, 100, 9), want(6, 10)},   // 4.5 + 2.12
				{in(100, 100, 6), want(4, 10)},   // 3 + 1.73
				{in(100, 100, 4), want(3, 10)},   // 2 + 1.41
				{in(100, 100, 3), want(3, 10)},   // 1.5 + 1.22 → 2, raised to 3: first window at the minimum
				{in(100, 100, 3), want(3, 10)},   // second
				{in(100, 100, 3), want(3, 10)},   // third
				{in(100, 100, 3), want(3, 10)},   // fourth
				{in(100, 100, 3), want(3, 10)},   // fifth: a minRTT window starts
				{in(40, 100, 3), want(3, 40)},    // the latency has risen for good: minRTT 40
				{in(40, 100, 3), want(next(3, 1.25), 40)},
			},
		},
		{
			name:     "an idle service stays in the minRTT window, pinned at min_concurrency",
			params:   `{"min_concurrency":5}`,
			interval: 500 * time.Millisecond,
			ticks: []tickIO{
				{in(nan, 0, 0), want(5, nan)},
				{in(nan, 0, 0), want(5, nan)},
				{in(10, 20, 1), want(5, nan)}, // 10 of 50 requests at 500 ms ticks
				{in(0, 100, 1), want(5, nan)}, // a zero RTT is no sample
				{in(nan, 0, 0), want(5, nan)},
				{in(20, 80, 1), want(5, (10*10+40*20)/50.0)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runTickTable(t, mustProvisionComponent(t, "EnvoyGradientController", tc.params, tc.interval), tc.ticks)
		})
	}
}

// TestEnvoyGradientControllerJitter checks the default minRTT schedule at
// 1 s ticks: a window is due 60 s plus 0 to ⌈60000·0.15⌉−1 ms after the last
// one closed, which is 60 to 69 ticks; with the closing tick, windows start
// 61 to 70 ticks apart, and not always the same.
func TestEnvoyGradientControllerJitter(t *testing.T) {
	comp := mustProvisionComponent(t, "EnvoyGradientController", `{"min_rtt_request_count":10}`, time.Second)
	out := make([]float64, 2)
	var starts []int
	pinned := false
	for tick := 1; tick <= 3000; tick++ {
		// At the minRTT every sample window raises the limit (gradient 1.25).
		comp.Execute([]float64{10, 100, 3}, out)
		if out[0] == 3 && !pinned {
			starts = append(starts, tick)
		}
		pinned = out[0] == 3
	}
	if len(starts) < 40 {
		t.Fatalf("minRTT windows started at ticks %v, want one every 61 to 70 ticks", starts)
	}
	gaps := map[int]bool{}
	for i := 1; i < len(starts); i++ {
		gap := starts[i] - starts[i-1]
		if gap < 61 || gap > 70 {
			t.Errorf("windows at ticks %d and %d: %d apart, want 61 to 70", starts[i-1], starts[i], gap)
		}
		gaps[gap] = true
	}
	if len(gaps) < 2 {
		t.Errorf("every window %v ticks apart: no jitter", gaps)
	}
}

func TestEnvoyGradientControllerRejectsBadParameters(t *testing.T) {
	for _, params := range []string{
		`{"min_concurrency":0}`,
		`{"max_concurrency_limit":2}`, // below the default min_concurrency 3
		`{"min_rtt_request_count":0}`,
		`{"jitter_pct":-1}`,
		`{"jitter_pct":101}`,
		`{"buffer_pct":-5}`,
		`{"min_rtt_calc_interval":"0s"}`,
	} {
		if _, err := provisionComponent("EnvoyGradientController", params, time.Second); err == nil {
			t.Errorf("%s: provisioned, want an error", params)
		}
	}
}
