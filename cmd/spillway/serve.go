package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/decisionlog"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/access"
	"github.com/spillway-dev/spillway/rlbridge"
	"github.com/spillway-dev/spillway/telemetry"
	"github.com/spillway-dev/spillway/telemetry/otlp"
)

// engineFlags are what `spillway run` and `spillway proxy` share: the
// policies, the admin listener and its access, and the RL bridge.
type engineFlags struct {
	policies, admin, adminTokenFile string
	acc                             adminAccess
	af                              agentFlags
	noWatch                         bool
	debounce                        time.Duration
	// check is the Check API's address ("" for none); explain adds the
	// reason of each rejection to its response headers.
	check   string
	explain bool
	// envoyAccessLog holds ext_authz admissions until Envoy's access log
	// reports them finished.
	envoyAccessLog bool
	redis          redisFlags
	// prometheus is the base URL the policies' PromQL components query.
	prometheus string
}

func (f *engineFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.policies, "policies", "policies", "directory of policy files")
	cmd.Flags().StringVar(&f.admin, "admin", "127.0.0.1:9464", "admin listen address; beyond loopback it needs --admin-token-file")
	cmd.Flags().StringVar(&f.adminTokenFile, "admin-token-file", "", "file holding the bearer token every admin request must carry")
	cmd.Flags().StringArrayVar(&f.acc.AllowHosts, "admin-allow-host", nil, "a Host name the admin API serves besides loopback ones when it has no token (repeatable)")
	f.af.registerBridge(cmd, rlbridge.DefaultAddr)
	cmd.Flags().BoolVar(&f.noWatch, "no-watch", false, "do not reload the policies when their files change")
	cmd.Flags().DurationVar(&f.debounce, "debounce", engine.DefaultDebounce, "gather file changes this close together into one reload")
	cmd.Flags().StringVar(&f.check, "check", "", `listen address of the Check API: gRPC spillway.v1.FlowControl and Envoy ext_authz, and JSON POST /v1/check and /v1/done, on one port ("" for none); beyond loopback it needs --admin-token-file`)
	cmd.Flags().BoolVar(&f.envoyAccessLog, "envoy-access-log", false, "Envoy sends its access log to --check (envoy.access_loggers.http_grpc): hold each ext_authz admission, and its concurrency slot, until the request's log entry, and meter its latency and status from it")
	cmd.Flags().BoolVar(&f.explain, "explain-header", false, "explain each rejection (policy, component, signal values) in a response header, X-Spillway-Reason (the proxy) or x-spillway-reason (ext_authz)")
	f.redis.register(cmd)
	cmd.Flags().StringVar(&f.prometheus, "prometheus", "", `base URL of the Prometheus server that PromQL components query (http://host:port); "" for none`)
}

// hostedEngine is a running engine with its metrics and admin listener.
type hostedEngine struct {
	eng       *engine.Engine
	metrics   *telemetry.Metrics
	decisions *decisionlog.Log
	adminLn   net.Listener
	admin     *http.Server
}

// start reads the admin token, binds the admin listener, starts the
// engine, its metrics and the RL bridge (unless --agent-addr ""). The
// engine stops when ctx is done; close releases the rest.
func (f *engineFlags) start(ctx context.Context, cmd *cobra.Command) (*hostedEngine, error) {
	if f.adminTokenFile != "" {
		token, err := access.ReadTokenFile(f.adminTokenFile)
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		f.acc.Token = token
	}
	redisOptions, err := f.redis.options()
	if err != nil {
		return nil, err
	}
	ln, err := access.Listen(f.admin, f.acc.Token, "--admin-token-file")
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	eng, err := engine.Start(ctx, engine.Options{Policies: f.policies, Watch: !f.noWatch, Debounce: f.debounce, Redis: redisOptions, Prometheus: f.prometheus})
	if err != nil {
		ln.Close()
		fmt.Fprintln(cmd.ErrOrStderr(), err)
		return nil, exitError{}
	}
	metrics, err := telemetry.New(ctx, eng, otlp.FromEnv)
	if err != nil {
		eng.Close()
		ln.Close()
		return nil, err
	}
	h := &hostedEngine{eng: eng, metrics: metrics, adminLn: ln, decisions: decisionlog.New(decisionlog.DefaultSize)}
	if f.af.addr != "" {
		url, errc, err := f.af.startBridge(ctx, rlbridge.ForEngine(eng), nil, metrics)
		if err != nil {
			h.close()
			return nil, err
		}
		slog.Info("RL bridge listening", "url", url)
		go func() {
			if err := <-errc; err != nil {
				slog.Error("RL bridge stopped", "err", err)
			}
		}()
	}
	h.admin = adminServer(eng, metrics, f.acc, func(mux *http.ServeMux) {
		mux.Handle("GET /decisions", h.decisions.Handler())
	})
	return h, nil
}

// serveAdmin serves the admin API until ctx is done.
func (h *hostedEngine) serveAdmin(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.admin.Shutdown(shutdown)
	}()
	if err := h.admin.Serve(h.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (h *hostedEngine) close() {
	shutdownMetrics(h.metrics)
	h.eng.Close()
	h.adminLn.Close()
}

// otlpState names the OTLP protocol in use, or "off".
func (h *hostedEngine) otlpState() string {
	for _, name := range h.metrics.Pushing() {
		if protocol, ok := strings.CutPrefix(name, "otlp "); ok {
			return protocol
		}
	}
	return "off"
}
