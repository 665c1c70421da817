// Package httpmw is Spillway's net/http control point: a middleware that
// admits or rejects each request and records it to the flux meters.
//
// A request holds its admission ticket, and with it any concurrency slot,
// while it is answered, and its latency runs from admission to the end of
// the answer. A response that streams (server-sent events, a long poll, a
// proxied chunked body) ends its ticket at its first flush instead: the
// time to first flush is its latency, its slot is released then, and the
// rest of the response is not counted as in flight, so that clients idling
// on open streams neither fill the concurrency limit nor raise the latency
// that the policy sees. A hijacked connection (a WebSocket) ends its
// ticket at the hijack in the same way. A response that never flushes is
// timed to its end.
package httpmw

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
// up a second time. Labels come only from registered patterns: a request
// the mux answers itself (a 404, a 405, a redirect to add a trailing slash
// or clean the path) is unlabelled, counted at the control point alone.
// For a CONNECT redirect ServeMux.Handler gives the client's own path as
// the pattern, and taking it would let clients create labels at will.
//
// A rejected request gets opts.RejectStatus, Retry-After, a text/plain body
// and nothing else, written from slices built here once. An admitted request
// reaches next through a wrapper that records the status and implements
// what http.ResponseController uses (Flush, Hijack, read and write
// deadlines, full duplex) and io.ReaderFrom where the server's writer has
// it (sendfile). Once next has returned, the wrapper is closed: a
// goroutine that next left behind gets ErrHandlerReturned from Write,
// ReadFrom, Hijack and the ResponseController calls, no-ops from
// WriteHeader and Flush and a detached header map from Header, and never
// reaches the server's writer, whose buffers by then serve another
// request. A call already under way as next returns is waited for
// (sleeping, not spinning), so its bytes land in this response. Neither
// path allocates: wrappers are never reused, and are allocated a slab of
// writerSlabSize at a time.
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

// muxRedirectType is the dynamic type of the handler ServeMux.Handler
// returns for a redirect, its own or a route's http.RedirectHandler.
var muxRedirectType = reflect.TypeOf(http.RedirectHandler("/", http.StatusTemporaryRedirect))

