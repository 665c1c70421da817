package components_test

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestFirstValid(t *testing.T) {
	nan := components.Invalid
	want := func(v float64) []float64 { return []float64{v} }
	runTickTable(t, mustProvisionComponent(t, "FirstValid", "", time.Second), []tickIO{
		{[]float64{nan, 2, 3}, want(2)},
		{[]float64{1, 2, 3}, want(1)},
		{[]float64{nan, nan, 3}, want(3)},
		{[]float64{nan, nan, nan}, want(nan)},
		{[]float64{nan, 0, 5}, want(0)}, // zero is valid
		{[]float64{-4}, want(-4)},
		{[]float64{nan}, want(nan)},
		{nil, want(nan)},
	})
}
