package otlp_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/telemetry"
	"github.com/spillway-dev/spillway/telemetry/otlp"
)

// meterPolicy meters GET /a at the ingress control point every second.
const meterPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: m: bp.#Policy & {
	policy_name: "m"
	evaluation_interval: "1s"
	components: [
		{FluxMeter: {selector: {control_point: "ingress", api: "GET /a"}, out_ports: {incoming_rps: "INCOMING"}}},
	]
}
`

// startEngine runs meterPolicy from a directory, ticked by hand on clock.
func startEngine(t *testing.T, clock *atomic.Int64) *engine.Engine {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.cue"), []byte(meterPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Start(t.Context(), engine.Options{Policies: dir, ManualTicks: true, Clock: clock.Load,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

// otlpSink collects the metric names of the OTLP exports it receives.
type otlpSink struct {
	colmetricpb.UnimplementedMetricsServiceServer
	mu    sync.Mutex
	names map[string]bool
}

func (s *otlpSink) Export(_ context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rm := range req.ResourceMetrics {
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				s.names[m.Name] = true
			}
		}
	}
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

func (s *otlpSink) has(names ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if !s.names[n] {
			return false
		}
	}
	return true
}

func TestOTLPExportFollowsTheStandardEnvironment(t *testing.T) {
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			sink := &otlpSink{names: map[string]bool{}}
			var endpoint string
			if protocol == "grpc" {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv := grpc.NewServer()
				colmetricpb.RegisterMetricsServiceServer(srv, sink)
				go srv.Serve(ln)
				t.Cleanup(srv.Stop)
				endpoint = "http://" + ln.Addr().String()
			} else {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					var req colmetricpb.ExportMetricsServiceRequest
					if r.URL.Path != "/v1/metrics" || proto.Unmarshal(body, &req) != nil {
						http.Error(w, "bad export", 400)
						return
					}
					sink.Export(r.Context(), &req)
					w.Header().Set("Content-Type", "application/x-protobuf")
				}))
				t.Cleanup(srv.Close)
				endpoint = srv.URL
			}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
			t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "20")
			var clock atomic.Int64
			eng := startEngine(t, &clock)
			m, err := telemetry.New(t.Context(), eng, otlp.FromEnv)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Shutdown(context.Background()) })
			if got := m.Pushing(); len(got) != 1 || got[0] != "otlp "+protocol {
				t.Fatalf("pushing %q, want [otlp %s]", got, protocol)
			}
			tk, _ := eng.ControlPoints().Get("ingress").Admit("GET /a")
			tk.Done(true)
			clock.Add(int64(time.Second))
			eng.Tick()
			want := []string{"spillway_signal", "spillway_requests_total", "spillway_request_duration_seconds", "spillway_tick_duration_seconds"}
			deadline := time.Now().Add(20 * time.Second)
			for !sink.has(want...) {
				if time.Now().After(deadline) {
					t.Fatalf("the OTLP sink never received all of %v; got %v", want, sink.names)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestOTLPRefusesAnUnknownProtocol(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	var clock atomic.Int64
	_, err := telemetry.New(t.Context(), startEngine(t, &clock), otlp.FromEnv)
	if err == nil || !strings.Contains(err.Error(), `OTLP protocol "http/json" is not supported`) {
		t.Fatalf("err = %v, want a clear refusal of http/json", err)
	}
}

func TestNoEndpointAddsNoReader(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "")
	var clock atomic.Int64
	m, err := telemetry.New(t.Context(), startEngine(t, &clock), otlp.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	if got := m.Pushing(); got != nil {
		t.Fatalf("pushing %q with no endpoint, want nothing", got)
	}
}
