package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/engine"
)

func runCmd() *cobra.Command {
	var policies, admin string
	cmd := &cobra.Command{
		Use:   "run --policies DIR [--admin 127.0.0.1:9464]",
		Short: "Run a standalone engine with an admin server (/status)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			eng, err := engine.Start(ctx, engine.Options{Policies: policies})
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{}
			}
			defer eng.Close()
			ln, err := net.Listen("tcp", admin)
			if err != nil {
				return err
			}
			srv := adminServer(eng)
			slog.Info("spillway running", "policies", policies, "admin", "http://"+ln.Addr().String()+"/status", "loaded", len(eng.Policies()))
			go func() {
				<-ctx.Done()
				shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(shutdown)
			}()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&policies, "policies", "policies", "directory of policy files")
	cmd.Flags().StringVar(&admin, "admin", "127.0.0.1:9464", "admin listen address")
	return cmd
}

// adminServer serves the engine's status.
func adminServer(eng *engine.Engine) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(eng.Status())
	})
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
	}
}
