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

	"github.com/spillway-dev/spillway/flowcontrol"
	"github.com/spillway-dev/spillway/flowcontrol/spillwayv1"
)

// BenchmarkCheckLatency measures the decision latency a caller sees on
// loopback: one Check round trip (the decision through a token bucket),
// then Done, one caller at a time, over gRPC and over the JSON twin
// (HTTP/1.1 keep-alive). ns/op covers Check and Done; p50 and p99 are the
// Check round trip's alone.
func BenchmarkCheckLatency(b *testing.B) {
	eng := newEngine(b)
	srv := flowcontrol.New(eng, flowcontrol.Options{})
	defer srv.Close()
	ctx := context.Background()
	req := &spillwayv1.CheckRequest{ControlPoint: "svc", Api: "GET /open", Labels: map[string]string{"tenant": "t1"}}

	b.Run("grpc", func(b *testing.B) {
		client := dial(b, srv)
		checks := make([]time.Duration, 0, b.N)
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
		}
		reportPercentiles(b, checks)
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
		reportPercentiles(b, checks)
	})
}

// reportPercentiles adds p50 and p99 of ds, in microseconds, to b's result.
func reportPercentiles(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds())/1e3, "p99-µs")
}
