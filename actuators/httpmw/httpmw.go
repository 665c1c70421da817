// Package httpmw is Spillway's net/http control point: a middleware that
// admits or rejects each request and records it to the flux meters.
package httpmw

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
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
}

// Wrap protects next with the control point cp.
//
// A rejected request gets opts.RejectStatus, Retry-After, a text/plain body
// and nothing else, written from slices built here once. An admitted request
// reaches next through a wrapper that records the status; once next has
// returned, the wrapper is closed: a goroutine that next left behind gets
// ErrHandlerReturned from Write and Hijack and no-ops from WriteHeader and
// Flush, and never reaches the server's writer, whose buffers by then serve
// another request. A call already under way as next returns is waited for,
// so its bytes land in this response. The wrapper is one allocation per
// admitted request; a rejection allocates nothing.
func Wrap(cp *controlpoint.ControlPoint, next http.Handler, opts Options) http.Handler {
	if opts.RejectStatus == 0 {
		opts.RejectStatus = http.StatusTooManyRequests
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 1
	}
	retryAfter := []string{strconv.Itoa(opts.RetryAfter)}
	classify := opts.Classifier
	if classify == nil {
		mux, _ := next.(*http.ServeMux)
		classify = func(r *http.Request) string {
			if r.Pattern != "" || mux == nil {
				return r.Pattern
			}
			_, pattern := mux.Handler(r)
			return pattern
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ticket, decision := cp.Admit(classify(r))
		if decision != controlpoint.Accepted {
			reject(w, opts.RejectStatus, retryAfter)
			return
		}
		// One wrapper per request, never pooled: a goroutine the handler
		// left behind may hold it after this request is over.
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			status := sw.finish()
			if p := recover(); p != nil {
				ticket.Done(false)
				panic(p)
			}
			ticket.Done(status < 500)
		}()
		next.ServeHTTP(sw, r)
	})
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
	delete(h, "Content-Length") // it may describe another body
	h["Retry-After"] = retryAfter
	h["Content-Type"] = rejectContentType
	h["X-Content-Type-Options"] = rejectNoSniff
	w.WriteHeader(status)
	w.Write(rejectBody)
}

// statusWriter remembers the response status; it forwards Flush and Hijack
// and supports http.ResponseController through Unwrap. Once finish was
// called it forwards nothing.
type statusWriter struct {
	http.ResponseWriter
	status int
	// gate is closed (bit 31) by finish; the low bits count the calls
	// forwarding to ResponseWriter, which finish waits out.
	gate atomic.Uint32
}

const gateClosed = 1 << 31

// enter reports whether a call may forward to ResponseWriter; if it may, the
// caller must call exit when done.
func (s *statusWriter) enter() bool {
	if s.gate.Add(1)&gateClosed != 0 {
		s.gate.Add(^uint32(0))
		return false
	}
	return true
}

func (s *statusWriter) exit() { s.gate.Add(^uint32(0)) }

// finish closes the gate, waits for the calls already past it (a handler
// goroutine racing its handler's return) and returns the status.
func (s *statusWriter) finish() int {
	s.gate.Or(gateClosed)
	for s.gate.Load() != gateClosed {
		runtime.Gosched()
	}
	return s.status
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.enter() {
		return
	}
	defer s.exit()
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.enter() {
		return 0, ErrHandlerReturned
	}
	defer s.exit()
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if !s.enter() {
		return
	}
	defer s.exit()
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !s.enter() {
		return nil, nil, ErrHandlerReturned
	}
	defer s.exit()
	if h, ok := s.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("httpmw: response writer does not support hijacking")
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
