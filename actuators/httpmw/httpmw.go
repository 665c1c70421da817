// Package httpmw is Spillway's net/http control point: a middleware that
// admits or rejects each request and records it to the flux meters.
package httpmw

import (
	"bufio"
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/actuators/internal/labelcache"
	"github.com/spillway-dev/spillway/actuators/internal/shard"
)

// Options tune the middleware. The zero value is ready to use.
type Options struct {
	// Classifier returns the API label of a request. It must derive the
	// label from server-side routing, never from client-supplied headers.
	// Default: r.Pattern when the handler runs inside a ServeMux route, or
	// the pattern the wrapped *http.ServeMux would route to.
	Classifier func(*http.Request) string
	// RejectStatus is the status of a rejected request: 429 (default) or 503.
	RejectStatus int
	// RetryAfter is the Retry-After header of a rejection, in whole seconds
	// (default 1).
	RetryAfter int
	// Rejected, when set, is called for each rejected request before its
	// response is written, with the request's label and the decision, so
	// that it can record the rejection or add headers to w. It runs on the
	// request's goroutine and must not write a status or body.
	Rejected func(w http.ResponseWriter, r *http.Request, label string, d controlpoint.Decision)
}

// Wrap protects next with the control point cp.
//
// Without a Classifier, a request's label is r.Pattern when it is already
// routed (Wrap inside a ServeMux route), or else, when next is an
// *http.ServeMux, the pattern the mux routes it to. The mux then looks the
// route up once: the request goes straight to the route's handler, with
// r.Pattern set as the mux would set it. A route with wildcards ({id},
// {path...}, {$}) is the exception: only the mux can give the handler its
// path values, so the request goes through the mux, which looks the route
// up a second time.
//
// A rejected request gets opts.RejectStatus, Retry-After, a text/plain body
// and nothing else, written from slices built here once. An admitted request
// reaches next through a wrapper that records the status; once next has
// returned, the wrapper is closed: a goroutine that next left behind gets
// ErrHandlerReturned from Write and Hijack, no-ops from WriteHeader and
// Flush and a detached header map from Header, and never reaches the
// server's writer, whose buffers by then serve another request. A call
// already under way as next returns is waited for, so its bytes land in
// this response. Neither path allocates: wrappers are never reused, and are
// allocated writerSlabSize at a time.
func Wrap(cp *controlpoint.ControlPoint, next http.Handler, opts Options) http.Handler {
	if opts.RejectStatus == 0 {
		opts.RejectStatus = http.StatusTooManyRequests
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 1
	}
	m := &middleware{
		cp:           cp,
		next:         next,
		classify:     opts.Classifier,
		rejectStatus: opts.RejectStatus,
		retryAfter:   []string{strconv.Itoa(opts.RetryAfter)},
		rejected:     opts.Rejected,
	}
	m.mux, _ = next.(*http.ServeMux)
	return m
}

// middleware is what Wrap returns.
type middleware struct {
	cp           *controlpoint.ControlPoint
	next         http.Handler
	mux          *http.ServeMux // next, when it is one
	classify     func(*http.Request) string
	rejectStatus int
	retryAfter   []string
	rejected     func(w http.ResponseWriter, r *http.Request, label string, d controlpoint.Decision)
	// routes holds what each route pattern resolved to. A pattern is a
	// string the mux keeps, the same on every request, so the cache finds
	// it by address; and a label that has its own API state keeps it.
	routes labelcache.Cache[route]
}

// route is what a pattern resolves to.
type route struct {
	api *controlpoint.API
	// wildcard is set for a pattern with path values ({id}, {path...},
	// {$}), which only the mux can give the handler.
	wildcard bool
}

// route returns what pattern resolves to, remembering it when it cannot
// change: a label with its own state (not AllAPIs for an empty pattern,
// nor OverflowAPI for a label past the cap, which a policy may declare
// later).
func (m *middleware) route(pattern string) route {
	if rt, ok := m.routes.Get(pattern); ok {
		return rt
	}
	rt := route{api: m.cp.API(pattern), wildcard: strings.IndexByte(pattern, '{') >= 0}
	if rt.api.Label == pattern {
		m.routes.Put(pattern, rt)
	}
	return rt
}

