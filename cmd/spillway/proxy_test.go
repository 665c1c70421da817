package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/spillway-dev/spillway/flowcontrol/spillwayv1"
	"github.com/spillway-dev/spillway/internal/extauthz"
	"github.com/spillway-dev/spillway/internal/testpki"
)

// blockPolicy lets nothing through to "GET /blocked" at the proxy's
// control point, from a Variable so the reason names a producer.
const blockPolicy = `package p
import bp "spillway.dev/blueprints"
policies: block: bp.#Policy & {
	policy_name: "block"
	evaluation_interval: "50ms"
	components: [
		{Variable: {value: 0, out_ports: output: "ZERO"}},
		{Arithmetic: {operator: "mul", in_ports: {lhs: "ZERO", rhs: 1}, out_ports: output: "LIMIT"}},
		{ConcurrencyLimiter: {selector: {control_point: "ingress", api: "GET /blocked"}, in_ports: limit: "LIMIT"}},
	]
}
`

func freeAddr(t *testing.T) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		// The port is free again once closed, and the kernel may hand
		// it out again at once: a fleet test once got the same port for
		// one process's admin server and another's listener.
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

// handedOut is every address freeAddr has returned in this test binary.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// waitFor polls url until it answers or 10 s pass.
func waitFor(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
}

func TestProxyCommandProtectsAnUpstreamAndServesTheCheckAPI(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream "+r.URL.Path)
	}))
	defer upstream.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "block.cue"), []byte(blockPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	listen, admin, check := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx := t.Context()
	defer startCommand(t, "proxy", "--listen", listen, "--upstream", upstream.URL, "--route", "GET /blocked", "--route", "GET /open",
		"--policies", dir, "--admin", admin, "--agent-addr", "", "--check", check, "--explain-header", "--envoy-access-log")()
	waitFor(t, "http://"+admin+"/status")

	resp, err := http.Get("http://" + listen + "/open")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "upstream /open" {
		t.Fatalf("GET /open: %d %q", resp.StatusCode, body)
	}
	// The limit applies once the policy ticked.
	var reason string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		resp, err = http.Get("http://" + listen + "/blocked")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			reason = resp.Header.Get("X-Spillway-Reason")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	const want = "block: components[2].ConcurrencyLimiter limit=0 (in flight 0) from components[1].Arithmetic (ZERO=0, rhs=1)"
	if reason != want {
		t.Fatalf("GET /blocked: status %d, reason %q; want 429 with %q", resp.StatusCode, reason, want)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on the rejection")
	}

	// The admin port lists the rejection.
	resp, err = http.Get("http://" + admin + "/decisions?outcome=rejected&api=GET+/blocked")
	if err != nil {
		t.Fatal(err)
	}
	var log struct {
		Decisions []struct{ Source, Explanation string }
	}
	json.NewDecoder(resp.Body).Decode(&log)
	resp.Body.Close()
	if len(log.Decisions) == 0 || log.Decisions[0].Source != "proxy" || log.Decisions[0].Explanation != want {
		t.Fatalf("/decisions: %+v", log)
	}

	// The Check API, JSON and gRPC, on one port.
	resp, err = http.Post("http://"+check+"/v1/check", "application/json", strings.NewReader(`{"control_point": "ingress", "api": "GET /blocked"}`))
	if err != nil {
		t.Fatal(err)
	}
	var jsonCheck map[string]any
	json.NewDecoder(resp.Body).Decode(&jsonCheck)
	resp.Body.Close()
	if jsonCheck["reject_reason"] != "REJECT_REASON_CONCURRENCY_LIMITED" || jsonCheck["explanation"] != want {
		t.Fatalf("JSON check: %v", jsonCheck)
	}
	conn, err := grpc.NewClient(check, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := spillwayv1.NewFlowControlClient(conn)
	accepted, err := client.Check(ctx, &spillwayv1.CheckRequest{ControlPoint: "ingress", Api: "GET /open"})
	if err != nil || accepted.Decision != spillwayv1.Decision_DECISION_ACCEPTED {
		t.Fatalf("gRPC check: %v, %v", accepted, err)
	}
	if _, err := client.Done(ctx, &spillwayv1.DoneRequest{FlowId: accepted.FlowId, Outcome: spillwayv1.Outcome_OUTCOME_OK}); err != nil {
		t.Fatalf("gRPC done: %v", err)
	}

	// gRPC's health service on the same port, for probes.
	health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: spillwayv1.FlowControl_ServiceDesc.ServiceName})
	if err != nil || health.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v, %v", health, err)
	}

	// ext_authz and, with --envoy-access-log, Envoy's access-log stream
	// that finishes its admissions, on the same port.
	authz, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/open", Host: "shop.example", Headers: map[string]string{":method": "GET", ":path": "/open"}}}}})
	if err != nil || authz.GetOkResponse() == nil {
		t.Fatalf("ext_authz check: %v, %v", authz, err)
	}
	admission := authz.GetDynamicMetadata().GetFields()[extauthz.AdmissionKey].GetStringValue()
	if admission == "" {
		t.Fatalf("ext_authz OK without an admission id: %v", authz)
	}
	logs, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	entry := &accesslogv3.HTTPAccessLogEntry{
		CommonProperties: &accesslogv3.AccessLogCommon{
			TimeToLastDownstreamTxByte: durationpb.New(3 * time.Millisecond),
			AccessLogType:              accesslogv3.AccessLogType_DownstreamEnd,
			Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{extauthz.MetadataNamespace: {
				Fields: map[string]*structpb.Value{extauthz.AdmissionKey: structpb.NewStringValue(admission)}}}},
		},
		Response: &accesslogv3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(200)},
	}
	if err := logs.Send(&alsv3.StreamAccessLogsMessage{
		Identifier: &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "envoy-0"}, LogName: "spillway"},
		LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{
			LogEntry: []*accesslogv3.HTTPAccessLogEntry{entry}}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := logs.CloseAndRecv(); err != nil {
		t.Fatalf("access-log stream: %v", err)
	}
}

