package components_test

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestClamp(t *testing.T) {
	nan := components.Invalid
	// in builds the input slots: input, min, max.
	in := func(input, lo, hi float64) []float64 { return []float64{input, lo, hi} }
	want := func(v float64) []float64 { return []float64{v} }
	runTickTable(t, mustProvisionComponent(t, "Clamp", "", time.Second), []tickIO{
		{in(5, 0, 10), want(5)},
		{in(-1, 0, 10), want(0)},
		{in(11, 0, 10), want(10)},
		{in(0, 0, 10), want(0)},
		{in(10, 0, 10), want(10)},
		{in(nan, 0, 10), want(nan)}, // invalid input
		{in(5, nan, 3), want(3)},    // invalid min is not applied
		{in(5, 6, nan), want(6)},    // invalid max is not applied
		{in(5, nan, nan), want(5)},  // no bounds
		{in(5, 10, 0), want(nan)},   // min > max is invalid
		{in(5, 4, 4), want(4)},      // min == max
		{in(nan, nan, nan), want(nan)},
	})
}
