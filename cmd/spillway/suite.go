package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/testbed"
)

// suitePolicies are the policies of bench --suite unless --policies says
// otherwise: no protection, both oracles, the shipped adaptive ones and
// the in-app DAGOR baseline. topfull is not among them (it needs its agent,
// and its Python, and runs slower), but --policies can name it.
const suitePolicies = "none,static,static-optimal,default,default-slo,gradient2,vegas,envoy-gradient,latency-aimd,latency-aimd-fast,latency-target,mimd,dagor"

// suiteFlags are the options of bench --suite.
type suiteFlags struct {
	enabled                   bool
	apps, scenarios, randomSc string
	random, jobs              int
	out, goals                string
}

func (s *suiteFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVar(&s.enabled, "suite", false, "run the control-quality matrix in virtual time and write --suite-out")
	fs.StringVar(&s.apps, "apps", strings.Join(testbed.AppNames(), ","), "with --suite: the apps, built-in names, random:SEED or .json files")
	fs.StringVar(&s.scenarios, "scenarios", strings.Join(testbed.ScenarioNames(), ","), "with --suite: the scenarios of --apps")
	fs.IntVar(&s.random, "random", 20, "with --suite: how many random apps (random:1 to random:N)")
	fs.StringVar(&s.randomSc, "random-scenarios", "steady,surge,capacity-drop,cold-start,slow-dependency,slow-service", "with --suite: the scenarios of the random apps")
	fs.IntVar(&s.jobs, "jobs", runtime.GOMAXPROCS(0), "with --suite: runs at once (the results do not depend on it)")
	fs.StringVar(&s.out, "suite-out", filepath.Join("docs", "suite.md"), "with --suite: the Markdown file to write")
	fs.StringVar(&s.goals, "goals", strings.Join(testbed.DefaultGoalPolicies, ","), "with --suite: the policies of --policies (by name: a .cue file's is its base name) whose cells the Markdown judges against the default policy's goals")
}

// runSuite runs bench --suite.
func runSuite(cmd *cobra.Command, f simFlags, s suiteFlags, policyList string, af agentFlags) error {
	if err := f.checkMaxRequests(); err != nil {
		return err
	}
	cfg := testbed.SuiteConfig{
		Scenarios:       splitList(s.scenarios),
		RandomScenarios: splitList(s.randomSc),
		Options:         testbed.ScenarioOptions{Warmup: f.warmup, Duration: f.duration, Load: f.load, Think: f.think, Burst: f.burst},
		Seed:            f.seed,
		Jobs:            s.jobs,
		Sharing:         f.sharing,
	}
	if s.random < 0 {
		return fmt.Errorf("--random %d: must be >= 0", s.random)
	}
	for seed := 1; seed <= s.random; seed++ {
		cfg.RandomApps = append(cfg.RandomApps, uint64(seed))
	}
	for _, name := range splitList(policyList) {
		p, err := resolvePolicy(name) // a policy made per app is made by the suite
		if err != nil {
			return err
		}
		p.PerAPI = f.perAPI
		for _, q := range cfg.Policies {
			if q.Name == p.Name {
				return fmt.Errorf("--policies: two policies named %q (a .cue file is named by its base name), whose columns and goals could not be told apart", p.Name)
			}
		}
		cfg.Policies = append(cfg.Policies, p)
	}
	cfg.Goals = splitList(s.goals)
	if cfg.Goals == nil {
		cfg.Goals = []string{}
	}
	if cmd.Flags().Changed("goals") {
		if err := cfg.CheckGoals(); err != nil {
			return fmt.Errorf("--%w", err)
		}
	}
	// A policy with an RLActuator runs in lock step with its agent.
	cfg.Run = func(ctx context.Context, c testbed.SimConfig) (testbed.Report, error) {
		c.MaxRequests = f.maxRequests
		if hasAgent(c.Policy) {
			return af.simulateWithAgent(ctx, c, io.Discard)
		}
		return testbed.Simulate(ctx, c)
	}
	for _, name := range splitList(s.apps) {
		app, err := resolveApp(name)
		if err != nil {
			return err
		}
		if f.sharing {
			app = testbed.WithSharing(app)
		}
		cfg.Apps = append(cfg.Apps, app)
	}
	bar := progressbar.NewOptions(cfg.Runs(),
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription("suite"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(cmd.ErrOrStderr()) }),
	)
	cfg.OnRun = func(testbed.SuiteCell) { bar.Add(1) }
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	defer stop()
	begin := time.Now()
	result, err := testbed.RunSuite(ctx, cfg)
	if err != nil {
		return err
	}
	line := commandLine(cmd, "suite", "policies", "agent-model", "per-api", "apps", "scenarios", "random", "random-scenarios", "seed", "warmup", "duration", "load", "think", "burst", "sharing", "goals", "suite-out")
	var md bytes.Buffer
	testbed.WriteSuiteMarkdown(&md, result, line)
	if dir := filepath.Dir(s.out); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(s.out, md.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%d runs in %v; wrote %s\n", cfg.Runs(), time.Since(begin).Round(time.Second), s.out)
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
