package components_test

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestGradient2Controller(t *testing.T) {
	nan := components.Invalid
	// in builds the input slots: rtt_ms, in_flight.
	in := func(rttMs, inFlight float64) []float64 { return []float64{rttMs, inFlight} }
	// want builds the outputs: limit, long_rtt_ms.
	want := func(limit, longRttMs float64) []float64 { return []float64{limit, longRttMs} }
	// afterWarmup puts ten app-limited samples of 10 ms, the long RTT's
	// warm-up, before ticks.
	afterWarmup := func(ticks ...tickIO) []tickIO {
		var warm []tickIO
		for range 10 {
			warm = append(warm, tickIO{in(10, 0), want(20, 10)})
		}
		return append(warm, ticks...)
	}

	for _, tc := range []struct {
		name     string
		params   string
		interval time.Duration
		ticks    []tickIO
	}{
		{
			// Gradient2Limit.Builder defaults: limit 20, smoothing 0.2, queue 4, tolerance 1.5.
			name:     "defaults: the limit grows by smoothing × queue_size while the RTT is within tolerance, and shrinks by the gradient",
			interval: time.Second,
			ticks: []tickIO{
				{in(nan, 20), want(20, nan)}, // no sample yet: the initial limit
				// long 10, gradient min(1, 1.5·10/10) = 1: 0.8·20 + 0.2·(20 + 4) = 20.8.
				{in(10, 20), want(20, 10)},
				// long (10+20)/2 = 15, gradient min(1, 1.5·15/20) = 1: 20.8 + 0.2·4 = 21.6.
				{in(20, 20), want(21, 15)},
				// long (10+20+40)/3, gradient 1.5·(70/3)/40 = 0.875:
				// 0.8·21.6 + 0.2·(21.6·0.875 + 4) = 21.86.
				{in(40, 21), want(21, 70.0/3)},
			},
		},
		{
			name:     "the gradient is clamped to [0.5, 1] and the limit to min_limit",
			params:   `{"smoothing":1,"min_limit":5,"max_limit":30,"initial_limit":10,"queue_size":2}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(10, 10), want(12, 10)}, // 10·1 + 2
				// long 55, gradient 1.5·55/100 = 0.825: 12·0.825 + 2 = 11.9.
				{in(100, 12), want(11, 55)},
				// long 370, gradient 0.555: 11.9·0.555 + 2 = 8.6045.
				{in(1000, 12), want(8, 370)},
				// long 2777.5, gradient 0.416625 clamped to 0.5: 8.6045·0.5 + 2 = 6.30225.
				{in(10000, 9), want(6, 2777.5)},
				{in(100000, 9), want(5, 22222)},   // 6.30225·0.5 + 2 = 5.151125
				{in(1000000, 9), want(5, 185185)}, // 5.151125·0.5 + 2 = 4.5755625, clamped to 5
			},
		},
		{
			name:     "the limit is clamped to max_limit",
			params:   `{"smoothing":1,"max_limit":25,"initial_limit":20,"queue_size":4}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(10, 20), want(24, 10)},
				{in(10, 20), want(25, 10)}, // 28 clamped to 25
				{in(10, 25), want(25, 10)},
			},
		},
		{
			name:     "app-limited: in_flight below half the limit holds the limit while the long RTT still learns",
			interval: time.Second,
			ticks: []tickIO{
				{in(10, 9), want(20, 10)},       // 9 < 20/2: held at 20
				{in(10, 10), want(20, 10)},      // 10 is not below 10: 20.8
				{in(5, 0), want(20, 25.0/3)},    // held at 20.8
				{in(5, 10.3), want(20, 30.0/4)}, // 10.3 < 10.4: held
				{in(5, 10.4), want(21, 35.0/5)}, // 20.8 + 0.8 = 21.6
				{in(nan, 50), want(21, 35.0/5)}, // no completion: no sample
				{in(0, 50), want(21, 35.0/5)},   // a zero RTT is no sample
				{in(10, nan), want(21, 35.0/5)}, // nor is an unknown in_flight
				{in(7, 10.8), want(22, 42.0/6)}, // 21.6 + 0.8 = 22.4
			},
		},
		{
			// long_window 3 s at 1 s ticks: N = 3, α = 2/(3+1) = 0.5, after 10 warm-up samples.
			name:     "after the warm-up the long RTT is an EMA over long_window, cut by 5 % when it exceeds twice the current RTT",
			params:   `{"long_window":"3s"}`,
			interval: time.Second,
			ticks: afterWarmup(
				tickIO{in(30, 0), want(20, 20)},             // 0.5·10 + 0.5·30
				tickIO{in(5, 0), want(20, 12.5*0.95)},       // 12.5/5 > 2
				tickIO{in(5, 20), want(20, 0.5*11.875+2.5)}, // 8.4375/5 < 2; limit 20.8
				tickIO{in(5, 20), want(21, 0.5*8.4375+2.5)}, // limit 21.6
			),
		},
		{
			// 600 s at 500 ms ticks is N = 1200 samples: α = 2/1201.
			name:     "the default long window is 600 s, in ticks",
			interval: 500 * time.Millisecond,
			ticks: afterWarmup(
				tickIO{in(1211, 0), want(20, 10*(1-2.0/1201)+1211*2.0/1201)}, // 10 + 1201·2/1201 = 12
			),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runTickTable(t, mustProvisionComponent(t, "Gradient2Controller", tc.params, tc.interval), tc.ticks)
		})
	}
}

func TestGradient2ControllerRejectsBadParameters(t *testing.T) {
	for _, params := range []string{
		`{"min_limit":0}`,
		`{"max_limit":10}`, // below the default min_limit 20
		`{"initial_limit":0}`,
		`{"queue_size":-1}`,
		`{"smoothing":0}`,
		`{"smoothing":1.5}`,
		`{"rtt_tolerance":0.9}`,
		`{"long_window":"0s"}`,
	} {
		if _, err := provisionComponent("Gradient2Controller", params, time.Second); err == nil {
			t.Errorf("%s: provisioned, want an error", params)
		}
	}
}
