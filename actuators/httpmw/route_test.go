package httpmw

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

// TestARouteCountedAsOverflowFindsItsOwnStateOnceDeclared: a route's
// pattern is resolved once and remembered, except when it resolved to the
// overflow state (requests had created MaxAPIs labels before it): a policy
// may declare it later, and its limiter must then apply to exactly it.
func TestARouteCountedAsOverflowFindsItsOwnStateOnceDeclared(t *testing.T) {
	cp := newCP()
	for i := range controlpoint.MaxAPIs {
		cp.API(fmt.Sprintf("GET /filler/%d", i))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /late", func(w http.ResponseWriter, r *http.Request) {})
	h := Wrap(cp, mux, Options{})
	serve(h, "/late", nil)
	serve(h, "/late", nil)
	if acc, _ := cp.API(controlpoint.OverflowAPI).Counts(); acc != 2 {
		t.Fatalf("overflow counted %d requests, want the 2 to a route past the cap", acc)
	}
	cp.Declare("GET /late").AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(0, 1, 0)})
	if w := serve(h, "/late", nil); w.Code != http.StatusOK {
		t.Fatalf("first request after the declaration: %d, want 200 (the burst of one)", w.Code)
	}
	if w := serve(h, "/late", nil); w.Code != http.StatusTooManyRequests {
		t.Fatalf("second request after the declaration: %d, want 429 from the route's own limiter", w.Code)
	}
	if acc, rej := cp.API("GET /late").Counts(); acc != 1 || rej != 1 {
		t.Fatalf("the route's own state counted %d accepted, %d rejected; want 1 and 1", acc, rej)
	}
}

// TestARouteKeepsItsStateWhenTheCacheIsWarm: later requests to each route
// are counted where the first was, whether the middleware routes them (a
// wrapped mux, which the wildcard route goes through again) or they come
// routed (Wrap inside a mux route: the outer pattern is the label).
func TestARouteKeepsItsStateWhenTheCacheIsWarm(t *testing.T) {
	cp := newCP()
	inner := http.NewServeMux()
	inner.HandleFunc("GET /a", func(w http.ResponseWriter, r *http.Request) {})
	inner.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {})
	outer := http.NewServeMux()
	outer.Handle("GET /b", Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), Options{}))
	outer.Handle("/inner/", Wrap(cp, inner, Options{}))
	h := Wrap(cp, inner, Options{})
	for range 3 {
		for _, path := range []string{"/a", "/items/1", "/nowhere"} {
			serve(h, path, nil)
		}
		for _, path := range []string{"/b", "/inner/x"} {
			serve(outer, path, nil)
		}
	}
	for _, label := range []string{"GET /a", "GET /items/{id}", "GET /b", "/inner/"} {
		if acc, _ := cp.API(label).Counts(); acc != 3 {
			t.Errorf("%s counted %d requests, want 3", label, acc)
		}
	}
	if acc, _ := cp.API(controlpoint.AllAPIs).Counts(); acc != 15 {
		t.Errorf("the control point counted %d requests, want 15", acc)
	}
}

// TestWrappersAreNeverHandedOutTwice: goroutines taking wrappers at once,
// on every processor, each get their own, across slab boundaries.
func TestWrappersAreNeverHandedOutTwice(t *testing.T) {
	const goroutines, each = 8, 3 * writerSlabSize
	got := make([][]*readerFromWriter, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				got[g] = append(got[g], newStatusWriter(nil))
			}
		}()
	}
	wg.Wait()
	seen := map[*readerFromWriter]bool{}
	for _, writers := range got {
		for _, sw := range writers {
			if seen[sw] {
				t.Fatal("a wrapper was handed out twice")
			}
			seen[sw] = true
		}
	}
}

// TestStatusCodesBeyondInt32CompareAsBefore: the wrapper keeps the status
// in 32 bits; a code beyond them still counts as a server error or not as
// the full code would.
func TestStatusCodesBeyondInt32CompareAsBefore(t *testing.T) {
	codes := []int{0, 200, 499, 500, 503, math.MaxInt32, math.MaxInt, math.MinInt32, math.MinInt}
	if math.MaxInt > math.MaxInt32 { // beyond int32 only where int is wider
		edge := int64(math.MaxInt32)
		codes = append(codes, int(edge+1), int(-edge-2))
	}
	for _, code := range codes {
		if got := int(statusCode(code)); (got < 500) != (code < 500) || (got == 0) != (code == 0) {
			t.Errorf("statusCode(%d) = %d: compares with 500 or 0 differently", code, got)
		}
	}
}

// TestLabelsComeOnlyFromRegisteredPatterns: for a CONNECT that the mux
// redirects to add a trailing slash, ServeMux.Handler gives the redirect's
// path as the pattern, a path the client chose. Taken as the label, it
// made an API per request (1034 requests made 1025), filling MaxAPIs so
// that routes first used afterwards were counted as __overflow__. A
// request the mux answers itself, with a redirect of any method or a 404,
// is now unlabelled, answered as the bare mux answers it; a route whose
// own handler is a redirect keeps its pattern.
func TestLabelsComeOnlyFromRegisteredPatterns(t *testing.T) {
	cp := newCP()
	mux := http.NewServeMux()
	mux.HandleFunc("/users/{id}/", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /a", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /late-route", func(w http.ResponseWriter, r *http.Request) {})
	mux.Handle("GET /old", http.RedirectHandler("/a", http.StatusMovedPermanently))
	h := Wrap(cp, mux, Options{})
	request := func(method, path string) (got, want *httptest.ResponseRecorder) {
		got, want = httptest.NewRecorder(), httptest.NewRecorder()
		h.ServeHTTP(got, httptest.NewRequest(method, path, nil))
		mux.ServeHTTP(want, httptest.NewRequest(method, path, nil))
		return got, want
	}
	const connects = controlpoint.MaxAPIs + 10
	for i := range connects {
		got, want := request("CONNECT", fmt.Sprintf("/users/client-chosen-%d", i))
		if got.Code != want.Code || got.Header().Get("Location") != want.Header().Get("Location") {
			t.Fatalf("CONNECT %d: %d to %q, want the bare mux's %d to %q", i, got.Code, got.Header().Get("Location"), want.Code, want.Header().Get("Location"))
		}
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/users/42"},   // trailing-slash redirect
		{"GET", "/b/../a"},     // clean-path redirect
		{"GET", "/nowhere"},    // 404
		{"POST", "/a"},         // 405
		{"GET", "/old"},        // a route's own redirect: labelled
		{"GET", "/late-route"}, // a route first used after the CONNECTs
	} {
		if got, want := request(c.method, c.path); got.Code != want.Code || got.Header().Get("Location") != want.Header().Get("Location") {
			t.Errorf("%s %s: %d to %q, want the bare mux's %d to %q", c.method, c.path, got.Code, got.Header().Get("Location"), want.Code, want.Header().Get("Location"))
		}
	}
	if apis := cp.APIs(); len(apis) != 2 || apis["GET /old"] == nil || apis["GET /late-route"] == nil {
		t.Errorf("APIs %v, want GET /old and GET /late-route only", keys(apis))
	}
	if acc, _ := cp.API(controlpoint.AllAPIs).Counts(); acc != connects+6 {
		t.Errorf("the control point counted %d requests, want all %d", acc, connects+6)
	}
}
