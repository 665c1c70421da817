package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/engine"
)

// checkReport is the --json output of `spillway check`.
type checkReport struct {
	OK       bool                `json:"ok"`
	Errors   []engine.Diagnostic `json:"errors"`
	Warnings []engine.Diagnostic `json:"warnings"`
	Policies []checkedPolicy     `json:"policies"`
}

type checkedPolicy struct {
	Name         string               `json:"name"`
	File         string               `json:"file"`
	Components   int                  `json:"components"`
	DelayedEdges []engine.DelayedEdge `json:"delayed_edges"`
}

func checkCmd() *cobra.Command {
	var asJSON bool
	var watch string
	cmd := &cobra.Command{
		Use:   "check PATH... | check --watch DIR",
		Short: "Validate policy files and directories; list loop edges read one tick late",
		Long: `Check loads, validates and compiles policies exactly as the engine does and
prints every problem as path:line:col: message. It exits 1 when there is one.

With --watch DIR it checks DIR, then re-checks it after every save until
interrupted.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if watch != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.MinimumNArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if watch != "" {
				return checkWatch(cmd, watch, asJSON)
			}
			return printCheck(cmd, check(args), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().StringVar(&watch, "watch", "", "re-check `DIR` after every save, until interrupted")
	return cmd
}

// checkWatch checks dir on every change until the command's context ends.
// A watch that fails is retried meanwhile (see engine.WatchDir).
func checkWatch(cmd *cobra.Command, dir string, asJSON bool) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := cmd.OutOrStdout()
	run := func() {
		if !asJSON {
			fmt.Fprintf(out, "--- %s check %s\n", time.Now().Format("15:04:05.000"), dir)
		}
		_ = printCheck(cmd, check([]string{dir}), asJSON)
	}
	// The first check runs once the watch is set up (or has failed and is
	// being retried), so that a save right after it is never missed.
	var first sync.Once
	engine.WatchDir(ctx, dir, engine.DefaultDebounce, nil, run, func(error) { first.Do(run) })
	return nil
}

// printCheck prints a report; it fails when the report has errors.
func printCheck(cmd *cobra.Command, report checkReport, asJSON bool) error {
	out := cmd.OutOrStdout()
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		for _, d := range report.Errors {
			fmt.Fprintln(out, d)
		}
		for _, d := range report.Warnings {
			fmt.Fprintln(out, d)
		}
		for _, p := range report.Policies {
			fmt.Fprintf(out, "%s: policy %s: %d components, %d delayed loop edges\n", p.File, p.Name, p.Components, len(p.DelayedEdges))
			for _, d := range p.DelayedEdges {
				fmt.Fprintf(out, "  %s\n", d)
			}
		}
	}
	if !report.OK {
		return exitError{}
	}
	return nil
}

func check(paths []string) checkReport {
	report := checkReport{Errors: []engine.Diagnostic{}, Warnings: []engine.Diagnostic{}, Policies: []checkedPolicy{}}
	specs, diags := engine.LoadPaths(paths)
	var circuits []*engine.Circuit
	for _, s := range specs {
		c, d := engine.Compile(s)
		diags = append(diags, d...)
		if c != nil {
			circuits = append(circuits, c)
			edges := c.Delayed
			if edges == nil {
				edges = []engine.DelayedEdge{}
			}
			report.Policies = append(report.Policies, checkedPolicy{Name: s.Name, File: s.File, Components: len(s.Components), DelayedEdges: edges})
		}
	}
	// Files that failed do not hide the others: what loaded is compiled and
	// what compiled is checked as a set, whatever failed beside it.
	diags = append(diags, engine.CheckSet(circuits)...)
	report.Errors = append(report.Errors, diags.Errors()...)
	report.Warnings = append(report.Warnings, diags.Warnings()...)
	report.OK = len(report.Errors) == 0
	return report
}
