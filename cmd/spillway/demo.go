package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/access"
	"github.com/spillway-dev/spillway/telemetry"
	"github.com/spillway-dev/spillway/telemetry/otlp"
	"github.com/spillway-dev/spillway/testbed"
)

//go:embed demo_policy.cue
var demoPolicy []byte

// demoPlan is the load of each demo run.
type demoPlan struct {
	Warm, Overload time.Duration
	WarmLoad       float64 // × capacity
	OverloadLoad   float64 // × capacity
	SLO, Timeout   time.Duration
	Seed           uint64
	// Admin is where the live page and /metrics are served while the demo
	// runs; when it is taken, an ephemeral loopback port is used instead.
	Admin string
}

func defaultDemoPlan() demoPlan {
	return demoPlan{
		Warm: 6 * time.Second, Overload: 20 * time.Second,
		WarmLoad: 0.5, OverloadLoad: 3,
		SLO: 250 * time.Millisecond, Timeout: 2 * time.Second,
		Seed:  42,
		Admin: "127.0.0.1:9464",
	}
}

func demoCmd() *cobra.Command {
	plan := defaultDemoPlan()
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Overload a simulated two-tier service at 3× capacity, without and with Spillway's default policy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			_, err := runDemo(ctx, cmd.OutOrStdout(), plan)
			return err
		},
	}
	cmd.Flags().DurationVar(&plan.Overload, "overload", plan.Overload, "length of the overload phase of each run")
	cmd.Flags().Uint64Var(&plan.Seed, "seed", plan.Seed, "seed of the arrival process")
	cmd.Flags().StringVar(&plan.Admin, "admin", plan.Admin, "admin listen address for the live page and /metrics (an ephemeral port if taken)")
	return cmd
}

// demoRun summarises one run over its overload phase.
type demoRun struct {
	Name                               string
	Offered, Admitted, Goodput, Reject float64 // per second
	P99                                time.Duration
	// Completed counts the requests behind P99: answered (not rejected)
	// or timed out. 0 means P99 has nothing to measure.
	Completed int
}

func runDemo(ctx context.Context, out io.Writer, plan demoPlan) ([]demoRun, error) {
	app := testbed.DefaultTwoTier()
	capacity := app.Capacity()
	fmt.Fprintf(out, "two-tier app: %d backend workers, %s %v mean service time → capacity %.0f req/s\n",
		app.Workers, app.BackendTime.Kind, app.BackendTime.Mean, capacity)
	fmt.Fprintf(out, "load: %.1f× capacity for %v (warm-up), then %.0f× capacity (%.0f req/s) for %v; SLO %v\n\n",
		plan.WarmLoad, plan.Warm, plan.OverloadLoad, plan.OverloadLoad*capacity, plan.Overload, plan.SLO)

	specs, diags := engine.LoadSource("demo_policy.cue", demoPolicy)
	if len(diags.Errors()) > 0 {
		return nil, diags
	}
	// One engine for both runs: the unprotected run goes through the
	// control point with no policy attached (every request passes through,
	// and is counted), the protected run after the policy is applied. The
	// admin server shows both.
	eng, err := engine.Start(ctx, engine.Options{})
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	metrics, err := telemetry.New(ctx, eng, otlp.FromEnv)
	if err != nil {
		return nil, err
	}
	defer shutdownMetrics(metrics)
	ln, err := listenAdmin(plan.Admin)
	if err != nil {
		return nil, err
	}
	srv := adminServer(eng, metrics, adminAccess{})
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Fprintf(out, "live dashboard: http://%s/  (metrics: http://%s/metrics)\n\n", ln.Addr(), ln.Addr())

	var runs []demoRun
	for _, protected := range []bool{false, true} {
		name := "unprotected"
		if protected {
			name = "spillway"
			if err := eng.Apply(specs); err != nil {
				return nil, err
			}
		}
		r, err := demoOnce(ctx, out, name, plan, app, eng, protected)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
		if ctx.Err() != nil {
			return runs, ctx.Err()
		}
	}
	fmt.Fprintf(out, "\nresults over the %v overload phase (offered %.0f req/s, capacity %.0f req/s):\n", plan.Overload, plan.OverloadLoad*capacity, capacity)
	printDemoTable(out, runs, capacity)
	fmt.Fprintf(out, "\n%s\n", compareGoodput(runs[0], runs[1], plan.SLO))
	return runs, nil
}

// noLatency stands for a p99 where no request completed: 0s would read as
// perfect latency when the service has collapsed.
const noLatency = "—"

