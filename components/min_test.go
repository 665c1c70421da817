package components_test

import (
	"math"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestMinMax(t *testing.T) {
	nan := components.Invalid
	inf := math.Inf(1)
	for _, tc := range []struct {
		name     string
		inputs   []float64
		min, max float64
	}{
		{"three inputs", []float64{3, 1, 2}, 1, 3},
		{"one input", []float64{5}, 5, 5},
		{"negative and fractional", []float64{-0.5, 0.25, -2}, -2, 0.25},
		{"equal inputs", []float64{4, 4}, 4, 4},
		{"an invalid input makes the output invalid", []float64{1, nan, 3}, nan, nan},
		{"an invalid first input", []float64{nan, 1}, nan, nan},
		{"invalid wins over an infinite input", []float64{-inf, nan, inf}, nan, nan},
		{"invalid wins over an infinite input after it", []float64{nan, -inf, inf}, nan, nan},
		{"infinite inputs are compared", []float64{-inf, 0, inf}, -inf, inf},
		{"no inputs", nil, nan, nan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct {
				typ  string
				want float64
			}{{"Min", tc.min}, {"Max", tc.max}} {
				comp := mustProvisionComponent(t, c.typ, "", time.Second)
				// Two ticks: the component keeps no state between them.
				runTickTable(t, comp, []tickIO{
					{tc.inputs, []float64{c.want}},
					{[]float64{7, 8}, []float64{map[string]float64{"Min": 7, "Max": 8}[c.typ]}},
				})
			}
		})
	}
}
