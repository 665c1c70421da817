package httpmw

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

func newCP() *controlpoint.ControlPoint {
	return controlpoint.NewRegistry(func() int64 { return 0 }).Get("ingress")
}

func serve(h http.Handler, path string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", path, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestRejectsWith429AndRetryAfter(t *testing.T) {
	cp := newCP()
	cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(0, 1, 0)})
	h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), Options{})
	if w := serve(h, "/", nil); w.Code != 200 {
		t.Fatalf("first request: %d, want 200 (burst 1)", w.Code)
	}
	w := serve(h, "/", nil)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("second request: %d Retry-After %q, want 429 and 1", w.Code, w.Header().Get("Retry-After"))
	}
}

func TestRejectStatusCanBe503(t *testing.T) {
	cp := newCP()
	cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(0, 1, 0)})
	h := Wrap(cp, http.NotFoundHandler(), Options{RejectStatus: http.StatusServiceUnavailable, RetryAfter: 3})
	serve(h, "/", nil)
	if w := serve(h, "/", nil); w.Code != 503 || w.Header().Get("Retry-After") != "3" {
		t.Fatalf("%d %q, want 503 and Retry-After 3", w.Code, w.Header().Get("Retry-After"))
	}
}

func TestRejectedHookSeesEachRejectionBeforeItIsWritten(t *testing.T) {
	cp := newCP()
	cp.API("GET /a").AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(0, 1, 0)})
	type seen struct {
		label    string
		decision controlpoint.Decision
	}
	var calls []seen
	h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), Options{
		Classifier: func(*http.Request) string { return "GET /a" },
		Rejected: func(w http.ResponseWriter, r *http.Request, label string, d controlpoint.Decision) {
			calls = append(calls, seen{label, d})
			w.Header().Set("X-Why", "bucket empty")
		},
	})
	if w := serve(h, "/a", nil); w.Code != 200 || len(calls) != 0 {
		t.Fatalf("admitted request: %d, hook calls %v; want 200 and none", w.Code, calls)
	}
	w := serve(h, "/a", nil)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("X-Why") != "bucket empty" {
		t.Fatalf("rejection: %d, X-Why %q; want 429 with the hook's header", w.Code, w.Header().Get("X-Why"))
	}
	if want := []seen{{"GET /a", controlpoint.RateLimited}}; !reflect.DeepEqual(calls, want) {
		t.Fatalf("hook calls %v, want %v", calls, want)
	}
}

func TestLabelIsTheMuxPatternNotAClientHeader(t *testing.T) {
	cp := newCP()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {})
	h := Wrap(cp, mux, Options{})
	serve(h, "/items/42", http.Header{"X-Api": {"GET /admin"}, "X-Request-Start": {"0"}})
	apis := cp.APIs()
	if _, ok := apis["GET /items/{id}"]; !ok || len(apis) != 1 {
		t.Fatalf("APIs seen: %v, want only the route pattern", keys(apis))
	}
}

func TestClassifierAndUnroutedRequests(t *testing.T) {
	cp := newCP()
	h := Wrap(cp, http.NotFoundHandler(), Options{Classifier: func(r *http.Request) string { return "tier-" + r.Method }})
	serve(h, "/", nil)
	if _, ok := cp.APIs()["tier-GET"]; !ok {
		t.Fatalf("APIs seen: %v, want the classifier's label", keys(cp.APIs()))
	}
	cp2 := newCP()
	if w := serve(Wrap(cp2, http.NewServeMux(), Options{}), "/nowhere", nil); w.Code != 404 {
		t.Fatalf("an unrouted request: %d, want the mux's 404", w.Code)
	}
	if acc, _ := cp2.API(controlpoint.AllAPIs).Counts(); acc != 1 {
		t.Fatal("an unlabelled request must still be counted at the control point")
	}
}

func TestServerErrorsAreNotGoodput(t *testing.T) {
	cp := newCP()
	tap := actuators.NewRecorder(0)
	cp.API(controlpoint.AllAPIs).AttachTap(tap)
	h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(500)
		}
	}), Options{})
	serve(h, "/ok", nil)
	serve(h, "/fail", nil)
	if w := tap.Snapshot(0); w.Completed != 2 || w.Goodput != 1 || w.Errors != 1 {
		t.Fatalf("window %+v: want 2 completed, 1 goodput, 1 error", w)
	}
}

func TestPanickingHandlerFinishesItsTicket(t *testing.T) {
	cp := newCP()
	c := actuators.NewConcurrencyLimiter(1)
	cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Concurrency: c})
	h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }), Options{})
	func() {
		defer func() { recover() }()
		serve(h, "/", nil)
	}()
	if c.InFlight() != 0 {
		t.Fatal("a panicking handler leaked its concurrency slot")
	}
}

