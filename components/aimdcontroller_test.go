package components_test

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestAIMDController(t *testing.T) {
	nan := components.Invalid
	// in builds the input slots: signal, setpoint, incoming, accepted.
	in := func(signal, setpoint, incoming, accepted float64) []float64 {
		return []float64{signal, setpoint, incoming, accepted}
	}
	// want builds the outputs: load_multiplier, rate_limit, is_overload.
	want := func(loadMultiplier, rateLimit, isOverload float64) []float64 {
		return []float64{loadMultiplier, rateLimit, isOverload}
	}
	invalid := want(nan, nan, nan)
	// held is 10 ticks with an invalid setpoint at 500 ms: 4.5 s since the
	// first invalid tick, less than 5 s, so the multiplier 0.5 is held.
	var held []tickIO
	for i := 0; i < 10; i++ {
		held = append(held, tickIO{in(200, nan, 120, 120), want(0.5, 0.5*120, 1)})
	}

	for _, tc := range []struct {
		name     string
		params   string
		interval time.Duration
		ticks    []tickIO
	}{
		{
			// g = clamp(setpoint/signal, 0.1, 1); multiplier = min(2, accepted/incoming·g + increment).
			name:     "the integrator starts at max_load_multiplier, resets to 0 on overload and adds the increment per tick",
			params:   `{"load_multiplier_linear_increment":0.1}`,
			interval: time.Second,
			ticks: []tickIO{
				// No overload yet: increment min(2+0.1, 2) = 2, multiplier capped at 2.
				{in(50, 100, 100, 30), want(2, 2*100, 0)},
				// Overload: increment 0, g = 100/200, observed 80/100.
				{in(200, 100, 100, 80), want(0.8*0.5, 0.8*0.5*100, 1)},
				// signal == setpoint is no overload: increment 0.1, g 1.
				{in(100, 100, 50, 50), want(1*1+0.1, (1*1+0.1)*50, 0)},
				{in(80, 100, 100, 60), want(0.6*1+0.2, (0.6*1+0.2)*100, 0)},
				{in(90, 100, 100, 60), want(0.6*1+0.3, (0.6*1+0.3)*100, 0)},
				// Overload at the gradient floor: (100/2000) = 0.05 clamped to 0.1.
				{in(2000, 100, 100, 100), want(1*0.1, 1*0.1*100, 1)},
				{in(50, 100, 100, 100), want(1+0.1, (1+0.1)*100, 0)},
				{in(50, 100, 100, 100), want(1+0.2, (1+0.2)*100, 0)},
			},
		},
		{
			name:     "the multiplier is capped at max_load_multiplier",
			params:   `{"load_multiplier_linear_increment":0.4,"max_load_multiplier":1.5}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(150, 100, 10, 10), want(1.0/1.5, 1.0/1.5*10, 1)},
				{in(50, 100, 10, 10), want(1+0.4, (1+0.4)*10, 0)},
				{in(50, 100, 10, 10), want(1.5, 1.5*10, 0)}, // 1 + 0.8 capped at 1.5
				{in(50, 100, 10, 5), want(1.5, 1.5*10, 0)},  // 0.5 + 1.2 capped at 1.5
				{in(50, 100, 10, 5), want(1.5, 1.5*10, 0)},  // 0.5 + 1.5 (integrator cap) capped
				{in(101, 100, 10, 10), want(100.0/101, 100.0/101*10, 1)},
			},
		},
		{
			name:     "default increment is 0.0025 per tick",
			interval: 500 * time.Millisecond,
			ticks: []tickIO{
				{in(150, 100, 1000, 900), want(0.9/1.5, 0.9/1.5*1000, 1)},
				{in(90, 100, 1000, 1000), want(1+0.0025, (1+0.0025)*1000, 0)},
				{in(90, 100, 1000, 1000), want(1+0.005, (1+0.005)*1000, 0)},
				{in(90, 100, 2000, 1000), want(0.5+0.0075, (0.5+0.0075)*2000, 0)},
			},
		},
		{
			name:     "gradient parameters are shared with GradientController",
			params:   `{"slope":-2,"min_gradient":0.2,"max_gradient":0.9}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(200, 100, 10, 10), want(1.0/(2*2), 1.0/(2*2)*10, 1)},
				{in(1000, 100, 10, 10), want(0.2, 0.2*10, 1)},
				// No overload: (100/50)^2 = 4 clamped to 0.9, plus the increment.
				{in(50, 100, 10, 10), want(0.9+0.0025, (0.9+0.0025)*10, 0)},
			},
		},
		{
			name:     "an idle API is not limited: observed is 1 and rate_limit invalid",
			params:   `{"load_multiplier_linear_increment":0.1}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(200, 100, 0, 0), want(1*0.5, nan, 1)},
				{in(50, 100, 0, 0), want(1+0.1, nan, 0)},
				{in(50, 100, 40, 20), want(0.5+0.2, (0.5+0.2)*40, 0)},
			},
		},
		{
			name:     "invalid while the setpoint is invalid before the first valid tick",
			interval: 500 * time.Millisecond,
			ticks: []tickIO{
				{in(200, nan, 100, 100), invalid},
				{in(nan, nan, 100, 100), invalid},
				{in(200, 0, 100, 100), invalid}, // setpoint 0 has no gradient
				{in(200, 100, 100, 100), want(0.5, 0.5*100, 1)},
			},
		},
		{
			name:     "holds the last multiplier for less than 5 s of invalid setpoint, then emits invalid",
			interval: 500 * time.Millisecond,
			ticks: append(append([]tickIO{
				{in(200, 100, 100, 100), want(0.5, 0.5*100, 1)},
			}, held...),
				// 11th invalid tick: 5 s since the first, no longer held.
				tickIO{in(200, nan, 120, 120), invalid},
				tickIO{in(200, nan, 120, 120), invalid},
				// Valid again: the integrator goes on from 0.
				tickIO{in(50, 100, 100, 100), want(1+0.0025, (1+0.0025)*100, 0)},
			),
		},
		{
			name:     "while held, rate_limit follows the current incoming rate, or stays when it is invalid",
			interval: 500 * time.Millisecond,
			ticks: []tickIO{
				{in(200, 100, 100, 100), want(0.5, 0.5*100, 1)},
				{in(nan, 100, 300, 300), want(0.5, 0.5*300, 1)},
				{in(200, 100, nan, 100), want(0.5, 0.5*100, 1)},
				{in(200, 100, 100, nan), want(0.5, 0.5*100, 1)},
				// A valid tick ends the hold and restarts its 5 s.
				{in(50, 100, 100, 100), want(1+0.0025, (1+0.0025)*100, 0)},
				{in(50, nan, 80, 80), want(1+0.0025, (1+0.0025)*80, 0)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runTickTable(t, mustProvisionComponent(t, "AIMDController", tc.params, tc.interval), tc.ticks)
		})
	}
}

// TestAIMDControllerHoldRestarts checks that a valid tick restarts the 5 s
// hold: 10 invalid ticks, 1 valid, 10 invalid are all held at 500 ms.
func TestAIMDControllerHoldRestarts(t *testing.T) {
	nan := components.Invalid
	ticks := []tickIO{{[]float64{400, 100, 100, 100}, []float64{0.25, 25, 1}}}
	for range 10 {
		ticks = append(ticks, tickIO{[]float64{400, nan, 100, 100}, []float64{0.25, 25, 1}})
	}
	ticks = append(ticks, tickIO{[]float64{200, 100, 100, 100}, []float64{0.5, 50, 1}})
	for range 10 {
		ticks = append(ticks, tickIO{[]float64{400, nan, 100, 100}, []float64{0.5, 50, 1}})
	}
	ticks = append(ticks, tickIO{[]float64{400, nan, 100, 100}, []float64{nan, nan, nan}})
	runTickTable(t, mustProvisionComponent(t, "AIMDController", "", 500*time.Millisecond), ticks)
}