func TestProxyCommandServesTLSToAnHTTPSUpstream(t *testing.T) {
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream over "+r.Header.Get("X-Forwarded-Proto"))
	}))
	defer upstream.Close()
	dir := t.TempDir()
	pki := testpki.New(t, "127.0.0.1")
	files := map[string][]byte{
		"cert.pem":        pki.CertPEM,
		"key.pem":         pki.KeyPEM,
		"upstream-ca.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: upstream.Certificate().Raw}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	listen, admin := freeAddr(t), freeAddr(t)
	defer startCommand(t, "proxy", "--listen", listen, "--upstream", upstream.URL, "--policies", "../../policies", "--admin", admin, "--agent-addr", "",
		"--tls-cert", filepath.Join(dir, "cert.pem"), "--tls-key", filepath.Join(dir, "key.pem"), "--upstream-ca", filepath.Join(dir, "upstream-ca.pem"))()
	waitFor(t, "http://"+admin+"/status")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool}, ForceAttemptHTTP2: true}}
	resp, err := client.Get("https://" + listen + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "upstream over https" || resp.ProtoMajor != 2 {
		t.Fatalf("GET over TLS: %s %d %q; want HTTP/2 200 from the upstream", resp.Proto, resp.StatusCode, body)
	}
	// Plaintext to a TLS listener is refused (Go answers 400).
	if resp, err := http.Get("http://" + listen + "/x"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plaintext to the TLS listener: %d", resp.StatusCode)
		}
	}
}

