//go:build !race

// A live test of real streams and calls on the wall clock; under the race
// detector it would time the detector. scripts/test runs it without.

package spillwaygrpc_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/spillway-dev/spillway"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/spillwaygrpc"
)

// The README's wiring (the default policy; the unary and the stream
// interceptor on one control point) on a service that also serves
// long-lived watch streams. Each watch answers at once and then stays
// open: it must hold no concurrency slot once it has answered, or 64 idle
// watches fill the limit (before the fix, the limit sat at the 6 streams
// that got in, and 800 of 801 instant unary calls in 4 s were refused).
func TestIdleStreamsHoldNoSlotOnceTheyHaveAnswered(t *testing.T) {
	dir := t.TempDir()
	policy, err := os.ReadFile("../policies/default.cue")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "default.cue"), policy, 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := spillway.Start(context.Background(), spillway.Options{Policies: dir,
		Engine: engine.Options{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(spillwaygrpc.Unary(eng, "ingress")),
		grpc.ChainStreamInterceptor(spillwaygrpc.Stream(eng, "ingress")))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const streams = 64
	var opened atomic.Int64
	go func() { // open the watches while the calls run, retrying refusals
		for opened.Load() < streams && ctx.Err() == nil {
			st, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
			if err == nil {
				_, err = st.Recv()
			}
			if err == nil {
				opened.Add(1)
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	const seconds, rate, settle = 6, 200, 2
	var ok, refused, other atomic.Int64
	var calls sync.WaitGroup
	start := time.Now()
	for i := 0; time.Since(start) < seconds*time.Second; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))))
		counted := time.Since(start) > settle*time.Second
		calls.Go(func() {
			_, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{})
			if !counted {
				return
			}
			switch status.Code(err) {
			case codes.OK:
				ok.Add(1)
			case codes.Unavailable, codes.ResourceExhausted:
				refused.Add(1)
			default:
				other.Add(1)
			}
		})
	}
	calls.Wait()
	t.Logf("%d watches open; calls from second %d to %d: %d answered, %d refused, %d other", opened.Load(), settle, seconds, ok.Load(), refused.Load(), other.Load())
	if opened.Load() != streams {
		t.Errorf("%d of %d watches opened", opened.Load(), streams)
	}
	if refused.Load() > 0 || other.Load() > 0 || ok.Load() == 0 {
		t.Errorf("with %d idle watches, %d of %d instant calls refused, %d failed otherwise", opened.Load(), refused.Load(), ok.Load()+refused.Load(), other.Load())
	}
}
