package engine_test

import (
	"math"
	"testing"
	"time"
)

const apiSLOsPolicy = `package p
import bp "spillway.dev/blueprints"
policies: a: bp.#Policy & {
	policy_name: "a"
	evaluation_interval: "1s"
	components: [{FluxMeter: {
		selector: control_point: "ingress"
		slo: "200ms"
		api_slos: "GET /search": "40ms"
		out_ports: {latency_p99_ms: "P99", scaled_latency_p99_ms: "SCALED_P99", scaled_latency_avg_ms: "SCALED_AVG", goodput_rps: "GOOD"}
	}}]
}
`

// TestFluxMeterAPISLOsThroughTheControlPoint sends answers of two APIs
// through a control point whose flux meter gives one a tighter SLO: the
// scaled latencies read that API's answers five times over (200 ÷ 40 ms),
// the other's as they are, and goodput counts each within its own SLO.
func TestFluxMeterAPISLOsThroughTheControlPoint(t *testing.T) {
	eng, clock := startManual(t, "p.cue", apiSLOsPolicy)
	ingress := eng.ControlPoints().Get("ingress")
	eng.Tick()
	// /search answers in 30 ms (150 scaled: over half of its SLO) and
	// 50 ms (over its SLO); /report in 100 ms, within its 200.
	for _, a := range []struct {
		label string
		ms    int
	}{{"GET /search", 30}, {"GET /search", 50}, {"GET /report", 100}, {"GET /report", 100}} {
		ticket, _ := ingress.Admit(a.label)
		ticket.DoneAfter(true, time.Duration(a.ms)*time.Millisecond)
	}
	clock.Store(int64(time.Second))
	eng.Tick()
	read := func(name string) float64 {
		v, err := eng.Signal("a", name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := read("P99"); math.Abs(got-100) > 2 {
		t.Errorf("p99 %.1f ms, want 100", got)
	}
	if got := read("SCALED_P99"); math.Abs(got-250) > 4 {
		t.Errorf("scaled p99 %.1f ms, want 250 (/search's 50 ms × 200 ÷ 40)", got)
	}
	if got := read("SCALED_AVG"); math.Abs(got-150) > 1e-6 {
		t.Errorf("scaled mean %.3f ms, want 150 ((150 + 250 + 100 + 100) ÷ 4)", got)
	}
	if got := read("GOOD"); got != 3 {
		t.Errorf("goodput %v/s, want 3 (/search's 50 ms is over its 40)", got)
	}
}
