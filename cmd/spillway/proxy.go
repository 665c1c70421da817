package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/spillway-dev/spillway/internal/proxy"
)

func proxyCmd() *cobra.Command {
	var ef engineFlags
	var listen, upstream, controlPoint string
	var routes []string
	var rejectStatus int
	var grpcMode bool
	var maxMessage int
	var tf proxyTLSFlags
	cmd := &cobra.Command{
		Use:   "proxy --listen ADDR --upstream URL [--route PATTERN]... [--grpc] --policies DIR",
		Short: "Protect any HTTP service: a reverse proxy through Spillway's control point",
		Long: `Proxy serves --listen and forwards every request to --upstream through
the control point --control-point (default "ingress"), so the policies in
--policies protect a service in any language exactly as the embedded
middleware does: a shed request gets --reject-status (429 or 503) with
Retry-After and never reaches the upstream.

Each --route is an http.ServeMux pattern ("GET /checkout", "/items/{id}",
"POST api.example.com/orders"); a request's API label is the pattern it
matches, so policies can select it. A request no route matches is still
forwarded, labelled "*". Hop-by-hop headers, X-Forwarded-*, streaming
responses and WebSocket upgrades are handled as httputil.ReverseProxy does.

Every decision, each rejection with its explanation (the policy, the
component and the signal values that set the limit), is kept in the admin
server's GET /decisions; --explain-header also sends the explanation to the
client as X-Spillway-Reason.

The admin server, the RL bridge, --check and hot reload are those of
'spillway run'; ext_authz requests on --check are labelled by --route too.

With --grpc the proxy speaks gRPC (HTTP/2) on both sides: every
call, unary or streaming, is labelled by its full method name
("/pkg.Service/Method", as the embedded interceptors label it) and
forwarded undecoded with its metadata; a shed call gets RESOURCE_EXHAUSTED
(rate limit) or UNAVAILABLE (concurrency limit).

--tls-cert and --tls-key serve TLS (HTTP/2 offered to HTTP clients);
--upstream-ca verifies an https upstream (or, with --grpc, a TLS one)
against the CAs in a PEM file instead of the system's roots.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if grpcMode {
				if len(routes) > 0 {
					return errors.New("--route labels HTTP requests; with --grpc calls are labelled by their full method name")
				}
				serverTLS, upstreamTLS, err := tf.grpc()
				if err != nil {
					return err
				}
				return runGRPCProxy(cmd, &ef, proxy.GRPCOptions{Upstream: upstream, ControlPoint: controlPoint, ServerTLS: serverTLS, UpstreamTLS: upstreamTLS, MaxMessageBytes: maxMessage}, listen)
			}
			up, err := url.Parse(upstream)
			if err != nil {
				return fmt.Errorf("--upstream: %w", err)
			}
			serverTLS, err := tf.server()
			if err != nil {
				return err
			}
			upstreamCAs, err := tf.upstreamCAs()
			if err != nil {
				return err
			}
			if upstreamCAs != nil && up.Scheme != "https" {
				return fmt.Errorf("--upstream-ca verifies an https upstream; --upstream is %s", up.Redacted())
			}
			// Validate the routes before anything starts listening.
			if _, err := proxy.Routes(routes); err != nil {
				return fmt.Errorf("--route: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			h, err := ef.start(ctx, cmd)
			if err != nil {
				return err
			}
			defer h.close()
			handler, err := proxy.New(h.eng, proxy.Options{Upstream: up, ControlPoint: controlPoint, Routes: routes, RejectStatus: rejectStatus,
				UpstreamRootCAs: upstreamCAs, Decisions: h.decisions, ExplainHeader: ef.explain})
			if err != nil {
				return err
			}
			table, _ := proxy.Routes(routes)
			if err := startCheck(ctx, h, ef, table, controlPoint); err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			srv := &http.Server{
				Handler: handler,
				// No read or write timeout: streams and WebSockets last as
				// long as they last. Headers must come promptly.
				ReadHeaderTimeout: 10 * time.Second,
				IdleTimeout:       2 * time.Minute,
				MaxHeaderBytes:    1 << 20,
				TLSConfig:         serverTLS,
			}
			go func() {
				<-ctx.Done()
				shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(shutdown)
			}()
			errc := make(chan error, 1)
			go func() { errc <- h.serveAdmin(ctx) }()
			scheme := "http://"
			if serverTLS != nil {
				scheme = "https://"
			}
			slog.Info("spillway proxy", "listen", scheme+ln.Addr().String(), "upstream", up.String(), "control_point", controlPoint, "routes", len(routes),
				"policies", ef.policies, "admin", "http://"+h.adminLn.Addr().String()+"/", "loaded", len(h.eng.Policies()), "otlp", h.otlpState())
			serve := func() error { return srv.Serve(ln) }
			if serverTLS != nil {
				serve = func() error { return srv.ServeTLS(ln, "", "") } // the certificate is in TLSConfig
			}
			if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			stop()
			return <-errc
		},
	}
	ef.register(cmd)
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "address the proxy serves")
	cmd.Flags().StringVar(&upstream, "upstream", "", "URL requests are forwarded to, such as http://127.0.0.1:8000")
	cmd.Flags().StringArrayVar(&routes, "route", nil, `an http.ServeMux pattern whose matches are one API, such as "GET /checkout" (repeatable)`)
	cmd.Flags().StringVar(&controlPoint, "control-point", "ingress", "the control point the policies select")
	cmd.Flags().IntVar(&rejectStatus, "reject-status", http.StatusTooManyRequests, "status of a shed request: 429 or 503")
	cmd.Flags().IntVar(&maxMessage, "grpc-max-message", proxy.DefaultMaxMessageBytes, "with --grpc: the largest message, in bytes, passed either way; each is held whole while it passes (a larger one fails with RESOURCE_EXHAUSTED, as at a gRPC server)")
	cmd.Flags().BoolVar(&grpcMode, "grpc", false, "proxy gRPC (HTTP/2) instead of HTTP: --upstream is a gRPC target such as 127.0.0.1:9090, calls are labelled by full method name")
	tf.register(cmd)
	_ = cmd.MarkFlagRequired("upstream")
	return cmd
}

// proxyTLSFlags are the proxy's TLS: its listener's certificate and the
// CAs it verifies the upstream with.
type proxyTLSFlags struct {
	cert, key, upstreamCA string
}

func (f *proxyTLSFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.cert, "tls-cert", "", "PEM `file` of the certificate (and chain) the proxy serves TLS with; needs --tls-key")
	cmd.Flags().StringVar(&f.key, "tls-key", "", "PEM `file` of --tls-cert's private key")
	cmd.Flags().StringVar(&f.upstreamCA, "upstream-ca", "", "PEM `file` of the CAs an https upstream's certificate is verified against, instead of the system's roots; with --grpc it turns TLS to the upstream on")
}

// server is the listener's TLS configuration, nil for plaintext.
func (f *proxyTLSFlags) server() (*tls.Config, error) {
	if f.cert == "" && f.key == "" {
		return nil, nil
	}
	if f.cert == "" || f.key == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	pair, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", f.cert, f.key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// upstreamCAs is the pool of --upstream-ca, nil when it is not set.
func (f *proxyTLSFlags) upstreamCAs() (*x509.CertPool, error) {
	if f.upstreamCA == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(f.upstreamCA)
	if err != nil {
		return nil, fmt.Errorf("--upstream-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--upstream-ca %s: no PEM certificate", f.upstreamCA)
	}
	return pool, nil
}

// grpc is the gRPC proxy's TLS: its listener's, and the upstream's when
// --upstream-ca is set.
func (f *proxyTLSFlags) grpc() (server, upstream *tls.Config, err error) {
	if server, err = f.server(); err != nil {
		return nil, nil, err
	}
	pool, err := f.upstreamCAs()
	if err != nil || pool == nil {
		return server, nil, err
	}
	return server, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// runGRPCProxy serves a gRPC proxy on listen, configured by opts (its
// decisions and explanations come from ef), with the engine, admin server
// and --check of ef.
func runGRPCProxy(cmd *cobra.Command, ef *engineFlags, opts proxy.GRPCOptions, listen string) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, err := ef.start(ctx, cmd)
	if err != nil {
		return err
	}
	defer h.close()
	opts.Decisions, opts.ExplainHeader = h.decisions, ef.explain
	p, err := proxy.NewGRPC(h.eng, opts)
	if err != nil {
		return fmt.Errorf("--upstream: %w", err)
	}
	defer p.Close()
	if err := startCheck(ctx, h, *ef, nil, opts.ControlPoint); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	go func() {
		<-ctx.Done()
		stopped := make(chan struct{})
		go func() { p.Server.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			p.Server.Stop()
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- h.serveAdmin(ctx) }()
	slog.Info("spillway proxy (gRPC)", "listen", ln.Addr().String(), "tls", opts.ServerTLS != nil, "upstream", opts.Upstream, "upstream_tls", opts.UpstreamTLS != nil, "control_point", opts.ControlPoint,
		"policies", ef.policies, "admin", "http://"+h.adminLn.Addr().String()+"/", "loaded", len(h.eng.Policies()))
	if err := p.Server.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	stop()
	return <-errc
}
