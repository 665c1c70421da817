package engine

import (
	"net/http"

	"google.golang.org/grpc"

	"github.com/spillway-dev/spillway/actuators/grpcmw"
	"github.com/spillway-dev/spillway/actuators/httpmw"
)

// HTTP protects h with the named control point. The API label is the
// ServeMux pattern of the request (see httpmw.Options for a classifier).
func (e *Engine) HTTP(controlPoint string, h http.Handler, opts ...httpmw.Options) http.Handler {
	var o httpmw.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	return httpmw.Wrap(e.registry.Get(controlPoint), h, o)
}

// UnaryInterceptor is the named control point as a gRPC unary interceptor.
func (e *Engine) UnaryInterceptor(controlPoint string) grpc.UnaryServerInterceptor {
	return grpcmw.Unary(e.registry.Get(controlPoint))
}

// StreamInterceptor is the named control point as a gRPC stream interceptor.
func (e *Engine) StreamInterceptor(controlPoint string) grpc.StreamServerInterceptor {
	return grpcmw.Stream(e.registry.Get(controlPoint))
}
