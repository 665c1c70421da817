// Package telemetry exports a Spillway engine as OpenTelemetry metrics:
// every signal of every policy, every decision of every control point,
// request and tick durations, and actuator setpoints (DESIGN §7). The
// Prometheus exporter serves them on Handler (the admin listener's
// /metrics). More readers can be added to New: package telemetry/otlp
// pushes the same metrics over OTLP when the standard OTEL_EXPORTER_OTLP_*
// variables name an endpoint. It is a package apart because every OTLP
// exporter links grpc, which an HTTP-only service should not.
//
// Nothing here runs on the request path. Control points and the engine
// count into their own atomics and rings; the exporter reads them when it
// collects, through observable instruments for counters and gauges and
// through a metric producer for the histograms, which are pre-aggregated.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
)

// scopeName is the instrumentation scope of every Spillway metric.
const scopeName = "github.com/spillway-dev/spillway/telemetry"

// Metric names, as Prometheus shows them. OTLP carries the same names.
const (
	MetricSignal           = "spillway_signal"
	MetricSignalInvalid    = "spillway_signal_invalid_total"
	MetricRequests         = "spillway_requests_total"
	MetricRequestDuration  = "spillway_request_duration_seconds"
	MetricRateLimit        = "spillway_rate_limit"
	MetricConcurrencyLimit = "spillway_concurrency_limit"
	MetricTickDuration     = "spillway_tick_duration_seconds"
	MetricPolicyLoadErrors = "spillway_policy_load_errors_total"
	MetricRLBridgeRequests = "spillway_rlbridge_requests_total"
	// Global rate limits (scope "global"); spillway_rate_limit is the
	// engine's share.
	MetricGlobalRateLimit  = "spillway_global_rate_limit"
	MetricGlobalLive       = "spillway_global_live_members"
	MetricGlobalFailStatic = "spillway_global_fail_static"
	// MetricGlobalExactDecisions counts an exact-mode global limit's
	// requests by what decided them: "redis" (the per-request script) or
	// "share" (this engine's lease share, after a failure or within the
	// backoff that follows one).
	MetricGlobalExactDecisions = "spillway_global_exact_decisions_total"
)

// Metrics exports one engine. Its methods are safe for concurrent use.
type Metrics struct {
	eng      *engine.Engine
	provider *sdkmetric.MeterProvider
	handler  http.Handler
	rlbridge metric.Int64Counter
	pushing  []string // the names of the readers added to New
}

// Reader adds a metric reader beside the Prometheus exporter, such as
// otlp.FromEnv (package telemetry/otlp). The reader must collect
// histograms too (sdkmetric.WithProducer): the request and tick durations
// are aggregated by the engine, outside the SDK. A Reader returns a nil
// reader to add none, and otherwise a name for logs ("otlp grpc").
type Reader func(ctx context.Context, eng *engine.Engine, histograms sdkmetric.Producer) (reader sdkmetric.Reader, name string, err error)

