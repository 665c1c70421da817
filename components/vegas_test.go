package components_test

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestVegasController(t *testing.T) {
	nan := components.Invalid
	// in builds the input slots: rtt_ms, in_flight.
	in := func(rttMs, inFlight float64) []float64 { return []float64{rttMs, inFlight} }
	// want builds the outputs: limit, rtt_noload_ms.
	want := func(limit, rttNoLoadMs float64) []float64 { return []float64{limit, rttNoLoadMs} }

	for _, tc := range []struct {
		name   string
		params string
		ticks  []tickIO
	}{
		{
			// VegasLimit defaults below a limit of 100: lg 1, threshold 1, alpha 3, beta 6.
			// A probe_multiplier of 10^6 keeps the probe out of the table.
			name:   "queue = ceil(limit·(1 − rttNoLoad/rtt)): +beta at or below the threshold, +lg below alpha, −lg above beta, held between",
			params: `{"probe_multiplier":1000000}`,
			ticks: []tickIO{
				{in(nan, 20), want(20, nan)}, // no sample yet: the initial limit
				{in(10, 20), want(20, 10)},   // the first sample only sets rttNoLoad
				{in(10, 20), want(26, 10)},   // queue 0 ≤ 1: 20 + 6
				{in(20, 26), want(25, 10)},   // queue ⌈26·0.5⌉ = 13 > 6: 26 − 1
				{in(16, 25), want(24, 10)},   // queue ⌈25·0.375⌉ = 10 > 6
				{in(12.5, 24), want(24, 10)}, // queue ⌈24·0.2⌉ = 5: between alpha and beta, held
				{in(10.5, 24), want(25, 10)}, // queue ⌈24·(1 − 10/10.5)⌉ = 2 < 3: 24 + 1
				{in(20, 25), want(24, 10)},   // queue 13 > 6
				{in(20, 25), want(23, 10)},
			},
		},
		{
			name:   "a lower RTT only lowers rttNoLoad, and in_flight below half the limit holds it",
			params: `{"probe_multiplier":1000000}`,
			ticks: []tickIO{
				{in(10, 20), want(20, 10)},
				{in(8, 20), want(20, 8)},   // new minimum: no update
				{in(8, 9), want(20, 8)},    // 9·2 < 20: app-limited, held
				{in(40, 9.5), want(20, 8)}, // 19 < 20: held, though the queue is 16
				{in(40, 10), want(19, 8)},  // 20 is not below 20: queue 16 > 6
				{in(8, 0), want(19, 8)},    // queue 0 but app-limited
				{in(0, 20), want(19, 8)},   // a zero RTT is no sample
				{in(8, nan), want(19, 8)},  // nor is an unknown in_flight
				{in(8, 19), want(25, 8)},   // queue 0: 19 + 6
			},
		},
		{
			name:   "from a limit of 100, lg is 2: threshold 2, alpha 6, beta 12",
			params: `{"initial_limit":100,"probe_multiplier":1000000}`,
			ticks: []tickIO{
				{in(10, 100), want(100, 10)},
				{in(10, 100), want(112, 10)},    // queue 0: 100 + 12
				{in(20, 112), want(110, 10)},    // queue 56 > 12: 112 − 2
				{in(10.5, 110), want(110, 10)},  // queue ⌈110/21⌉ = 6: held (not below alpha 6)
				{in(10.25, 110), want(112, 10)}, // queue ⌈110·(1 − 10/10.25)⌉ = 3 < 6: 110 + 2
			},
		},
		{
			name:   "smoothing blends the old and the new limit, which is capped at max_limit",
			params: `{"smoothing":0.5,"max_limit":25,"probe_multiplier":1000000}`,
			ticks: []tickIO{
				{in(10, 20), want(20, 10)},
				{in(10, 20), want(22, 10)}, // 0.5·20 + 0.5·min(26, 25) = 22.5
				{in(20, 22), want(22, 10)}, // queue ⌈22.5·0.5⌉ = 12 > 6: 0.5·22.5 + 0.5·21.5 = 22
				{in(10, 22), want(23, 10)}, // queue 0: 0.5·22 + 0.5·min(28, 25) = 23.5
			},
		},
		{
			// The probe fires once probe_multiplier·limit·jitter ≤ samples since the last one: 1·1·[0.5, 1) ≤ 1.
			name:   "a probe replaces rttNoLoad with the current RTT: with probe_multiplier 1 at limit 1, every sample is one",
			params: `{"probe_multiplier":1,"initial_limit":1}`,
			ticks: []tickIO{
				{in(10, 1), want(1, 10)},
				{in(20, 1), want(1, 20)},
				{in(5, 1), want(1, 5)},
				{in(40, 1), want(1, 40)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runTickTable(t, mustProvisionComponent(t, "VegasController", tc.params, 500*time.Millisecond), tc.ticks)
		})
	}
}

// TestVegasControllerProbes checks the default probe schedule: at a limit of
// 20 and probe_multiplier 30, rttNoLoad is reset to the current RTT after
// 30·20·jitter samples, jitter in [0.5, 1): between the 300th and the 600th.
func TestVegasControllerProbes(t *testing.T) {
	comp := mustProvisionComponent(t, "VegasController", "", 500*time.Millisecond)
	out := make([]float64, 2)
	comp.Execute([]float64{10, 0}, out) // rttNoLoad 10; app-limited from here on
	var probes []int
	for sample := 2; sample <= 1200; sample++ {
		comp.Execute([]float64{20, 0}, out)
		if out[1] == 20 {
			probes = append(probes, sample)
			comp.Execute([]float64{10, 0}, out) // a lower RTT restores the minimum
			sample++
			if out[1] != 10 {
				t.Fatalf("after the probe a 10 ms sample left rtt_noload_ms at %v, want 10", out[1])
			}
		}
		if out[0] != 20 {
			t.Fatalf("sample %d: limit %v, want 20 (app-limited)", sample, out[0])
		}
	}
	if len(probes) < 2 {
		t.Fatalf("probes at samples %v in 1200, want at least 2", probes)
	}
	last := 0
	for _, at := range probes {
		if gap := at - last; gap < 300 || gap > 600 {
			t.Errorf("probes at samples %v: a gap of %d, want 300 to 600", probes, gap)
		}
		last = at
	}
}

func TestVegasControllerRejectsBadParameters(t *testing.T) {
	for _, params := range []string{
		`{"initial_limit":0}`,
		`{"max_limit":10}`, // below the default initial_limit 20
		`{"probe_multiplier":0}`,
		`{"smoothing":0}`,
		`{"smoothing":1.1}`,
	} {
		if _, err := provisionComponent("VegasController", params, time.Second); err == nil {
			t.Errorf("%s: provisioned, want an error", params)
		}
	}
}