// ServeHTTP admits or rejects the request, and hands an admitted one to
// the handler.
func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var label string
	var api *controlpoint.API
	next := m.next
	switch {
	case m.classify != nil:
		label = m.classify(r)
		api = m.cp.API(label)
	case m.mux == nil || r.Pattern != "" || r.RequestURI == "*":
		// Routed already; or the mux answers 400 itself.
		label = r.Pattern
		api = m.route(label).api
	default:
		var handler http.Handler
		handler, label = m.mux.Handler(r)
		rt := m.route(label)
		api = rt.api
		if !rt.wildcard { // with path values, the mux routes again
			r.Pattern = label // what the mux would set before calling handler
			next = handler
		}
	}
	ticket, decision := api.Admit()
	if decision != controlpoint.Accepted {
		if m.rejected != nil {
			m.rejected(w, r, label, decision)
		}
		reject(w, m.rejectStatus, m.retryAfter)
		return
	}
	sw := newStatusWriter(w)
	defer sw.abandon(&ticket, r)
	next.ServeHTTP(sw, r)
	finish(&ticket, r, sw.finish() < 500)
}

// finish finishes an admitted request: abandoned if its client is gone
// (its context is canceled: net/http cancels it when the connection
// closes), so that the flux meters can tell latency no one waited for from
// the answers' (controlpoint.Ticket.Abandon). A deadline is not the
// client's: HTTP carries none, so it is a server's timeout, whose answer
// the client gets.
func finish(ticket *controlpoint.Ticket, r *http.Request, ok bool) {
	if errors.Is(r.Context().Err(), context.Canceled) {
		ticket.Abandon()
		return
	}
	ticket.Done(ok)
}

// abandon finishes the request if next did not return: it panicked (the
// panic goes on) or called runtime.Goexit. After finish it does nothing.
func (s *statusWriter) abandon(ticket *controlpoint.Ticket, r *http.Request) {
	if s.w == nil {
		return // finished
	}
	status := s.finish()
	if p := recover(); p != nil {
		ticket.Done(false)
		panic(p)
	}
	finish(ticket, r, status < 500)
}

// ErrHandlerReturned is what Write returns once the handler it was given to
// has returned, as net/http's TimeoutHandler does after its deadline.
var ErrHandlerReturned = errors.New("httpmw: write after the handler returned")

// The parts of a rejection, shared by every rejection. net/http only reads
// header values, and each slice is full (len == cap), so a Header().Add
// after reject copies it instead of appending into it.
var (
	rejectContentType = []string{"text/plain; charset=utf-8"}
	rejectNoSniff     = []string{"nosniff"}
	rejectBody        = []byte("spillway: overloaded, retry later\n")
)

// reject writes what http.Error would, without formatting or allocating
// header values.
func reject(w http.ResponseWriter, status int, retryAfter []string) {
	h := w.Header()
	if len(h) != 0 {
		delete(h, "Content-Length") // it may describe another body
	}
	h["Retry-After"] = retryAfter
	h["Content-Type"] = rejectContentType
	h["X-Content-Type-Options"] = rejectNoSniff
	w.WriteHeader(status)
	w.Write(rejectBody)
}

// statusWriter remembers the response status; it forwards Header, Flush
// and Hijack and supports http.ResponseController through Unwrap. Once
// finish was called it forwards nothing, and it drops its ResponseWriter so
// that a slab kept alive by one wrapper does not keep its neighbours'
// responses alive.
type statusWriter struct {
	w http.ResponseWriter
	// status is the first status written, clamped to int32 (statusCode),
	// which keeps the wrapper at 24 bytes.
	status int32
	// gate is closed (bit 31) by finish; the low bits count the calls
	// forwarding to w, which finish waits out.
	gate atomic.Uint32
}

const gateClosed = 1 << 31

// writerSlabSize is how many wrappers one allocation provides: 341 of 24
// bytes and the counter fill an 8 KiB size class.
const writerSlabSize = 341

// writerSlab is a batch of wrappers, each handed out once; taken counts
// those handed out. A slab belongs to one processor's writerCache, and
// only requests pinned to that processor (shard.Pin), one at a time, take
// from it, so taken needs no read-modify-write atomic (see take).
type writerSlab struct {
	taken   uint32
	writers [writerSlabSize]statusWriter
}

