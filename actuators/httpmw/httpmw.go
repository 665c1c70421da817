// Package httpmw is Spillway's net/http control point: a middleware that
// admits or rejects each request and records it to the flux meters.
package httpmw

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"

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
			w.Header()["Retry-After"] = retryAfter
			http.Error(w, "spillway: overloaded, retry later", opts.RejectStatus)
			return
		}
		sw := writers.Get().(*statusWriter)
		sw.ResponseWriter, sw.status = w, 0
		defer func() {
			status := sw.status
			sw.ResponseWriter = nil
			writers.Put(sw)
			if p := recover(); p != nil {
				ticket.Done(false)
				panic(p)
			}
			ticket.Done(status < 500)
		}()
		next.ServeHTTP(sw, r)
	})
}

var writers = sync.Pool{New: func() any { return new(statusWriter) }}

// statusWriter remembers the response status; it forwards Flush and Hijack
// and supports http.ResponseController through Unwrap.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := s.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("httpmw: response writer does not support hijacking")
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
