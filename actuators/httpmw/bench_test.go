package httpmw

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

// discardWriter is an allocation-free http.ResponseWriter whose header map
// is cleared between requests.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }

// BenchmarkHTTPMiddleware measures one request through a ServeMux, bare
// and wrapped: accepted (through a token bucket far above the load, the
// handler writes a body) and rejected (a bucket that is always empty). The
// overhead of the middleware is wrapped minus bare. "accepted-metered"
// adds what a policy adds to its route besides the bucket: a flux meter. Every iteration serves
// a fresh copy of an unrouted request, as a server hands it over: a reused
// request would keep the r.Pattern of its first routing and hide the route
// lookup. The "wildcard" cases route to a pattern with a path value, which
// the mux must route itself.
func BenchmarkHTTPMiddleware(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /a", func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	for _, bench := range []struct {
		name, path  string
		wrap, tap   bool
		rate, burst float64
		want        int
	}{
		{"bare", "/a", false, false, 0, 0, http.StatusOK},
		{"accepted", "/a", true, false, 1e12, 1e12, http.StatusOK},
		{"rejected", "/a", true, false, 0, 1, http.StatusTooManyRequests},
		{"accepted-metered", "/a", true, true, 1e12, 1e12, http.StatusOK},
		{"bare-wildcard", "/items/42", false, false, 0, 0, http.StatusOK},
		{"accepted-wildcard", "/items/42", true, false, 1e12, 1e12, http.StatusOK},
	} {
		b.Run(bench.name, func(b *testing.B) {
			var h http.Handler = mux
			if bench.wrap {
				cp := newCP()
				cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(bench.rate, bench.burst, 0)})
				if bench.tap {
					cp.API("GET /a").AttachTap(actuators.NewRecorder(0))
				}
				h = Wrap(cp, mux, Options{})
			}
			fresh := httptest.NewRequest("GET", bench.path, nil)
			w, r := &discardWriter{header: http.Header{}}, new(http.Request)
			*r = *fresh
			h.ServeHTTP(w, r) // the burst of one, so that "rejected" starts empty
			clear(w.header)
			b.ReportAllocs()
			for b.Loop() {
				*r = *fresh
				h.ServeHTTP(w, r)
				if w.status != bench.want && !(w.status == 0 && bench.want == http.StatusOK) {
					b.Fatalf("status %d, want %d", w.status, bench.want)
				}
				w.status = 0
				clear(w.header)
			}
		})
	}
}

var body = []byte("ok\n")
