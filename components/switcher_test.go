package components_test

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestSwitcher(t *testing.T) {
	nan := components.Invalid
	// in builds the input slots: on_signal, off_signal, switch.
	in := func(on, off, switchValue float64) []float64 { return []float64{on, off, switchValue} }
	want := func(v float64) []float64 { return []float64{v} }
	runTickTable(t, mustProvisionComponent(t, "Switcher", "", time.Second), []tickIO{
		{in(1, 2, 1), want(1)},
		{in(1, 2, 0), want(2)},
		{in(1, 2, -3), want(1)}, // any non-zero switch is on
		{in(1, 2, 0.5), want(1)},
		{in(1, 2, nan), want(nan)}, // invalid switch
		{in(nan, 2, 1), want(nan)}, // on_signal passes through invalid
		{in(nan, 2, 0), want(2)},   // the unselected input may be invalid
		{in(1, nan, 1), want(1)},
		{in(1, nan, 0), want(nan)},
	})
}
