package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/spillway-dev/spillway/decisionlog"
	"github.com/spillway-dev/spillway/internal/proxy"
)

// echoService answers UnaryCall with the request's payload and the
// caller's "x-user" metadata, fails a payload "fail" with NOT_FOUND and a
// trailer, and echoes every FullDuplexCall message until the client
// half-closes.
type echoService struct {
	testpb.UnimplementedTestServiceServer
}

func (echoService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	body := string(req.GetPayload().GetBody())
	if body == "fail" {
		grpc.SetTrailer(ctx, metadata.Pairs("x-why", "asked to"))
		return nil, status.Error(codes.NotFound, "no such thing")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	user := ""
	if v := md.Get("x-user"); len(v) > 0 {
		user = v[0]
	}
	grpc.SetHeader(ctx, metadata.Pairs("x-served-by", "echo"))
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: []byte(body + " for " + user)}}, nil
}

func (echoService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// grpcPolicy refuses every EmptyCall by a concurrency limit of 0, and
// leaves the other methods alone.
const grpcPolicy = `
package p
import bp "spillway.dev/blueprints"
policies: g: bp.#Policy & {
	policy_name: "g"
	evaluation_interval: "100ms"
	components: [
		{ConcurrencyLimiter: {selector: {control_point: "ingress", api: "/grpc.testing.TestService/EmptyCall"}, in_ports: limit: 0}},
	]
}
`

// startGRPCProxy serves the echo service behind a gRPC proxy and returns a
// client of the proxy.
func startGRPCProxy(t *testing.T, policy string, log ...*decisionlog.Log) testpb.TestServiceClient {
	t.Helper()
	return testpb.NewTestServiceClient(startGRPCProxyConn(t, policy, log...))
}

// startGRPCProxyConn is startGRPCProxy's connection to the proxy.
func startGRPCProxyConn(t *testing.T, policy string, log ...*decisionlog.Log) *grpc.ClientConn {
	t.Helper()
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := grpc.NewServer()
	testpb.RegisterTestServiceServer(up, echoService{})
	go up.Serve(upLn)
	t.Cleanup(up.Stop)

	opts := proxy.GRPCOptions{Upstream: upLn.Addr().String()}
	if len(log) > 0 {
		opts.Decisions, opts.ExplainHeader = log[0], true
	}
	p, err := proxy.NewGRPC(startEngine(t, policy), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Server.Serve(ln)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestProxyGRPCForwardsUnaryCallsWithMetadataStatusAndTrailers(t *testing.T) {
	client := startGRPCProxy(t, "")
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-user", "ada"), 5*time.Second)
	defer cancel()
	var header metadata.MD
	resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello")}}, grpc.Header(&header))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.GetPayload().GetBody()); got != "hello for ada" {
		t.Errorf("reply %q, want \"hello for ada\"", got)
	}
	if got := header.Get("x-served-by"); len(got) != 1 || got[0] != "echo" {
		t.Errorf("header x-served-by %v", got)
	}
	var trailer metadata.MD
	_, err = client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("fail")}}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != "no such thing" {
		t.Errorf("upstream error came back as %v", err)
	}
	if got := trailer.Get("x-why"); len(got) != 1 || got[0] != "asked to" {
		t.Errorf("trailer x-why %v", got)
	}
}

func TestProxyGRPCStreamsBothWays(t *testing.T) {
	client := startGRPCProxy(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each reply arrives before the next message is sent: a real stream,
	// not a buffered exchange.
	for _, word := range []string{"one", "two", "three"} {
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(word)}}); err != nil {
			t.Fatal(err)
		}
		reply, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if string(reply.GetPayload().GetBody()) != word {
			t.Fatalf("echo %q, want %q", reply.GetPayload().GetBody(), word)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after half-close: %v, want EOF", err)
	}
}

