package components_test

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestEMA(t *testing.T) {
	nan := components.Invalid
	// in builds the input slots: input, max_envelope, min_envelope.
	in := func(input, maxEnvelope, minEnvelope float64) []float64 {
		return []float64{input, maxEnvelope, minEnvelope}
	}
	x := func(input float64) []float64 { return in(input, nan, nan) }
	want := func(v float64) []float64 { return []float64{v} }

	for _, tc := range []struct {
		name     string
		params   string
		interval time.Duration
		ticks    []tickIO
	}{
		{
			// N = ceil(4s/1s) = 4, α = 2/(4+1) = 0.4; W = 3.
			name:     "invalid during warm-up, first value is the warm-up mean, then alpha is 2/(N+1)",
			params:   `{"ema_window":"4s","warmup_window":"3s"}`,
			interval: time.Second,
			ticks: []tickIO{
				{x(10), want(nan)},
				{x(20), want(nan)},
				{x(30), want((10.0 + 20 + 30) / 3)},
				{x(40), want(0.4*40 + 0.6*20)},     // 28
				{x(0), want(0.4*0 + 0.6*28)},       // 16.8
				{x(100), want(0.4*100 + 0.6*16.8)}, // 50.08
			},
		},
		{
			// N = ceil(2500ms/1s) = 3, α = 1/2; W = ceil(1500ms/1s) = 2.
			name:     "window and warm-up round up to whole ticks",
			params:   `{"ema_window":"2500ms","warmup_window":"1500ms"}`,
			interval: time.Second,
			ticks: []tickIO{
				{x(4), want(nan)},
				{x(8), want((4.0 + 8) / 2)},
				{x(2), want(0.5*2 + 0.5*6)},
				{x(12), want(0.5*12 + 0.5*4)},
			},
		},
		{
			name:     "invalid inputs during warm-up are not samples",
			params:   `{"ema_window":"4s","warmup_window":"2s"}`,
			interval: time.Second,
			ticks: []tickIO{
				{x(10), want(nan)},
				{x(nan), want(nan)},
				{x(30), want((10.0 + 30) / 2)},
			},
		},
		{
			// N = 3, α = 1/2, W = 3.
			name:     "valid_during_warmup emits the running mean",
			params:   `{"ema_window":"3s","warmup_window":"3s","valid_during_warmup":true}`,
			interval: time.Second,
			ticks: []tickIO{
				{x(nan), want(nan)}, // no sample yet
				{x(10), want(10)},
				{x(20), want((10.0 + 20) / 2)},
				{x(nan), want((10.0 + 20) / 2)}, // invalid input: the mean so far
				{x(60), want((10.0 + 20 + 60) / 3)},
				{x(50), want(0.5*50 + 0.5*30)},
			},
		},
		{
			// N = 3, α = 1/2, no warm-up: the first sample is the first value.
			name:     "no warm-up window: the first sample is the first value",
			params:   `{"ema_window":"3s"}`,
			interval: time.Second,
			ticks: []tickIO{
				{x(7), want(7)},
				{x(9), want(0.5*9 + 0.5*7)},
			},
		},
		{
			// N = 3, α = 1/2, no warm-up, max factor 0.9.
			name:     "above max_envelope the output and the state are multiplied by the max factor",
			params:   `{"ema_window":"3s","correction_factor_on_max_envelope_violation":0.9}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(80, 100, nan), want(80)},
				{in(200, 100, nan), want(0.9 * (0.5*200 + 0.5*80))}, // 140 → 126, once per tick
				// The state is 126, not 140: 0.5·70 + 0.5·126 = 98 ≤ 100.
				{in(70, 100, nan), want(0.5*70 + 0.5*126)},
				{in(98, 100, nan), want(98)},                         // equal to the envelope is no violation
				{in(202, nan, nan), want(0.5*202 + 0.5*98)},          // an invalid envelope is not applied
				{in(nan, 100, nan), want(0.5*202 + 0.5*98)},          // a re-emitted output is not corrected
				{in(150, 140, nan), want(0.9 * (0.5*150 + 0.5*150))}, // 150 > 140 → 135
			},
		},
		{
			// N = 3, α = 1/2, no warm-up, min factor 1.5.
			name:     "below min_envelope the output and the state are multiplied by the min factor",
			params:   `{"ema_window":"3s","correction_factor_on_min_envelope_violation":1.5}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(60, nan, 50), want(60)},
				{in(20, nan, 50), want(1.5 * (0.5*20 + 0.5*60))}, // 40 → 60
				// The state is 60, not 40: 0.5·60 + 0.5·60 = 60.
				{in(60, nan, 50), want(60)},
				{in(30, nan, 50), want(1.5 * (0.5*30 + 0.5*60))}, // 45 → 67.5
			},
		},
		{
			// N = 4, α = 2/5, W = 2, max factor 0.5.
			name:     "the warm-up mean is corrected by the envelope too",
			params:   `{"ema_window":"4s","warmup_window":"2s","correction_factor_on_max_envelope_violation":0.5}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(20, 10, nan), want(nan)},
				{in(30, 10, nan), want(0.5 * (20.0 + 30) / 2)}, // 25 → 12.5
				{in(12.5, 10, nan), want(0.5 * 12.5)},          // 12.5 → 6.25
			},
		},
		{
			name:     "default correction factors are 1: a violation changes nothing",
			params:   `{"ema_window":"3s"}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(200, 100, nan), want(200)},
				{in(2, nan, 150), want(0.5*2 + 0.5*200)},
			},
		},
		{
			// N = 3, α = 1/2, W = 2.
			name:     "after warm-up an invalid input re-emits; N consecutive invalid inputs restart the warm-up",
			params:   `{"ema_window":"3s","warmup_window":"2s"}`,
			interval: time.Second,
			ticks: []tickIO{
				{x(10), want(nan)},
				{x(20), want(15)},
				{x(nan), want(15)},
				{x(nan), want(15)},
				{x(25), want(0.5*25 + 0.5*15)}, // a valid input ends the invalid run
				{x(nan), want(20)},
				{x(nan), want(20)},
				{x(nan), want(20)}, // the 3rd invalid in a row still re-emits, then resets
				{x(nan), want(nan)},
				{x(40), want(nan)},             // warm-up again
				{x(60), want((40.0 + 60) / 2)}, // the old state is gone
			},
		},
		{
			// N = 2, W = 3.
			name:     "N consecutive invalid inputs during warm-up drop the samples so far",
			params:   `{"ema_window":"2s","warmup_window":"3s"}`,
			interval: time.Second,
			ticks: []tickIO{
				{x(10), want(nan)},
				{x(nan), want(nan)},
				{x(nan), want(nan)},
				{x(40), want(nan)},
				{x(50), want(nan)},
				{x(60), want((40.0 + 50 + 60) / 3)},
			},
		},
		{
			// N = 1, α = 1: one invalid input re-emits, the next is in warm-up.
			name:     "window of one tick follows the input",
			params:   `{"ema_window":"500ms"}`,
			interval: 500 * time.Millisecond,
			ticks: []tickIO{
				{x(3), want(3)},
				{x(5), want(5)},
				{x(nan), want(5)},
				{x(nan), want(nan)},
				{x(8), want(8)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runTickTable(t, mustProvisionComponent(t, "EMA", tc.params, tc.interval), tc.ticks)
		})
	}
}

