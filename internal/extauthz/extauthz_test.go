package extauthz_test

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/flowcontrol"
	"github.com/spillway-dev/spillway/internal/access"
	"github.com/spillway-dev/spillway/internal/extauthz"
	"github.com/spillway-dev/spillway/internal/proxy"
)

// authzPolicy limits "GET /checkout" at "edge" to 2/s with a burst of 2,
// and the route "/admin/" (by context extension) to no request in flight.
const authzPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: edge: bp.#Policy & {
	policy_name: "edge"
	evaluation_interval: "1s"
	components: [
		{RateLimiter: {selector: {control_point: "edge", api: "GET /checkout"}, in_ports: {rate_limit: 2, burst: 2}}},
		{ConcurrencyLimiter: {selector: {control_point: "edge", api: "admin"}, in_ports: limit: 0}},
	]
}
`

const token = "envoy-s3cret"

// envoyCheck is a CheckRequest as Envoy's ext_authz filter fills it for an
// HTTP/1.1 request: pseudo-headers and lower-case header names, the path
// with its query, the route's context extensions.
func envoyCheck(method, path string, ext map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.1.2.3", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 53122}}}}},
		Destination: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.1.2.4", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:     "6d1c3f0e-0b8a-4f3c-9d1e-2b7f5a9c4e11",
				Method: method,
				Headers: map[string]string{
					":authority": "shop.example", ":method": method, ":path": path, ":scheme": "http",
					"user-agent": "curl/8.5.0", "accept": "*/*", "x-forwarded-proto": "http",
					"x-request-id": "6d1c3f0e-0b8a-4f3c-9d1e-2b7f5a9c4e11",
				},
				Path:     path,
				Host:     "shop.example",
				Scheme:   "http",
				Protocol: "HTTP/1.1",
			},
		},
		ContextExtensions: ext,
	}}
}

func startAuthz(t *testing.T) authv3.AuthorizationClient {
	t.Helper()
	specs, diags := engine.LoadSource("edge.cue", []byte(authzPolicy))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, ManualTicks: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	eng.Tick()
	fc := flowcontrol.New(eng, flowcontrol.Options{})
	t.Cleanup(fc.Close)
	routes, err := proxy.Routes([]string{"GET /checkout", "/items/{id}"})
	if err != nil {
		t.Fatal(err)
	}
	rpc := grpc.NewServer(grpc.ChainUnaryInterceptor(access.UnaryBearer(access.NewBearer(token))))
	authv3.RegisterAuthorizationServer(rpc, extauthz.New(fc, extauthz.Options{ControlPoint: "edge", Routes: routes, Explain: true}))
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
	return authv3.NewAuthorizationClient(conn)
}

// withToken is the context Envoy's grpc_service initial_metadata makes.
func withToken() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func headerOf(resp *authv3.DeniedHttpResponse, key string) string {
	for _, h := range resp.GetHeaders() {
		if h.GetHeader().GetKey() == key {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

func TestAuthzAllowsThenAnswers429ForARateLimit(t *testing.T) {
	client := startAuthz(t)
	ctx := withToken()
	for i := range 2 {
		resp, err := client.Check(ctx, envoyCheck("GET", "/checkout?cart=42", nil))
		if err != nil {
			t.Fatal(err)
		}
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK || resp.GetOkResponse() == nil {
			t.Fatalf("request %d within the burst: %v, want OK", i, resp)
		}
	}
	resp, err := client.Check(ctx, envoyCheck("GET", "/checkout?cart=42", nil))
	if err != nil {
		t.Fatal(err)
	}
	denied := resp.GetDeniedResponse()
	if codes.Code(resp.GetStatus().GetCode()) != codes.ResourceExhausted || denied.GetStatus().GetCode() != typev3.StatusCode_TooManyRequests {
		t.Fatalf("third request at 2/s: %v, want denied with 429", resp)
	}
	if got := headerOf(denied, "retry-after"); got != "1" { // the next token is ≤ 0.5 s away: rounded up to 1 s
		t.Errorf("retry-after %q, want \"1\"", got)
	}
	if got := headerOf(denied, "x-spillway-reason"); got != "edge: components[0].RateLimiter rate_limit=2" {
		t.Errorf("x-spillway-reason %q", got)
	}
	// Another route is not limited by GET /checkout's bucket.
	resp, err = client.Check(ctx, envoyCheck("GET", "/items/7", nil))
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("GET /items/7: %v, %v, want OK", resp, err)
	}
}

func TestAuthzAnswers503ForAConcurrencyLimit(t *testing.T) {
	client := startAuthz(t)
	resp, err := client.Check(withToken(), envoyCheck("POST", "/admin/reindex", map[string]string{extauthz.APIKey: "admin"}))
	if err != nil {
		t.Fatal(err)
	}
	denied := resp.GetDeniedResponse()
	if codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable || denied.GetStatus().GetCode() != typev3.StatusCode_ServiceUnavailable {
		t.Fatalf("a route with concurrency limit 0: %v, want denied with 503", resp)
	}
	if got, err := strconv.Atoi(headerOf(denied, "retry-after")); err != nil || got != 1 {
		t.Errorf("retry-after %q, want 1 (the evaluation interval)", headerOf(denied, "retry-after"))
	}
	if got := headerOf(denied, "x-spillway-reason"); !strings.HasPrefix(got, "edge: components[1].ConcurrencyLimiter limit=0 (in flight 0)") {
		t.Errorf("x-spillway-reason %q", got)
	}
}

func TestAuthzRefusesCallsWithoutTheTokenAndNonHTTPRequests(t *testing.T) {
	client := startAuthz(t)
	_, err := client.Check(context.Background(), envoyCheck("GET", "/checkout", nil))
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v, want Unauthenticated", err)
	}
	_, err = client.Check(withToken(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("no HTTP attributes: %v, want InvalidArgument", err)
	}
	_, err = client.Check(withToken(), envoyCheck("GET", "/checkout", map[string]string{extauthz.ControlPointKey: strings.Repeat("x", 300)}))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("an over-long control point: %v, want InvalidArgument", err)
	}
}
