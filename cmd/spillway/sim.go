package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/rlbridge"
	"github.com/spillway-dev/spillway/testbed"
)

// simFlags are the options that sim and bench share.
type simFlags struct {
	app, scenario    string
	virtual          bool
	seed             uint64
	duration, warmup time.Duration
	load             float64
	perAPI           bool
	maxRequests      float64
	think            time.Duration
	burst            int
	sharing          bool
}

func (f *simFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.app, "app", "boutique", "app model: "+strings.Join(testbed.AppNames(), ", ")+", random:SEED (a seeded random app), or a .json file")
	fs.StringVar(&f.scenario, "scenario", "steady", "load scenario: "+strings.Join(testbed.ScenarioNames(), ", "))
	fs.BoolVar(&f.virtual, "virtual", false, "run in virtual time (discrete-event, deterministic) instead of live on loopback")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the arrivals and service times")
	fs.DurationVar(&f.duration, "duration", testbed.DefaultDuration, "length of the scenario after the warm-up (whole seconds, >= 10s)")
	fs.DurationVar(&f.warmup, "warmup", testbed.DefaultWarmup, "light load (0.5× capacity) before the scenario, so latency baselines are learned")
	fs.Float64Var(&f.load, "load", 0, "the scenario's load multiple (0: the scenario's default; see the list above)")
	fs.Float64Var(&f.maxRequests, "max-requests", testbed.DefaultMaxRequests, "the most requests one run may offer, retries counted: the simulator's time and memory grow with each")
	fs.IntVar(&f.burst, "burst", 0, "open-loop arrivals in batches of N requests at one instant, the batches Poisson at rate÷N: the same mean rate in clumps (0 or 1: one at a time; not with --think)")
	fs.DurationVar(&f.think, "think", 0, "closed-loop clients: each API's rate becomes rate×THINK users who each wait for the answer, the refusal or the timeout, think for an exponential time of this mean and send again (0: open-loop Poisson arrivals, which no answer slows)")
	fs.BoolVar(&f.sharing, "sharing", false, `serve every bounded service by processor sharing, as a Go service's goroutines share its cores: every call starts at once and all slow together past the workers (the app's name gets "-ps"; virtual only; see docs/simulator.md)`)
	fs.BoolVar(&f.perAPI, "per-api", false, `instantiate each policy file once per API of the app (reported as "NAME (per API)") instead of running it as written`)
}

// setup resolves the app and builds the scenario.
func (f *simFlags) setup() (testbed.App, testbed.Scenario, error) {
	if err := f.checkMaxRequests(); err != nil {
		return testbed.App{}, testbed.Scenario{}, err
	}
	app, err := resolveApp(f.app)
	if err != nil {
		return testbed.App{}, testbed.Scenario{}, err
	}
	if f.sharing {
		app = testbed.WithSharing(app)
	}
	sc, err := testbed.NewScenario(f.scenario, app, testbed.ScenarioOptions{Warmup: f.warmup, Duration: f.duration, Load: f.load, Think: f.think, Burst: f.burst})
	if err != nil {
		return testbed.App{}, testbed.Scenario{}, err
	}
	if err := testbed.CheckRequests(app, sc, f.maxRequests); err != nil {
		return testbed.App{}, testbed.Scenario{}, err
	}
	return app, sc, nil
}

// checkMaxRequests reports a --max-requests that no run could fit.
func (f *simFlags) checkMaxRequests() error {
	if !(f.maxRequests > 0) {
		return fmt.Errorf("--max-requests %g: must be > 0", f.maxRequests)
	}
	return nil
}

// resolveApp is a built-in app by name, or an app loaded from a JSON file.
func resolveApp(name string) (testbed.App, error) {
	if app, err := testbed.BuiltinApp(name); err == nil {
		return app, nil
	} else if !strings.HasSuffix(name, ".json") {
		if _, statErr := os.Stat(name); statErr != nil {
			return testbed.App{}, err
		}
	}
	return testbed.LoadAppFile(name)
}

