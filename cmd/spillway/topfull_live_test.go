//go:build !race

package main

// A live run times real servers and a real agent on the wall clock; under
// the race detector it would time the detector. scripts/test runs this
// without it, after the race run.

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// What deploys is what was benchmarked: the TopFull policy with its queue
// guard and the shipped agent, run live on loopback (the agent on the wall
// clock, as `spillway_agent run` runs it beside a service) and in virtual
// time in lock step, lands within 0.1 of goodput ÷ proportional on
// boutique priority-mix. On a quiet machine, 20 s of warm-up and 60 s of
// the scenario, eighteen live runs kept 0.850–0.96 against 0.913 virtual,
// and one 0.711: the agent on the wall clock sometimes cuts an API to its
// floor and spends the minute climbing back. So the median of live runs
// is compared, which such a run alone does not move. Virtual rose to 0.952
// on 2026-12-03 and live did not follow: four runs on a quiet machine kept
// 0.830–0.888 (one of them of the code before that day's changes), six
// beside other work 0.655–0.919, and the median of three missed twice
// that day. The median is of five runs, within the same 0.1.
func TestTopFullLiveLandsWithinATenthOfVirtual(t *testing.T) {
	run := func(virtual bool) float64 {
		t.Helper()
		dir := t.TempDir()
		args := []string{"bench", "--app", "boutique", "--scenario", "priority-mix", "--policies", "topfull-guard",
			"--warmup", "20s", "--duration", "60s", "--out", dir,
			"--agent-dir", "../../rlbridge/agent", "--agent-model", "../../rlbridge/agent/models/topfull.json"}
		if virtual {
			args = append(args, "--virtual")
		}
		out, err := runCLI(t, args...)
		if err != nil {
			t.Fatalf("virtual %v: %v\n%s", virtual, err, out)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "boutique-priority-mix.json"))
		if err != nil {
			t.Fatal(err)
		}
		var reports []struct {
			Driver string  `json:"driver"`
			Ratio  float64 `json:"goodput_per_proportional"`
		}
		if err := json.Unmarshal(raw, &reports); err != nil || len(reports) != 1 {
			t.Fatalf("virtual %v: %d reports, err %v\n%s", virtual, len(reports), err, raw)
		}
		if want := map[bool]string{true: "virtual", false: "live"}[virtual]; reports[0].Driver != want {
			t.Fatalf("driver %q, want %q", reports[0].Driver, want)
		}
		return reports[0].Ratio
	}
	virtual := run(true)
	lives := []float64{run(false), run(false), run(false), run(false), run(false)}
	live := slices.Clone(lives)
	slices.Sort(live)
	median := live[len(live)/2]
	t.Logf("boutique priority-mix under topfull-guard, goodput ÷ proportional: live %.3f (median of %.3f), virtual %.3f", median, lives, virtual)
	if d := math.Abs(median - virtual); !(d <= 0.1) || median == 0 {
		t.Errorf("live median %.3f (of %.3f), virtual %.3f: %.3f apart, want within 0.1", median, lives, virtual, d)
	}
}
