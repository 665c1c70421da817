package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/decisionlog"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/spillwaygrpc"
)

// GRPCOptions configure a gRPC proxy.
type GRPCOptions struct {
	// Upstream is the gRPC target requests go to, in grpc.NewClient's
	// syntax ("127.0.0.1:9090", "dns:///svc:9090"), over plaintext HTTP/2
	// unless UpstreamTLS is set.
	Upstream string
	// UpstreamTLS, when set, dials the upstream over TLS with this
	// configuration (RootCAs nil: the system's roots).
	UpstreamTLS *tls.Config
	// ServerTLS, when set, makes the proxy serve TLS (its Certificates)
	// instead of plaintext HTTP/2.
	ServerTLS *tls.Config
	// ControlPoint names the control point (default "ingress").
	ControlPoint string
	// Decisions, when set, records every decision of the proxy.
	Decisions *decisionlog.Log
	// ExplainHeader adds to each rejection the trailer x-spillway-reason:
	// the policy, the component and the signal values that set the limit.
	ExplainHeader bool
	// MaxMessageBytes is the largest message the proxy passes, either way
	// (default DefaultMaxMessageBytes, gRPC's own receive limit). Each
	// message is held whole while it passes, so this bounds the proxy's
	// memory per call; a larger one fails with RESOURCE_EXHAUSTED, as at a
	// gRPC server, and an upstream that takes larger ones needs it raised.
	MaxMessageBytes int
}

// DefaultMaxMessageBytes is GRPCOptions.MaxMessageBytes unless set: 4 MiB,
// what a gRPC server receives by default.
const DefaultMaxMessageBytes = 4 << 20

// GRPC is a gRPC reverse proxy: every call, unary or streaming, of any
// service, is admitted by the control point under its full method name
// (as the embedded interceptors label it) and, if admitted, forwarded to
// the upstream with its metadata; messages pass through as bytes, never
// decoded. A rejected call gets RESOURCE_EXHAUSTED (rate limit) or
// UNAVAILABLE (concurrency limit) without reaching the upstream.
//
// Messages are forwarded with the "proto" content subtype, which is what
// gRPC clients send unless told otherwise.
type GRPC struct {
	// Server serves the proxy; call Serve with a listener, and Stop or
	// GracefulStop it.
	Server   *grpc.Server
	upstream *grpc.ClientConn
	eng      *engine.Engine
	opts     GRPCOptions
}

// MaxHeaderListBytes bounds the headers of one call to the gRPC proxy, its
// method name included, as net/http's default bounds the HTTP proxy's.
const MaxHeaderListBytes = 1 << 20

// NewGRPC returns a gRPC proxy to opts.Upstream through eng's control
// point. Close it to release the upstream connection.
func NewGRPC(eng *engine.Engine, opts GRPCOptions) (*GRPC, error) {
	if opts.Upstream == "" {
		return nil, errors.New("upstream is required, such as 127.0.0.1:9090")
	}
	if opts.ControlPoint == "" {
		opts.ControlPoint = "ingress"
	}
	upstreamCreds := insecure.NewCredentials()
	if opts.UpstreamTLS != nil {
		upstreamCreds = credentials.NewTLS(opts.UpstreamTLS)
	}
	switch {
	case opts.MaxMessageBytes < 0:
		return nil, fmt.Errorf("max message size %d: must be > 0", opts.MaxMessageBytes)
	case opts.MaxMessageBytes == 0:
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	conn, err := grpc.NewClient(opts.Upstream, grpc.WithTransportCredentials(upstreamCreds),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}),
			grpc.MaxCallRecvMsgSize(opts.MaxMessageBytes), grpc.MaxCallSendMsgSize(opts.MaxMessageBytes)))
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", opts.Upstream, err)
	}
	p := &GRPC{upstream: conn, eng: eng, opts: opts}
	interceptors := []grpc.StreamServerInterceptor{spillwaygrpc.Stream(eng, opts.ControlPoint)}
	if opts.Decisions != nil || opts.ExplainHeader {
		interceptors = append([]grpc.StreamServerInterceptor{p.watch}, interceptors...)
	}
	serverOpts := []grpc.ServerOption{
		// gRPC takes 16 MiB of headers a call by default, the method name
		// included; the HTTP proxy's bound is net/http's 1 MB.
		grpc.MaxHeaderListSize(MaxHeaderListBytes),
		grpc.MaxRecvMsgSize(opts.MaxMessageBytes), grpc.MaxSendMsgSize(opts.MaxMessageBytes),
		grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(p.forward),
		grpc.ChainStreamInterceptor(interceptors...),
	}
	if opts.ServerTLS != nil {
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(opts.ServerTLS)))
	}
	p.Server = grpc.NewServer(serverOpts...)
	return p, nil
}

