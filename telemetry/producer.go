package telemetry

import (
	"context"
	"maps"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
)

// histogramProducer hands the OTel SDK the histograms that Spillway
// aggregates itself: request durations, counted per API by the control
// points with atomics (the SDK's own histogram would put its lock and its
// attribute lookup on the request path), and tick durations, counted by
// the engine. An observable instrument cannot carry a pre-aggregated
// histogram; a Producer can, and every reader (Prometheus and OTLP) asks
// it at each collection.
type histogramProducer struct {
	eng   *engine.Engine
	start time.Time
}

// Produce reads every histogram as a cumulative OTel histogram.
func (p *histogramProducer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	now := time.Now()
	requests := metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality}
	reg := p.eng.ControlPoints()
	for _, api := range apisOf(p.eng) {
		c, ok := reg.Get(api.controlPoint).Durations(api.api.Label)
		if !ok {
			continue
		}
		requests.DataPoints = append(requests.DataPoints, p.point(c, now,
			controlPointLabel(api.controlPoint), apiLabel(api.api.Label)))
	}
	ticks := metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality}
	for _, s := range p.eng.Stats() {
		ticks.DataPoints = append(ticks.DataPoints, p.point(s.TickDurations, now, attribute.String("policy", s.Policy)))
	}
	return []metricdata.ScopeMetrics{{
		Scope: instrumentation.Scope{Name: scopeName},
		Metrics: []metricdata.Metrics{
			{Name: MetricRequestDuration, Unit: "s", Data: requests,
				Description: "Duration of the admitted requests that finished, by control point and API; api=\"*\" is every request of the control point, api=\"__overflow__\" those whose API label it does not track on its own."},
			{Name: MetricTickDuration, Unit: "s", Data: ticks,
				Description: "Wall time of one policy tick: flux-meter snapshot, circuit evaluation, setpoint publication."},
		},
	}}, nil
}

func (p *histogramProducer) point(c actuators.CumulativeCounts, now time.Time, attrs ...attribute.KeyValue) metricdata.HistogramDataPoint[float64] {
	bounds := make([]float64, len(c.Bounds))
	for i, b := range c.Bounds {
		bounds[i] = b.Seconds()
	}
	return metricdata.HistogramDataPoint[float64]{
		Attributes:   attribute.NewSet(attrs...),
		StartTime:    p.start,
		Time:         now,
		Count:        c.Count,
		Bounds:       bounds,
		BucketCounts: c.Counts,
		Sum:          float64(c.SumNs) / 1e9,
	}
}

// controlPointAPI is one API of one control point, including "*".
type controlPointAPI struct {
	controlPoint string
	api          *controlpoint.API
}

// apisOf lists every API of every control point of eng, in name order.
func apisOf(eng *engine.Engine) []controlPointAPI {
	reg := eng.ControlPoints()
	var out []controlPointAPI
	for _, name := range sortedNames(reg.Names()) {
		cp := reg.Get(name)
		out = append(out, controlPointAPI{name, cp.API(controlpoint.AllAPIs)})
		apis := cp.APIs()
		for _, label := range sortedKeys(apis) {
			out = append(out, controlPointAPI{name, apis[label]})
		}
	}
	return out
}

func sortedNames(names []string) []string {
	slices.Sort(names)
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
