package rlbridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spillway-dev/spillway/internal/access"
)

// DefaultAddr is where the bridge listens when Serve is given "": loopback,
// apart from the admin port that serves Prometheus' /metrics (DESIGN §5).
const DefaultAddr = "127.0.0.1:8082"

// Server limits. The agent polls a few small requests per API per second
// over keep-alive connections; /step and /reset may take a while in the
// simulator, hence the longer write timeout.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10 // bytes
	shutdownTimeout   = 5 * time.Second
)

// Serve runs the bridge on addr (DefaultAddr when addr is "") until ctx is
// done, then shuts down gracefully, waiting at most 5 s for requests in
// flight, and returns nil.
//
// token is not checked here, only required: Serve refuses, before
// listening, to bind beyond loopback when token is "" (DESIGN §5). The
// handler enforces it, so h should come from Handler with Options.Token set
// to the same token.
//
// Serve also refuses what a web page in the operator's browser could send:
// a request from another origin (http.CrossOriginProtection: a form or
// fetch posting a rate to /set_rate), and, without a token, a Host that is
// not a loopback name (a page that DNS-rebinds its own name to 127.0.0.1
// still sends that name). Both get 403 with the reason.
//
// ready, when non-nil, is called with the listener's address (useful with
// port 0) before Serve blocks.
func Serve(ctx context.Context, addr string, h http.Handler, token string, ready func(net.Addr)) error {
	if addr == "" {
		addr = DefaultAddr
	}
	ln, err := access.Listen(addr, token, "--agent-token-file")
	if err != nil {
		return fmt.Errorf("rlbridge: %w", err)
	}
	if ready != nil {
		ready(ln.Addr())
	}

	srv := newServer(browserGuard(h, token))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("rlbridge: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
		<-served
		return fmt.Errorf("rlbridge: shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("rlbridge: %w", err)
	}
	return nil
}

// browserGuard refuses cross-origin requests and, when token is "",
// requests whose Host is not a loopback name; see Serve.
func browserGuard(h http.Handler, token string) http.Handler {
	crossOrigin := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token == "" && !access.IsLoopbackHost(r.Host) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("Host %q is not allowed: without a token the bridge serves only loopback names (set --agent-token-file to serve others)", r.Host))
			return
		}
		if err := crossOrigin.Check(r); err != nil {
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		h.ServeHTTP(w, r)
	})
}

// newServer builds the *http.Server Serve runs, with every timeout and the
// header limit set.
func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}
