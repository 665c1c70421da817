package engine_test

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/spillwaygrpc"
)

// e2ePolicy protects both control points with latency AIMD. The warm-up is
// 2 s (4 ticks) so that the test reaches the controlled regime quickly.
const e2ePolicy = `
package e2e

import "spillway.dev/blueprints/latencyaimd"

policies: http: latencyaimd.#Policy & {
	config: {
		policy_name: "http"
		flux_meter: selector: control_point: "http"
		latency_baseliner: ema: warmup_window: "2s"
	}
}
policies: grpc: latencyaimd.#Policy & {
	config: {
		policy_name: "grpc"
		flux_meter: selector: control_point: "grpc"
		latency_baseliner: ema: warmup_window: "2s"
	}
}
`

// virtualClock is the engine's injected clock. Handlers advance it by
// their service time, so the latency the flux meters see is exact.
type virtualClock struct{ ns atomic.Int64 }

func (c *virtualClock) now() int64              { return c.ns.Load() }
func (c *virtualClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *virtualClock) advanceTo(t time.Duration) {
	if d := t - time.Duration(c.ns.Load()); d > 0 {
		c.ns.Add(int64(d))
	}
}

// TestEndToEndHTTPAndGRPC runs real HTTP and gRPC servers on loopback behind
// Spillway, with ticks driven by hand on a virtual clock. Light load is
// never rejected; a latency surge makes both control points shed load with
// 429 and RESOURCE_EXHAUSTED.
func TestEndToEndHTTPAndGRPC(t *testing.T) {
	t.Parallel()
	specs, diags := engine.LoadSource("e2e.cue", []byte(e2ePolicy))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	clock := &virtualClock{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng, err := engine.Start(ctx, engine.Options{Specs: specs, Clock: clock.now, ManualTicks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()

	var serviceTime atomic.Int64 // the service time of the next request
	serviceTime.Store(int64(10 * time.Millisecond))

	// HTTP: a ServeMux route behind the control point "http".
	mux := http.NewServeMux()
	mux.HandleFunc("GET /work", func(w http.ResponseWriter, r *http.Request) {
		clock.advance(time.Duration(serviceTime.Load()))
		w.Write([]byte("ok"))
	})
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hsrv := &http.Server{Handler: eng.HTTP("http", mux)}
	go hsrv.Serve(hl)
	defer hsrv.Close()
	url := "http://" + hl.Addr().String() + "/work"

	// gRPC: the health service; a second interceptor plays the service time.
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	work := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		clock.advance(time.Duration(serviceTime.Load()))
		return h(ctx, req)
	}
	gsrv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(spillwaygrpc.Unary(eng, "grpc"), work),
		grpc.ChainStreamInterceptor(spillwaygrpc.Stream(eng, "grpc")),
	)
	healthpb.RegisterHealthServer(gsrv, health.NewServer())
	go gsrv.Serve(gl)
	defer gsrv.Stop()
	conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)

	type counts struct{ ok, httpRejected, grpcRejected, other int }
	// tick sends n HTTP and n gRPC requests one after another (so each
	// latency is exactly the service time), then ends the 500 ms tick.
	tickNo := 0
	tick := func(n int) counts {
		var c counts
		for i := 0; i < n; i++ {
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				c.ok++
			case http.StatusTooManyRequests:
				if resp.Header.Get("Retry-After") == "" {
					t.Error("a 429 without Retry-After")
				}
				c.httpRejected++
			default:
				c.other++
			}
			_, err = hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
			switch status.Code(err) {
			case codes.OK:
				c.ok++
			case codes.ResourceExhausted:
				c.grpcRejected++
			default:
				c.other++
			}
		}
		tickNo++
		clock.advanceTo(time.Duration(tickNo) * 500 * time.Millisecond)
		eng.Tick()
		return c
	}

	// Light load: 10 + 10 requests of 10 ms per 500 ms tick, well inside
	// capacity. Warm-up, then 20 ticks under control: nothing is rejected.
	for i := 0; i < 24; i++ {
		c := tick(10)
		if c.httpRejected+c.grpcRejected+c.other > 0 {
			t.Fatalf("light load, tick %d: %+v", tickNo, c)
		}
	}
	for _, p := range []string{"http", "grpc"} {
		limit, err := eng.Signal(p, "RATE_LIMIT")
		if err != nil || !(limit > 0) {
			t.Fatalf("policy %s: after warm-up the rate limit must be set, got %v (%v)", p, limit, err)
		}
	}

	// Surge: service time ×8. The controller sees latency far above its
	// baseline and cuts the admitted rate, so requests are rejected.
	serviceTime.Store(int64(80 * time.Millisecond))
	var surge counts
	for i := 0; i < 6; i++ {
		c := tick(6)
		surge.httpRejected += c.httpRejected
		surge.grpcRejected += c.grpcRejected
		surge.other += c.other
	}
	if surge.httpRejected == 0 {
		t.Errorf("overload: no HTTP request was rejected with 429: %+v", surge)
	}
	if surge.grpcRejected == 0 {
		t.Errorf("overload: no gRPC call was rejected with RESOURCE_EXHAUSTED: %+v", surge)
	}
	if surge.other > 0 {
		t.Errorf("overload: unexpected answers: %+v", surge)
	}
	for _, p := range []string{"http", "grpc"} {
		overload, _ := eng.Signal(p, "IS_OVERLOAD")
		if overload != 1 {
			t.Errorf("policy %s: IS_OVERLOAD = %v during the surge", p, overload)
		}
	}
}
