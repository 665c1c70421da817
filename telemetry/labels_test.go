package telemetry_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

// TestAFloodOfLongNamesKeepsTheExportSmall admits 2,000 requests with
// distinct 8 KB API labels and one at a control point with an 8 KB name:
// the labels are counted under __overflow__, and the scrape stays within a
// few tens of kilobytes with no label value over the bound.
func TestAFloodOfLongNamesKeepsTheExportSmall(t *testing.T) {
	eng, _ := startEngine(t, &enginetest.Clock{})
	m := newMetrics(t, eng)
	cp := eng.ControlPoints().Get("ingress")
	const flood = 2000
	for i := 0; i < flood; i++ {
		tk, _ := cp.Admit(fmt.Sprintf("%d%s", i, strings.Repeat("x", 8<<10)))
		tk.Done(true)
	}
	longName := strings.Repeat("c", 8<<10)
	tk, _ := eng.ControlPoints().Get(longName).Admit("GET /b")
	tk.Done(true)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	const maxBytes = 64 << 10
	if n := rec.Body.Len(); n > maxBytes {
		t.Fatalf("/metrics is %d bytes after the flood, want at most %d", n, maxBytes)
	}
	t.Logf("/metrics: %d bytes", rec.Body.Len())
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range families {
		for _, s := range f.Metric {
			for _, l := range s.Label {
				if len(l.GetValue()) > controlpoint.MaxLabelLength {
					t.Fatalf("%s: label %s is %d bytes, want at most %d", name, l.GetName(), len(l.GetValue()), controlpoint.MaxLabelLength)
				}
			}
		}
	}
	overflow := map[string]string{"control_point": "ingress", "api": controlpoint.OverflowAPI, "decision": "passthrough"}
	if got := value(t, families, "spillway_requests_total", overflow); got != flood {
		t.Fatalf("overflow counted %v requests, want %d", got, flood)
	}
	if sample(families, "spillway_request_duration_seconds", map[string]string{"api": controlpoint.OverflowAPI}) == nil {
		t.Fatal("no request-duration histogram for the overflow API")
	}
	long := sample(families, "spillway_requests_total", map[string]string{"api": "GET /b"})
	if long == nil {
		t.Fatal("the control point with the long name is missing")
	}
	for _, l := range long.Label {
		if l.GetName() == "control_point" && !strings.HasPrefix(l.GetValue(), "ccc") {
			t.Fatalf("long control point exported as %.40q, want its truncated name", l.GetValue())
		}
	}
}

// Every label set of the export is bounded by the control points, not by
// the OpenTelemetry SDK's own limit: a control point with 1,024 APIs has
// 4,000 and more series of spillway_requests_total (one a decision), past
// the SDK's default of 2,000 an instrument, and an API a policy selects
// must not be folded into otel_metric_overflow with the last of them.
func TestEveryAPIOfAFullControlPointIsExported(t *testing.T) {
	eng, _ := startEngine(t, &enginetest.Clock{})
	m := newMetrics(t, eng)
	cp := eng.ControlPoints().Get("ingress")
	for i := range controlpoint.MaxAPIs - 1 {
		for range 2 {
			tk, _ := cp.Admit(fmt.Sprintf("/a.A/M%04d", i))
			tk.Done(true)
		}
	}
	tk, _ := cp.Admit("GET /a")
	tk.Done(true)
	families := scrape(t, m.Handler())
	if s := sample(families, "spillway_requests_total", map[string]string{"otel_metric_overflow": "true"}); s != nil {
		t.Errorf("spillway_requests_total has an otel_metric_overflow series")
	}
	if sample(families, "spillway_requests_total", map[string]string{"api": "GET /a", "decision": "accepted"}) == nil {
		t.Errorf(`spillway_requests_total{api="GET /a"} is missing after %d other labels`, controlpoint.MaxAPIs-1)
	}
	if sample(families, "spillway_requests_total", map[string]string{"api": "/a.A/M0000"}) == nil {
		t.Errorf(`spillway_requests_total{api="/a.A/M0000"} is missing`)
	}
}
