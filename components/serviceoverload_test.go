package components_test

import (
	"math"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestServiceOverloadTicks(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name        string
		params      string
		util, queue float64
		want        float64 // overloaded; NaN: invalid
	}{
		{"busy at the threshold is overloaded", `{"service":"db"}`, 0.9, 0, 1},
		{"below both thresholds is not", `{"service":"db"}`, 0.89, 9.9, 0},
		{"a queue alone is overload", `{"service":"db"}`, 0.5, 10, 1},
		{"utilisation alone decides when queueing is unknown", `{"service":"db"}`, 0.95, nan, 1},
		{"queueing alone decides when utilisation is unknown", `{"service":"db"}`, nan, 3, 0},
		{"nothing known is invalid", `{"service":"db"}`, nan, nan, nan},
		{"thresholds are the policy's", `{"service":"db","utilisation_threshold":0.5,"queueing_threshold_ms":1}`, 0.6, 0, 1},
		{"utilisation above 1 counts queued work", `{"service":"db","utilisation_threshold":1.2}`, 1.1, nan, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustProvisionComponent(t, "ServiceOverload", tc.params, time.Second).(*components.ServiceOverload)
			if l := s.Load(); l.Service != "db" || components.IsValid(l.Utilisation) || components.IsValid(l.QueueingMs) || l.Overloaded {
				t.Errorf("Load() before any tick = %+v, want db with nothing known", l)
			}
			out := []float64{0}
			s.Execute([]float64{tc.util, tc.queue}, out)
			if !(out[0] == tc.want || math.IsNaN(out[0]) && math.IsNaN(tc.want)) {
				t.Errorf("overloaded = %v, want %v", out[0], tc.want)
			}
			l := s.Load()
			if l.Overloaded != (tc.want == 1) || !same(l.Utilisation, tc.util) || !same(l.QueueingMs, tc.queue) {
				t.Errorf("Load() = %+v after utilisation %v, queueing %v", l, tc.util, tc.queue)
			}
		})
	}
}

func same(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

func TestServiceOverloadNeedsItsService(t *testing.T) {
	if _, err := provisionComponent("ServiceOverload", `{}`, time.Second); err == nil {
		t.Error("a ServiceOverload without service provisioned")
	}
	if _, err := provisionComponent("ServiceOverload", `{"service":"db","utilisation_threshold":0}`, time.Second); err == nil {
		t.Error("utilisation_threshold 0 provisioned")
	}
}
