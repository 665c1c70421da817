package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/testbed"
)

func benchCmd() *cobra.Command {
	var f simFlags
	var af agentFlags
	var policyList, outDir string
	var suite suiteFlags
	cmd := &cobra.Command{
		Use:   "bench [--app APP] [--scenario S] [--policies P,P,...] [--virtual] --out DIR | bench --suite [--random N] [--suite-out FILE]",
		Short: "Compare policies on one app and scenario, on the same seed; write a table and a plot",
		Long: `Run one app and scenario under each policy, on the same seed, print a
comparison table, and write into --out:

  APP-SCENARIO.md    the comparison table and the per-API figures (Markdown)
  APP-SCENARIO.svg   goodput and p99 per second, one line per policy
  APP-SCENARIO.json  every run's full report

Policies and scenarios are those of "spillway sim".

With --suite, run the control-quality matrix instead, in virtual time on
--seed: every policy on every app of --apps × scenario of --scenarios, plus
--random random apps (random:1 to random:N) × --random-scenarios, --jobs runs
at once, and write --suite-out (default docs/suite.md): goodput ÷ proportional
and ÷ optimal per cell, the suite means, and, for each policy of --goals
(default and default-slo unless set), the cells that miss the default
policy's goals: a policy of your own (a .cue file, named by its base name)
can be judged against them. The default matrix (13 policies,
4 apps × 15 scenarios plus 20 random apps × 6 scenarios, each 60 s after the
65 s warm-up) is 2,340 runs; it takes about 1.5 minutes on 2 idle cores, 5 on
2 busy ones.`,
		Example: `  spillway bench --app boutique --scenario surge --policies none,static,latency-aimd --virtual --out bench/
  spillway bench --suite
  spillway bench --suite --random 3 --scenarios steady,cold-start --suite-out /tmp/suite.md
  spillway bench --suite --policies static,default,mine.cue --goals default,mine --suite-out /tmp/mine.md`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if suite.enabled {
				if !cmd.Flags().Changed("policies") {
					policyList = suitePolicies
				}
				return runSuite(cmd, f, suite, policyList, af)
			}
			for _, name := range []string{"goals", "apps", "scenarios", "random", "random-scenarios", "suite-out", "jobs"} {
				if cmd.Flags().Changed(name) {
					return fmt.Errorf("--%s: only with --suite", name)
				}
			}
			app, sc, err := f.setup()
			if err != nil {
				return err
			}
			var policies []testbed.Policy
			for _, name := range strings.Split(policyList, ",") {
				p, err := resolvePolicyFor(strings.TrimSpace(name), app)
				if err != nil {
					return err
				}
				p.PerAPI = f.perAPI
				policies = append(policies, p)
			}
			if outDir == "" {
				return fmt.Errorf("--out: required")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			out := cmd.OutOrStdout()
			printHeaderLine(out, app, sc, f.virtual, f.seed)
			warnShortWarmup(cmd.ErrOrStderr(), sc.Warmup, policies...)
			reports, err := simulateAll(ctx, app, sc, policies, f.virtual, f.seed, f.maxRequests, af, out, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintln(out)
			printComparison(out, reports)
			line := commandLine(cmd, "app", "scenario", "load", "policies", "per-api", "virtual", "seed", "warmup", "duration", "out")
			return writeBench(outDir, app, sc, reports, line)
		},
	}
	f.register(cmd)
	af.registerAgent(cmd)
	cmd.Flags().StringVar(&policyList, "policies", "none,static,latency-target,latency-aimd", "comma-separated policies, as for sim --policy")
	cmd.Flags().StringVar(&outDir, "out", "", "directory for the Markdown table, the SVG plot and the JSON reports")
	suite.register(cmd)
	return cmd
}

// commandLine is how cmd was invoked: its path and the flags set, in the
// order of names.
func commandLine(cmd *cobra.Command, names ...string) string {
	line := []string{cmd.CommandPath()}
	for _, name := range names {
		f := cmd.Flags().Lookup(name)
		switch {
		case f == nil || !f.Changed:
		case f.Value.Type() == "bool":
			line = append(line, "--"+name)
		default:
			v := f.Value.String()
			if v == "" || strings.ContainsAny(v, " \t'\"") {
				v = strconv.Quote(v) // so that the line runs as it reads
			}
			line = append(line, "--"+name+" "+v)
		}
	}
	return strings.Join(line, " ")
}

func printHeaderLine(w io.Writer, app testbed.App, sc testbed.Scenario, virtual bool, seed uint64) {
	driver := "live"
	if virtual {
		driver = "virtual"
	}
	if sc.Think > 0 {
		driver += fmt.Sprintf(", closed-loop users thinking %v", sc.Think)
	}
	if sc.Burst > 1 {
		driver += fmt.Sprintf(", arrivals in batches of %d", sc.Burst)
	}
	fmt.Fprintf(w, "app %s (capacity %.0f req/s), scenario %s (load %g, %v after %v warm-up), %s, seed %d\n",
		app.Name, app.Capacity(), sc.Name, sc.Load, sc.Duration, sc.Warmup, driver, seed)
}

// comparisonColumns are the headline figures of each run, as table cells.
var comparisonColumns = []struct {
	title string
	cell  func(testbed.Report) string
}{
	{"policy", func(r testbed.Report) string { return r.Policy }},
	{"goodput ratio", func(r testbed.Report) string { return fmt.Sprintf("%.2f", r.GoodputRatio) }},
	{"÷ optimal", func(r testbed.Report) string { return fmt.Sprintf("%.2f", r.GoodputPerOptimal) }},
	{"goodput/s", func(r testbed.Report) string { return fmt.Sprintf("%.0f", r.GoodputRPS) }},
	{"goodput/capacity", func(r testbed.Report) string { return fmt.Sprintf("%.2f", r.GoodputPerCapacity) }},
	{"p50", func(r testbed.Report) string { return fmtMs(r.P50Ms) }},
	{"p99", func(r testbed.Report) string { return fmtMs(r.P99Ms) }},
	{"p99.9", func(r testbed.Report) string { return fmtMs(r.P999Ms) }},
	{"rejected", func(r testbed.Report) string { return fmt.Sprintf("%.0f%%", 100*r.RejectedRatio) }},
	{"recovery", func(r testbed.Report) string { return fmtRecovery(r.RecoveryS) }},
	{"steady ratio", func(r testbed.Report) string { return fmt.Sprintf("%.2f", r.Steady.GoodputRatio) }},
	{"steady ÷ optimal", func(r testbed.Report) string { return fmt.Sprintf("%.2f", r.Steady.GoodputPerOptimal) }},
	{"steady p99", func(r testbed.Report) string { return fmtMs(r.Steady.P99Ms) }},
	{"worst steady p99/SLO", func(r testbed.Report) string { return fmt.Sprintf("%.2f", worstSteadyP99OverSLO(r)) }},
}

// worstSteadyP99OverSLO is the largest per-API steady-state p99 / SLO.
func worstSteadyP99OverSLO(r testbed.Report) float64 {
	var worst float64
	for _, a := range r.PerAPI {
		worst = max(worst, a.Steady.P99Ms/a.SLOMs)
	}
	return worst
}

func printComparison(w io.Writer, reports []testbed.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, c := range comparisonColumns {
		fmt.Fprintf(tw, "%s\t", c.title)
	}
	fmt.Fprintln(tw)
	for _, r := range reports {
		for _, c := range comparisonColumns {
			fmt.Fprintf(tw, "%s\t", c.cell(r))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// writeBench writes the Markdown table, the SVG plot and the JSON reports.
func writeBench(dir string, app testbed.App, sc testbed.Scenario, reports []testbed.Report, command string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(dir, app.Name+"-"+sc.Name)
	var md bytes.Buffer
	writeMarkdown(&md, app, sc, reports, command, filepath.Base(base)+".svg")
	if err := os.WriteFile(base+".md", md.Bytes(), 0o644); err != nil {
		return err
	}
	var svg bytes.Buffer
	title := fmt.Sprintf("%s, %s (load %g), %s, seed %d", app.Name, sc.Name, sc.Load, reports[0].Driver, reports[0].Seed)
	if err := testbed.WritePlot(&svg, title, reports); err != nil {
		return err
	}
	if err := os.WriteFile(base+".svg", svg.Bytes(), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(reports, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(base+".json", append(js, '\n'), 0o644)
}

func writeMarkdown(w io.Writer, app testbed.App, sc testbed.Scenario, reports []testbed.Report, command, svg string) {
	r0 := reports[0]
	fmt.Fprintf(w, "## %s, %s\n\n", app.Name, sc.Name)
	fmt.Fprintf(w, "`%s`\n\n", command)
	fmt.Fprintf(w, "Capacity %.0f req/s at the nominal mix; load %g; %gs after a %gs warm-up; %s driver; seed %d. ",
		app.Capacity(), sc.Load, r0.DurationS, r0.WarmupS, r0.Driver, r0.Seed)
	if sc.Think > 0 {
		fmt.Fprintf(w, "Closed-loop clients: an API offered r req/s has r × %v users, each thinking an exponential time of mean %v between the end of one request and the next. ",
			sc.Think, sc.Think)
	}
	if sc.Burst > 1 {
		fmt.Fprintf(w, "Arrivals come in batches of %d requests at one instant, the batches Poisson at each API's rate ÷ %d. ", sc.Burst, sc.Burst)
	}
	fmt.Fprintf(w, "Figures cover the scenario after the warm-up; steady is its last half.\n\n")
	for _, c := range comparisonColumns {
		fmt.Fprintf(w, "| %s ", c.title)
	}
	fmt.Fprintln(w, "|")
	for range comparisonColumns {
		fmt.Fprint(w, "|---")
	}
	fmt.Fprintln(w, "|")
	for _, r := range reports {
		for _, c := range comparisonColumns {
			fmt.Fprintf(w, "| %s ", c.cell(r))
		}
		fmt.Fprintln(w, "|")
	}
	fmt.Fprintf(w, "\nPer API: goodput ÷ proportional / ÷ optimal / p99 / rejected.\n\n| api | prio | SLO |")
	for _, r := range reports {
		fmt.Fprintf(w, " %s |", r.Policy)
	}
	fmt.Fprint(w, "\n|---|---|---|")
	for range reports {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	for _, name := range r0.APIs {
		a := r0.PerAPI[name]
		fmt.Fprintf(w, "| %s | %d | %s |", name, a.Priority, fmtMs(a.SLOMs))
		for _, r := range reports {
			s := r.PerAPI[name]
			fmt.Fprintf(w, " %.2f / %.2f / %s / %.0f%% |", s.GoodputRatio, s.GoodputPerOptimal, fmtMs(s.P99Ms), 100*s.RejectedRatio)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\n![goodput and p99 per second](%s)\n", svg)
}
