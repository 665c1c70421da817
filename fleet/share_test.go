package fleet

import (
	"math"
	"testing"
	"time"
)

func TestShare(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		limit, demand, totalDemand float64
		live                       int
		want                       float64
	}{
		{"no demand anywhere splits evenly", 1000, 0, 0, 4, 250},
		{"under the limit: demand plus an equal part of the headroom", 1000, 100, 400, 4, 250},
		{"an idle member gets its part of the headroom", 1000, 0, 600, 4, 100},
		{"over the limit: in proportion to demand", 1000, 1000, 4000, 4, 250},
		{"over the limit, unequal demand", 1000, 3000, 4000, 2, 750},
		{"exactly at the limit", 1000, 250, 1000, 4, 250},
		{"alone", 1000, 5000, 5000, 1, 1000},
		{"no live count reported counts itself", 1000, 10, 10, 0, 1000},
		{"total below own demand is raised to it", 1000, 2000, 1000, 2, 1000},
		{"limit 0", 0, 10, 40, 4, 0},
		{"negative limit is 0", -5, 10, 40, 4, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Share(tc.limit, tc.demand, tc.totalDemand, tc.live); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("Share(%v, %v, %v, %d) = %v, want %v", tc.limit, tc.demand, tc.totalDemand, tc.live, got, tc.want)
			}
		})
	}
	if got := Share(math.NaN(), 1, 1, 1); !math.IsNaN(got) {
		t.Errorf("no limit: Share = %v, want NaN", got)
	}
}

// TestSharesAddUpToTheLimit: members that saw the same totals split exactly
// the limit, under and over it.
func TestSharesAddUpToTheLimit(t *testing.T) {
	for _, demands := range [][]float64{{0, 0, 0}, {10, 20, 30}, {900, 50, 5000, 1}, {1000, 1000, 1000, 1000}} {
		total := 0.0
		for _, d := range demands {
			total += d
		}
		sum := 0.0
		for _, d := range demands {
			sum += Share(1000, d, total, len(demands))
		}
		if math.Abs(sum-1000) > 1e-9 {
			t.Errorf("demands %v: shares add up to %v, want 1000", demands, sum)
		}
	}
}

func TestMembershipBelievesAFallOnlyAfterTheWindow(t *testing.T) {
	var m membership
	window := int64(500 * time.Millisecond)
	steps := []struct {
		atMs int64
		live int
		want int
	}{
		{0, 4, 4},
		{100, 4, 4},
		{200, 1, 4}, // Redis lost its data: one member re-announced so far
		{300, 4, 4}, // all back
		{400, 3, 4}, // one left: not believed yet
		{799, 3, 4}, // still within the window of the last 4 (300 + 500)
		{800, 3, 3}, // believed
		{900, 5, 5}, // a rise is believed at once
		{1000, 5, 5},
	}
	for _, s := range steps {
		if got := m.observe(s.live, s.atMs*int64(time.Millisecond), window); got != s.want {
			t.Errorf("at %d ms, live %d: planned %d, want %d", s.atMs, s.live, got, s.want)
		}
	}
}
