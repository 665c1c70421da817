//go:build !race

// The live overload test times a real service; under the race detector it
// would time the detector instead. scripts/test runs it without.

package spillwaygrpc_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/spillway-dev/spillway"
	"github.com/spillway-dev/spillway/spillwaygrpc"
	"google.golang.org/grpc/test/bufconn"
	"net"
)

// slowHealth answers Check with workers slots of work each, queueing
// callers beyond them: a service of capacity workers ÷ work per second.
type slowHealth struct {
	healthpb.UnimplementedHealthServer
	slots chan struct{}
	work  time.Duration
}

func (s *slowHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	time.Sleep(s.work)
	<-s.slots
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// TestDefaultPolicyKeepsAnOverloadedGRPCServiceNearCapacity: a gRPC
// service of 200 calls/s, embedded with the default policy and offered 3×
// its capacity, answers ≥ 0.8 of its capacity within the SLO once the
// limit settles (from second 3), and rejects the rest at once: a
// concurrency limit answers Unavailable, a rate limit ResourceExhausted.
func TestDefaultPolicyKeepsAnOverloadedGRPCServiceNearCapacity(t *testing.T) {
	dir := t.TempDir()
	policy, err := os.ReadFile("../policies/default.cue")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "default.cue"), policy, 0o644)
	eng, err := spillway.Start(context.Background(), spillway.Options{Policies: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()

	const workers, work, capacity, offered, slo = 4, 20 * time.Millisecond, 200.0, 600.0, 250 * time.Millisecond
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(spillwaygrpc.Unary(eng, "ingress")))
	healthpb.RegisterHealthServer(srv, &slowHealth{slots: make(chan struct{}, workers), work: work})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)

	const seconds, settled = 8, 3
	var good, rejected, other [seconds]atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; time.Since(start) < seconds*time.Second; i++ {
		due := start.Add(time.Duration(float64(i) / offered * float64(time.Second)))
		time.Sleep(time.Until(due))
		sec := int(time.Since(start) / time.Second)
		if sec >= seconds {
			break
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			t0 := time.Now()
			_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
			switch {
			case err == nil && time.Since(t0) <= slo:
				good[sec].Add(1)
			case status.Code(err) == codes.ResourceExhausted, status.Code(err) == codes.Unavailable && strings.HasPrefix(status.Convert(err).Message(), "spillway:"):
				rejected[sec].Add(1)
			default:
				other[sec].Add(1)
			}
		})
	}
	wg.Wait()
	var g, r, o int64
	for s := range seconds {
		fmt.Printf("grpc-overload: second=%d good=%d rejected=%d other=%d\n", s, good[s].Load(), rejected[s].Load(), other[s].Load())
		if s >= settled {
			g += good[s].Load()
			r += rejected[s].Load()
			o += other[s].Load()
		}
	}
	rate := float64(g) / (seconds - settled)
	fmt.Printf("grpc-overload: capacity=%.0f offered=%.0f goodput_rps=%.1f ratio=%.2f\n", capacity, offered, rate, rate/capacity)
	if rate < 0.8*capacity {
		t.Errorf("goodput %.1f/s over seconds %d–%d, want ≥ 0.8 × %.0f", rate, settled, seconds, capacity)
	}
	if r == 0 {
		t.Error("no call rejected by Spillway at 3× capacity")
	}
	if o > (g+r)/20 {
		t.Errorf("%d calls late or failed otherwise, against %d good and %d rejected: want under 5 %%", o, g, r)
	}
}
