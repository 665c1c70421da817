// Package spillway protects a Go service from overload. It is the package
// a service imports: Start runs the policies of a directory (CUE files that
// a `spillway check` validates), HTTP and Middleware put a control point in
// front of handlers, and Handler serves what an operator needs: the live
// page, Prometheus metrics and the policy status.
//
//	eng, err := spillway.Start(ctx, spillway.Options{Policies: "policies/"})
//	...
//	go http.ListenAndServe("127.0.0.1:9464", eng.Handler())
//	http.ListenAndServe(":8080", eng.HTTP("ingress", mux))
//
// This package does not link grpc. The gRPC interceptors are in package
// spillwaygrpc, and the OTLP exporters (which link grpc too) in package
// telemetry/otlp: pass otlp.FromEnv in Options.MetricReaders.
package spillway

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/spillway-dev/spillway/actuators/httpmw"
	"github.com/spillway-dev/spillway/dashboards/live"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/telemetry"
)

// Options configure Start.
type Options struct {
	// Policies is a directory of policy files (*.cue).
	Policies string
	// Watch reloads the Policies directory whenever it changes; a change
	// that fails to load leaves the running policies in force.
	Watch bool
	// MetricReaders export the metrics somewhere besides Handler's
	// /metrics, such as otlp.FromEnv (package telemetry/otlp).
	MetricReaders []telemetry.Reader
	// Engine holds the engine's other settings: clock, logger, fail modes,
	// staleness, Redis for global limits. Policies and Watch above, when
	// set, take the place of its own.
	Engine engine.Options
}

// Engine is a running engine with its metrics. The methods of
// engine.Engine (HTTP, Status, SetDynamicConfig, ...) are its own; all are
// safe for concurrent use.
type Engine struct {
	*engine.Engine
	metrics *telemetry.Metrics
	admin   http.Handler
}

// Start loads and compiles the policies, starts ticking them, and starts
// the metrics. A policy problem comes back as one error listing each as
// path:line:col: message. The engine stops when ctx is done or at Close.
func Start(ctx context.Context, opts Options) (*Engine, error) {
	eopts := opts.Engine
	if opts.Policies != "" {
		eopts.Policies = opts.Policies
	}
	if opts.Watch {
		eopts.Watch = true
	}
	eng, err := engine.Start(ctx, eopts)
	if err != nil {
		return nil, err
	}
	metrics, err := telemetry.New(ctx, eng, opts.MetricReaders...)
	if err != nil {
		eng.Close()
		return nil, err
	}
	return &Engine{Engine: eng, metrics: metrics, admin: adminHandler(eng, metrics)}, nil
}

// Middleware is the named control point as net/http middleware: HTTP with
// the handler given later. The API label of a request is its ServeMux
// pattern (see httpmw.Options for a classifier, and the rejection status).
func (e *Engine) Middleware(controlPoint string, opts ...httpmw.Options) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler { return e.HTTP(controlPoint, next, opts...) }
}

// Handler serves the admin endpoints, for a listener apart from the
// service's own, so that they answer during an overload: the live page at
// GET /, its data at GET /api/signals, the metrics in the Prometheus format
// at GET /metrics, and the engine's status as JSON at GET /status. It has
// no authentication and shows the policies: serve it on loopback, or
// behind a guard of your own.
func (e *Engine) Handler() http.Handler { return e.admin }

// Metrics is the engine's metrics exporter (Handler serves its /metrics).
func (e *Engine) Metrics() *telemetry.Metrics { return e.metrics }

// Close stops the engine, then flushes the metric readers (giving up after
// 5 s). Limiters apply their fail mode once their setpoints go stale.
func (e *Engine) Close() {
	e.Engine.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.metrics.Shutdown(ctx)
}

// adminHandler routes Handler's endpoints.
func adminHandler(eng *engine.Engine, metrics *telemetry.Metrics) http.Handler {
	mux := http.NewServeMux()
	page := live.Handler(eng)
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /api/signals", page)
	mux.Handle("GET /metrics", metrics.Handler())
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(eng.Status())
	})
	return mux
}
