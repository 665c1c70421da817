package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/engine"
)

var (
	blueprintName = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	configPath    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
)

func renderCmd() *cobra.Command {
	var sets []string
	cmd := &cobra.Command{
		Use:   "render BLUEPRINT [--set key=value]...",
		Short: "Print the policy a blueprint expands to, as JSON",
		Example: `  spillway render latencyaimd --set policy_name=checkout \
    --set flux_meter.selector.control_point=ingress`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := renderSource(args[0], sets)
			if err != nil {
				return err
			}
			specs, diags := engine.LoadSource("render", src)
			if len(diags.Errors()) > 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), diags.Errors())
				return exitError{}
			}
			var out bytes.Buffer
			if err := json.Indent(&out, specs[0].Source, "", "  "); err != nil {
				return err
			}
			out.WriteByte('\n')
			_, err = cmd.OutOrStdout().Write(out.Bytes())
			return err
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "set a blueprint parameter, e.g. --set latency_baseliner.ema.warmup_window=10s")
	return cmd
}

// renderSource writes a one-policy CUE file from a blueprint and --set
// values. A value that parses as a number or boolean is one; anything else
// is a string.
func renderSource(blueprint string, sets []string) ([]byte, error) {
	if !blueprintName.MatchString(blueprint) {
		return nil, fmt.Errorf("blueprint %q: want a name such as latencyaimd", blueprint)
	}
	lines := map[string]string{}
	for _, s := range sets {
		key, value, ok := strings.Cut(s, "=")
		if !ok || !configPath.MatchString(key) {
			return nil, fmt.Errorf("--set %q: want key=value with a dotted key", s)
		}
		lines[key] = cueLiteral(value)
	}
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "package render\n\nimport bp \"spillway.dev/blueprints/%s\"\n\npolicies: rendered: bp.#Policy & {\n", blueprint)
	for _, k := range keys {
		fmt.Fprintf(&b, "\tconfig: %s: %s\n", strings.ReplaceAll(k, ".", ": "), lines[k])
	}
	b.WriteString("}\n")
	return []byte(b.String()), nil
}

func cueLiteral(v string) string {
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return v
	}
	if v == "true" || v == "false" {
		return v
	}
	return strconv.Quote(v)
}
