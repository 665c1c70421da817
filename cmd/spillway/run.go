package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/dashboards/live"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/telemetry"
)

func runCmd() *cobra.Command {
	var ef engineFlags
	cmd := &cobra.Command{
		Use:   "run --policies DIR [--admin 127.0.0.1:9464]",
		Short: "Run a standalone engine with an admin server (live page, /metrics, /status, dynamic config)",
		Long: `Run loads every policy in --policies and ticks it. The directory is
watched: a change is loaded, compiled and validated as a whole and swapped in
only if all of it is good; otherwise the running policies stay and the errors
are logged and shown on /status. Unchanged components keep their state.

The admin server serves:
  GET    /                          the live page: every signal, last 10 minutes
  GET    /api/signals               the live page's data, tick by tick (?since=t_ns)
  GET    /metrics                   OpenTelemetry metrics, Prometheus format
  GET    /status                    policies, signals, actuators, reload history
  GET    /policies/{name}/config    the policy's dynamic-config overrides
  POST   /policies/{name}/config    {"dry_run"?: bool, "variables"?: {SIGNAL: number}}
  DELETE /policies/{name}/config    drop the overrides
  GET    /decisions                 the latest decisions of the Check API (and
                                    of the proxy), rejections explained;
                                    ?api=&outcome=accepted|rejected&limit=

With --check ADDR it also serves the Check API for services in any language
(gRPC spillway.v1.FlowControl/Check and /Done, the JSON twin POST /v1/check
and /v1/done, and Envoy's ext_authz Authorization/Check, on one port), with
the admin server's access rules and token.

Beyond loopback the admin server requires a bearer token from
--admin-token-file on every request. Without one it serves only requests
for a loopback Host (or a name given with --admin-allow-host), against DNS
rebinding. It refuses cross-origin browser requests that change anything,
and a POST body must be Content-Type: application/json.

The RL bridge (TopFull protocol) serves the policies' RLActuators on
--agent-addr: GET /metrics?method=API, POST /set_rate?method=API, GET /apis.
Beyond loopback it requires --agent-token-file; "" turns it off.

OTLP export is on when OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) is set; see package telemetry/otlp.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			h, err := ef.start(ctx, cmd)
			if err != nil {
				return err
			}
			defer h.close()
			if err := startCheck(ctx, h, ef, nil, "ingress"); err != nil {
				return err
			}
			slog.Info("spillway running", "policies", ef.policies, "admin", "http://"+h.adminLn.Addr().String()+"/", "loaded", len(h.eng.Policies()), "otlp", h.otlpState())
			return h.serveAdmin(ctx)
		},
	}
	ef.register(cmd)
	return cmd
}

// shutdownMetrics flushes OTLP, giving up after 5 s.
func shutdownMetrics(m *telemetry.Metrics) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		slog.Warn("flushing metrics", "err", err)
	}
}

// adminServer serves the live page, the engine's metrics (when metrics is
// not nil), its status and dynamic config, and what each of more adds, to
// the requests that acc allows.
func adminServer(eng *engine.Engine, metrics *telemetry.Metrics, acc adminAccess, more ...func(*http.ServeMux)) *http.Server {
	mux := http.NewServeMux()
	for _, add := range more {
		add(mux)
	}
	page := live.Handler(eng)
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /api/signals", page)
	if metrics != nil {
		mux.Handle("GET /metrics", metrics.Handler())
	}
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, eng.Status())
	})
	mux.HandleFunc("GET /policies/{name}/config", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if _, ok := eng.Policy(name); !ok {
			writeJSON(w, http.StatusNotFound, errorBody{fmt.Sprintf("no running policy %q", name)})
			return
		}
		writeJSON(w, http.StatusOK, eng.DynamicConfigOf(name))
	})
	mux.HandleFunc("POST /policies/{name}/config", func(w http.ResponseWriter, r *http.Request) {
		if !requireJSON(w, r) {
			return
		}
		name := r.PathValue("name")
		cfg, err := engine.DecodeDynamicConfig(r.Body)
		if err == nil {
			err = eng.SetDynamicConfig(name, cfg)
		}
		configReply(w, eng, name, err)
	})
	mux.HandleFunc("DELETE /policies/{name}/config", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		configReply(w, eng, name, eng.ClearDynamicConfig(name))
	})
	return &http.Server{
		Handler:           acc.guard(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

type errorBody struct {
	Error string `json:"error"`
}

// configReply answers a dynamic-config change: the overrides now in force,
// or the reason it was refused.
func configReply(w http.ResponseWriter, eng *engine.Engine, name string, err error) {
	var cfgErr *engine.ConfigError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, eng.DynamicConfigOf(name))
	case errors.Is(err, engine.ErrNoPolicy):
		writeJSON(w, http.StatusNotFound, errorBody{err.Error()})
	case errors.As(err, &cfgErr) && cfgErr.TooLarge:
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{err.Error()})
	case errors.As(err, &cfgErr):
		writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
	default:
		writeJSON(w, http.StatusInternalServerError, errorBody{err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