// namedPolicies are the policy names that sim and bench resolve to the
// example policies: policies/NAME.cue under the working directory. When the
// file is not there, latency-aimd falls back to its blueprint with seed
// 004's defaults, which need nothing app-specific, so a bare binary runs it
// anywhere, and so does default (the slo blueprint). The others need their file: latency-target has no default
// target latency.
var namedPolicies = map[string]string{ // name → fallback blueprint, "" for none
	"default":           "slo",
	"gradient2":         "",
	"vegas":             "",
	"envoy-gradient":    "",
	"latency-aimd":      "latencyaimd",
	"latency-aimd-fast": "",
	"latency-target":    "",
	"mimd":              "",
	"topfull":           "",
}

// resolvePolicyFor is resolvePolicy made for one app: a policy made per
// app (topfull) is made for app.
func resolvePolicyFor(name string, app testbed.App) (testbed.Policy, error) {
	p, err := resolvePolicy(name)
	if err != nil || p.ForApp == nil {
		return p, err
	}
	return p.ForApp(app)
}

// resolvePolicy turns a --policy value into a testbed.Policy: none,
// static, static-optimal, dagor, a name of namedPolicies, or a path to a
// .cue policy file.
func resolvePolicy(name string) (testbed.Policy, error) {
	switch name {
	case "none":
		return testbed.NoPolicy(), nil
	case "static":
		return testbed.StaticPolicy(), nil
	case "static-optimal":
		return testbed.StaticOptimalPolicy(), nil
	case "dagor":
		return testbed.DagorPolicy(), nil
	case "topfull":
		// Generated for each app it runs on (testbed.TopFullPolicy: its
		// APIs, SLOs, priorities and clusters); policies/topfull.cue, for
		// boutique, is still there by path.
		return testbed.TopFullForApps(), nil
	case "default-slo":
		// policies/default.cue with slo set to the app's tightest SLO, as
		// the README tells a user with SLOs to write it; made per app.
		return testbed.DefaultSLOForApps(), nil
	case "topfull-guard":
		// The same with the blueprint's queue guard (topfull.#QueueGuard:
		// a concurrency limit per control point beside the agent's rates,
		// a policy of its own at 100 ms).
		return testbed.TopFullGuardForApps(), nil
	case "topfull-dynamic", "topfull-guard-dynamic":
		// topfull or topfull-guard, with the agent's clusters formed every
		// step from the services overloaded now (--clusters dynamic).
		return testbed.TopFullDynamicForApps(name == "topfull-guard-dynamic"), nil
	case "":
		return testbed.Policy{}, errors.New("empty policy name")
	}
	blueprint, named := namedPolicies[name]
	file := name
	if named {
		file = filepath.Join("policies", name+".cue")
	}
	if _, err := os.Stat(file); err == nil {
		specs, diags := engine.LoadFiles([]string{file})
		if len(diags.Errors()) > 0 {
			return testbed.Policy{}, fmt.Errorf("policy %s:\n%v", name, diags.Errors())
		}
		label := name
		if !named {
			label = strings.TrimSuffix(filepath.Base(name), ".cue")
		}
		return testbed.Policy{Name: label, Templates: specs}, nil
	} else if !named {
		if strings.HasSuffix(name, ".cue") {
			return testbed.Policy{}, err
		}
		return testbed.Policy{}, fmt.Errorf("unknown policy %q: want none, static, static-optimal, dagor, default-slo, topfull-guard, topfull-dynamic, topfull-guard-dynamic, %s, or a .cue file", name, strings.Join(slices.Sorted(maps.Keys(namedPolicies)), ", "))
	}
	if blueprint == "" {
		return testbed.Policy{}, fmt.Errorf("policy %s: %s not found (run from the repository root)", name, file)
	}
	selector := "flux_meter.selector.control_point="
	if blueprint == "slo" {
		selector = "selector.control_point="
	}
	src, err := renderSource(blueprint, []string{"policy_name=" + name, selector + testbed.ControlPoint})
	if err != nil {
		return testbed.Policy{}, err
	}
	specs, diags := engine.LoadSource(name+" (blueprint "+blueprint+" defaults)", src)
	if len(diags.Errors()) > 0 {
		return testbed.Policy{}, fmt.Errorf("policy %s: %s not found, and blueprint %s with its defaults does not load:\n%v", name, file, blueprint, diags.Errors())
	}
	return testbed.Policy{Name: name, Templates: specs}, nil
}

