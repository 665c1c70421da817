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

// BenchmarkMiddleware measures one request through Wrap: accepted (through
// a token bucket far above the load, handler writes a body) and rejected
// (a bucket that is always empty).
func BenchmarkMiddleware(b *testing.B) {
	for _, bench := range []struct {
		name        string
		rate, burst float64
		want        int
	}{
		{"accepted", 1e12, 1e12, http.StatusOK},
		{"rejected", 0, 1, http.StatusTooManyRequests},
	} {
		b.Run(bench.name, func(b *testing.B) {
			cp := newCP()
			cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(bench.rate, bench.burst, 0)})
			h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }), Options{})
			w, r := &discardWriter{header: http.Header{}}, httptest.NewRequest("GET", "/a", nil)
			h.ServeHTTP(w, r) // the burst of one, so that "rejected" starts empty
			clear(w.header)
			b.ReportAllocs()
			for b.Loop() {
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
