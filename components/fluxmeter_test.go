package components_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestFluxMeter(t *testing.T) {
	nan := components.Invalid
	comp := mustProvisionComponent(t, "FluxMeter",
		`{"selector":{"control_point":"ingress","api":"GET /cart"},"slo":"250ms"}`, time.Second)
	meter, ok := comp.(components.Source)
	if !ok {
		t.Fatalf("FluxMeter %T is not a Source", comp)
	}
	want := components.Selector{ControlPoint: "ingress", API: "GET /cart"}
	if got := meter.Selector(); got != want {
		t.Errorf("Selector() = %+v, want %+v", got, want)
	}
	if got := comp.(*components.FluxMeter).SLO(); got != 250*time.Millisecond {
		t.Errorf("SLO() = %v, want 250ms", got)
	}
	if got, want := comp.Ports().Out, []string{
		"latency_avg_ms", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
		"incoming_rps", "accepted_rps", "rejected_rps", "goodput_rps", "in_flight", "completed_rps",
		"oldest_in_flight_ms", "answered_latency_avg_ms", "abandoned_rps", "shared_latency_avg_ms", "shared_latency_sem_ms",
		"scaled_latency_avg_ms", "scaled_latency_p50_ms", "scaled_latency_p90_ms", "scaled_latency_p95_ms", "scaled_latency_p99_ms", "full_rps",
		"worst_api_latency_avg_ms", "worst_api_latency_p50_ms", "worst_api_latency_p90_ms", "worst_api_latency_p95_ms", "worst_api_latency_p99_ms",
	}; len(got) != len(want) {
		t.Fatalf("outputs %v, want %v", got, want)
	} else {
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("output %d is %q, want %q", i, got[i], want[i])
			}
		}
	}

	allInvalid := []float64{nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan}
	// Before any reading every output is invalid.
	runTickTable(t, comp, []tickIO{{nil, allInvalid}})

	first := components.FluxReading{
		LatencyAvgMs: 12.5, LatencyP50Ms: 10, LatencyP90Ms: 20, LatencyP95Ms: 30, LatencyP99Ms: 45,
		IncomingRps: 100, AcceptedRps: 90, RejectedRps: 10, GoodputRps: 85, InFlight: 7, CompletedRps: 88,
		OldestInFlightMs: 134, AnsweredLatencyAvgMs: 11, AbandonedRps: 2, SharedLatencyAvgMs: 9,
		SharedLatencySemMs: 0.5, ScaledLatencyAvgMs: 6, ScaledLatencyP50Ms: 5, ScaledLatencyP90Ms: 15,
		ScaledLatencyP95Ms: 25, ScaledLatencyP99Ms: 40, FullRps: 8,
		WorstAPILatencyAvgMs: 16, WorstAPILatencyP50Ms: 14, WorstAPILatencyP90Ms: 33, WorstAPILatencyP95Ms: 41, WorstAPILatencyP99Ms: 60,
	}
	meter.Observe(first)
	wantFirst := []float64{12.5, 10, 20, 30, 45, 100, 90, 10, 85, 7, 88, 134, 11, 2, 9, 0.5, 6, 5, 15, 25, 40, 8, 16, 14, 33, 41, 60}
	// The last reading is emitted until the next one.
	runTickTable(t, comp, []tickIO{{nil, wantFirst}, {nil, wantFirst}})

	// Fields without data stay invalid.
	meter.Observe(components.FluxReading{
		LatencyAvgMs: nan, LatencyP50Ms: nan, LatencyP90Ms: nan, LatencyP95Ms: nan, LatencyP99Ms: nan,
		IncomingRps: 0, AcceptedRps: 0, RejectedRps: 0, GoodputRps: 0, InFlight: 0, CompletedRps: 0,
		AnsweredLatencyAvgMs: nan, SharedLatencyAvgMs: nan, SharedLatencySemMs: nan,
		ScaledLatencyAvgMs: nan, ScaledLatencyP50Ms: nan, ScaledLatencyP90Ms: nan, ScaledLatencyP95Ms: nan, ScaledLatencyP99Ms: nan, FullRps: 0,
		WorstAPILatencyAvgMs: nan, WorstAPILatencyP50Ms: nan, WorstAPILatencyP90Ms: nan, WorstAPILatencyP95Ms: nan, WorstAPILatencyP99Ms: nan,
	})
	runTickTable(t, comp, []tickIO{{nil, []float64{nan, nan, nan, nan, nan, 0, 0, 0, 0, 0, 0, 0, nan, 0, nan, nan, nan, nan, nan, nan, nan, 0, nan, nan, nan, nan, nan}}})
}

// TestFluxMeterAPISLOs checks api_slos: each SLO above 0, and only beside
// slo, the SLO the others' latencies are scaled to.
func TestFluxMeterAPISLOs(t *testing.T) {
	comp := mustProvisionComponent(t, "FluxMeter",
		`{"selector":{"control_point":"ingress"},"slo":"200ms","api_slos":{"GET /search":"40ms"}}`, time.Second)
	got := comp.(*components.FluxMeter).APISLOsByLabel()
	if len(got) != 1 || got["GET /search"] != 40*time.Millisecond {
		t.Errorf("APISLOsByLabel() = %v, want map[GET /search:40ms]", got)
	}
	for params, want := range map[string]string{
		`{"selector":{"control_point":"ingress"},"api_slos":{"GET /search":"40ms"}}`:            "api_slos needs slo",
		`{"selector":{"control_point":"ingress"},"slo":"1s","api_slos":{"GET /search":"0s"}}`:   `api_slos["GET /search"] 0s: must be > 0s`,
		`{"selector":{"control_point":"ingress"},"slo":"1s","api_slos":{"GET /search":"-5ms"}}`: `api_slos["GET /search"] -5ms: must be > 0s`,
	} {
		if _, err := provisionComponent("FluxMeter", params, time.Second); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", params, err, want)
		}
	}
}

func TestSelectorNormalized(t *testing.T) {
	for _, tc := range []struct {
		in         components.Selector
		wantAPI    string
		wantString string
	}{
		{components.Selector{ControlPoint: "ingress"}, "*", "ingress/*"},
		{components.Selector{ControlPoint: "ingress", API: "GET /cart"}, "GET /cart", "ingress/GET /cart"},
	} {
		if got := tc.in.Normalized().API; got != tc.wantAPI {
			t.Errorf("%+v.Normalized().API = %q, want %q", tc.in, got, tc.wantAPI)
		}
		if got := tc.in.String(); got != tc.wantString {
			t.Errorf("%+v.String() = %q, want %q", tc.in, got, tc.wantString)
		}
	}
}
