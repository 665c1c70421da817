package httpmw

import (
	"errors"
	"io"
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

// streamingWriter is discardWriter with what net/http's HTTP/1 writer
// adds: Flush and io.ReaderFrom.
type streamingWriter struct{ discardWriter }

func (w *streamingWriter) Flush()                                {}
func (w *streamingWriter) ReadFrom(src io.Reader) (int64, error) { return io.Copy(io.Discard, src) }

func TestAllocationsPerRequest(t *testing.T) {
	write := func(w http.ResponseWriter, r *http.Request) { w.Write(body) }
	stream := func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
		http.NewResponseController(w).Flush() // ends the ticket
		w.(io.ReaderFrom).ReadFrom(eofReader{})
		w.(http.Flusher).Flush()
	}
	for _, c := range []struct {
		name        string
		rate, burst float64
		handler     http.HandlerFunc
		streaming   bool
	}{
		{"a rejection allocates nothing", 0, 1, write, false},
		{"an admitted request allocates nothing (its wrapper comes from a slab)", 1e12, 1e12, write, false},
		{"a response that flushes and sends with ReadFrom allocates nothing", 1e12, 1e12, stream, true},
	} {
		cp := newCP()
		cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(c.rate, c.burst, 0)})
		mux := http.NewServeMux()
		mux.HandleFunc("GET /a", c.handler)
		h := Wrap(cp, mux, Options{})
		var w http.ResponseWriter = &discardWriter{header: http.Header{}}
		if c.streaming {
			w = &streamingWriter{discardWriter{header: http.Header{}}}
		}
		r, fresh := new(http.Request), httptest.NewRequest("GET", "/a", nil)
		*r = *fresh
		h.ServeHTTP(w, r) // the burst, so that the rejecting bucket starts empty
		clear(w.Header())
		if allocs := testing.AllocsPerRun(1000, func() {
			*r = *fresh // unrouted, as a server hands it over
			h.ServeHTTP(w, r)
			clear(w.Header())
		}); allocs != 0 {
			t.Errorf("%s: %v allocations per request, want 0", c.name, allocs)
		}
	}
}

// eofReader is an empty source that does not allocate.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

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

func TestLateHeaderAndDeadlineReachNoResponse(t *testing.T) {
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
	if err := http.NewResponseController(kept).SetWriteDeadline(time.Now()); !errors.Is(err, ErrHandlerReturned) {
		t.Fatalf("a late SetWriteDeadline through ResponseController: %v, want ErrHandlerReturned", err)
	}
}

func TestWriterSlabFillsItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(writerSlab{}); size > 8192 || size+unsafe.Sizeof(statusWriter{}) <= 8192 {
		t.Errorf("a slab takes %d bytes: want the most wrappers that fit in 8192", size)
	}
}

// TestInformationalStatusesAreNotTheFinalStatus: the wrapper kept the
// first status written, so a handler that sent 103 Early Hints and then
// failed with 500 was counted as goodput. A 1xx precedes the final status,
// except 101 Switching Protocols, which is final.
func TestInformationalStatusesAreNotTheFinalStatus(t *testing.T) {
	for _, tc := range []struct {
		name    string
		codes   []int
		goodput uint64
	}{
		{"103 Early Hints, then 500, is an error", []int{http.StatusEarlyHints, http.StatusInternalServerError}, 0},
		{"100 Continue, then 503, is an error", []int{http.StatusContinue, http.StatusServiceUnavailable}, 0},
		{"103 Early Hints alone is the implicit 200", []int{http.StatusEarlyHints}, 1},
		{"101 Switching Protocols is final: a 500 after it changes nothing", []int{http.StatusSwitchingProtocols, http.StatusInternalServerError}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp, nowNs, _, tap := meteredCP()
			h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for _, code := range tc.codes {
					w.WriteHeader(code)
				}
			}), Options{})
			h.ServeHTTP(&plainWriter{h: http.Header{}}, httptest.NewRequest("GET", "/", nil))
			if win := tap.Snapshot(nowNs.Load()); win.Completed != 1 || win.Goodput != tc.goodput {
				t.Errorf("window %d completed, %d goodput; want 1 and %d", win.Completed, win.Goodput, tc.goodput)
			}
		})
	}
	t.Run("over a real server the client gets the 500 that is counted", func(t *testing.T) {
		cp, nowNs, _, tap := meteredCP()
		srv := httptest.NewServer(Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload; as=style")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusInternalServerError)
		}), Options{}))
		defer srv.Close()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close() // waits for the handler, and so for its ticket
		if win := tap.Snapshot(nowNs.Load()); resp.StatusCode != 500 || win.Completed != 1 || win.Errors != 1 {
			t.Errorf("the client got %d; window %d completed, %d errors; want 500, 1, 1", resp.StatusCode, win.Completed, win.Errors)
		}
	})
}
