package telemetry_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/telemetry"
)

// benchPolicy meters GET /a and limits it far above what a benchmark can
// offer, so every request takes the admit path through a token bucket.
const benchPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: bench: bp.#Policy & {
	policy_name: "bench"
	evaluation_interval: "1s"
	components: [
		{FluxMeter: {selector: {control_point: "ingress", api: "GET /a"}, out_ports: latency_p90_ms: "LATENCY_P90"}},
		{RateLimiter: {selector: {control_point: "ingress", api: "GET /a"}, in_ports: {rate_limit: 1e12, burst: 1e12}}},
	]
}
`

// discardWriter is an allocation-free http.ResponseWriter.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }

// BenchmarkHTTPMiddleware measures one request through the HTTP control
// point (ServeMux route lookup, admit through a flux meter and a token
// bucket, the handler, done) with metrics off and on. "on" is a running
// telemetry.Metrics that has been scraped once: the control point keeps
// request-duration histograms, the exporter reads the counters.
func BenchmarkHTTPMiddleware(b *testing.B) {
	specs, diags := engine.LoadSource("bench.cue", []byte(benchPolicy))
	if len(diags) > 0 {
		b.Fatal(diags)
	}
	handlers := map[string]http.Handler{}
	for _, metrics := range []string{"off", "on"} {
		eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, ManualTicks: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		defer eng.Close()
		eng.Tick() // publish the rate limit
		if metrics == "on" {
			m, err := telemetry.New(context.Background(), eng)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Shutdown(context.Background())
			rec := httptest.NewRecorder()
			m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if rec.Code != 200 {
				b.Fatalf("scrape: %d", rec.Code)
			}
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /a", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
		handlers[metrics] = eng.HTTP("ingress", mux)
	}
	serve := func(h http.Handler, w *discardWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if w.status != http.StatusNoContent {
			b.Fatalf("status %d", w.status)
		}
		w.status = 0
	}
	for _, metrics := range []string{"off", "on"} {
		h := handlers[metrics]
		runtime.GC() // start each from a clean heap: setup garbage must not bias the first
		b.Run("serial/metrics="+metrics, func(b *testing.B) {
			w, r := &discardWriter{header: http.Header{}}, httptest.NewRequest("GET", "/a", nil)
			b.ReportAllocs()
			for b.Loop() {
				serve(h, w, r)
			}
		})
	}
	for _, metrics := range []string{"off", "on"} {
		h := handlers[metrics]
		runtime.GC()
		b.Run("parallel/metrics="+metrics, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w, r := &discardWriter{header: http.Header{}}, httptest.NewRequest("GET", "/a", nil)
				for pb.Next() {
					serve(h, w, r)
				}
			})
		})
	}
}
