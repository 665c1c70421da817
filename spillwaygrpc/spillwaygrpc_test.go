package spillwaygrpc_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spillway-dev/spillway"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/spillwaygrpc"
)

// Both engines a service may hold are a spillwaygrpc.Engine.
var (
	_ spillwaygrpc.Engine = (*spillway.Engine)(nil)
	_ spillwaygrpc.Engine = (*engine.Engine)(nil)
)

// cartPolicy lets one call of /shop.Cart/Add in per second at "grpc" and
// none of /shop.Cart/Watch in flight.
const cartPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: cart: bp.#Policy & {
	policy_name: "cart"
	evaluation_interval: "1s"
	components: [
		{RateLimiter: {selector: {control_point: "grpc", api: "/shop.Cart/Add"}, in_ports: {rate_limit: 1, burst: 1}}},
		{ConcurrencyLimiter: {selector: {control_point: "grpc", api: "/shop.Cart/Watch"}, in_ports: limit: 0}},
	]
}
`

type fakeStream struct{ grpc.ServerStream }

func TestInterceptorsEnforceTheEnginesPolicies(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cart.cue"), []byte(cartPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	eng, err := spillway.Start(t.Context(), spillway.Options{Policies: dir,
		Engine: engine.Options{ManualTicks: true, Clock: clock.Load, Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	clock.Add(int64(time.Second))
	eng.Tick()

	unary := spillwaygrpc.Unary(eng, "grpc")
	add := &grpc.UnaryServerInfo{FullMethod: "/shop.Cart/Add"}
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	if resp, err := unary(t.Context(), nil, add, ok); err != nil || resp != "ok" {
		t.Fatalf("first Add: %v, %v; want it served", resp, err)
	}
	if _, err := unary(t.Context(), nil, add, ok); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second Add in the same second: %v, want RESOURCE_EXHAUSTED", err)
	}
	stream := spillwaygrpc.Stream(eng, "grpc")
	watch := &grpc.StreamServerInfo{FullMethod: "/shop.Cart/Watch"}
	served := false
	err = stream(nil, fakeStream{}, watch, func(any, grpc.ServerStream) error { served = true; return nil })
	if status.Code(err) != codes.Unavailable || served {
		t.Fatalf("Watch under a concurrency limit of 0: %v (served %v), want UNAVAILABLE", err, served)
	}
	if admitted, rejected := eng.ControlPoints().Get("grpc").API("/shop.Cart/Add").Counts(); admitted != 1 || rejected != 1 {
		t.Fatalf("Add: %d admitted, %d rejected; want 1 and 1", admitted, rejected)
	}
}
