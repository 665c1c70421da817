package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/blueprints"
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
			specs, diags := engine.LoadSource(renderedName, src)
			if len(diags.Errors()) > 0 {
				fmt.Fprint(cmd.ErrOrStderr(), renderErrors(diags.Errors(), sets, src))
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

// renderedName is the name of the source render writes, in positions.
const renderedName = "rendered.cue"

// renderConfig prefixes the field paths of the rendered policy's config.
const renderConfig = "policies.rendered.config."

// renderErrors words load errors in terms of the command line: an error
// in a blueprint parameter names its --set flag (or the flag to add, for
// a missing one); any other error is positioned in the rendered source,
// which is printed after the errors with line numbers.
func renderErrors(diags engine.Diagnostics, sets []string, src []byte) string {
	given := map[string]string{}
	for _, s := range sets {
		key, _, _ := strings.Cut(s, "=")
		given[key] = s
	}
	var b strings.Builder
	inSource := false
	// flagUnder is the --set flag that wrote key or a field under it.
	flagUnder := func(key string) string {
		for _, k := range slices.Sorted(maps.Keys(given)) {
			if strings.HasPrefix(k, key+".") {
				return given[k]
			}
		}
		return ""
	}
	for _, d := range diags {
		fieldPath, problem, ok := strings.Cut(d.Message, ": ")
		key, isConfig := strings.CutPrefix(fieldPath, renderConfig)
		switch {
		case ok && isConfig && given[key] != "":
			fmt.Fprintf(&b, "--set %s: %s\n", given[key], problem)
		case ok && isConfig && flagUnder(key) != "":
			fmt.Fprintf(&b, "--set %s: %s: %s\n", flagUnder(key), key, problem)
		case ok && isConfig && strings.HasPrefix(problem, "required field is missing"):
			fmt.Fprintf(&b, "%s: %s; set it with --set %s=VALUE\n", key, problem, key)
		case ok && isConfig:
			fmt.Fprintf(&b, "%s: %s\n", key, problem)
		default:
			fmt.Fprintln(&b, d)
			inSource = inSource || d.Pos.File == renderedName
		}
	}
	if inSource {
		fmt.Fprintf(&b, "\n%s, as rendered from the blueprint and the --set values:\n", renderedName)
		for i, line := range strings.Split(strings.TrimSuffix(string(src), "\n"), "\n") {
			fmt.Fprintf(&b, "%4d  %s\n", i+1, line)
		}
	}
	return b.String()
}

// renderSource writes a one-policy CUE file from a blueprint and --set
// values. A value that parses as a number or boolean is one; anything else
// is a string.
func renderSource(blueprint string, sets []string) ([]byte, error) {
	if !blueprintName.MatchString(blueprint) || !slices.Contains(blueprints.Names(), blueprint) {
		return nil, fmt.Errorf("unknown blueprint %q (the blueprints are %s)", blueprint, strings.Join(blueprints.Names(), ", "))
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
