package engine

import (
	"net/http"

	"github.com/spillway-dev/spillway/actuators/httpmw"
)

// HTTP protects h with the named control point. The API label is the
// ServeMux pattern of the request (see httpmw.Options for a classifier).
// The gRPC interceptors are in package spillwaygrpc, so that an HTTP-only
// service does not link grpc.
func (e *Engine) HTTP(controlPoint string, h http.Handler, opts ...httpmw.Options) http.Handler {
	var o httpmw.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	return httpmw.Wrap(e.registry.Get(controlPoint), h, o)
}