// printDemoTable prints one row per run, and below it why a p99 is
// noLatency, if one is.
func printDemoTable(out io.Writer, runs []demoRun, capacity float64) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\toffered/s\tadmitted/s\trejected/s\tgoodput/s\tgoodput/capacity\tp99\t")
	collapsed := false
	for _, r := range runs {
		p99 := fmtP99(r.P99, r.Completed)
		collapsed = collapsed || r.Completed == 0
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f%%\t%s\t\n", r.Name, r.Offered, r.Admitted, r.Reject, r.Goodput, 100*r.Goodput/capacity, p99)
	}
	tw.Flush()
	if collapsed {
		fmt.Fprintf(out, "p99 %s: no request completed (answered or timed out) in the overload phase, so there is no latency to rank; the service had collapsed\n", noLatency)
	}
}

// fmtP99 is p99 to the millisecond, or noLatency when no request completed.
func fmtP99(p99 time.Duration, completed int) string {
	if completed == 0 {
		return noLatency
	}
	return p99.Round(time.Millisecond).String()
}

// compareGoodput is the demo's last line: the protected run's goodput as a
// multiple of the unprotected one's, or in req/s when the unprotected run
// had none (every response missed the SLO), where a ratio means nothing.
func compareGoodput(unprotected, protected demoRun, slo time.Duration) string {
	if unprotected.Goodput > 0 {
		return fmt.Sprintf("%s goodput is %.1f× the %s goodput", protected.Name, protected.Goodput/unprotected.Goodput, unprotected.Name)
	}
	return fmt.Sprintf("%s goodput is %.0f req/s; the %s run had none within the %v SLO", protected.Name, protected.Goodput, unprotected.Name, slo)
}

// listenAdmin listens on addr, which must be loopback (the demo has no
// token), or on an ephemeral loopback port when addr is taken (another
// spillway may be running).
func listenAdmin(addr string) (net.Listener, error) {
	ln, err := access.Listen(addr, "", "spillway run --admin-token-file")
	if errors.Is(err, syscall.EADDRINUSE) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	return ln, err
}

func demoOnce(ctx context.Context, out io.Writer, name string, plan demoPlan, app testbed.TwoTierConfig, eng *engine.Engine, protected bool) (demoRun, error) {
	wrap := func(h http.Handler) http.Handler { return eng.HTTP("ingress", h) }
	tt, err := testbed.StartTwoTier(app, wrap)
	if err != nil {
		return demoRun{}, err
	}
	defer tt.Close()
	capacity := app.Capacity()
	fmt.Fprintf(out, "== %s ==\n", name)
	fmt.Fprintf(out, "%4s %9s %9s %9s %9s %9s %11s\n", "t", "offered", "admitted", "rejected", "goodput", "p99", "rate limit")
	warmSeconds := int(plan.Warm / time.Second)
	res, err := testbed.Run(ctx, testbed.LoadConfig{
		URL: tt.URL,
		Phases: []testbed.Phase{
			{Duration: plan.Warm, Rate: plan.WarmLoad * capacity},
			{Duration: plan.Overload, Rate: plan.OverloadLoad * capacity},
		},
		SLO: plan.SLO, Timeout: plan.Timeout, Seed: plan.Seed,
	}, func(s testbed.Second) {
		limit := "-"
		if protected {
			if v, err := eng.Signal("demo", "RATE_LIMIT"); err == nil && !math.IsNaN(v) {
				limit = fmt.Sprintf("%.0f/s", v)
			} else {
				limit = "none"
			}
		}
		phase := ""
		if s.T == warmSeconds {
			phase = "  ← overload starts"
		}
		fmt.Fprintf(out, "%3ds %9d %9d %9d %9d %9s %11s%s\n", s.T, s.Offered, s.Admitted, s.Rejected, s.Goodput, fmtP99(s.P99, s.Admitted+s.Timeouts), limit, phase)
	})
	if err != nil {
		return demoRun{}, err
	}
	r := demoRun{Name: name}
	var n float64
	var p99 time.Duration
	for _, s := range res.Seconds {
		if s.T < warmSeconds {
			continue
		}
		n++
		r.Offered += float64(s.Offered)
		r.Admitted += float64(s.Admitted)
		r.Reject += float64(s.Rejected)
		r.Goodput += float64(s.Goodput)
		r.Completed += s.Admitted + s.Timeouts
		p99 = max(p99, s.P99)
	}
	if n > 0 {
		r.Offered, r.Admitted, r.Reject, r.Goodput = r.Offered/n, r.Admitted/n, r.Reject/n, r.Goodput/n
	}
	r.P99 = p99
	return r, nil
}