func TestProxyGRPCRejectsByMethodNameAndExplains(t *testing.T) {
	log := decisionlog.New(16)
	client := startGRPCProxy(t, grpcPolicy, log)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The policy's first tick sets the limit.
	var err error
	var trailer metadata.MD
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err = client.EmptyCall(ctx, &testpb.Empty{}, grpc.Trailer(&trailer)); status.Code(err) == codes.Unavailable {
			break
		}
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("EmptyCall under a concurrency limit of 0: %v, want UNAVAILABLE", err)
	}
	const want = "g: components[0].ConcurrencyLimiter limit=0 (in flight 0)"
	if got := trailer.Get("x-spillway-reason"); len(got) != 1 || got[0] != want {
		t.Errorf("trailer x-spillway-reason %q, want %q", got, want)
	}
	// Another method passes (and reaches the upstream).
	if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	rejected := log.Recent(decisionlog.Filter{Outcome: "rejected"})
	if len(rejected) == 0 || rejected[0].API != "/grpc.testing.TestService/EmptyCall" || rejected[0].Outcome != decisionlog.ConcurrencyLimited || rejected[0].Explanation != want {
		t.Errorf("decision log rejections %+v", rejected)
	}
	accepted := log.Recent(decisionlog.Filter{Outcome: decisionlog.Accepted, API: "/grpc.testing.TestService/UnaryCall"})
	if len(accepted) != 1 {
		t.Errorf("decision log acceptances of UnaryCall %+v, want 1", accepted)
	}
}

// A client names the method of a call, and the proxy must not keep what it
// sends unbounded: a call's headers are refused over 1 MiB (gRPC's own
// default is 16 MiB), and the decision log records a method name the
// control point does not track as the API it is counted under.
func TestProxyGRPCBoundsTheMethodNamesItKeeps(t *testing.T) {
	log := decisionlog.New(16)
	conn := startGRPCProxyConn(t, grpcPolicy, log)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	long := "/x.Y/" + strings.Repeat("m", 10_000)
	if err := conn.Invoke(ctx, long, &testpb.Empty{}, &testpb.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("a 10 kB method: %v, want the upstream's UNIMPLEMENTED", err)
	}
	if got := log.Recent(decisionlog.Filter{}); len(got) != 1 || got[0].API != "__overflow__" {
		t.Errorf("decisions %+v, want one, of API __overflow__", got)
	}
	huge := "/x.Y/" + strings.Repeat("m", 2<<20)
	if err := conn.Invoke(ctx, huge, &testpb.Empty{}, &testpb.Empty{}); err == nil || status.Code(err) == codes.Unimplemented {
		t.Fatalf("a 2 MiB method: %v, want it refused before the upstream", err)
	}
	if got := log.Recent(decisionlog.Filter{}); len(got) != 1 {
		t.Errorf("%d decisions after the 2 MiB method, want it not logged", len(got))
	}
}

// The proxy holds each message whole while it passes it, so its size is
// bounded: by gRPC's 4 MiB unless MaxMessageBytes says otherwise, either
// way, and a larger one fails as at a gRPC server; the upstream here takes
// 16 MiB.
func TestProxyGRPCBoundsItsMessages(t *testing.T) {
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20))
	testpb.RegisterTestServiceServer(up, echoService{})
	go up.Serve(upLn)
	t.Cleanup(up.Stop)
	eng := startEngine(t, "")
	if _, err := proxy.NewGRPC(eng, proxy.GRPCOptions{Upstream: upLn.Addr().String(), MaxMessageBytes: -1}); err == nil || !strings.Contains(err.Error(), "must be > 0") {
		t.Errorf("a negative size: %v, want it refused", err)
	}
	for _, tt := range []struct {
		max    int
		size   int
		passes bool
	}{{0, 3 << 20, true}, {0, 5 << 20, false}, {8 << 20, 5 << 20, true}, {1 << 20, 2 << 20, false}} {
		p, err := proxy.NewGRPC(eng, proxy.GRPCOptions{Upstream: upLn.Addr().String(), MaxMessageBytes: tt.max})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go p.Server.Serve(ln)
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := testpb.NewTestServiceClient(conn).UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, tt.size)}})
		cancel()
		conn.Close()
		p.Close()
		switch {
		case tt.passes && (err != nil || len(resp.GetPayload().GetBody()) != tt.size+len(" for ")):
			t.Errorf("limit %d, a message of %d bytes: %v, want it echoed", tt.max, tt.size, err)
		case !tt.passes && status.Code(err) != codes.ResourceExhausted:
			t.Errorf("limit %d, a message of %d bytes: %v, want RESOURCE_EXHAUSTED", tt.max, tt.size, err)
		}
	}
}