func keys(m map[string]*controlpoint.API) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestRejectionIsWhatHTTPErrorWrites(t *testing.T) {
	cp := newCP()
	cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(0, 1, 0)})
	h := Wrap(cp, http.NotFoundHandler(), Options{RetryAfter: 2})
	serve(h, "/", nil) // the burst of one
	got := httptest.NewRecorder()
	got.Header().Set("Content-Length", "999") // set before the middleware; must not survive
	h.ServeHTTP(got, httptest.NewRequest("GET", "/", nil))

	want := httptest.NewRecorder()
	want.Header().Set("Retry-After", "2")
	http.Error(want, "spillway: overloaded, retry later", http.StatusTooManyRequests)
	if got.Code != want.Code || got.Body.String() != want.Body.String() || !reflect.DeepEqual(got.Header(), want.Header()) {
		t.Fatalf("rejection %d %v %q, want %d %v %q", got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
	}
}

func TestAllocationsPerRequest(t *testing.T) {
	for _, c := range []struct {
		name        string
		rate, burst float64
	}{
		{"a rejection allocates nothing", 0, 1},
		{"an admitted request allocates nothing (its wrapper comes from a slab)", 1e12, 1e12},
	} {
		cp := newCP()
		cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(c.rate, c.burst, 0)})
		mux := http.NewServeMux()
		mux.HandleFunc("GET /a", func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
		h := Wrap(cp, mux, Options{})
		w, r, fresh := &discardWriter{header: http.Header{}}, new(http.Request), httptest.NewRequest("GET", "/a", nil)
		*r = *fresh
		h.ServeHTTP(w, r) // the burst, so that the rejecting bucket starts empty
		clear(w.header)
		if allocs := testing.AllocsPerRun(1000, func() {
			*r = *fresh // unrouted, as a server hands it over
			h.ServeHTTP(w, r)
			clear(w.header)
		}); allocs != 0 {
			t.Errorf("%s: %v allocations per request, want 0", c.name, allocs)
		}
	}
}

// TestMuxRouteIsLookedUpOnceAndSeenAsTheMuxWouldShowIt: the handler of a
// route sees r.Pattern and its path values as if the mux had called it,
// and the request is counted under the pattern.
func TestMuxRouteIsLookedUpOnceAndSeenAsTheMuxWouldShowIt(t *testing.T) {
	cp := newCP()
	mux := http.NewServeMux()
	var pattern, id string
	mux.HandleFunc("GET /a", func(w http.ResponseWriter, r *http.Request) { pattern, id = r.Pattern, r.PathValue("id") })
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) { pattern, id = r.Pattern, r.PathValue("id") })
	h := Wrap(cp, mux, Options{})
	for _, c := range []struct{ path, wantPattern, wantID string }{
		{"/a", "GET /a", ""},
		{"/items/42", "GET /items/{id}", "42"},
	} {
		pattern, id = "", ""
		if w := serve(h, c.path, nil); w.Code != http.StatusOK {
			t.Fatalf("%s: status %d", c.path, w.Code)
		}
		if pattern != c.wantPattern || id != c.wantID {
			t.Errorf("%s: the handler saw pattern %q and id %q, want %q and %q", c.path, pattern, id, c.wantPattern, c.wantID)
		}
		if acc, _ := cp.API(c.wantPattern).Counts(); acc != 1 {
			t.Errorf("%s: %d requests counted under %q, want 1", c.path, acc, c.wantPattern)
		}
	}
	for _, path := range []string{"/a/", "/b/../a", "/items/"} { // 404, redirect, 404
		if got, want := serve(h, path, nil), serve(mux, path, nil); got.Code != want.Code || got.Header().Get("Location") != want.Header().Get("Location") {
			t.Errorf("%s: status %d Location %q, want the bare mux's %d %q", path, got.Code, got.Header().Get("Location"), want.Code, want.Header().Get("Location"))
		}
	}
}

func TestLateHeaderAndUnwrapReachNoResponse(t *testing.T) {
	var kept http.ResponseWriter
	h := Wrap(newCP(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kept = w
		w.Header().Set("X-Mine", "1")
	}), Options{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	kept.Header().Set("X-Late", "1")
	if rec.Header().Get("X-Mine") != "1" || rec.Header().Get("X-Late") != "" {
		t.Fatalf("headers %v: want X-Mine from the handler and no X-Late", rec.Header())
	}
	if err := http.NewResponseController(kept).SetWriteDeadline(time.Now()); err == nil {
		t.Fatal("a late SetWriteDeadline through ResponseController reached the response")
	}
}

func TestWriterSlabFillsItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(writerSlab{}); size > 8192 || size+unsafe.Sizeof(statusWriter{}) <= 8192 {
		t.Errorf("a slab takes %d bytes: want the most wrappers that fit in 8192", size)
	}
}
