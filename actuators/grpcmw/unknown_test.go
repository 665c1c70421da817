package grpcmw

import (
	"context"
	"fmt"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

// TestClientChosenMethodsCannotStealADeclaredLimiter runs a real gRPC
// server whose UnknownServiceHandler answers every method, so the label is
// whatever the client sends. After 1,100 junk methods fill the label table,
// a limiter declared for /shop.Cart/Add limits exactly that method: health
// checks pass, and the junk past the cap is counted under __overflow__.
func TestClientChosenMethodsCannotStealADeclaredLimiter(t *testing.T) {
	cp := controlpoint.NewRegistry(func() int64 { return 0 }).Get("grpc")
	srv := grpc.NewServer(grpc.StreamInterceptor(Stream(cp)),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			var req emptypb.Empty
			if err := stream.RecvMsg(&req); err != nil {
				return err
			}
			return stream.SendMsg(&emptypb.Empty{})
		}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	call := func(method string) error {
		return conn.Invoke(context.Background(), method, &emptypb.Empty{}, &emptypb.Empty{})
	}

	const junk = 1100
	for i := 0; i < junk; i++ {
		if err := call(fmt.Sprintf("/junk.Service%d/Method", i)); err != nil {
			t.Fatalf("junk call %d: %v", i, err)
		}
	}
	cp.Declare("/shop.Cart/Add").AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(0, 1, 0)})
	for i := 0; i < 20; i++ {
		if err := call("/grpc.health.v1.Health/Check"); err != nil {
			t.Fatalf("health check %d: %v; the cart's limiter must not apply to it", i, err)
		}
	}
	if err := call("/shop.Cart/Add"); err != nil {
		t.Fatalf("first cart call: %v, want OK (burst 1)", err)
	}
	if err := call("/shop.Cart/Add"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second cart call: %v, want RESOURCE_EXHAUSTED", err)
	}
	overflow := cp.APIs()[controlpoint.OverflowAPI]
	if overflow == nil {
		t.Fatal("no overflow API after the junk")
	}
	if got, want := overflow.Count(controlpoint.OutcomePassthrough), uint64(junk-controlpoint.MaxAPIs+20); got != want {
		t.Fatalf("overflow counted %d calls, want the %d junk past the cap and the health checks", got, want)
	}
	if n := len(cp.APIs()); n != controlpoint.MaxAPIs+2 {
		t.Fatalf("%d APIs, want the cap, the declared cart and the overflow", n)
	}
}
