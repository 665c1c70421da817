package components_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestDecider(t *testing.T) {
	nan := components.Invalid
	// Every operator sees the same ticks: lhs below, equal to and above rhs,
	// then an invalid lhs and an invalid rhs.
	inputs := [][]float64{{1, 2}, {2, 2}, {3, 2}, {nan, 2}, {2, nan}, {-0.5, -0.25}}
	for _, tc := range []struct {
		operator string
		want     []float64
	}{
		{"gt", []float64{0, 0, 1, nan, nan, 0}},
		{"lt", []float64{1, 0, 0, nan, nan, 1}},
		{"gte", []float64{0, 1, 1, nan, nan, 0}},
		{"lte", []float64{1, 1, 0, nan, nan, 1}},
		{"eq", []float64{0, 1, 0, nan, nan, 0}},
		{"neq", []float64{1, 0, 1, nan, nan, 1}},
	} {
		t.Run(tc.operator, func(t *testing.T) {
			ticks := make([]tickIO, len(inputs))
			for i := range inputs {
				ticks[i] = tickIO{inputs[i], []float64{tc.want[i]}}
			}
			params := fmt.Sprintf(`{"operator":%q}`, tc.operator)
			runTickTable(t, mustProvisionComponent(t, "Decider", params, time.Second), ticks)
		})
	}
}