// New starts exporting eng through the Prometheus exporter, and through
// each of readers. It makes the engine's control points keep
// request-duration histograms (controlpoint.Registry.RecordDurations).
// The resource is service.name=spillway unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise.
//
// Call Shutdown to flush the readers and stop.
func New(ctx context.Context, eng *engine.Engine, readers ...Reader) (*Metrics, error) {
	m := &Metrics{eng: eng}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "spillway")),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource from OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	histograms := &histogramProducer{eng: eng, start: time.Now()}
	registry := prometheus.NewRegistry()
	promExporter, err := otelprom.New(
		otelprom.WithRegisterer(registry),
		otelprom.WithProducer(histograms),
		// Names carry their unit and _total already: no suffixes added.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	// The SDK's default of 2,000 series an instrument would fold the last
	// APIs of a busy control point into otel_metric_overflow, dropping
	// series a policy selects; every label set here is bounded already by
	// the control points (controlpoint.MaxAPIs, MaxLabelLength), so none
	// is set.
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExporter), sdkmetric.WithCardinalityLimit(0)}
	for _, add := range readers {
		reader, name, err := add(ctx, eng, histograms)
		if err != nil {
			return nil, err
		}
		if reader != nil {
			opts = append(opts, sdkmetric.WithReader(reader))
			m.pushing = append(m.pushing, name)
		}
	}
	m.provider = sdkmetric.NewMeterProvider(opts...)
	m.handler = promhttp.HandlerFor(registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	if err := m.register(m.provider.Meter(scopeName)); err != nil {
		_ = m.provider.Shutdown(ctx)
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	eng.ControlPoints().RecordDurations()
	return m, nil
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Pushing names the readers New added (see Reader), in order; nil when
// only Prometheus exports.
func (m *Metrics) Pushing() []string { return m.pushing }

// Shutdown flushes the added readers and stops exporting.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.provider.Shutdown(ctx) }

// CountRLBridgeRequest counts one request the RL bridge answered, as
// spillway_rlbridge_requests_total{endpoint, code}: endpoint is the route
// ("/metrics", "/set_rate", "/apis"), code the HTTP status.
func (m *Metrics) CountRLBridgeRequest(ctx context.Context, endpoint string, code int) {
	m.rlbridge.Add(ctx, 1, metric.WithAttributes(attribute.String("endpoint", endpoint), attribute.String("code", strconv.Itoa(code))))
}

// register creates the instruments and the callback that reads the
// engine's counters into them.
func (m *Metrics) register(meter metric.Meter) error {
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	signal, err := meter.Float64ObservableGauge(MetricSignal,
		metric.WithDescription("Value of a policy's signal after its last tick; absent while the signal is invalid (NaN)."))
	check(err)
	invalid, err := meter.Int64ObservableCounter(MetricSignalInvalid,
		metric.WithDescription("Ticks at which the signal was invalid (NaN)."), metric.WithUnit("{tick}"))
	check(err)
	requests, err := meter.Int64ObservableCounter(MetricRequests,
		metric.WithDescription("Requests by control point, API and decision (accepted, rejected, would_reject, passthrough); api=\"*\" counts every request of the control point, api=\"__overflow__\" those whose API label it does not track on its own."),
		metric.WithUnit("{request}"))
	check(err)
	rateLimit, err := meter.Float64ObservableGauge(MetricRateLimit,
		metric.WithDescription("Rate limit of a policy's token bucket in requests per second; absent while the limiter fails open."),
		metric.WithUnit("{request}/s"))
	check(err)
	concurrencyLimit, err := meter.Float64ObservableGauge(MetricConcurrencyLimit,
		metric.WithDescription("Concurrency limit of a policy's limiter in requests in flight; absent while the limiter fails open."),
		metric.WithUnit("{request}"))
	check(err)
	globalLimit, err := meter.Float64ObservableGauge(MetricGlobalRateLimit,
		metric.WithDescription("A global rate limit, the fleet's total in requests per second; spillway_rate_limit is this engine's share."),
		metric.WithUnit("{request}/s"))
	check(err)
	globalLive, err := meter.Int64ObservableGauge(MetricGlobalLive,
		metric.WithDescription("Members of a global rate limit that Redis reported live at the last sync."))
	check(err)
	globalFailStatic, err := meter.Int64ObservableGauge(MetricGlobalFailStatic,
		metric.WithDescription("1 while the last sync of a global rate limit with Redis failed and the engine holds its last share, else 0."))
	check(err)
	exactDecisions, err := meter.Int64ObservableCounter(MetricGlobalExactDecisions,
		metric.WithDescription("Requests of an exact-mode global rate limit, by what decided them: redis (the per-request script) or share (this engine's lease share, while Redis fails)."),
		metric.WithUnit("{request}"))
	check(err)
	loadErrors, err := meter.Int64ObservableCounter(MetricPolicyLoadErrors,
		metric.WithDescription("Failed reloads of the policy directory; the previous policies kept running."))
	check(err)
	m.rlbridge, err = meter.Int64Counter(MetricRLBridgeRequests,
		metric.WithDescription("Requests the RL bridge answered, by endpoint and HTTP status."), metric.WithUnit("{request}"))
	check(err)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, p := range m.eng.Stats() {
			policy := attribute.String("policy", p.Policy)
			for _, s := range p.Signals {
				set := metric.WithAttributes(policy, attribute.String("component", s.Component),
					attribute.String("port", s.Port), attribute.String("signal", s.Signal))
				if !math.IsNaN(s.Value) {
					o.ObserveFloat64(signal, s.Value, set)
				}
				o.ObserveInt64(invalid, clampInt64(s.InvalidTicks), set)
			}
			for _, a := range p.Actuators {
				if g := a.Global; g != nil {
					set := metric.WithAttributes(policy, controlPointLabel(a.ControlPoint), apiLabel(a.API), attribute.String("key", boundedLabelValue(g.Key)))
					if !math.IsNaN(g.Limit) && !math.IsInf(g.Limit, 0) {
						o.ObserveFloat64(globalLimit, g.Limit, set)
					}
					o.ObserveInt64(globalLive, int64(g.Live), set)
					failStatic := int64(0)
					if g.Mode != "synced" {
						failStatic = 1
					}
					o.ObserveInt64(globalFailStatic, failStatic, set)
					if x := a.Exact; x != nil {
						o.ObserveInt64(exactDecisions, clampInt64(x.Answered), metric.WithAttributes(policy, controlPointLabel(a.ControlPoint),
							apiLabel(a.API), attribute.String("key", boundedLabelValue(g.Key)), attribute.String("decided_by", "redis")))
						o.ObserveInt64(exactDecisions, clampInt64(x.Unanswered), metric.WithAttributes(policy, controlPointLabel(a.ControlPoint),
							apiLabel(a.API), attribute.String("key", boundedLabelValue(g.Key)), attribute.String("decided_by", "share")))
					}
				}
				if math.IsNaN(a.Setpoint) || math.IsInf(a.Setpoint, 0) {
					continue
				}
				set := metric.WithAttributes(policy, controlPointLabel(a.ControlPoint), apiLabel(a.API))
				if a.Kind == "rate_limiter" {
					o.ObserveFloat64(rateLimit, a.Setpoint, set)
				} else {
					o.ObserveFloat64(concurrencyLimit, a.Setpoint, set)
				}
			}
		}
		for _, api := range apisOf(m.eng) {
			for _, outcome := range controlpoint.Outcomes {
				o.ObserveInt64(requests, clampInt64(api.api.Count(outcome)), metric.WithAttributes(
					controlPointLabel(api.controlPoint), apiLabel(api.api.Label),
					attribute.String("decision", outcome.String())))
			}
		}
		o.ObserveInt64(loadErrors, clampInt64(m.eng.LoadErrors()))
		return nil
	}, signal, invalid, requests, rateLimit, concurrencyLimit, globalLimit, globalLive, globalFailStatic, exactDecisions, loadErrors)
	return err
}

