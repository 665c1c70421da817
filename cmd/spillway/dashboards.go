package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/dashboards"
)

func dashboardsCmd() *cobra.Command {
	var policies, out string
	cmd := &cobra.Command{
		Use:   "dashboards --policies DIR --out DIR",
		Short: "Write one Grafana dashboard (JSON) per policy",
		Long: `Dashboards compiles every policy in --policies and writes one Grafana
dashboard per policy to --out/<policy_name>.json: latency percentiles against
the setpoint, the rate limit, decisions per API, a panel for every signal of
the circuit, and the engine's tick duration and load errors. Every query
reads the metrics that the admin server's /metrics exports.

A policy's config.dashboard (refresh_interval, time_from, time_to,
datasource.name, datasource.filter_regex) is honoured; the defaults are
refresh 5s, now-15m to now, and a $datasource variable. Nothing is written
if any policy fails to load.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := dashboards.WriteDir(policies, out)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{}
			}
			for _, f := range files {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&policies, "policies", "policies", "directory of policy files")
	cmd.Flags().StringVar(&out, "out", "dashboards/grafana", "directory to write the dashboards to")
	return cmd
}