func simCmd() *cobra.Command {
	var f simFlags
	var af agentFlags
	var policy string
	var asJSON, serve bool
	cmd := &cobra.Command{
		Use:   "sim [--app APP] [--scenario S] [--policy FILE|none|static|NAME] [--virtual] [--seed N] [--duration D] [--json] [--serve]",
		Short: "Run an app model through a load scenario under a policy, live or in virtual time",
		Long: `Run an app model through a load scenario under a policy and report goodput,
latency percentiles, rejections and time to recover, per API and in total.

The policy protects the app's entry at control point "ingress", and runs as
written: a policy for api "*", as policies/latency-aimd.cue is, is one
controller for all APIs, as for a user who deploys it. With --per-api, a
policy file that protects one API (selector api "*" or another control point)
is instantiated once per API of the app instead, with its selectors
re-pointed at that API, and the report labels it "NAME (per API)"; see
docs/simulator.md.

Policies: none (no protection), static (the oracle: a token bucket per API at
its known proportional capacity share), static-optimal (the same at the
goodput-maximal admission of the LP), default, latency-aimd, latency-aimd-fast,
latency-target, mimd, topfull (policies/NAME.cue; topfull-guard is topfull with
the blueprint's queue_guard; topfull-dynamic and topfull-guard-dynamic run the
agent with --clusters dynamic; default-slo is default with slo set to the
app's tightest SLO), or a path to a .cue file. A policy with an
RLActuator (topfull) runs with the Python agent (--agent-model), which the
command starts: with --virtual in lock step, live on the wall clock as a
deployment runs it (each tick waits up to 100 ms for the agent's rates).

With --serve --virtual, the simulator serves the RL bridge on --agent-addr
for an agent to drive (training): every POST /step advances one tick of
virtual time, and POST /reset starts a new episode. With --app random, each
episode draws a new app (capacity, base latency, overload steepness) and a
random load, protected by the topfull policy. With --serve alone, the run is
live and an agent drives it through the bridge in real time.

Scenarios (load multiples are of the app's capacity at its nominal mix):
` + testbed.ScenarioHelp(),
		Example: `  spillway sim --app boutique --scenario surge --policy latency-aimd --virtual
  spillway sim --app two-tier --scenario steady --policy none --duration 20s --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if serve && f.virtual {
				return serveVirtual(cmd, f, af)
			}
			app, sc, err := f.setup()
			if err != nil {
				return err
			}
			p, err := resolvePolicyFor(policy, app)
			if err != nil {
				return err
			}
			p.PerAPI = f.perAPI
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			// The agent's output and the progress lines come from different
			// goroutines.
			out := &lockedWriter{w: cmd.OutOrStdout()}
			agentLog := io.Writer(out)
			if cmd.ErrOrStderr() != cmd.OutOrStdout() {
				agentLog = &lockedWriter{w: cmd.ErrOrStderr()}
			}
			warnShortWarmup(cmd.ErrOrStderr(), sc.Warmup, p)
			cfg := testbed.SimConfig{App: app, Scenario: sc, Policy: p, Virtual: f.virtual, Seed: f.seed, MaxRequests: f.maxRequests}
			if !asJSON {
				printHeader(out, app, sc, p.Label(), f.virtual, f.seed)
				cfg.OnSecond = func(s testbed.SecondStats) { printSecond(out, s) }
				if !f.virtual {
					// A live run takes its scenario's length in real time:
					// the bar on stderr shows how much is left, and steps
					// aside for each second's line.
					bar := liveProgress(cmd.ErrOrStderr(), int(sc.Total()/time.Second), p.Label())
					defer stopProgress(bar)
					cfg.OnSecond = func(s testbed.SecondStats) {
						bar.Clear()
						printSecond(out, s)
						bar.Add(1)
					}
				}
			}
			begin := time.Now()
			var r testbed.Report
			switch {
			case serve:
				r, err = serveLive(ctx, cmd, cfg, af)
			case hasAgent(p):
				r, err = af.simulateWithAgent(ctx, cfg, agentLog)
			default:
				r, err = testbed.Simulate(ctx, cfg)
			}
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printSummary(out, app, r)
			if f.virtual {
				took := time.Since(begin)
				fmt.Fprintf(out, "simulated %v in %v: %.0f× real time\n", sc.Total(), took.Round(time.Millisecond), sc.Total().Seconds()/took.Seconds())
			}
			return nil
		},
	}
	f.register(cmd)
	af.registerBridge(cmd, "127.0.0.1:8082")
	af.registerAgent(cmd)
	cmd.Flags().StringVar(&policy, "policy", "latency-aimd", "none, static, static-optimal, dagor (virtual only), default, default-slo, latency-aimd, latency-aimd-fast, latency-target, mimd, topfull, topfull-guard, topfull-dynamic, topfull-guard-dynamic, or a .cue file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON only, without progress lines")
	cmd.Flags().BoolVar(&serve, "serve", false, "serve the RL bridge for an external agent (with --virtual: lock step, /step and /reset)")
	return cmd
}

// serveVirtual serves virtual episodes to an agent until interrupted.
func serveVirtual(cmd *cobra.Command, f simFlags, af agentFlags) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	episode := testbed.RandomEpisodes
	if f.app != "random" {
		app, sc, err := f.setup()
		if err != nil {
			return err
		}
		p, err := resolvePolicyFor(cmd.Flag("policy").Value.String(), app)
		if err != nil {
			return err
		}
		p.PerAPI = f.perAPI
		episode = func(seed uint64) (testbed.SimConfig, error) {
			return testbed.SimConfig{App: app, Scenario: sc, Policy: p, Virtual: true, Seed: seed}, nil
		}
	}
	srv := testbed.NewSimServer(f.seed, 0, episode)
	defer srv.Close()
	url, errc, err := af.startBridge(ctx, srv.Backend(), srv, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "serving virtual episodes (app %s) for an agent at %s: POST /reset starts one, POST /step advances one tick\n", f.app, url)
	return <-errc
}

// serveLive runs cfg live with the RL bridge serving its engine.
func serveLive(ctx context.Context, cmd *cobra.Command, cfg testbed.SimConfig, af agentFlags) (testbed.Report, error) {
	var current atomic.Pointer[engine.Engine]
	backend := rlbridge.EngineBackend{Engine: current.Load}
	url, _, err := af.startBridge(ctx, backend, nil, nil)
	if err != nil {
		return testbed.Report{}, err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "RL bridge at %s\n", url)
	cfg.OnEngine = current.Store
	return testbed.Simulate(ctx, cfg)
}

func printHeader(w io.Writer, app testbed.App, sc testbed.Scenario, policy string, virtual bool, seed uint64) {
	driver := "live on loopback"
	if virtual {
		driver = "virtual time"
	}
	if sc.Think > 0 {
		driver += fmt.Sprintf("; closed-loop users thinking %v", sc.Think)
	}
	if sc.Burst > 1 {
		driver += fmt.Sprintf("; arrivals in batches of %d", sc.Burst)
	}
	fmt.Fprintf(w, "app %s: capacity %.0f req/s at its nominal mix; scenario %s (load %g) for %v after a %v warm-up; policy %s; %s; seed %d\n",
		app.Name, app.Capacity(), sc.Name, sc.Load, sc.Duration, sc.Warmup, policy, driver, seed)
	fmt.Fprintf(w, "%6s %8s %8s %8s %8s %7s %8s %9s %9s\n", "t", "offered", "goodput", "ratio", "rejected", "timeout", "capacity", "p99", "p99/SLO")
}

func printSecond(w io.Writer, s testbed.SecondStats) {
	mark := ""
	if s.T < 0 {
		mark = " warm-up"
	}
	fmt.Fprintf(w, "%5ds %8d %8d %8.2f %8d %7d %8.0f %7.1fms %9.2f%s\n",
		s.T, s.Offered, s.Goodput, s.GoodputRatio, s.Rejected, s.Timeouts, s.CapacityRPS, s.P99Ms, s.MaxAPIP99OverSLO, mark)
}

// printSummary prints the per-API and total figures of a run.
func printSummary(w io.Writer, app testbed.App, r testbed.Report) {
	fmt.Fprintf(w, "\n%s under %s, %s scenario (%gs after %gs warm-up), %s, seed %d:\n", r.App, r.Policy, r.Scenario, r.DurationS, r.WarmupS, r.Driver, r.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "api\tprio\tslo\tcap alone/s\toffered/s\tcapacity/s\toptimal/s\tgoodput/s\tgoodput/cap\tratio\t÷optimal\tp50\tp99\tp99.9\trejected\trecovery\tsteady ratio\tsteady ÷optimal\tsteady p99\t")
	row := func(name, prio, slo, alone string, s testbed.Stats) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%.0f%%\t%s\t%.2f\t%.2f\t%s\t\n",
			name, prio, slo, alone, s.OfferedRPS, s.CapacityRPS, s.OptimalRPS, s.GoodputRPS, s.GoodputPerCapacity, s.GoodputRatio, s.GoodputPerOptimal,
			fmtMs(s.P50Ms), fmtMs(s.P99Ms), fmtMs(s.P999Ms), 100*s.RejectedRatio, fmtRecovery(s.RecoveryS), s.Steady.GoodputRatio, s.Steady.GoodputPerOptimal, fmtMs(s.Steady.P99Ms))
	}
	for _, name := range r.APIs {
		a := r.PerAPI[name]
		row(name, fmt.Sprint(a.Priority), fmtMs(a.SLOMs), fmt.Sprintf("%.0f", a.CapacityAloneRPS), a.Stats)
	}
	row("total", "", "", "", r.Stats)
	tw.Flush()
	fmt.Fprintf(w, "ratio is goodput ÷ proportional: goodput over min(offered, capacity share) per second; ÷optimal is goodput over min(offered, the goodput-maximal admission of the LP); steady is the last half (%gs to %gs).\n", r.Steady.FromS, r.Steady.ToS)
	if len(r.Services) == 0 {
		return
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "service\tworkers\tutilisation\tqueueing\tsteady utilisation\tsteady queueing\t")
	for _, s := range r.Services {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t%.2f\t%s\t\n", s.Name, s.Workers, s.Utilisation, fmtMs(s.QueueingMs), s.SteadyUtilisation, fmtMs(s.SteadyQueueingMs))
	}
	tw.Flush()
	fmt.Fprintln(w, "utilisation is the bounded service's workers' busy time over the worker time it had; queueing the mean wait in its queue of the calls that took a worker.")
}

func fmtMs(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.1fms", v)
}

func fmtRecovery(v *float64) string {
	if v == nil {
		return "never"
	}
	return fmt.Sprintf("%.0fs", *v)
}

// simulateAll runs every policy on the same app, scenario and seed; af
// runs the agent of policies with an RLActuator.
// A live run shows a progress bar on bar's writer (stderr) over all the
// policies' seconds; a virtual one is over before a bar would help.
func simulateAll(ctx context.Context, app testbed.App, sc testbed.Scenario, policies []testbed.Policy, virtual bool, seed uint64, maxRequests float64, af agentFlags, progress, bar io.Writer) ([]testbed.Report, error) {
	var reports []testbed.Report
	if virtual {
		bar = io.Discard
	}
	seconds := liveProgress(bar, len(policies)*int(sc.Total()/time.Second), "")
	defer stopProgress(seconds)
	for i, p := range policies {
		begin := time.Now()
		cfg := testbed.SimConfig{App: app, Scenario: sc, Policy: p, Virtual: virtual, Seed: seed, MaxRequests: maxRequests}
		seconds.Describe(fmt.Sprintf("%s (%d of %d)", p.Label(), i+1, len(policies)))
		cfg.OnSecond = func(testbed.SecondStats) { seconds.Add(1) }
		var r testbed.Report
		var err error
		if hasAgent(p) {
			r, err = af.simulateWithAgent(ctx, cfg, io.Discard)
		} else {
			r, err = testbed.Simulate(ctx, cfg)
		}
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", p.Label(), err)
		}
		seconds.Clear()
		fmt.Fprintf(progress, "%-18s goodput ÷ proportional %.2f, ÷ optimal %.2f, p99 %s, took %v\n", r.Policy, r.GoodputPerProportional, r.GoodputPerOptimal, fmtMs(r.P99Ms), time.Since(begin).Round(time.Millisecond))
		reports = append(reports, r)
	}
	return reports, nil
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
