package grpcmw

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

// BenchmarkUnary measures one unary call through the interceptor against
// the handler called bare: accepted (through a token bucket far above the
// load), rejected (a bucket that is always empty) and accepted-metered (a
// flux meter on the method too). Every call names its method with a fresh
// string, as grpc-go builds info.FullMethod from each call's :path, and
// runs under a cancelable context, as grpc-go's are. The interceptor's
// overhead is each case less bare.
func BenchmarkUnary(b *testing.B) {
	const method = "/grpc.health.v1.Health/Check"
	handler := func(context.Context, any) (any, error) { return "ok", nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, bench := range []struct {
		name        string
		wrap, tap   bool
		rate, burst float64
		wantErr     bool
	}{
		{"bare", false, false, 0, 0, false},
		{"accepted", true, false, 1e12, 1e12, false},
		{"rejected", true, false, 0, 1, true},
		{"accepted-metered", true, true, 1e12, 1e12, false},
	} {
		b.Run(bench.name, func(b *testing.B) {
			call := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				return h(ctx, req)
			}
			if bench.wrap {
				cp := controlpoint.NewRegistry(func() int64 { return 0 }).Get("grpc")
				cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(bench.rate, bench.burst, 0)})
				if bench.tap {
					cp.API(method).AttachTap(actuators.NewRecorder(0))
				}
				call = Unary(cp)
			}
			info := &grpc.UnaryServerInfo{FullMethod: method}
			call(ctx, nil, info, handler) // the burst of one, so that "rejected" starts empty
			b.ReportAllocs()
			for b.Loop() {
				info.FullMethod = strings.Clone(method)
				_, err := call(ctx, nil, info, handler)
				if (err != nil) != bench.wantErr {
					b.Fatalf("error %v, want one: %v", err, bench.wantErr)
				}
			}
		})
	}
}
