package components_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestSLOConcurrencyController(t *testing.T) {
	nan := components.Invalid
	// in builds the input slots: latency_ms, setpoint_ms, in_flight, oldest_in_flight_ms.
	in := func(latency, setpoint, inFlight, oldest float64) []float64 {
		return []float64{latency, setpoint, inFlight, oldest}
	}
	// want builds the outputs: limit, is_overload.
	want := func(limit, overload float64) []float64 { return []float64{limit, overload} }
	for _, tc := range []struct {
		name   string
		params string
		ticks  []tickIO
	}{
		{
			name: "slow start doubles a binding limit until the first overload, then cuts by setpoint/latency and adds √limit",
			ticks: []tickIO{
				{in(20, 100, 9, 0), want(20, 0)},   // 9 ≥ 0.8·10: binding, 10·2
				{in(30, 100, 16, 0), want(40, 0)},  // 16 ≥ 0.8·20
				{in(200, 100, 40, 0), want(20, 1)}, // 40·100/200, slow start ends
				{in(50, 100, 20, 0), want(20+math.Sqrt(20), 0)},
				{in(50, 100, 24, 0), want(20+math.Sqrt(20)+math.Sqrt(20+math.Sqrt(20)), 0)},
			},
		},
		{
			name: "a limit the traffic does not reach holds",
			ticks: []tickIO{
				{in(20, 100, 7, 0), want(10, 0)}, // 7 < 0.8·10
				{in(20, 100, 0, 0), want(10, 0)},
				{in(nan, 100, 0, 0), want(10, 0)}, // idle: nothing completed
			},
		},
		{
			name: "the cut is floored at min_gradient, and the limit at min_limit",
			ticks: []tickIO{
				{in(1000, 100, 10, 0), want(5, 1)},
				{in(1000, 100, 5, 0), want(2.5, 1)},
				{in(1000, 100, 2, 0), want(1.25, 1)},
				{in(1000, 100, 1, 0), want(1, 1)},
			},
		},
		{
			name: "with nothing completed, the oldest request in flight stands in for the latency",
			ticks: []tickIO{
				{in(nan, 100, 10, 400), want(5, 1)},            // stalled: 10·max(0.5, 100/400)
				{in(nan, 100, 5, 50), want(5+math.Sqrt(5), 0)}, // young ones, binding: √limit more
			},
		},
		{
			name:   "parameters",
			params: `{"initial_limit":100,"max_limit":150,"slow_start_factor":1.2,"utilization":0.5,"min_gradient":0.9}`,
			ticks: []tickIO{
				{in(10, 100, 50, 0), want(120, 0)},
				{in(10, 100, 60, 0), want(144, 0)},
				{in(10, 100, 72, 0), want(150, 0)},   // capped at max_limit
				{in(500, 100, 150, 0), want(135, 1)}, // gradient floored at 0.9
			},
		},
		{
			name: "no setpoint holds the limit",
			ticks: []tickIO{
				{in(500, nan, 10, 0), want(10, 0)},
				{in(500, 0, 10, 0), want(10, 0)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runTickTable(t, mustProvisionComponent(t, "SLOConcurrencyController", tc.params, 100*time.Millisecond), tc.ticks)
		})
	}
}

func TestSLOConcurrencyControllerRejectsBadParameters(t *testing.T) {
	for params, want := range map[string]string{
		`{"min_limit":0}`:               "min_limit",
		`{"min_limit":5,"max_limit":4}`: "max_limit",
		`{"initial_limit":0.5}`:         "initial_limit",
		`{"min_gradient":0}`:            "min_gradient",
		`{"slow_start_factor":0.5}`:     "slow_start_factor",
		`{"utilization":1.5}`:           "utilization",
	} {
		_, err := provisionComponent("SLOConcurrencyController", params, time.Second)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want one about %s", params, err, want)
		}
	}
}
