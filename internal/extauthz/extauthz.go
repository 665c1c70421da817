// Package extauthz is Spillway as an Envoy external authorization server
// (envoy.service.auth.v3.Authorization/Check): Envoy asks before it
// forwards each request, and a rejection comes back as Envoy's answer to
// the client, 429 for a rate limit and 503 for a concurrency limit, with
// retry-after. It shares the Check API's listener and decisions
// (flowcontrol.Server).
//
// ext_authz itself reports no completion. With Options.Completions, Envoy's
// access-log service (AccessLogService) does: each admission is held, with
// its concurrency slots, until the request's log entry arrives, and its
// latency and status are Envoy's. Without it a request is finished as soon
// as it is admitted: the flux meters see its arrival and admission but not
// its latency, and a concurrency limit holds no slot for it. See
// docs/proxy.md.
package extauthz

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/flowcontrol"
	"github.com/spillway-dev/spillway/internal/proxy"
)

// Context extensions an Envoy route may set (per-route
// typed_per_filter_config, check_settings.context_extensions): operator
// configuration, never the client's.
const (
	// ControlPointKey names the control point of the route's requests.
	ControlPointKey = "spillway_control_point"
	// APIKey sets the route's API label, instead of the route table's.
	APIKey = "spillway_api"
)

// MaxMessageBytes bounds a message from Envoy on the Check API's gRPC
// server: a CheckRequest carries the request's headers (up to Envoy's
// max_request_headers_kb, 60 KiB by default) and any body buffered by
// with_request_body; an access-log batch is about buffer_size_bytes
// (16 KiB by default) plus one entry.
const MaxMessageBytes = 1 << 20

// Options configure the server.
type Options struct {
	// ControlPoint is the control point of a request whose route sets none
	// (default "ingress").
	ControlPoint string
	// Routes label requests by http.ServeMux pattern from the method, host
	// and path Envoy reports, as `spillway proxy --route` does. Nil labels
	// every request "*".
	Routes *proxy.RouteTable
	// Explain adds the rejection's explanation to the denied response as
	// the header x-spillway-reason.
	Explain bool
	// Completions holds each admission, and its concurrency slots, until
	// Envoy's access log reports the request finished (AccessLogService);
	// an OK answer carries the admission's id in its dynamic metadata
	// (MetadataNamespace, AdmissionKey) for Envoy to log. Off, every
	// admission is finished at once, as a success.
	Completions bool
	// CompletionTimeout is how long an admission is held without its log
	// entry; then it is finished as a server error, so a lost entry cannot
	// hold a slot forever. Default 60 s.
	CompletionTimeout time.Duration
	// MaxHeld bounds the admissions held at once (rounded up to a power of
	// two); an admission still held MaxHeld admissions later is finished
	// as a server error, counted in Completions().Evicted. Default 65536.
	MaxHeld int
	// Logger receives a warning when admissions expire or are evicted;
	// default slog.Default().
	Logger *slog.Logger
}

// Server implements Envoy's Authorization service.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	fc   *flowcontrol.Server
	opts Options
	held *admissions // nil unless opts.Completions

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New returns the ext_authz server deciding with fc. Close stops it.
func New(fc *flowcontrol.Server, opts Options) *Server {
	if opts.ControlPoint == "" {
		opts.ControlPoint = "ingress"
	}
	if opts.CompletionTimeout <= 0 {
		opts.CompletionTimeout = 60 * time.Second
	}
	if opts.MaxHeld <= 0 {
		opts.MaxHeld = 65536
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{fc: fc, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if !opts.Completions {
		close(s.done)
		return s
	}
	s.held = newAdmissions(opts.MaxHeld)
	go s.sweep()
	return s
}

// Close stops the expiry sweeper and finishes every held admission as a
// server error. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		if s.held != nil {
			now := s.fc.Now()
			s.held.expire(now, now)
		}
	})
}

// sweep finishes the admissions held longer than the completion timeout,
// a few times per timeout, and warns when admissions were lost.
func (s *Server) sweep() {
	defer close(s.done)
	period := max(s.opts.CompletionTimeout/4, 10*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	var lastEvicted uint64
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			now := s.fc.Now()
			expired := s.held.expire(now-int64(s.opts.CompletionTimeout), now)
			s.held.expired.Add(uint64(expired))
			evicted := s.held.evicted.Load()
			if expired > 0 || evicted != lastEvicted {
				s.opts.Logger.Warn("ext_authz: admissions finished without Envoy's access log entry, as server errors",
					"expired", expired, "timeout", s.opts.CompletionTimeout, "evicted", evicted-lastEvicted, "max_held", len(s.held.slots))
			}
			lastEvicted = evicted
		}
	}
}

// Check implements envoy.service.auth.v3.Authorization/Check. A request
// without HTTP attributes is INVALID_ARGUMENT, which Envoy treats per its
// failure_mode_allow.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	if httpReq == nil {
		return nil, status.Error(codes.InvalidArgument, "attributes.request.http is missing: not an HTTP request from Envoy")
	}
	ext := req.GetAttributes().GetContextExtensions()
	controlPoint := s.opts.ControlPoint
	if cp := ext[ControlPointKey]; cp != "" {
		controlPoint = cp
	}
	api, ok := ext[APIKey]
	if !ok {
		api = s.label(httpReq)
	}
	v, err := s.fc.Decide("ext_authz", controlPoint, api, nil)
	if err != nil {
		return nil, err
	}
	if v.Decision == controlpoint.Accepted {
		resp := &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
		}
		if s.held == nil {
			v.Ticket.Done(true) // no completion will come; see the package doc
			return resp, nil
		}
		resp.DynamicMetadata = admissionMetadata(s.held.add(v.Ticket, s.fc.Now()))
		return resp, nil
	}
	code, grpcCode, body := typev3.StatusCode_TooManyRequests, codes.ResourceExhausted, "spillway: rate limited, retry later\n"
	if v.Decision == controlpoint.ConcurrencyLimited {
		code, grpcCode, body = typev3.StatusCode_ServiceUnavailable, codes.Unavailable, "spillway: concurrency limit reached, retry later\n"
	}
	headers := []*corev3.HeaderValueOption{header("retry-after", strconv.Itoa(RetryAfterSeconds(v.RetryAfter)))}
	if s.opts.Explain && v.Explanation != "" {
		headers = append(headers, header("x-spillway-reason", v.Explanation))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode), Message: v.Explanation},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: code},
			Headers: headers,
			Body:    body,
		}},
	}, nil
}

// label is the route pattern of Envoy's request, or "" with no routes or
// no match. Envoy's path carries the query, which routing ignores.
func (s *Server) label(h *authv3.AttributeContext_HttpRequest) string {
	if s.opts.Routes == nil {
		return ""
	}
	path, _, _ := strings.Cut(h.GetPath(), "?")
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return ""
	}
	r := &http.Request{Method: h.GetMethod(), URL: u, Host: h.GetHost(), Header: http.Header{}}
	return s.opts.Routes.Label(r)
}

func header(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// RetryAfterSeconds is d as a Retry-After value: whole seconds, rounded
// up, at least 1.
func RetryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
