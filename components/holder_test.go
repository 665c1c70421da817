package components_test

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestHolder(t *testing.T) {
	nan := components.Invalid
	// in builds the input slots: input, reset.
	in := func(input, reset float64) []float64 { return []float64{input, reset} }
	want := func(v float64) []float64 { return []float64{v} }
	for _, tc := range []struct {
		name     string
		params   string
		interval time.Duration
		ticks    []tickIO
	}{
		{
			name:     "holds a valid input for hold_for ticks, the latching tick included",
			params:   `{"hold_for":"3s"}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(nan, nan), want(nan)}, // nothing latched yet
				{in(5, nan), want(5)},     // latch
				{in(7, nan), want(5)},     // valid inputs are ignored while holding
				{in(nan, nan), want(5)},   // invalid inputs too
				{in(9, nan), want(9)},     // 3 ticks done: latch the next valid input
				{in(nan, nan), want(9)},
				{in(nan, nan), want(9)},
				{in(nan, nan), want(nan)}, // hold over, nothing valid to latch
				{in(nan, nan), want(nan)},
				{in(4, nan), want(4)},
			},
		},
		{
			name:     "a valid non-zero reset drops the hold at once",
			params:   `{"hold_for":"3s"}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(4, 0), want(4)},     // reset 0 does nothing
				{in(6, 1), want(6)},     // reset: latch the current input
				{in(8, nan), want(6)},   // invalid reset does nothing
				{in(nan, 1), want(nan)}, // reset with nothing valid to latch
				{in(3, 0), want(3)},
				{in(2, -1), want(2)}, // any non-zero reset
				{in(1, 0), want(2)},
			},
		},
		{
			name:     "hold_for rounds up to whole ticks",
			params:   `{"hold_for":"1500ms"}`,
			interval: time.Second,
			ticks: []tickIO{
				{in(1, nan), want(1)},
				{in(2, nan), want(1)},
				{in(3, nan), want(3)},
				{in(4, nan), want(3)},
			},
		},
		{
			name:     "hold_for of one tick follows valid inputs",
			params:   `{"hold_for":"500ms"}`,
			interval: 500 * time.Millisecond,
			ticks: []tickIO{
				{in(1, nan), want(1)},
				{in(2, nan), want(2)},
				{in(nan, nan), want(nan)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runTickTable(t, mustProvisionComponent(t, "Holder", tc.params, tc.interval), tc.ticks)
		})
	}
}