// writerCache is one processor's current slab, alone on its cache line.
type writerCache struct {
	slab atomic.Pointer[writerSlab]
	_    [56]byte
}

// writerCaches hold a slab per processor, indexed by its id, so that
// cores handing out wrappers at once share nothing. There is one per
// processor the process may have: GOMAXPROCS at start, or the CPU count if
// larger (the most the runtime raises GOMAXPROCS to by itself).
var writerCaches = make([]writerCache, max(runtime.GOMAXPROCS(0), runtime.NumCPU()))

// newStatusWriter returns an unused wrapper around w.
func newStatusWriter(w http.ResponseWriter) *statusWriter {
	if proc := shard.Pin(); proc < len(writerCaches) {
		if slab := writerCaches[proc].slab.Load(); slab != nil {
			if sw := slab.take(); sw != nil {
				shard.Unpin()
				sw.w = w
				return sw
			}
		}
	}
	shard.Unpin()
	return newWriterSlab(w)
}

// newWriterSlab is newStatusWriter when the processor's slab is exhausted
// (or it has none yet): it starts a slab and returns its first wrapper. The
// slab is allocated unpinned, so that the allocation may assist the
// garbage collector, then goes to the processor the goroutine is on by
// then. On a processor beyond writerCaches (GOMAXPROCS set above the CPU
// count after start), each wrapper is an allocation.
func newWriterSlab(w http.ResponseWriter) *statusWriter {
	if proc := shard.Pin(); proc >= len(writerCaches) {
		shard.Unpin()
		return &statusWriter{w: w}
	}
	shard.Unpin()
	slab := &writerSlab{}
	sw := slab.take()
	sw.w = w
	if proc := shard.Pin(); proc < len(writerCaches) {
		writerCaches[proc].slab.Store(slab)
	}
	shard.Unpin()
	return sw
}

// enter reports whether a call may forward to w; if it may, the caller must
// call exit when done.
func (s *statusWriter) enter() bool {
	if s.gate.Add(1)&gateClosed != 0 {
		s.gate.Add(^uint32(0))
		return false
	}
	return true
}

func (s *statusWriter) exit() { s.gate.Add(^uint32(0)) }

// finish closes the gate, waits for the calls already past it (a handler
// goroutine racing its handler's return), drops w and returns the status.
func (s *statusWriter) finish() int {
	s.gate.Or(gateClosed)
	for s.gate.Load() != gateClosed {
		runtime.Gosched()
	}
	s.w = nil
	return int(s.status)
}

// statusCode is code as statusWriter keeps it: codes beyond int32 (which
// net/http refuses anyway) are clamped, so that they still compare with
// 500 as they did.
func statusCode(code int) int32 {
	return int32(min(max(code, math.MinInt32), math.MaxInt32))
}

func (s *statusWriter) Header() http.Header {
	if !s.enter() {
		return http.Header{} // a late caller's edits go nowhere
	}
	defer s.exit()
	return s.w.Header()
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.enter() {
		return
	}
	defer s.exit()
	if s.status == 0 {
		s.status = statusCode(code)
	}
	s.w.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.enter() {
		return 0, ErrHandlerReturned
	}
	defer s.exit()
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.w.Write(b)
}

func (s *statusWriter) Flush() {
	if !s.enter() {
		return
	}
	defer s.exit()
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !s.enter() {
		return nil, nil, ErrHandlerReturned
	}
	defer s.exit()
	if h, ok := s.w.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("httpmw: response writer does not support hijacking")
}

// Unwrap returns the server's writer, for http.ResponseController; once
// the handler has returned, a writer on which every call fails.
func (s *statusWriter) Unwrap() http.ResponseWriter {
	if !s.enter() {
		return returnedWriter{}
	}
	defer s.exit()
	return s.w
}

// returnedWriter is what Unwrap gives a late caller: nothing it does
// reaches a response.
type returnedWriter struct{}

func (returnedWriter) Header() http.Header       { return http.Header{} }
func (returnedWriter) Write([]byte) (int, error) { return 0, ErrHandlerReturned }
func (returnedWriter) WriteHeader(int)           {}
