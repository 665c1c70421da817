package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// progressLine matches the per-second lines of sim.
var progressLine = regexp.MustCompile(`(?m)^ *-?\d+s +\d+ `)

// quick are the flags of a short virtual run.
var quick = []string{"--virtual", "--app", "two-tier", "--duration", "10s", "--warmup", "2s"}

func TestSimJSONHasTheSummaryFields(t *testing.T) {
	out, err := runCLI(t, append([]string{"sim", "--scenario", "surge", "--policy", "static", "--json"}, quick...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var summary map[string]any
	if err := json.Unmarshal([]byte(out), &summary); err != nil {
		t.Fatalf("--json output is not one JSON object (progress lines must be silenced): %v\n%s", err, out)
	}
	for _, key := range []string{"goodput_ratio", "p99_ms", "rejected_ratio", "recovery_s", "per_api"} {
		if _, ok := summary[key]; !ok {
			t.Errorf("summary has no %q", key)
		}
	}
	api, _ := summary["per_api"].(map[string]any)["api"].(map[string]any)
	for _, key := range []string{"goodput_ratio", "p99_ms", "p999_ms", "rejected_ratio", "recovery_s", "slo_ms", "priority", "capacity_alone_rps"} {
		if _, ok := api[key]; !ok {
			t.Errorf("per_api.api has no %q", key)
		}
	}
	if summary["policy"] != "static" || summary["driver"] != "virtual" || summary["goodput_ratio"].(float64) < 0.8 {
		t.Errorf("unexpected summary: policy %v, driver %v, goodput ratio %v", summary["policy"], summary["driver"], summary["goodput_ratio"])
	}
}

func TestSimPrintsOneLinePerSecondAndASummary(t *testing.T) {
	out, err := runCLI(t, append([]string{"sim", "--scenario", "steady", "--policy", "none"}, quick...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if seconds := len(progressLine.FindAllString(out, -1)); seconds != 12 {
		t.Errorf("%d progress lines, want 12 (2 s warm-up + 10 s)\n%s", seconds, out)
	}
	for _, want := range []string{"app two-tier: capacity 320 req/s", "two-tier under none, steady scenario", "  total ", "never", "× real time"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSimRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.json")
	os.WriteFile(broken, []byte(`{"name": "x", "entry": "web", "services": [{"name": "web"}], "apis": []}`), 0o644)
	huge := filepath.Join(dir, "huge.json")
	os.WriteFile(huge, []byte(`{"name": "huge", "entry": "web", "services": [{"name": "web"}, {"name": "kv", "workers": 1000000}],
  "apis": [{"name": "get", "slo": "10ms", "calls": [{"service": "kv", "time": {"kind": "constant", "mean": "1us"}}]}]}`), 0o644)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--app", "shop"}, `unknown app "shop" (built-in: boutique, hetero-cost, multi-bottleneck, two-tier; random:SEED; or give a .json file)`},
		{[]string{"--scenario", "tsunami"}, `unknown scenario "tsunami" (known: steady, surge, ramp, capacity-drop, flash-crowd, priority-mix, cold-start, retry-storm, slow-drift, mix-shift, slow-dependency, hung-dependency, slow-api, slow-service, scale-out)`},
		{[]string{"--policy", "magic"}, `unknown policy "magic": want none, static, static-optimal, dagor, default-slo, topfull-guard, topfull-dynamic, topfull-guard-dynamic, default, envoy-gradient, gradient2, latency-aimd, latency-aimd-fast, latency-target, mimd, topfull, vegas, or a .cue file`},
		{[]string{"--policy", "missing.cue"}, "missing.cue: no such file or directory"},
		{[]string{"--policy", "latency-target"}, "policy latency-target: policies/latency-target.cue not found (run from the repository root)"},
		{[]string{"--app", broken}, "broken.json: apis: must have at least one API"},
		{[]string{"--app", filepath.Join(dir, "absent.json")}, "absent.json: no such file or directory"},
		{[]string{"--duration", "3s"}, "duration 3s: must be >= 10s"},
		{[]string{"--max-requests", "0"}, "--max-requests 0: must be > 0"},
		{[]string{"--think", "-1s"}, "think time -1s: must be >= 0 (0: open-loop clients)"},
		// A run is bounded in time and memory: a million workers of a
		// microsecond offer a million million requests a second.
		{[]string{"--app", huge}, "scenario steady on app huge offers about 2.72e+14 requests (retries counted), over the budget of 5e+07 a run"},
		{[]string{"--app", "two-tier", "--duration", "1000h"}, "over the budget of 5e+07 a run"},
		{[]string{"--app", "two-tier", "--max-requests", "1000"}, "offers about 8.72e+04 requests (retries counted), over the budget of 1e+03 a run"},
	}
	for _, tt := range tests {
		out, err := runCLI(t, append([]string{"sim", "--virtual"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("sim %v: err = %v, want it to contain %q\n%s", tt.args, err, tt.want, out)
		}
	}
	if out, err := runCLI(t, "sim", "--app", "two-tier", "--think", "20s"); err == nil || !strings.Contains(err.Error(), "closed-loop users, over the live load generator's 20000") {
		t.Errorf("sim --think 20s, live: err = %v, want it refused\n%s", err, out)
	}
}

func TestSimNamedPolicyWithoutItsFileUsesTheBlueprint(t *testing.T) {
	// The tests run in cmd/spillway, which has no policies/ directory.
	out, err := runCLI(t, append([]string{"sim", "--policy", "latency-aimd", "--json"}, quick...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, `"policy": "latency-aimd"`) {
		t.Errorf("report does not name the policy:\n%.300s", out)
	}
}

func TestSimDagorShedsInsideTheAppInVirtualTimeOnly(t *testing.T) {
	out, err := runCLI(t, append([]string{"sim", "--scenario", "surge", "--policy", "dagor", "--json"}, quick...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, `"policy": "dagor"`) {
		t.Errorf("report does not name the policy:\n%.300s", out)
	}
	out, err = runCLI(t, "sim", "--app", "two-tier", "--policy", "dagor", "--duration", "10s", "--warmup", "2s")
	if err == nil || !strings.Contains(err.Error(), "--virtual") {
		t.Errorf("live sim --policy dagor: err = %v, want it to ask for --virtual\n%.300s", err, out)
	}
}

func TestSimLoadsAnAppFromJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shop.json")
	os.WriteFile(path, []byte(`{
  "name": "shop", "entry": "web",
  "services": [{"name": "web"}, {"name": "db", "workers": 2}],
  "apis": [{"name": "browse", "slo": "100ms", "calls": [{"service": "db", "time": {"kind": "exponential", "mean": "10ms"}}]}]
}`), 0o644)
	out, err := runCLI(t, "sim", "--virtual", "--app", path, "--policy", "static", "--duration", "10s", "--warmup", "2s", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var r struct {
		App            string  `json:"app"`
		AppCapacityRPS float64 `json:"app_capacity_rps"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.App != "shop" || r.AppCapacityRPS != 200 {
		t.Errorf("got %+v (%v), want app shop with capacity 200 req/s", r, err)
	}
}

func TestBenchWritesTableAndPlot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	out, err := runCLI(t, append([]string{"bench", "--scenario", "surge", "--policies", "none,static", "--out", dir}, quick...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	rows := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if fields := strings.Fields(line); len(fields) == len(comparisonColumns) {
			rows[fields[0]] = true
		}
	}
	if !rows["none"] || !rows["static"] {
		t.Errorf("comparison table lacks a row per policy:\n%s", out)
	}
	md, err := os.ReadFile(filepath.Join(dir, "two-tier-surge.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| none |", "| static |", "bench --app two-tier", "--policies none,static", "![goodput and p99 per second](two-tier-surge.svg)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	svg, err := os.ReadFile(filepath.Join(dir, "two-tier-surge.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(svg), "<svg") || strings.Count(string(svg), "<polyline") != 5 {
		t.Errorf("plot is not an SVG with goodput and p99 lines per policy plus capacity:\n%.400s", svg)
	}
	var reports []map[string]any
	js, _ := os.ReadFile(filepath.Join(dir, "two-tier-surge.json"))
	if err := json.Unmarshal(js, &reports); err != nil || len(reports) != 2 {
		t.Errorf("JSON reports: %v, %d reports; want 2", err, len(reports))
	}
}

func TestBenchSuiteRejectsABudgetNoRunFits(t *testing.T) {
	out, err := runCLI(t, "bench", "--suite", "--max-requests", "-1", "--random", "0", "--suite-out", filepath.Join(t.TempDir(), "s.md"))
	if err == nil || !strings.Contains(err.Error(), "--max-requests -1: must be > 0") {
		t.Errorf("err = %v, output:\n%s\nwant the budget refused before any run", err, out)
	}
}

func TestBenchSuiteRejectsGoalsOfAPolicyItDoesNotRun(t *testing.T) {
	out, err := runCLI(t, "bench", "--suite", "--policies", "none,static", "--goals", "default", "--random", "0", "--suite-out", filepath.Join(t.TempDir(), "s.md"))
	if err == nil || !strings.Contains(err.Error(), `--goals: "default" is not a policy of the suite run as written`) || strings.Contains(out, "runs in") {
		t.Errorf("err = %v, output:\n%s\nwant the goals refused before any run", err, out)
	}
}

func TestBenchSuiteRejectsTwoPoliciesOfOneName(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "..", "policies", "default.cue"))
	if err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "default.cue")
	if err := os.WriteFile(mine, src, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "bench", "--suite", "--policies", "default,"+mine, "--random", "0", "--suite-out", filepath.Join(dir, "s.md"))
	if err == nil || !strings.Contains(err.Error(), `--policies: two policies named "default"`) || strings.Contains(out, "runs in") {
		t.Errorf("err = %v, output:\n%s\nwant the clash refused before any run", err, out)
	}
}

func TestBenchRejectsSuiteFlagsWithoutSuite(t *testing.T) {
	out, err := runCLI(t, append([]string{"bench", "--policies", "none", "--goals", "none", "--out", t.TempDir()}, quick...)...)
	if err == nil || !strings.Contains(err.Error(), "--goals: only with --suite") || strings.Contains(out, "goodput ratio") {
		t.Errorf("err = %v, output:\n%s\nwant --goals refused without --suite", err, out)
	}
}

func TestBenchRejectsAnUnknownPolicyBeforeRunning(t *testing.T) {
	out, err := runCLI(t, append([]string{"bench", "--policies", "none,nope", "--out", t.TempDir()}, quick...)...)
	if err == nil || !strings.Contains(err.Error(), `unknown policy "nope"`) || strings.Contains(out, "goodput ratio") {
		t.Errorf("err = %v, output:\n%s\nwant the unknown policy reported before any run", err, out)
	}
}

// topfullFlags run the boutique TopFull policy with the shipped agent, from
// this package's directory.
var topfullFlags = []string{"sim", "--app", "boutique", "--scenario", "priority-mix", "--virtual", "--duration", "10s", "--warmup", "2s",
	"--policy", "../../policies/topfull.cue", "--agent-dir", "../../rlbridge/agent"}

func TestSimRunsTopFullWithTheShippedAgentInLockStep(t *testing.T) {
	out, err := runCLI(t, append(topfullFlags, "--agent-model", "../../rlbridge/agent/models/topfull.json")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"run: clusters checkout, default", "server reports the scenario done", "boutique under topfull"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// topfull-dynamic runs the agent with --clusters dynamic, on the clusters
// the simulator's per-service overload forms.
func TestSimRunsTopFullWithDynamicClusters(t *testing.T) {
	out, err := runCLI(t, "sim", "--app", "multi-bottleneck", "--scenario", "steady", "--virtual", "--duration", "10s", "--warmup", "2s",
		"--policy", "topfull-dynamic", "--agent-dir", "../../rlbridge/agent", "--agent-model", "../../rlbridge/agent/models/topfull.json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"run: dynamic clusters over 4 APIs, apply cost, obs v2, lockstep", "server reports the scenario done", "multi-bottleneck under topfull-dynamic"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A live run starts the agent on the wall clock against the run's engine,
// as a deployment runs it.
func TestSimRunsTopFullLiveWithTheAgentOnTheWallClock(t *testing.T) {
	// In parallel with the tests that share nothing with it: it mostly waits
	// on the wall clock, and it asserts only the agent's first step in 12 s
	// (a loaded machine under -race has reached the seventh) and the report,
	// so it offers a third of the scenario's load: the load generator
	// under -race then costs half the CPU the other tests need.
	t.Parallel()
	out, err := runCLI(t, "sim", "--app", "two-tier", "--scenario", "steady", "--load", "0.3", "--duration", "10s", "--warmup", "2s",
		"--policy", "topfull", "--agent-dir", "../../rlbridge/agent", "--agent-model", "../../rlbridge/agent/models/topfull.json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The agent prints its first step and every tenth: a busy machine may
	// take seconds to start it, so the first is what the run must show.
	for _, want := range []string{"run: clusters api (1 APIs), apply cost, obs v2, wall clock", "step 1  cluster api", "two-tier under topfull, steady scenario (10s after 2s warm-up), live"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSimFailsWhenTheAgentFails(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"format": "something else"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, append(topfullFlags, "--agent-model", bad)...)
	if err == nil || !strings.Contains(err.Error(), "the agent failed before the run ended") || !strings.Contains(err.Error(), "not a spillway-ppo model") {
		t.Errorf("err = %v, want the agent's failure and its message\n%s", err, out)
	}
}

func TestBenchSuiteWritesItsTable(t *testing.T) {
	out := filepath.Join(t.TempDir(), "suite.md")
	stdout, err := runCLI(t, "bench", "--suite", "--policies", "none,static,static-optimal", "--apps", "hetero-cost",
		"--scenarios", "cold-start", "--random", "1", "--random-scenarios", "steady", "--duration", "10s", "--warmup", "2s",
		"--goals", "static-optimal", "--suite-out", out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "6 runs in") {
		t.Errorf("stdout = %q, want the run count", stdout)
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Generated by `spillway bench --suite --policies none,static,static-optimal --apps hetero-cost", "| hetero-cost | cold-start |", "| random-1 | steady |", "static-optimal (random apps)",
		"## `static-optimal` against the default policy's goals", "| cold start: first 10 s ≥ 0.7 of proportional | 1 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("suite.md lacks %q:\n%s", want, md)
		}
	}
}

// A warm-up shorter than a policy's warmup_window gets one warning line
// per such policy; none and static have no warm-up of their own.
func TestSimAndBenchWarnWhenTheWarmupIsShorterThanThePolicys(t *testing.T) {
	warning := regexp.MustCompile(`(?m)^warning: --warmup 2s is shorter than policy latency-aimd's warmup_window 1m0s; `)
	out, err := runCLI(t, append([]string{"sim", "--policy", "latency-aimd", "--json"}, quick...)...)
	if err != nil || len(warning.FindAllString(out, -1)) != 1 {
		t.Fatalf("sim: %v, want one warning:\n%.600s", err, out)
	}
	out, err = runCLI(t, append([]string{"bench", "--policies", "none,static,latency-aimd", "--out", t.TempDir()}, quick...)...)
	if err != nil || len(warning.FindAllString(out, -1)) != 1 || strings.Count(out, "warning:") != 1 {
		t.Fatalf("bench: %v, want one warning, for latency-aimd only:\n%s", err, out)
	}
	if p, err := resolvePolicy("latency-aimd"); err != nil || policyWarmup(p) != time.Minute {
		t.Fatalf("latency-aimd's warm-up: %v (%v), want its EMA's 60s", policyWarmup(p), err)
	}
}

// --sharing serves every bounded service of every app the suite runs,
// the random ones too, by processor sharing, and says so; the live driver
// refuses it.
func TestBenchSuiteWithSharing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "suite.md")
	if _, err := runCLI(t, "bench", "--suite", "--sharing", "--policies", "static", "--apps", "hetero-cost",
		"--scenarios", "steady", "--random", "1", "--random-scenarios", "steady", "--duration", "10s", "--warmup", "2s",
		"--goals", "static", "--suite-out", out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Generated by `spillway bench --suite --policies static --apps hetero-cost", "--sharing --goals static", "| hetero-cost-ps | steady |", "| random-1-ps | steady |", "every bounded service processor-sharing (`--sharing`)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("suite.md lacks %q:\n%s", want, md)
		}
	}
	if _, err := runCLI(t, "sim", "--app", "hetero-cost", "--sharing", "--duration", "10s", "--warmup", "2s"); err == nil || !strings.Contains(err.Error(), "virtual time only") {
		t.Errorf("sim --sharing, live: %v, want an error", err)
	}
}