func TestProxyCommandRefusesBadFlags(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	caPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caPEM, testpki.New(t, "127.0.0.1").CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// One small policy: the flags are the subject, and each case would
	// otherwise evaluate every shipped policy again.
	policies := t.TempDir()
	if err := os.WriteFile(filepath.Join(policies, "block.cue"), []byte(blockPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args      []string
		wantError string
	}{
		{[]string{}, `"upstream" not set`},
		{[]string{"--upstream", "127.0.0.1:8000"}, "--upstream: parse"},
		{[]string{"--upstream", "ftp://localhost:8000"}, "scheme must be http or https"},
		{[]string{"--upstream", "/path"}, "upstream must be an absolute URL"},
		{[]string{"--upstream", "http://127.0.0.1:1", "--route", "/a/{x"}, `--route: route "/a/{x"`},
		{[]string{"--upstream", "http://127.0.0.1:1", "--reject-status", "500"}, "must be 429 or 503"},
		{[]string{"--upstream", "http://127.0.0.1:1", "--check", "0.0.0.0:0"}, "check API: refusing to listen on 0.0.0.0:0 without a token"},
		{[]string{"--upstream", "127.0.0.1:1", "--grpc", "--route", "GET /a"}, "with --grpc calls are labelled by their full method name"},
		{[]string{"--upstream", "http://127.0.0.1:1", "--tls-cert", notPEM}, "--tls-cert and --tls-key go together"},
		{[]string{"--upstream", "http://127.0.0.1:1", "--tls-cert", notPEM, "--tls-key", notPEM}, "--tls-cert " + notPEM + ", --tls-key " + notPEM + ": tls: failed to find any PEM data"},
		{[]string{"--upstream", "https://127.0.0.1:1", "--upstream-ca", notPEM}, "--upstream-ca " + notPEM + ": no PEM certificate"},
		{[]string{"--upstream", "https://127.0.0.1:1", "--upstream-ca", filepath.Join(dir, "missing.pem")}, "--upstream-ca: open"},
		{[]string{"--upstream", "http://127.0.0.1:1", "--upstream-ca", caPEM}, "--upstream-ca verifies an https upstream; --upstream is http://127.0.0.1:1"},
		{[]string{"--upstream", "127.0.0.1:1", "--grpc", "--tls-key", notPEM}, "--tls-cert and --tls-key go together"},
		{[]string{"--upstream", "http://127.0.0.1:1", "--envoy-access-log"}, "--envoy-access-log: Envoy's access log goes to the Check API's port; set --check"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--agent-addr", "", "--policies", policies}, tt.args...))
		err := root.ExecuteContext(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tt.wantError) {
			t.Errorf("proxy %v: %v\n%s; want an error containing %q", tt.args, err, out.String(), tt.wantError)
		}
	}
}

// grpcBlockPolicy refuses every EmptyCall at the proxy's control point.
const grpcBlockPolicy = `package p
import bp "spillway.dev/blueprints"
policies: g: bp.#Policy & {
	policy_name: "g"
	evaluation_interval: "50ms"
	components: [
		{RateLimiter: {selector: {control_point: "ingress", api: "/grpc.testing.TestService/EmptyCall"}, in_ports: {rate_limit: 0, burst: 1}}},
	]
}
`

type emptyService struct {
	testpb.UnimplementedTestServiceServer
}

func (emptyService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func TestProxyCommandProxiesGRPC(t *testing.T) {
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := grpc.NewServer()
	testpb.RegisterTestServiceServer(up, emptyService{})
	go up.Serve(upLn)
	defer up.Stop()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "g.cue"), []byte(grpcBlockPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	listen, admin := freeAddr(t), freeAddr(t)
	ctx := t.Context()
	defer startCommand(t, "proxy", "--grpc", "--listen", listen, "--upstream", upLn.Addr().String(),
		"--policies", dir, "--admin", admin, "--agent-addr", "")()
	waitFor(t, "http://"+admin+"/status")
	conn, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)
	// The bucket (rate 0, burst 1) admits one call once the policy ticked,
	// then sheds every further one.
	var codesSeen []codes.Code
	for range 3 {
		_, err := client.EmptyCall(ctx, &testpb.Empty{})
		codesSeen = append(codesSeen, status.Code(err))
		time.Sleep(100 * time.Millisecond)
	}
	if codesSeen[len(codesSeen)-1] != codes.ResourceExhausted {
		t.Fatalf("EmptyCall codes %v, want RESOURCE_EXHAUSTED at the end", codesSeen)
	}
	if codesSeen[0] != codes.OK {
		t.Errorf("first EmptyCall %v, want OK through the proxy", codesSeen[0])
	}
}
