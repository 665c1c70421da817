package telemetry_test

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
	"github.com/spillway-dev/spillway/telemetry"
)

// limitPolicy meters and limits GET /a at the ingress control point with a
// constant rate limit of 100/s.
const limitPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: m: bp.#Policy & {
	policy_name: "m"
	evaluation_interval: "1s"
	components: [
		{FluxMeter: {selector: {control_point: "ingress", api: "GET /a"}, out_ports: {latency_p90_ms: "LATENCY_P90", incoming_rps: "INCOMING"}}},
		{Variable: {value: 100, out_ports: output: "LIMIT"}},
		{RateLimiter: {selector: {control_point: "ingress", api: "GET /a"}, in_ports: rate_limit: "LIMIT"}},
	]
}
`

// startEngine runs limitPolicy from a directory, ticked by hand.
func startEngine(t *testing.T, clock *enginetest.Clock) (*engine.Engine, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.cue"), []byte(limitPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	return enginetest.Start(t, engine.Options{Policies: dir, Clock: clock.Now}), dir
}

func newMetrics(t *testing.T, eng *engine.Engine) *telemetry.Metrics {
	t.Helper()
	m, err := telemetry.New(t.Context(), eng)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	return m
}

// scrape reads the metrics as Prometheus would.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return families
}

// sample finds the metric of family name whose labels include want.
func sample(families map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := families[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

func value(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := sample(families, name, labels)
	if m == nil {
		t.Fatalf("no %s%v in the scrape", name, labels)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, labels)
	return 0
}

func TestMetricsExportSignalsDecisionsAndDurations(t *testing.T) {
	clock := &enginetest.Clock{}
	eng, dir := startEngine(t, clock)
	m := newMetrics(t, eng)
	clock.Advance(time.Second)
	eng.Tick() // no traffic yet: LATENCY_P90 is invalid

	fam := scrape(t, m.Handler())
	p90 := map[string]string{"policy": "m", "signal": "LATENCY_P90", "component": "components[0].FluxMeter", "port": "latency_p90_ms"}
	if sample(fam, "spillway_signal", p90) != nil {
		t.Fatal("an invalid signal must be absent from spillway_signal")
	}
	if v := value(t, fam, "spillway_signal_invalid_total", p90); v != 1 {
		t.Fatalf("invalid ticks of LATENCY_P90 = %v, want 1", v)
	}
	if v := value(t, fam, "spillway_rate_limit", map[string]string{"policy": "m", "control_point": "ingress", "api": "GET /a"}); v != 100 {
		t.Fatalf("rate limit %v, want 100", v)
	}

	// 40 requests of 20 ms at 50/s, all admitted; then 300 at once, which
	// the bucket (burst: one tick of 100/s) cuts to 100; one unlabelled.
	cp := eng.ControlPoints().Get("ingress")
	for i := 0; i < 40; i++ {
		tk, _ := cp.Admit("GET /a")
		clock.Advance(20 * time.Millisecond)
		tk.Done(true)
	}
	accepted, rejected := 40, 0
	for i := 0; i < 300; i++ {
		if tk, d := cp.Admit("GET /a"); d == 0 {
			accepted++
			tk.Done(true)
		} else {
			rejected++
		}
	}
	tk, _ := cp.Admit("")
	tk.Done(true)
	clock.Advance(200 * time.Millisecond)
	eng.Tick()

	fam = scrape(t, m.Handler())
	for _, tc := range []struct {
		api, decision string
		want          int
	}{
		{"GET /a", "accepted", accepted}, {"GET /a", "rejected", rejected},
		{"GET /a", "would_reject", 0}, {"GET /a", "passthrough", 0},
		{"*", "accepted", accepted}, {"*", "rejected", rejected}, {"*", "passthrough", 1},
	} {
		got := value(t, fam, "spillway_requests_total", map[string]string{"control_point": "ingress", "api": tc.api, "decision": tc.decision})
		if got != float64(tc.want) {
			t.Errorf("requests{api=%q,decision=%q} = %v, want %d", tc.api, tc.decision, got, tc.want)
		}
	}
	if rejected == 0 || accepted <= 40 {
		t.Fatalf("the burst should be cut: %d accepted, %d rejected", accepted, rejected)
	}
	if v := value(t, fam, "spillway_signal", p90); math.Abs(v-20) > 20*0.02 {
		t.Fatalf("LATENCY_P90 = %v ms, want 20 ms within 2%%", v)
	}

	h := sample(fam, "spillway_request_duration_seconds", map[string]string{"control_point": "ingress", "api": "GET /a"})
	if h == nil || h.Histogram == nil {
		t.Fatalf("no request-duration histogram for GET /a: %v", fam["spillway_request_duration_seconds"])
	}
	if h.Histogram.GetSampleCount() != uint64(accepted) || math.Abs(h.Histogram.GetSampleSum()-0.8) > 1e-9 {
		t.Fatalf("durations: count %d sum %v, want %d and 0.8 s", h.Histogram.GetSampleCount(), h.Histogram.GetSampleSum(), accepted)
	}
	for _, b := range h.Histogram.Bucket {
		want := uint64(accepted) // 40 of 20 ms, the rest 0 ms
		if b.GetUpperBound() < 0.02 {
			want = uint64(accepted - 40)
		}
		if b.GetCumulativeCount() != want {
			t.Fatalf("bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	tick := sample(fam, "spillway_tick_duration_seconds", map[string]string{"policy": "m"})
	if tick == nil || tick.Histogram.GetSampleCount() != 2 {
		t.Fatalf("tick durations %v, want 2 ticks counted", tick)
	}

	// A broken reload counts as a load error.
	if v := value(t, fam, "spillway_policy_load_errors_total", nil); v != 0 {
		t.Fatalf("load errors %v before any failure", v)
	}
	if err := os.WriteFile(filepath.Join(dir, "m.cue"), []byte("policies: {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Reload(); err == nil {
		t.Fatal("a broken file must fail to reload")
	}
	if v := value(t, scrape(t, m.Handler()), "spillway_policy_load_errors_total", nil); v != 1 {
		t.Fatalf("load errors %v after one failed reload, want 1", v)
	}
}

func TestRLBridgeRequestsAreCounted(t *testing.T) {
	eng, _ := startEngine(t, &enginetest.Clock{})
	m := newMetrics(t, eng)
	m.CountRLBridgeRequest(t.Context(), "/set_rate", 400)
	m.CountRLBridgeRequest(t.Context(), "/set_rate", 400)
	m.CountRLBridgeRequest(t.Context(), "/metrics", 200)
	fam := scrape(t, m.Handler())
	if v := value(t, fam, "spillway_rlbridge_requests_total", map[string]string{"endpoint": "/set_rate", "code": "400"}); v != 2 {
		t.Fatalf("/set_rate 400 counted %v times, want 2", v)
	}
	if v := value(t, fam, "spillway_rlbridge_requests_total", map[string]string{"endpoint": "/metrics", "code": "200"}); v != 1 {
		t.Fatalf("/metrics 200 counted %v times, want 1", v)
	}
}
