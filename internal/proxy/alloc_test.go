package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/spillway-dev/spillway/decisionlog"
	"github.com/spillway-dev/spillway/internal/proxy"
)

// The proxy lends ReverseProxy its copy buffers: a proxied request, the
// upstream's side included, allocates well under the 32 KiB buffer that
// ReverseProxy otherwise makes for every response.
func TestProxyAllocatesNoCopyBufferPerRequest(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 100))
	}))
	t.Cleanup(upstream.Close)
	u, _ := url.Parse(upstream.URL)
	h, err := proxy.New(startEngine(t, ""), proxy.Options{Upstream: u, Routes: []string{"GET /a"}, Logger: quiet, Decisions: decisionlog.New(16)})
	if err != nil {
		t.Fatal(err)
	}
	serve := func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "http://front/a", nil))
		if w.Code != http.StatusOK || w.Body.Len() != 100 {
			t.Fatalf("status %d, %d bytes", w.Code, w.Body.Len())
		}
	}
	for range 20 { // warm the connection and the pool
		serve()
	}
	const n = 200
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		serve()
	}
	runtime.ReadMemStats(&after)
	// The race detector makes sync.Pool drop a quarter of what it is
	// given, and adds its own allocations.
	limit := uint64(20 << 10)
	if raceEnabled {
		limit = 28 << 10
	}
	if perRequest := (after.TotalAlloc - before.TotalAlloc) / n; perRequest > limit {
		t.Errorf("%d bytes allocated per proxied request, want under %d (a copy buffer per request is 32 KiB)", perRequest, limit)
	}
}
