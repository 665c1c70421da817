// Package otlp pushes a Spillway engine's metrics over OTLP, configured by
// the standard OpenTelemetry environment variables. Pass FromEnv to
// telemetry.New (or spillway.Options.MetricReaders). It is apart from
// package telemetry because both OTLP exporters link grpc.
package otlp

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/telemetry"
)

// FromEnv is a telemetry.Reader. It adds a periodic OTLP reader when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is
// set, and none otherwise. The protocol is
// OTEL_EXPORTER_OTLP_METRICS_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL:
// "http/protobuf" (the default) or "grpc"; any other is an error. Headers,
// TLS, compression and timeout come from the other standard variables. The
// export interval is OTEL_METRIC_EXPORT_INTERVAL (milliseconds) or, when
// unset, the finest evaluation interval of the running policies (500 ms
// with none, never below 100 ms), so that OTLP carries every tick. The
// reader's name is "otlp " and the protocol.
func FromEnv(ctx context.Context, eng *engine.Engine, histograms sdkmetric.Producer) (sdkmetric.Reader, string, error) {
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") == "" {
		return nil, "", nil
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdkmetric.Exporter
	var err error
	switch protocol {
	case "", "http/protobuf":
		protocol = "http/protobuf"
		exp, err = otlpmetrichttp.New(ctx)
	case "grpc":
		exp, err = otlpmetricgrpc.New(ctx)
	default:
		return nil, "", fmt.Errorf("telemetry: OTLP protocol %q is not supported (OTEL_EXPORTER_OTLP_PROTOCOL: want grpc or http/protobuf)", protocol)
	}
	if err != nil {
		return nil, "", fmt.Errorf("telemetry: OTLP %s exporter: %w", protocol, err)
	}
	opts := []sdkmetric.PeriodicReaderOption{sdkmetric.WithProducer(histograms)}
	if os.Getenv("OTEL_METRIC_EXPORT_INTERVAL") == "" {
		opts = append(opts, sdkmetric.WithInterval(finestInterval(eng)))
	}
	return sdkmetric.NewPeriodicReader(exp, opts...), "otlp " + protocol, nil
}

// FromEnv is a telemetry.Reader; the compiler checks it stays one.
var _ telemetry.Reader = FromEnv

// finestInterval is the shortest evaluation interval of the running
// policies, 500 ms when none runs, and never below 100 ms.
func finestInterval(eng *engine.Engine) time.Duration {
	finest := time.Duration(0)
	for _, r := range eng.Policies() {
		if d := r.Circuit.Spec.EvaluationInterval; d > 0 && (finest == 0 || d < finest) {
			finest = d
		}
	}
	if finest == 0 {
		finest = 500 * time.Millisecond
	}
	return max(finest, 100*time.Millisecond)
}
