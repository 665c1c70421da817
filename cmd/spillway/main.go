// Command spillway checks, renders and runs Spillway policies, and runs the
// overload demo.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		if _, quiet := err.(exitError); !quiet {
			fmt.Fprintln(os.Stderr, "spillway:", err)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "spillway",
		Short:         "Adaptive overload control for Go services",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(checkCmd(), renderCmd(), runCmd(), proxyCmd(), demoCmd(), simCmd(), benchCmd(), dashboardsCmd(), cueCmd())
	return root
}

// exitError fails the command after its output was already printed.
type exitError struct{}

func (exitError) Error() string { return "failed" }
