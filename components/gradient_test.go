package components_test

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestGradientController(t *testing.T) {
	nan := components.Invalid
	// in builds the input slots: signal, setpoint, control_variable, optimize, min, max.
	in := func(signal, setpoint, controlVariable, optimize, lo, hi float64) []float64 {
		return []float64{signal, setpoint, controlVariable, optimize, lo, hi}
	}
	want := func(v float64) []float64 { return []float64{v} }

	for _, tc := range []struct {
		name   string
		params string
		ticks  []tickIO
	}{
		{
			// g = clamp((signal/setpoint)^-1, 0.1, 1).
			name: "defaults: slope -1, gradient clamped to [0.1, 1]",
			ticks: []tickIO{
				{in(200, 100, 50, nan, nan, nan), want(0.5 * 50)},
				{in(125, 100, 80, nan, nan, nan), want(0.8 * 80)},
				{in(100, 100, 80, nan, nan, nan), want(1 * 80)},
				{in(50, 100, 80, nan, nan, nan), want(1 * 80)},     // 2 clamped to max_gradient 1
				{in(2000, 100, 80, nan, nan, nan), want(0.1 * 80)}, // 0.05 clamped to min_gradient 0.1
				{in(0, 100, 80, nan, nan, nan), want(1 * 80)},      // 0^-1 = +Inf clamped to 1
			},
		},
		{
			name:   "custom slope and gradient bounds",
			params: `{"slope":-2,"min_gradient":0.2,"max_gradient":0.8}`,
			ticks: []tickIO{
				{in(200, 100, 10, nan, nan, nan), want(1.0 / (2 * 2) * 10)},
				{in(150, 100, 9, nan, nan, nan), want(1 / (1.5 * 1.5) * 9)},
				{in(50, 100, 10, nan, nan, nan), want(0.8 * 10)},   // 4 clamped to 0.8
				{in(1000, 100, 10, nan, nan, nan), want(0.2 * 10)}, // 0.01 clamped to 0.2
			},
		},
		{
			name:   "positive slope follows the ratio",
			params: `{"slope":1,"min_gradient":0,"max_gradient":10}`,
			ticks: []tickIO{
				{in(300, 100, 5, nan, nan, nan), want(3 * 5)},
				{in(2000, 100, 5, nan, nan, nan), want(10 * 5)},
			},
		},
		{
			name: "optimize is added before the min/max clamp",
			ticks: []tickIO{
				{in(400, 100, 40, 7, nan, nan), want(0.25*40 + 7)},
				{in(400, 100, 40, 7, 30, nan), want(30)},         // 17 raised to min 30
				{in(400, 100, 40, 7, nan, 12), want(12)},         // 17 cut to max 12
				{in(400, 100, 40, 7, 10, 20), want(0.25*40 + 7)}, // inside [10, 20]
				{in(400, 100, 40, -20, 0, nan), want(0)},         // -10 raised to min 0
				{in(400, 100, 40, nan, 5, 50), want(0.25 * 40)},  // invalid optimize adds nothing
			},
		},
		{
			name: "invalid signal, setpoint or control_variable gives invalid",
			ticks: []tickIO{
				{in(nan, 100, 40, 7, 0, 100), want(nan)},
				{in(200, nan, 40, 7, 0, 100), want(nan)},
				{in(200, 100, nan, 7, 0, 100), want(nan)},
				{in(200, 0, 40, 7, 0, 100), want(nan)}, // setpoint 0
				{in(200, 100, 40, 7, 0, 100), want(0.5*40 + 7)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runTickTable(t, mustProvisionComponent(t, "GradientController", tc.params, time.Second), tc.ticks)
		})
	}
}