// TestEMABlueprintWindows uses the latency blueprint's windows at the
// default 500 ms interval: N = 3000, α = 2/3001, W = 120.
func TestEMABlueprintWindows(t *testing.T) {
	nan := components.Invalid
	var ticks []tickIO
	for i := 1; i <= 120; i++ {
		want := nan
		if i == 120 {
			want = 121.0 / 2 // mean of 1..120
		}
		ticks = append(ticks, tickIO{[]float64{float64(i), nan, nan}, []float64{want}})
	}
	const alpha = 2.0 / 3001
	first := alpha*100 + (1-alpha)*60.5
	ticks = append(ticks,
		tickIO{[]float64{100, nan, nan}, []float64{first}},
		tickIO{[]float64{0, nan, nan}, []float64{(1 - alpha) * first}},
	)
	// 2999 invalid inputs re-emit; the 3000th still re-emits and resets.
	for i := 1; i <= 3000; i++ {
		ticks = append(ticks, tickIO{[]float64{nan, nan, nan}, []float64{(1 - alpha) * first}})
	}
	ticks = append(ticks, tickIO{[]float64{nan, nan, nan}, []float64{nan}})
	ticks = append(ticks, tickIO{[]float64{7, nan, nan}, []float64{nan}})

	ema := mustProvisionComponent(t, "EMA",
		`{"ema_window":"1500s","warmup_window":"60s","correction_factor_on_max_envelope_violation":0.95}`,
		500*time.Millisecond)
	runTickTable(t, ema, ticks)
}
