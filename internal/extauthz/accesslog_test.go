package extauthz_test

import (
	"context"
	"log/slog"
	"math"
	"net"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/flowcontrol"
	"github.com/spillway-dev/spillway/internal/access"
	"github.com/spillway-dev/spillway/internal/extauthz"
	"github.com/spillway-dev/spillway/internal/proxy"
)

// alsPolicy holds "GET /checkout" at "edge" to one request in flight and
// meters it; "GET /items/{id}" is unlimited.
const alsPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: edge: bp.#Policy & {
	policy_name: "edge"
	evaluation_interval: "1s"
	components: [
		{ConcurrencyLimiter: {selector: {control_point: "edge", api: "GET /checkout"}, in_ports: limit: 1}},
		{FluxMeter: {selector: {control_point: "edge", api: "GET /checkout"}, out_ports: {
			latency_avg_ms: "LATENCY", in_flight: "IN_FLIGHT", goodput_rps: "GOODPUT", completed_rps: "COMPLETED",
			abandoned_rps: "ABANDONED", answered_latency_avg_ms: "ANSWERED"}}},
	]
}
`

// alsRig is ext_authz and the access-log service on one gRPC server, as
// `spillway run --check --envoy-access-log` serves them, with the engine
// on a clock the test moves.
type alsRig struct {
	eng    *engine.Engine
	clock  *atomic.Int64
	authz  *extauthz.Server
	check  authv3.AuthorizationClient
	logs   alsv3.AccessLogServiceClient
	signal func(name string) float64
}

func startALS(t *testing.T, opts extauthz.Options) *alsRig {
	t.Helper()
	specs, diags := engine.LoadSource("edge.cue", []byte(alsPolicy))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	clock := new(atomic.Int64)
	clock.Store(int64(time.Hour))
	eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, ManualTicks: true, Clock: clock.Load, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	eng.Tick()
	fc := flowcontrol.New(eng, flowcontrol.Options{})
	t.Cleanup(fc.Close)
	routes, err := proxy.Routes([]string{"GET /checkout", "GET /items/{id}"})
	if err != nil {
		t.Fatal(err)
	}
	opts.ControlPoint, opts.Routes = "edge", routes
	opts.Logger = slog.New(slog.DiscardHandler)
	authz := extauthz.New(fc, opts)
	t.Cleanup(authz.Close)
	bearer := access.NewBearer(token)
	rpc := grpc.NewServer(grpc.MaxRecvMsgSize(extauthz.MaxMessageBytes),
		grpc.ChainUnaryInterceptor(access.UnaryBearer(bearer)), grpc.ChainStreamInterceptor(access.StreamBearer(bearer)))
	authv3.RegisterAuthorizationServer(rpc, authz)
	alsv3.RegisterAccessLogServiceServer(rpc, authz.AccessLogService())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go rpc.Serve(ln)
	t.Cleanup(rpc.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &alsRig{
		eng: eng, clock: clock, authz: authz,
		check: authv3.NewAuthorizationClient(conn), logs: alsv3.NewAccessLogServiceClient(conn),
		signal: func(name string) float64 {
			for _, p := range eng.Status().Policies {
				if v, ok := p.Signals[name]; ok {
					return float64(v)
				}
			}
			return math.NaN()
		},
	}
}

// admit asks ext_authz about GET path and returns the admission id of an
// OK answer ("" for a denial).
func (r *alsRig) admit(t *testing.T, path string) string {
	t.Helper()
	resp, err := r.check.Check(withToken(), envoyCheck("GET", path, nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDeniedResponse() != nil {
		return ""
	}
	id := resp.GetDynamicMetadata().GetFields()[extauthz.AdmissionKey].GetStringValue()
	if id == "" {
		t.Fatalf("an OK answer with completions on: %v, want the admission id in dynamic_metadata", resp)
	}
	return id
}

// envoyLogEntry is an HTTP access-log entry as Envoy's http_grpc logger
// fills it at the end of a request (AccessLogType DownstreamEnd): the
// stream's dynamic metadata, with the ext_authz filter's namespace holding
// what the OK answer set plus the ext_authz_duration Envoy adds, the
// timings from the request's start, and the response. admission "" is a
// request ext_authz denied, which has no such metadata.
func envoyLogEntry(admission, path string, code uint32, lastTxByte time.Duration) *accesslogv3.HTTPAccessLogEntry {
	addr := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
	}
	common := &accesslogv3.AccessLogCommon{
		DownstreamRemoteAddress:       addr("10.1.2.3", 53122),
		DownstreamDirectRemoteAddress: addr("10.1.2.3", 53122),
		DownstreamLocalAddress:        addr("10.1.2.4", 10000),
		StartTime:                     timestamppb.New(time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)),
		Duration:                      durationpb.New(lastTxByte + 80*time.Microsecond),
		TimeToLastRxByte:              durationpb.New(60 * time.Microsecond),
		TimeToLastDownstreamTxByte:    durationpb.New(lastTxByte),
		RouteName:                     "shop",
		AccessLogType:                 accesslogv3.AccessLogType_DownstreamEnd,
		ResponseFlags:                 &accesslogv3.ResponseFlags{},
	}
	if admission != "" {
		common.TimeToFirstUpstreamTxByte = durationpb.New(900 * time.Microsecond)
		common.TimeToLastUpstreamTxByte = durationpb.New(900 * time.Microsecond)
		common.TimeToFirstUpstreamRxByte = durationpb.New(lastTxByte - 100*time.Microsecond)
		common.TimeToLastUpstreamRxByte = durationpb.New(lastTxByte - 50*time.Microsecond)
		common.TimeToFirstDownstreamTxByte = durationpb.New(lastTxByte - 90*time.Microsecond)
		common.UpstreamRemoteAddress = addr("127.0.0.1", 8000)
		common.UpstreamLocalAddress = addr("127.0.0.1", 41876)
		common.UpstreamCluster = "shop"
		common.UpstreamRequestAttemptCount = 1
		common.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			extauthz.MetadataNamespace: {Fields: map[string]*structpb.Value{
				extauthz.AdmissionKey: structpb.NewStringValue(admission),
				"ext_authz_duration":  structpb.NewNumberValue(0),
			}},
		}}
	} else {
		common.ResponseFlags.UnauthorizedDetails = &accesslogv3.ResponseFlags_Unauthorized{Reason: accesslogv3.ResponseFlags_Unauthorized_EXTERNAL_SERVICE}
	}
	return &accesslogv3.HTTPAccessLogEntry{
		CommonProperties: common,
		ProtocolVersion:  accesslogv3.HTTPAccessLogEntry_HTTP11,
		Request: &accesslogv3.HTTPRequestProperties{
			RequestMethod:       corev3.RequestMethod_GET,
			Scheme:              "http",
			Authority:           "shop.example",
			Path:                path,
			UserAgent:           "curl/8.5.0",
			RequestId:           "6d1c3f0e-0b8a-4f3c-9d1e-2b7f5a9c4e11",
			RequestHeadersBytes: 112,
		},
		Response: &accesslogv3.HTTPResponseProperties{
			ResponseCode:         wrapperspb.UInt32(code),
			ResponseHeadersBytes: 96,
			ResponseBodyBytes:    512,
			ResponseCodeDetails:  "via_upstream",
		},
	}
}

// logStream opens Envoy's access-log stream; the first message carries the
// identifier, as Envoy's gRPC logger sends it.
type logStream struct {
	t      *testing.T
	stream alsv3.AccessLogService_StreamAccessLogsClient
	first  bool
}

func (r *alsRig) openLog(t *testing.T) *logStream {
	t.Helper()
	stream, err := r.logs.StreamAccessLogs(withToken())
	if err != nil {
		t.Fatal(err)
	}
	return &logStream{t: t, stream: stream, first: true}
}

func (l *logStream) send(entries ...*accesslogv3.HTTPAccessLogEntry) {
	l.t.Helper()
	msg := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}}}
	if l.first {
		msg.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{
			Node:    &corev3.Node{Id: "envoy-edge-0", Cluster: "edge"},
			LogName: "spillway",
		}
		l.first = false
	}
	if err := l.stream.Send(msg); err != nil {
		l.t.Fatal(err)
	}
}

func (l *logStream) close() {
	l.t.Helper()
	if _, err := l.stream.CloseAndRecv(); err != nil {
		l.t.Fatal(err)
	}
}

// waitFor polls cond: the stream is handled on the server's goroutine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAccessLogReleasesTheSlotAndRecordsEnvoysLatency(t *testing.T) {
	r := startALS(t, extauthz.Options{Completions: true})
	first := r.admit(t, "/checkout?cart=1")
	if second := r.admit(t, "/checkout?cart=2"); second != "" {
		t.Fatal("a second request while the first holds the only slot was admitted")
	}
	if got := r.authz.Completions().Held; got != 1 {
		t.Fatalf("held %d, want 1", got)
	}
	log := r.openLog(t)
	// Envoy's log of the denied request carries no admission; a periodic
	// entry of the admitted one does not finish it; an id this server never
	// issued is counted as unmatched, which also marks that the server has
	// read what came before.
	periodic := envoyLogEntry(first, "/checkout?cart=1", 0, 0)
	periodic.CommonProperties.AccessLogType = accesslogv3.AccessLogType_DownstreamPeriodic
	periodic.CommonProperties.TimeToLastDownstreamTxByte, periodic.Response.ResponseCode = nil, nil
	log.send(envoyLogEntry("", "/checkout?cart=2", 503, 300*time.Microsecond), periodic)
	log.send(envoyLogEntry("0-1", "/checkout?cart=9", 200, time.Millisecond))
	waitFor(t, "the unmatched entry", func() bool { return r.authz.Completions().Unmatched == 1 })
	if second := r.admit(t, "/checkout?cart=2"); second != "" {
		t.Fatal("the slot was released by a denial's or a periodic log entry")
	}
	// The clock runs 5 s while the request is in flight, but the latency
	// is Envoy's: 42 ms to the last byte sent downstream.
	r.clock.Add(int64(5 * time.Second))
	log.send(envoyLogEntry(first, "/checkout?cart=1", 200, 42*time.Millisecond))
	waitFor(t, "the completion", func() bool { return r.authz.Completions().Completed == 1 })
	log.close()
	c := r.authz.Completions()
	if c.Held != 0 || c.Unmatched != 1 || c.Expired != 0 || c.Evicted != 0 {
		t.Errorf("completions %+v, want none held, one unmatched", c)
	}
	r.eng.Tick()
	if got := r.signal("LATENCY"); math.Abs(got-42) > 42*0.02 {
		t.Errorf("flux meter latency_avg_ms = %v, want Envoy's 42 (±2%%)", got)
	}
	if got := r.signal("IN_FLIGHT"); got != 0 {
		t.Errorf("in_flight = %v after the completion, want 0", got)
	}
	if r.admit(t, "/checkout?cart=3") == "" {
		t.Fatal("the slot was not released by the request's log entry")
	}
}

func TestAccessLogOutcomeIsTheResponseCode(t *testing.T) {
	r := startALS(t, extauthz.Options{Completions: true})
	log := r.openLog(t)
	// Each request in its turn, as the limit of one in flight allows.
	for i, code := range []uint32{200, 503, 404, 0} {
		id := r.admit(t, "/checkout")
		if id == "" {
			t.Fatalf("request %d denied", i)
		}
		log.send(envoyLogEntry(id, "/checkout", code, 10*time.Millisecond))
		waitFor(t, "the completion", func() bool { return r.authz.Completions().Completed == uint64(i+1) })
	}
	log.close()
	r.clock.Add(int64(time.Second))
	r.eng.Tick()
	// 200 and 404 are goodput; 503 and 0 (no response: Envoy reset the
	// stream) are not.
	goodput, completed := r.signal("GOODPUT"), r.signal("COMPLETED")
	if completed <= 0 || goodput/completed != 0.5 {
		t.Errorf("goodput_rps %v of completed_rps %v, want half", goodput, completed)
	}
}

// An entry whose client went away (Envoy's DC or DR flag) is an abandoned
// request: the flux meter counts it apart and leaves its latency out of
// the answers'.
func TestAccessLogDownstreamGoneIsAbandoned(t *testing.T) {
	r := startALS(t, extauthz.Options{Completions: true})
	log := r.openLog(t)
	for i, gone := range []bool{false, true} {
		id := r.admit(t, "/checkout")
		if id == "" {
			t.Fatalf("request %d denied", i)
		}
		entry := envoyLogEntry(id, "/checkout", 200, 10*time.Millisecond)
		if gone {
			entry = envoyLogEntry(id, "/checkout", 0, 900*time.Millisecond)
			entry.CommonProperties.ResponseFlags.DownstreamConnectionTermination = true
		}
		log.send(entry)
		waitFor(t, "the completion", func() bool { return r.authz.Completions().Completed == uint64(i+1) })
	}
	log.close()
	r.clock.Add(int64(time.Second))
	r.eng.Tick()
	if abandoned := r.signal("ABANDONED"); !(abandoned > 0) {
		t.Errorf("abandoned_rps %v, want > 0", abandoned)
	}
	if answered, all := r.signal("ANSWERED"), r.signal("LATENCY"); !(answered < 100 && all > 400) {
		t.Errorf("answered latency %v ms, all %v ms: want the 10 ms answer apart from the 900 ms abandoned one", answered, all)
	}
}

func TestAccessLogAdmissionsExpireWithoutTheirEntry(t *testing.T) {
	r := startALS(t, extauthz.Options{Completions: true, CompletionTimeout: 40 * time.Millisecond})
	id := r.admit(t, "/checkout")
	if id == "" || r.admit(t, "/checkout") != "" {
		t.Fatal("want the first request admitted and the second denied")
	}
	r.clock.Add(int64(time.Second)) // the engine's clock decides what is old
	waitFor(t, "the expiry", func() bool { return r.authz.Completions().Expired == 1 })
	if c := r.authz.Completions(); c.Held != 0 {
		t.Errorf("completions %+v after the expiry, want none held", c)
	}
	if r.admit(t, "/checkout") == "" {
		t.Fatal("the expired admission's slot was not released")
	}
	// Its entry, arriving late, finishes nothing.
	log := r.openLog(t)
	log.send(envoyLogEntry(id, "/checkout", 200, 2*time.Second))
	waitFor(t, "the late entry", func() bool { return r.authz.Completions().Unmatched == 1 })
	log.close()
	if c := r.authz.Completions(); c.Completed != 0 || c.Held != 1 {
		t.Errorf("completions %+v, want the late entry unmatched and the new admission held", c)
	}
}

func TestAccessLogEvictsTheOldestBeyondMaxHeld(t *testing.T) {
	r := startALS(t, extauthz.Options{Completions: true, MaxHeld: 4})
	var ids []string
	for i := range 6 {
		id := r.admit(t, "/items/"+string(rune('a'+i)))
		if id == "" {
			t.Fatalf("unlimited request %d denied", i)
		}
		ids = append(ids, id)
	}
	if c := r.authz.Completions(); c.Held != 4 || c.Evicted != 2 {
		t.Fatalf("completions %+v after 6 admissions with MaxHeld 4, want 4 held, 2 evicted", c)
	}
	log := r.openLog(t)
	for _, id := range ids {
		log.send(envoyLogEntry(id, "/items/x", 200, time.Millisecond))
	}
	log.close()
	if c := r.authz.Completions(); c.Held != 0 || c.Completed != 4 || c.Unmatched != 2 {
		t.Errorf("completions %+v, want the 4 newest completed and the 2 evicted unmatched", c)
	}
}

func TestAccessLogRefusesWithoutTheTokenOrWhenOff(t *testing.T) {
	r := startALS(t, extauthz.Options{Completions: true})
	stream, err := r.logs.StreamAccessLogs(context.Background())
	if err == nil {
		_, err = stream.CloseAndRecv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("a log stream without the token: %v, want Unauthenticated", err)
	}

	off := startALS(t, extauthz.Options{})
	resp, err := off.check.Check(withToken(), envoyCheck("GET", "/checkout", nil))
	if err != nil || resp.GetOkResponse() == nil || resp.GetDynamicMetadata() != nil {
		t.Fatalf("completions off: %v, %v; want OK without an admission id", resp, err)
	}
	if resp, _ := off.check.Check(withToken(), envoyCheck("GET", "/checkout", nil)); resp.GetOkResponse() == nil {
		t.Error("completions off: an admission held its slot")
	}
	stream, err = off.logs.StreamAccessLogs(withToken())
	if err == nil {
		_, err = stream.CloseAndRecv()
	}
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("a log stream with completions off: %v, want FailedPrecondition", err)
	}
}