// redirectedByMux reports whether handler, which m.mux.Handler returned
// for r, is a redirect the mux made itself rather than a registered
// route's handler. The mux makes a new redirect on every lookup, while a
// route's handler is the same value on each, so a second lookup tells them
// apart; only requests answered by a redirect pay for it.
func (m *middleware) redirectedByMux(r *http.Request, handler http.Handler) bool {
	if reflect.TypeOf(handler) != muxRedirectType {
		return false
	}
	again, _ := m.mux.Handler(r)
	return again != handler // comparable: both pointers, or types that differ
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
		if label != "" && m.redirectedByMux(r, handler) {
			label = "" // the mux answers; for CONNECT, label was the client's path
		}
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
	sw.r, sw.ticket = r, ticket
	defer sw.abandon()
	if _, ok := w.(io.ReaderFrom); ok {
		next.ServeHTTP(sw, r)
	} else {
		next.ServeHTTP(&sw.statusWriter, r) // no ReadFrom, as w has none
	}
	sw.close(false)
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

// ErrHandlerReturned is what Write, ReadFrom, Hijack and the
// ResponseController calls return once the handler they were given to has
// returned, as net/http's TimeoutHandler's Write does after its deadline.
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

// statusWriter is what an admitted request's handler writes to. It
// remembers the final status, holds the request's ticket, and forwards
// Header, Write, WriteHeader and the http.ResponseController calls through
// a gate. Once closed (close, as the handler returns) it forwards nothing,
// and it drops its ResponseWriter and request so that a slab kept alive by
// one wrapper does not keep its neighbours' responses alive. It has no
// Unwrap: the server's writer never leaves it, so that nothing can reach
// that writer around the gate.
type statusWriter struct {
	w http.ResponseWriter
	r *http.Request
	// ticket is the request's; it is finished once, by the first flush
	// that reaches the server's writer or else by close (see ticketEnded).
	ticket controlpoint.Ticket
	// status is the final status written (not an informational 1xx other
	// than 101), clamped to int32 (statusCode); 0 until one is.
	status int32
	// gate holds gateClosed, gateWaiting and ticketEnded, and in its low
	// bits (gateCalls) counts the calls forwarding to w, which close waits
	// out.
	gate atomic.Uint32
	// wake is where close sleeps while calls are under way (gateWaiting);
	// the last of them unlocks it. A mutex blocks without allocating.
	wake sync.Mutex
}

// The bits of statusWriter.gate.
const (
	gateClosed  = 1 << 31   // close was called: calls are refused
	gateWaiting = 1 << 30   // close sleeps on wake, locked, until the calls end
	ticketEnded = 1 << 29   // the first flush finished (or is finishing) the ticket
	gateCalls   = 1<<29 - 1 // the calls under way
)

// readerFromWriter is the statusWriter with io.ReaderFrom, which the
// handler gets when the server's writer has it (net/http's HTTP/1
// writer, which sends files with sendfile); otherwise it gets the
// statusWriter inside, so that io.Copy and http.ServeContent see what the
// server offers.
type readerFromWriter struct {
	statusWriter
}

// writerSlabSize is how many wrappers one allocation provides: as many as
// fit in an 8 KiB size class after the counter, which takes 8 bytes with
// the padding to the wrappers' alignment.
const writerSlabSize = (8192 - 8) / uint32(unsafe.Sizeof(readerFromWriter{}))

// writerSlab is a batch of wrappers, each handed out once; taken counts
// those handed out. A slab belongs to one processor's writerCache, and
// only requests pinned to that processor (shard.Pin), one at a time, take
// from it, so taken needs no read-modify-write atomic (see take).
type writerSlab struct {
	taken   uint32
	writers [writerSlabSize]readerFromWriter
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
func newStatusWriter(w http.ResponseWriter) *readerFromWriter {
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
func newWriterSlab(w http.ResponseWriter) *readerFromWriter {
	if proc := shard.Pin(); proc >= len(writerCaches) {
		shard.Unpin()
		sw := &readerFromWriter{}
		sw.w = w
		return sw
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
		s.exit()
		return false
	}
	return true
}

// exit ends a call that entered, or was refused at, the gate. The last to
// end while close waits wakes it: the one whose compare-and-swap clears
// gateWaiting, which is set once, so wake is unlocked once.
func (s *statusWriter) exit() {
	if v := s.gate.Add(^uint32(0)); v&(gateWaiting|gateCalls) == gateWaiting && s.gate.CompareAndSwap(v, v&^gateWaiting) {
		s.wake.Unlock()
	}
}

// closeGate closes the gate and waits, asleep, for the calls already past
// it (a goroutine that the handler left behind, racing its return). A call
// blocked in the server's writer (a client that does not read) holds close
// until the server's write timeout, as it held the handler before.
func (s *statusWriter) closeGate() {
	if s.gate.Or(gateClosed)&gateCalls == 0 {
		return
	}
	s.wake.Lock() // uncontended; the Lock below sleeps until exit unlocks
	for {
		v := s.gate.Load()
		if v&gateCalls == 0 { // they ended before gateWaiting was set
			s.wake.Unlock()
			return
		}
		if s.gate.CompareAndSwap(v, v|gateWaiting) {
			break
		}
	}
	// The mutex is a semaphore: this Lock sleeps until the last call's
	// exit unlocks it.
	s.wake.Lock()
	//lint:ignore SA2001 the critical section is empty on purpose (see above)
	s.wake.Unlock()
}

// close closes the wrapper once the handler has returned or panicked, and
// finishes the ticket unless a flush did: as an error if the handler
// panicked, else by the status it wrote.
func (s *statusWriter) close(panicked bool) {
	s.closeGate()
	ticket, r, status := s.ticket, s.r, s.status
	s.w, s.r, s.ticket = nil, nil, controlpoint.Ticket{}
	// With the gate closed and no call inside, no flush can claim the
	// ticket any more: a load is enough.
	if s.gate.Load()&ticketEnded != 0 {
		return // streamed: its first flush finished the ticket
	}
	if panicked {
		ticket.Done(false)
		return
	}
	finish(&ticket, r, status < 500)
}

// abandon closes the wrapper if the handler did not return: it panicked
// (the panic goes on) or called runtime.Goexit. After close it does
// nothing. It must be deferred itself, for recover to see the panic.
func (s *statusWriter) abandon() {
	if s.gate.Load()&gateClosed != 0 {
		return // closed
	}
	p := recover()
	s.close(p != nil)
	if p != nil {
		panic(p)
	}
}

// statusCode is code as statusWriter keeps it: codes beyond int32 (which
// net/http refuses anyway) are clamped, so that they still compare with
// 500 as they did.
func statusCode(code int) int32 {
	return int32(min(max(code, math.MinInt32), math.MaxInt32))
}

// Header is the server's header map; after close, a detached one.
func (s *statusWriter) Header() http.Header {
	if !s.enter() {
		return http.Header{} // a late caller's edits go nowhere
	}
	defer s.exit()
	return s.w.Header()
}

// WriteHeader forwards code, and records it unless a final status was
// recorded already or code is informational: a 1xx (103 Early Hints, 100
// Continue) precedes the final status, except 101 Switching Protocols,
// which is the last the client gets.
func (s *statusWriter) WriteHeader(code int) {
	if !s.enter() {
		return
	}
	defer s.exit()
	if s.status == 0 && (code < 100 || code > 199 || code == http.StatusSwitchingProtocols) {
		s.status = statusCode(code)
	}
	s.w.WriteHeader(code)
}

// Write forwards b; the status is 200 unless one was written before it.
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

// ReadFrom forwards a regular file (or an io.LimitedReader of one, as
// http.ServeContent sends a range) to the server's io.ReaderFrom, which
// sends it with sendfile, and returns what it returns. The status is 200
// unless written before, once a byte was sent: a source that gives none
// sends no header. Any other source is copied through Write: its reads
// may block on what only the end of the request ends (its context), and a
// call holds the gate, which the end of the request waits out, while a
// Write does only for its own chunk, so that a copy the handler left
// behind stops at its next Write.
func (s *readerFromWriter) ReadFrom(src io.Reader) (int64, error) {
	if !regularFile(src) {
		buf := copyBuffers.Get().(*[copyBufferSize]byte)
		defer copyBuffers.Put(buf)
		return io.CopyBuffer(&s.statusWriter, src, buf[:]) // *statusWriter has no ReadFrom
	}
	if !s.enter() {
		return 0, ErrHandlerReturned
	}
	defer s.exit()
	n, err := s.w.(io.ReaderFrom).ReadFrom(src)
	if n > 0 && s.status == 0 {
		s.status = http.StatusOK
	}
	return n, err
}

// copyBuffers lend ReadFrom its buffers for a source copied through
// Write, so that it allocates none; array pointers go into an interface
// without allocating.
var copyBuffers = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

// copyBufferSize is io.Copy's own buffer size.
const copyBufferSize = 32 << 10

// regularFile reports whether src is a regular file, or an
// io.LimitedReader of one: a source whose reads do not wait on anyone.
// Files are told by their Stat, not their type: io.Copy from an *os.File
// reaches ReadFrom as the os package's own wrapper of it.
func regularFile(src io.Reader) bool {
	if lr, ok := src.(*io.LimitedReader); ok {
		src = lr.R
	}
	f, ok := src.(interface{ Stat() (fs.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode().IsRegular()
}

// Flush is FlushError without its error, for http.Flusher.
func (s *statusWriter) Flush() { s.FlushError() }

// FlushError flushes the server's writer as http.ResponseController.Flush
// does, and returns its error: the connection's, once the client is gone,
// or one wrapping http.ErrNotSupported. After close it returns
// ErrHandlerReturned.
//
// The first flush that reaches the server's writer marks the response as
// streaming and finishes the request's ticket: its latency is the time to
// that flush, its status the one written by then (200 if none), and its
// concurrency slot is released, so that the rest of the stream is not in
// flight. A flush that fails finishes it as an error. A flush the writer
// does not support changes nothing.
func (s *statusWriter) FlushError() error {
	if !s.enter() {
		return ErrHandlerReturned
	}
	defer s.exit()
	err := http.NewResponseController(s.w).Flush()
	if errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if s.status == 0 {
		s.status = http.StatusOK // net/http sends 200 to flush
	}
	if s.gate.Or(ticketEnded)&ticketEnded == 0 { // the first flush, of any goroutine
		finish(&s.ticket, s.r, err == nil && s.status < 500)
	}
	return err
}

// Hijack hijacks the server's connection as http.ResponseController.Hijack
// does: an error wrapping http.ErrNotSupported if the writer cannot. A
// hijacked connection (a WebSocket) is a stream too: its ticket ends, and
// its slot is freed, at the hijack, timed to it, unless a flush ended it.
func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !s.enter() {
		return nil, nil, ErrHandlerReturned
	}
	defer s.exit()
	conn, rw, err := http.NewResponseController(s.w).Hijack()
	if err == nil && s.gate.Or(ticketEnded)&ticketEnded == 0 {
		finish(&s.ticket, s.r, true)
	}
	return conn, rw, err
}

// SetReadDeadline is http.ResponseController.SetReadDeadline on the
// server's writer.
func (s *statusWriter) SetReadDeadline(deadline time.Time) error {
	if !s.enter() {
		return ErrHandlerReturned
	}
	defer s.exit()
	return http.NewResponseController(s.w).SetReadDeadline(deadline)
}

// SetWriteDeadline is http.ResponseController.SetWriteDeadline on the
// server's writer.
func (s *statusWriter) SetWriteDeadline(deadline time.Time) error {
	if !s.enter() {
		return ErrHandlerReturned
	}
	defer s.exit()
	return http.NewResponseController(s.w).SetWriteDeadline(deadline)
}

// EnableFullDuplex is http.ResponseController.EnableFullDuplex on the
// server's writer.
func (s *statusWriter) EnableFullDuplex() error {
	if !s.enter() {
		return ErrHandlerReturned
	}
	defer s.exit()
	return http.NewResponseController(s.w).EnableFullDuplex()
}
