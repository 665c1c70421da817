package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/spillway-dev/spillway/components"
	"github.com/spillway-dev/spillway/testbed"
)

// liveProgress is the progress bar of a live sim or bench run: total
// seconds of scenario, counted as they end, with the elapsed and the
// remaining time, on w. It draws only when w is a
// terminal, so redirected output and pipes stay free of carriage returns;
// elsewhere it is a bar that draws nothing.
func liveProgress(w io.Writer, total int, description string) *progressbar.ProgressBar {
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetVisibility(isTerminal(w)),
		progressbar.OptionSetDescription(description),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// stopProgress erases bar from its line, so that what follows (an error,
// say) starts at the left margin, and stops it.
func stopProgress(bar *progressbar.ProgressBar) {
	bar.Clear()
	bar.Exit()
}

// isTerminal reports whether w is a character device, as a terminal is.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// policyWarmup is the longest warmup_window among the components of p's
// templates (EMA's, in the shipped blueprints): the light load a policy
// needs before its baselines mean anything. 0 when no component has one.
func policyWarmup(p testbed.Policy) time.Duration {
	var longest time.Duration
	for _, spec := range p.Templates {
		for _, c := range spec.Components {
			var params struct {
				Warmup components.Duration `json:"warmup_window"`
			}
			if json.Unmarshal(c.Params, &params) == nil {
				longest = max(longest, time.Duration(params.Warmup))
			}
		}
	}
	return longest
}

// warnShortWarmup writes one line to w for each policy whose own warm-up
// is longer than the run's --warmup, since a comparison of such a run
// measures a policy that has not learned its baseline.
func warnShortWarmup(w io.Writer, warmup time.Duration, policies ...testbed.Policy) {
	for _, p := range policies {
		if need := policyWarmup(p); warmup < need {
			fmt.Fprintf(w, "warning: --warmup %v is shorter than policy %s's warmup_window %v; its baseline is not learned before the scenario starts\n", warmup, p.Label(), need)
		}
	}
}
