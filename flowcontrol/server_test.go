package flowcontrol_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/spillway-dev/spillway/decisionlog"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/flowcontrol"
	"github.com/spillway-dev/spillway/flowcontrol/spillwayv1"
)

// checkPolicy limits GET /a at "svc" to 2 requests per second (burst 2),
// with the rate from an Arithmetic so a rejection can name its producer,
// holds GET /b to one request in flight, meters GET /b's latency, and
// limits GET /open far above what a benchmark offers.
const checkPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: svc: bp.#Policy & {
	policy_name: "svc"
	evaluation_interval: "1s"
	components: [
		{Variable: {value: 4, out_ports: output: "BASE"}},
		{Arithmetic: {operator: "div", in_ports: {lhs: "BASE", rhs: 2}, out_ports: output: "RATE"}},
		{RateLimiter: {selector: {control_point: "svc", api: "GET /a"}, in_ports: {rate_limit: "RATE", burst: 2}}},
		{ConcurrencyLimiter: {selector: {control_point: "svc", api: "GET /b"}, in_ports: limit: 1}},
		{FluxMeter: {selector: {control_point: "svc", api: "GET /b"}, out_ports: {latency_avg_ms: "LATENCY_B", abandoned_rps: "ABANDONED_B"}}},
		{RateLimiter: {selector: {control_point: "svc", api: "GET /open"}, in_ports: {rate_limit: 1e12, burst: 1e12}}},
	]
}
`

// newEngine runs checkPolicy, ticked once so its limits are in force; the
// test ticks it again by hand.
func newEngine(t testing.TB) *engine.Engine {
	t.Helper()
	specs, diags := engine.LoadSource("svc.cue", []byte(checkPolicy))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, ManualTicks: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	eng.Tick()
	return eng
}

// dial serves srv over gRPC on loopback and returns a client.
func dial(t testing.TB, srv *flowcontrol.Server) spillwayv1.FlowControlClient {
	t.Helper()
	return spillwayv1.NewFlowControlClient(dialConn(t, srv))
}

// dialConn serves srv and gRPC's health service on a loopback port and
// returns a connection to it.
func dialConn(t testing.TB, srv *flowcontrol.Server) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rpc := grpc.NewServer(append(flowcontrol.GRPCServerOptions(), grpc.MaxRecvMsgSize(flowcontrol.MaxRequestBytes))...)
	spillwayv1.RegisterFlowControlServer(rpc, srv)
	healthpb.RegisterHealthServer(rpc, health.NewServer())
	go rpc.Serve(ln)
	t.Cleanup(rpc.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func newServer(t testing.TB, eng *engine.Engine, opts flowcontrol.Options) *flowcontrol.Server {
	t.Helper()
	s := flowcontrol.New(eng, opts)
	t.Cleanup(s.Close)
	return s
}

func TestCheckRateLimitRejectsWithRetryAfterAndExplanation(t *testing.T) {
	eng := newEngine(t)
	log := decisionlog.New(16)
	client := dial(t, newServer(t, eng, flowcontrol.Options{Decisions: log}))
	ctx := context.Background()
	req := &spillwayv1.CheckRequest{ControlPoint: "svc", Api: "GET /a", Labels: map[string]string{"user": "u1"}}
	for i := range 2 {
		resp, err := client.Check(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Decision != spillwayv1.Decision_DECISION_ACCEPTED || resp.FlowId == "" {
			t.Fatalf("check %d within the burst: %v", i, resp)
		}
	}
	resp, err := client.Check(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Decision != spillwayv1.Decision_DECISION_REJECTED || resp.RejectReason != spillwayv1.RejectReason_REJECT_REASON_RATE_LIMITED {
		t.Fatalf("third check at 2/s with burst 2: %v, want rejected, rate limited", resp)
	}
	// At 2 tokens/s an empty bucket has its next token within 0.5 s.
	if wait := resp.RetryAfter.AsDuration(); wait <= 0 || wait > 500*time.Millisecond {
		t.Errorf("retry_after %s, want in (0, 500ms]", wait)
	}
	const want = "svc: components[2].RateLimiter rate_limit=2 from components[1].Arithmetic (BASE=4, rhs=2)"
	if resp.Explanation != want {
		t.Errorf("explanation\n %q, want\n %q", resp.Explanation, want)
	}
	got := log.Recent(decisionlog.Filter{Outcome: "rejected"})
	if len(got) != 1 || got[0].Explanation != want || got[0].Source != "check" || got[0].Labels["user"] != "u1" || got[0].Outcome != decisionlog.RateLimited {
		t.Errorf("decision log of rejections: %+v", got)
	}
	if n := len(log.Recent(decisionlog.Filter{API: "GET /a", Outcome: decisionlog.Accepted})); n != 2 {
		t.Errorf("decision log: %d accepted, want 2", n)
	}
}

// acceptB serves checkPolicy and takes GET /b's one concurrency slot.
func acceptB(t *testing.T) (eng *engine.Engine, client spillwayv1.FlowControlClient, req *spillwayv1.CheckRequest, first *spillwayv1.CheckResponse) {
	t.Helper()
	eng = newEngine(t)
	client = dial(t, newServer(t, eng, flowcontrol.Options{}))
	req = &spillwayv1.CheckRequest{ControlPoint: "svc", Api: "GET /b"}
	first, err := client.Check(context.Background(), req)
	if err != nil || first.Decision != spillwayv1.Decision_DECISION_ACCEPTED {
		t.Fatalf("first check: %v, %v", first, err)
	}
	return eng, client, req, first
}

func TestCheckConcurrencyLimitHoldsTheSlotUntilDone(t *testing.T) {
	eng, client, req, first := acceptB(t)
	ctx := context.Background()
	second, err := client.Check(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if second.RejectReason != spillwayv1.RejectReason_REJECT_REASON_CONCURRENCY_LIMITED {
		t.Fatalf("second check with one slot held: %v, want concurrency limited", second)
	}
	if !strings.HasPrefix(second.Explanation, "svc: components[3].ConcurrencyLimiter limit=1 (in flight 1)") {
		t.Errorf("explanation %q", second.Explanation)
	}
	if second.RetryAfter.AsDuration() != time.Second {
		t.Errorf("retry_after %s, want the evaluation interval, 1s", second.RetryAfter.AsDuration())
	}
	time.Sleep(30 * time.Millisecond)
	done, err := client.Done(ctx, &spillwayv1.DoneRequest{FlowId: first.FlowId, Outcome: spillwayv1.Outcome_OUTCOME_OK})
	if err != nil {
		t.Fatal(err)
	}
	if lat := done.Latency.AsDuration(); lat < 30*time.Millisecond || lat > 5*time.Second {
		t.Errorf("Done latency %s, want the ≥30ms between Check and Done", lat)
	}
	// The flux meter saw the completion with the server-measured latency.
	eng.Tick()
	var latency float64
	for _, p := range eng.Status().Policies {
		latency = float64(p.Signals["LATENCY_B"])
	}
	if latency < 30 {
		t.Errorf("flux meter latency_avg_ms = %v after Done, want ≥ 30", latency)
	}
	third, err := client.Check(ctx, req)
	if err != nil || third.Decision != spillwayv1.Decision_DECISION_ACCEPTED {
		t.Fatalf("check after Done: %v, %v", third, err)
	}
}

// TestCheckDoneAbandoned: a flow finished as abandoned (its caller's client
// gave up) frees its slot and reaches the flux meter as abandoned.
func TestCheckDoneAbandoned(t *testing.T) {
	eng, client, req, first := acceptB(t)
	ctx := context.Background()
	if _, err := client.Done(ctx, &spillwayv1.DoneRequest{FlowId: first.FlowId, Outcome: spillwayv1.Outcome_OUTCOME_ABANDONED}); err != nil {
		t.Fatal(err)
	}
	// A window under a tenth of the evaluation interval (1 s) reads no
	// rates (engine.observe): let the flux meter's window pass that.
	time.Sleep(110 * time.Millisecond)
	eng.Tick()
	var abandoned float64
	for _, p := range eng.Status().Policies {
		abandoned = float64(p.Signals["ABANDONED_B"])
	}
	if !(abandoned > 0) {
		t.Errorf("flux meter abandoned_rps = %v after an abandoned Done, want > 0", abandoned)
	}
	if second, err := client.Check(ctx, req); err != nil || second.Decision != spillwayv1.Decision_DECISION_ACCEPTED {
		t.Fatalf("check after the abandoned flow's Done: %v, %v", second, err)
	}
}

func TestCheckRefusesBadRequests(t *testing.T) {
	eng := newEngine(t)
	client := dial(t, newServer(t, eng, flowcontrol.Options{MaxOpenFlows: 1}))
	ctx := context.Background()
	tooMany := map[string]string{}
	for i := range flowcontrol.MaxLabels + 1 {
		tooMany[string(rune('a'+i))] = "x"
	}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		want string
	}{
		{"no control point", func() error { _, err := client.Check(ctx, &spillwayv1.CheckRequest{Api: "x"}); return err }, codes.InvalidArgument, "control_point is required"},
		{"a control point too long", func() error {
			_, err := client.Check(ctx, &spillwayv1.CheckRequest{ControlPoint: strings.Repeat("c", 300)})
			return err
		}, codes.InvalidArgument, "at most 256 bytes"},
		{"too many labels", func() error {
			_, err := client.Check(ctx, &spillwayv1.CheckRequest{ControlPoint: "svc", Labels: tooMany})
			return err
		}, codes.InvalidArgument, "at most 16"},
		{"a message over the size limit", func() error {
			_, err := client.Check(ctx, &spillwayv1.CheckRequest{ControlPoint: "svc", Api: strings.Repeat("x", 20<<10)})
			return err
		}, codes.ResourceExhausted, "larger than max"},
		{"Done of an unknown flow", func() error {
			_, err := client.Done(ctx, &spillwayv1.DoneRequest{FlowId: "987654", Outcome: spillwayv1.Outcome_OUTCOME_OK})
			return err
		}, codes.NotFound, "is not open"},
		{"Done of a malformed flow id", func() error {
			_, err := client.Done(ctx, &spillwayv1.DoneRequest{FlowId: "abc", Outcome: spillwayv1.Outcome_OUTCOME_OK})
			return err
		}, codes.InvalidArgument, "not a flow id"},
		{"Done without an outcome", func() error { _, err := client.Done(ctx, &spillwayv1.DoneRequest{FlowId: "1"}); return err }, codes.InvalidArgument, "want OUTCOME_OK, OUTCOME_ERROR or OUTCOME_ABANDONED"},
		{"a second open flow beyond MaxOpenFlows", func() error {
			if _, err := client.Check(ctx, &spillwayv1.CheckRequest{ControlPoint: "svc", Api: "GET /c"}); err != nil {
				return err
			}
			_, err := client.Check(ctx, &spillwayv1.CheckRequest{ControlPoint: "svc", Api: "GET /c"})
			return err
		}, codes.ResourceExhausted, "flows are open without Done"},
	} {
		err := tc.call()
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.want) {
			t.Errorf("%s: %v, want %s containing %q", tc.name, err, tc.code, tc.want)
		}
	}
}

func TestCheckCapsTheControlPointsCallersCreate(t *testing.T) {
	eng := newEngine(t)
	client := dial(t, newServer(t, eng, flowcontrol.Options{}))
	ctx := context.Background()
	for i := range flowcontrol.MaxControlPoints {
		resp, err := client.Check(ctx, &spillwayv1.CheckRequest{ControlPoint: "new-" + string(rune('A'+i))})
		if err != nil {
			t.Fatalf("control point %d: %v", i, err)
		}
		client.Done(ctx, &spillwayv1.DoneRequest{FlowId: resp.FlowId, Outcome: spillwayv1.Outcome_OUTCOME_OK})
	}
	_, err := client.Check(ctx, &spillwayv1.CheckRequest{ControlPoint: "one-too-many"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("control point past the cap: %v, want InvalidArgument", err)
	}
	// The policies' own control points are always served.
	if _, err := client.Check(ctx, &spillwayv1.CheckRequest{ControlPoint: "svc", Api: "GET /a"}); err != nil {
		t.Fatalf("the policy's control point past the cap: %v", err)
	}
}

func TestCheckFlowTimeoutFinishesAbandonedFlows(t *testing.T) {
	eng := newEngine(t)
	srv := newServer(t, eng, flowcontrol.Options{FlowTimeout: 50 * time.Millisecond})
	client := dial(t, srv)
	ctx := context.Background()
	req := &spillwayv1.CheckRequest{ControlPoint: "svc", Api: "GET /b"}
	if resp, err := client.Check(ctx, req); err != nil || resp.Decision != spillwayv1.Decision_DECISION_ACCEPTED {
		t.Fatalf("check: %v, %v", resp, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Expired() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if srv.Expired() != 1 || srv.OpenFlows() != 0 {
		t.Fatalf("expired %d, open %d; want the abandoned flow expired", srv.Expired(), srv.OpenFlows())
	}
	// Its concurrency slot is free again.
	if resp, err := client.Check(ctx, req); err != nil || resp.Decision != spillwayv1.Decision_DECISION_ACCEPTED {
		t.Fatalf("check after the expiry: %v, %v", resp, err)
	}
}

func TestCheckJSONTwin(t *testing.T) {
	eng := newEngine(t)
	web := httptest.NewServer(newServer(t, eng, flowcontrol.Options{}).Handler())
	defer web.Close()
	post := func(path, ctype, body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(web.URL+path, ctype, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: body %q is not JSON: %v", path, raw, err)
		}
		return resp.StatusCode, m
	}
	code, m := post("/v1/check", "application/json", `{"control_point": "svc", "api": "GET /b"}`)
	if code != 200 || m["decision"] != "DECISION_ACCEPTED" || m["flow_id"] == nil {
		t.Fatalf("check: %d %v", code, m)
	}
	flow := m["flow_id"].(string)
	code, m = post("/v1/check", "application/json", `{"control_point": "svc", "api": "GET /b"}`)
	if code != 200 || m["decision"] != "DECISION_REJECTED" || m["reject_reason"] != "REJECT_REASON_CONCURRENCY_LIMITED" || m["retry_after"] != "1s" ||
		!strings.Contains(m["explanation"].(string), "ConcurrencyLimiter limit=1") {
		t.Fatalf("second check: %d %v", code, m)
	}
	code, m = post("/v1/done", "application/json", `{"flow_id": "`+flow+`", "outcome": "OUTCOME_ERROR"}`)
	if code != 200 || m["latency"] == nil {
		t.Fatalf("done: %d %v", code, m)
	}
	for _, tc := range []struct {
		path, ctype, body string
		code              int
		want              string
	}{
		{"/v1/check", "text/plain", `{"control_point": "svc"}`, 415, "want application/json"},
		{"/v1/check", "application/json", `{"control_point": "svc", "apii": "x"}`, 400, "apii"},
		{"/v1/check", "application/json", `{"control_point": 7}`, 400, "invalid value for string field"},
		{"/v1/check", "application/json", `{`, 400, "unexpected"},
		{"/v1/check", "application/json", `{"control_point": "` + strings.Repeat("x", flowcontrol.MaxRequestBytes) + `"}`, 413, "body over"},
		{"/v1/check", "application/json", `{"api": "x"}`, 400, "control_point is required"},
		{"/v1/done", "application/json", `{"flow_id": "` + flow + `", "outcome": "OUTCOME_OK"}`, 404, "is not open"},
		{"/v1/nothing", "application/json", `{}`, 404, "POST /v1/check"},
	} {
		code, m := post(tc.path, tc.ctype, tc.body)
		if msg, _ := m["error"].(string); code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("POST %s %.60s: %d %v, want %d with an error containing %q", tc.path, tc.body, code, m, tc.code, tc.want)
		}
	}
	resp, err := http.Get(web.URL + "/v1/check")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/check: %d, want 405", resp.StatusCode)
	}
}