// watch sees the control point's decision from outside it: forward marks
// the stream it is given, so a call that ends unmarked with
// RESOURCE_EXHAUSTED or UNAVAILABLE was shed by the control point.
func (p *GRPC) watch(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ms := &markedStream{ServerStream: ss}
	err := handler(srv, ms)
	entry := decisionlog.Decision{Time: time.Now(), Source: "proxy", ControlPoint: p.opts.ControlPoint, API: info.FullMethod, Outcome: decisionlog.Accepted}
	if !ms.admitted {
		d := controlpoint.RateLimited
		entry.Outcome = decisionlog.RateLimited
		if status.Code(err) == codes.Unavailable {
			d = controlpoint.ConcurrencyLimited
			entry.Outcome = decisionlog.ConcurrencyLimited
		}
		if x, ok := p.eng.ExplainRejection(p.opts.ControlPoint, info.FullMethod, d); ok {
			entry.Explanation, entry.RetryAfter = x.Text, x.RetryAfter.String()
			if p.opts.ExplainHeader {
				ss.SetTrailer(metadata.Pairs("x-spillway-reason", x.Text))
			}
		}
	}
	p.opts.Decisions.Add(entry)
	return err
}

// markedStream is the stream the control point passes on to forward when
// it admits a call.
type markedStream struct {
	grpc.ServerStream
	admitted bool
}

// Close stops the server at once and closes the upstream connection.
func (p *GRPC) Close() error {
	p.Server.Stop()
	return p.upstream.Close()
}

// forward relays one call: the client's messages and half-close upstream,
// the upstream's header, messages, status and trailer back.
func (p *GRPC) forward(_ any, in grpc.ServerStream) error {
	for ss := in; ss != nil; {
		if ms, ok := ss.(*markedStream); ok {
			ms.admitted = true
			break
		}
		u, ok := ss.(interface{ Unwrap() grpc.ServerStream })
		if !ok {
			break
		}
		ss = u.Unwrap() // the control point's own wrapper (grpcmw.Stream)
	}
	method, ok := grpc.MethodFromServerStream(in)
	if !ok {
		return errors.New("proxy: no method on the stream")
	}
	md, _ := metadata.FromIncomingContext(in.Context())
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(in.Context(), md.Copy()))
	defer cancel()
	out, err := p.upstream.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	// Client to upstream, until the client half-closes or fails.
	sent := make(chan error, 1)
	go func() {
		for {
			var f frame
			if err := in.RecvMsg(&f); err != nil {
				if errors.Is(err, io.EOF) {
					sent <- out.CloseSend()
					return
				}
				sent <- err
				return
			}
			if err := out.SendMsg(&f); err != nil {
				// The upstream ended the call; its status comes from RecvMsg.
				sent <- nil
				return
			}
		}
	}()
	header, err := out.Header()
	if err == nil && header != nil {
		if err := in.SendHeader(header); err != nil {
			return err
		}
	}
	for {
		var f frame
		if err := out.RecvMsg(&f); err != nil {
			in.SetTrailer(out.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err // the upstream's status, as it sent it
		}
		if err := in.SendMsg(&f); err != nil {
			return err
		}
		select {
		case err := <-sent:
			if err != nil {
				return err
			}
			sent = nil // the client is done sending; keep relaying replies
		default:
		}
	}
}

// frame is one message, undecoded.
type frame struct{ payload []byte }

// rawCodec passes frames through as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("proxy: cannot marshal %T", v)
	}
	return f.payload, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("proxy: cannot unmarshal into %T", v)
	}
	f.payload = append(f.payload[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }
