// Package proxy is Spillway in front of a service it cannot link into: an
// HTTP reverse proxy (net/http/httputil.ReverseProxy) whose requests pass
// the same control point as the embedded middleware, labelled by route
// patterns in http.ServeMux syntax.
package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/actuators/httpmw"
	"github.com/spillway-dev/spillway/decisionlog"
	"github.com/spillway-dev/spillway/engine"
)

// Options configure a proxy.
type Options struct {
	// Upstream is where requests go: scheme, host and an optional base
	// path that request paths are joined to.
	Upstream *url.URL
	// ControlPoint names the control point the proxy's requests pass
	// (default "ingress"), as policies select it.
	ControlPoint string
	// Routes are http.ServeMux patterns ("GET /checkout",
	// "/items/{id}", "api.example.com/"). A request's API label is the
	// pattern that ServeMux would route it to; a request no pattern
	// matches is still proxied, labelled "*" (the whole control point).
	Routes []string
	// RejectStatus is the status of a shed request: 429 (default) or 503.
	RejectStatus int
	// Transport carries requests upstream; default a clone of
	// http.DefaultTransport with room for 256 idle connections to the
	// upstream, so that an overload does not churn connections.
	Transport http.RoundTripper
	// UpstreamRootCAs are the CAs an https upstream's certificate is
	// verified against; nil means the system's roots. It configures the
	// default Transport, so it cannot be combined with Transport, and it
	// needs an https upstream.
	UpstreamRootCAs *x509.CertPool
	// Logger receives upstream errors; default slog.Default().
	Logger *slog.Logger
	// Decisions, when set, records every decision of the proxy.
	Decisions *decisionlog.Log
	// ExplainHeader adds to each rejection the header X-Spillway-Reason:
	// the policy, the component and the signal values that set the limit
	// (engine.ExplainRejection). Off by default: it tells clients about
	// the policies.
	ExplainHeader bool
}

// ReasonHeader is the header that explains a rejection when
// Options.ExplainHeader is on.
const ReasonHeader = "X-Spillway-Reason"

// New returns the proxy as an http.Handler protected by eng's control
// point. Hop-by-hop headers, X-Forwarded-For/-Host/-Proto, streaming
// responses (flushed as they arrive when the upstream sends no
// Content-Length or sends text/event-stream) and protocol upgrades such as
// WebSocket are handled as httputil.ReverseProxy handles them. An upgraded
// connection holds its admission, and any concurrency slot, until it closes.
// An unreachable upstream is a 502, counted as a server error.
func New(eng *engine.Engine, opts Options) (http.Handler, error) {
	if opts.Upstream == nil || opts.Upstream.Scheme == "" || opts.Upstream.Host == "" {
		return nil, fmt.Errorf("upstream must be an absolute URL such as http://127.0.0.1:8080, got %q", opts.Upstream)
	}
	if opts.Upstream.Scheme != "http" && opts.Upstream.Scheme != "https" {
		return nil, fmt.Errorf("upstream %s: scheme must be http or https", opts.Upstream)
	}
	if opts.UpstreamRootCAs != nil && opts.Upstream.Scheme != "https" {
		return nil, fmt.Errorf("upstream %s: CAs to verify it are given, but it is not https", opts.Upstream)
	}
	if opts.UpstreamRootCAs != nil && opts.Transport != nil {
		return nil, errors.New("UpstreamRootCAs configures the default transport; with a Transport of your own, set its TLS config instead")
	}
	if opts.RejectStatus != 0 && opts.RejectStatus != http.StatusTooManyRequests && opts.RejectStatus != http.StatusServiceUnavailable {
		return nil, fmt.Errorf("reject status %d: must be 429 or 503", opts.RejectStatus)
	}
	if opts.ControlPoint == "" {
		opts.ControlPoint = "ingress"
	}
	routes, err := Routes(opts.Routes)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	transport := opts.Transport
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 256
		if opts.UpstreamRootCAs != nil {
			t.TLSClientConfig = &tls.Config{RootCAs: opts.UpstreamRootCAs, MinVersion: tls.VersionTLS12}
		}
		transport = t
	}
	upstream := opts.Upstream
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		Transport:  transport,
		BufferPool: copyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			logger.Warn("proxy: upstream error", "upstream", upstream.String(), "method", r.Method, "path", r.URL.Path, "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	if opts.Decisions == nil && !opts.ExplainHeader {
		return refusePreface(eng.HTTP(opts.ControlPoint, rp, httpmw.Options{
			Classifier:   routes.Label,
			RejectStatus: opts.RejectStatus,
		})), nil
	}
	// Logged or explained: the request is routed once, its label handed
	// to the middleware as r.Pattern; an admission is logged as it passes
	// the middleware, a rejection by the middleware's Rejected hook.
	lg := &logged{eng: eng, opts: opts, routes: routes}
	lg.protected = eng.HTTP(opts.ControlPoint, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lg.admitted(r.Pattern)
		rp.ServeHTTP(w, r)
	}), httpmw.Options{Classifier: routedLabel, RejectStatus: opts.RejectStatus, Rejected: lg.rejected})
	return refusePreface(lg), nil
}

// refusePreface answers 505 to the connection preface of HTTP/2 with prior
// knowledge (h2c), which net/http hands a handler as a request "PRI *"
// when it does not serve h2c itself: forwarded, it would reach the
// upstream as a request of HTTP/1.1 and its answer would break the
// client's connection.
func refusePreface(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PRI" && r.RequestURI == "*" {
			http.Error(w, "HTTP/2 with prior knowledge (h2c) is not served: use HTTP/1.1, or HTTP/2 over TLS", http.StatusHTTPVersionNotSupported)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// copyBufferSize is the buffer ReverseProxy copies a response body with,
// the size it allocates per request when it has no BufferPool.
const copyBufferSize = 32 << 10

// bufferPool lends ReverseProxy its copy buffers, so a proxied request
// allocates none: without it each response costs a fresh 32 KiB, most of
// the bytes a proxied request allocates. Buffers are pooled as array
// pointers, which an interface holds without allocating.
type bufferPool struct{ pool sync.Pool }

var copyBuffers = &bufferPool{}

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[copyBufferSize]byte); ok {
		return b[:]
	}
	return new([copyBufferSize]byte)[:]
}

func (p *bufferPool) Put(b []byte) {
	if len(b) == copyBufferSize {
		p.pool.Put((*[copyBufferSize]byte)(b))
	}
}

// logged is the protected proxy when decisions are logged or explained.
type logged struct {
	eng       *engine.Engine
	opts      Options
	routes    *RouteTable
	protected http.Handler
}

// ServeHTTP routes r once, for its admission and its log entry alike: the
// label goes to the middleware as r.Pattern (routedLabel), which is what
// a ServeMux sets to the pattern that matched, and the outer value comes
// back after. (The route lookup was a profile's largest item of the
// proxy's own work, and it was done twice.)
func (lg *logged) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	outer := r.Pattern
	r.Pattern = lg.routes.Label(r)
	lg.protected.ServeHTTP(w, r)
	r.Pattern = outer
}

// routedLabel is the label logged.ServeHTTP looked up.
func routedLabel(r *http.Request) string { return r.Pattern }

// admitted logs the admission of a request labelled api.
func (lg *logged) admitted(api string) {
	if lg.opts.Decisions != nil {
		lg.opts.Decisions.Add(decisionlog.Decision{Time: time.Now(), Source: "proxy", ControlPoint: lg.opts.ControlPoint, API: api, Outcome: decisionlog.Accepted})
	}
}

// rejected explains and logs a rejection labelled api, before its header
// is sent on w.
func (lg *logged) rejected(w http.ResponseWriter, _ *http.Request, api string, d controlpoint.Decision) {
	entry := decisionlog.Decision{Time: time.Now(), Source: "proxy", ControlPoint: lg.opts.ControlPoint, API: api, Outcome: decisionlog.RateLimited}
	if d == controlpoint.ConcurrencyLimited {
		entry.Outcome = decisionlog.ConcurrencyLimited
	}
	if x, ok := lg.eng.ExplainRejection(lg.opts.ControlPoint, api, d); ok {
		entry.Explanation, entry.RetryAfter = x.Text, x.RetryAfter.String()
		if lg.opts.ExplainHeader {
			w.Header().Set(ReasonHeader, x.Text)
		}
	}
	lg.opts.Decisions.Add(entry)
}

// RouteTable labels requests by the http.ServeMux pattern they match.
type RouteTable struct {
	mux      *http.ServeMux
	patterns map[string]bool
}

// Routes builds a route table from ServeMux patterns. A malformed pattern,
// or two that conflict (ServeMux would panic on registering them), is an
// error naming it.
func Routes(patterns []string) (*RouteTable, error) {
	mux := http.NewServeMux()
	seen := map[string]bool{}
	for _, p := range patterns {
		if seen[p] {
			return nil, fmt.Errorf("route %q is given twice", p)
		}
		seen[p] = true
		if err := register(mux, p); err != nil {
			return nil, err
		}
	}
	return &RouteTable{mux: mux, patterns: seen}, nil
}

// register adds pattern to mux, turning ServeMux's panic on a bad or
// conflicting pattern into an error.
func register(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("route %q: %v", pattern, p)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return nil
}

// Label is the API label of r: the pattern that matches it, or "" (the
// whole control point) when none does. It never reads a client-chosen
// label, only the method, host and path that routing reads, and it is
// always one of the patterns: where ServeMux would redirect (a path to
// clean, a missing trailing slash) it names the redirect's path, which the
// client chose, and that is labelled "" instead.
func (t *RouteTable) Label(r *http.Request) string {
	_, pattern := t.mux.Handler(r)
	if !t.patterns[pattern] {
		return ""
	}
	return pattern
}
