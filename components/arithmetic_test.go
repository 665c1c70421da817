package components_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestArithmetic(t *testing.T) {
	nan := components.Invalid
	in := func(lhs, rhs float64) []float64 { return []float64{lhs, rhs} }
	want := func(v float64) []float64 { return []float64{v} }

	for _, tc := range []struct {
		operator string
		ticks    []tickIO
	}{
		{"add", []tickIO{
			{in(3, 4), want(7)},
			{in(-1.5, 0.25), want(-1.25)},
			{in(nan, 4), want(nan)},
			{in(3, nan), want(nan)},
			{in(math.MaxFloat64, math.MaxFloat64), want(nan)}, // +Inf is invalid
		}},
		{"sub", []tickIO{
			{in(3, 4), want(-1)},
			{in(10, 0.5), want(9.5)},
			{in(nan, nan), want(nan)},
		}},
		{"mul", []tickIO{
			{in(3, 4), want(12)},
			{in(1200, 1.1), want(1200 * 1.1)},
			{in(0, nan), want(nan)},
			{in(1e308, 10), want(nan)},  // +Inf is invalid
			{in(-1e308, 10), want(nan)}, // -Inf is invalid
		}},
		{"div", []tickIO{
			{in(3, 4), want(0.75)},
			{in(-9, 3), want(-3)},
			{in(0, 5), want(0)},
			{in(3, 0), want(nan)}, // x/0 is invalid
			{in(-3, 0), want(nan)},
			{in(0, 0), want(nan)},
			{in(nan, 2), want(nan)},
			{in(2, nan), want(nan)},
			{in(6, 2), want(3)}, // no state carried from invalid ticks
		}},
		{"pow", []tickIO{
			{in(2, 10), want(1024)},
			{in(9, 0.5), want(3)},
			{in(0, -1), want(nan)}, // +Inf is invalid
			{in(-8, 1.0/3), want(nan)},
			{in(nan, 0), want(1)}, // math.Pow(NaN, 0) is 1
		}},
	} {
		t.Run(tc.operator, func(t *testing.T) {
			params := fmt.Sprintf(`{"operator":%q}`, tc.operator)
			runTickTable(t, mustProvisionComponent(t, "Arithmetic", params, time.Second), tc.ticks)
		})
	}
}
