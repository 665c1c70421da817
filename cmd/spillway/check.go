package main

import (
	"encoding/json"
	"fmt"

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
	cmd := &cobra.Command{
		Use:   "check PATH...",
		Short: "Validate policy files and directories; list loop edges read one tick late",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			report := check(args)
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
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func check(paths []string) checkReport {
	report := checkReport{Errors: []engine.Diagnostic{}, Warnings: []engine.Diagnostic{}, Policies: []checkedPolicy{}}
	specs, diags := engine.LoadPaths(paths)
	for _, s := range specs {
		c, d := engine.Compile(s)
		diags = append(diags, d...)
		if c != nil {
			edges := c.Delayed
			if edges == nil {
				edges = []engine.DelayedEdge{}
			}
			report.Policies = append(report.Policies, checkedPolicy{Name: s.Name, File: s.File, Components: len(s.Components), DelayedEdges: edges})
		}
	}
	report.Errors = append(report.Errors, diags.Errors()...)
	report.Warnings = append(report.Warnings, diags.Warnings()...)
	report.OK = len(report.Errors) == 0
	return report
}
