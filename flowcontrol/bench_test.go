package flowcontrol_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/spillway-dev/spillway/flowcontrol"
	"github.com/spillway-dev/spillway/flowcontrol/spillwayv1"
)

// BenchmarkCheckLatency measures the decision latency a caller sees on
// loopback: one Check round trip (the decision through a token bucket),
// then Done, one caller at a time, over gRPC and over the JSON twin
// (HTTP/1.1 keep-alive). ns/op covers Check and Done; p50 and p99 are the
// Check round trip's alone. Over gRPC, each Check is followed by a call to
// gRPC's health service on the same connection, a call that does no work:
// anchor-p50 and anchor-p99 are what the transport and the machine cost a
// round trip whatever the server does.
func BenchmarkCheckLatency(b *testing.B) {
	eng := newEngine(b)
	srv := flowcontrol.New(eng, flowcontrol.Options{})
	defer srv.Close()
	ctx := context.Background()
	req := &spillwayv1.CheckRequest{ControlPoint: "svc", Api: "GET /open", Labels: map[string]string{"tenant": "t1"}}

	b.Run("grpc", func(b *testing.B) {
		conn := dialConn(b, srv)
		client, health := spillwayv1.NewFlowControlClient(conn), healthpb.NewHealthClient(conn)
		checks := make([]time.Duration, 0, b.N)
		anchors := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			resp, err := client.Check(ctx, req)
			checks = append(checks, time.Since(start))
			if err != nil || resp.Decision != spillwayv1.Decision_DECISION_ACCEPTED {
				b.Fatalf("check: %v, %v", resp, err)
			}
			if _, err := client.Done(ctx, &spillwayv1.DoneRequest{FlowId: resp.FlowId, Outcome: spillwayv1.Outcome_OUTCOME_OK}); err != nil {
				b.Fatal(err)
			}
			start = time.Now()
			if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				b.Fatal(err)
			}
			anchors = append(anchors, time.Since(start))
		}
		reportPercentiles(b, "", checks)
		reportPercentiles(b, "anchor-", anchors)
	})
	b.Run("json", func(b *testing.B) {
		web := httptest.NewServer(srv.Handler())
		defer web.Close()
		client := &http.Client{}
		post := func(path string, body []byte) map[string]any {
			resp, err := client.Post(web.URL+path, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil || resp.StatusCode != 200 {
				b.Fatalf("%s: %d %s", path, resp.StatusCode, raw)
			}
			return m
		}
		checkBody := []byte(`{"control_point": "svc", "api": "GET /open", "labels": {"tenant": "t1"}}`)
		checks := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			m := post("/v1/check", checkBody)
			checks = append(checks, time.Since(start))
			post("/v1/done", []byte(`{"flow_id": "`+m["flow_id"].(string)+`", "outcome": "OUTCOME_OK"}`))
		}
		reportPercentiles(b, "", checks)
	})
}

// reportPercentiles adds p50 and p99 of ds, in microseconds, to b's result.
func reportPercentiles(b *testing.B, prefix string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/1e3, prefix+"p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds())/1e3, prefix+"p99-µs")
}