func clampInt64(n uint64) int64 { return int64(min(n, math.MaxInt64)) }

// The control_point and api label values are bounded in number by the
// control points (controlpoint.MaxAPIs labels created by requests, the
// labels policies declare, "*" and "__overflow__") and in length here.
func controlPointLabel(name string) attribute.KeyValue {
	return attribute.String("control_point", boundedLabelValue(name))
}

func apiLabel(label string) attribute.KeyValue {
	return attribute.String("api", boundedLabelValue(label))
}

// boundedLabelValue returns v as valid UTF-8 of at most
// controlpoint.MaxLabelLength bytes, the longest API label a control point
// tracks. A longer value, or one that is not valid UTF-8, keeps its first
// bytes (invalid ones replaced, cut at a character boundary) and ends in
// "~" and the FNV-1a hash of the whole value, so that two such values that
// share a prefix stay two series.
func boundedLabelValue(v string) string {
	const limit = controlpoint.MaxLabelLength
	if len(v) <= limit && utf8.ValidString(v) {
		return v
	}
	hash := fnv.New32a()
	hash.Write([]byte(v))
	suffix := fmt.Sprintf("~%08x", hash.Sum32())
	v = strings.ToValidUTF8(v, "\uFFFD")
	cut := min(len(v), limit-len(suffix))
	for cut < len(v) && cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + suffix
}
