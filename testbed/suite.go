package testbed

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
)

// SuiteConfig is a matrix of runs, all in virtual time on one seed:
// every policy on every app × scenario, plus random apps on their own
// scenarios. The same config gives the same results on any machine.
type SuiteConfig struct {
	Policies  []Policy
	Apps      []App
	Scenarios []string
	// RandomApps are the seeds of the random apps (RandomAppOf), which run
	// the RandomScenarios.
	RandomApps      []uint64
	RandomScenarios []string
	// Sharing runs every app, the random ones included, WithSharing.
	Sharing bool
	Options ScenarioOptions
	Seed    uint64
	// Jobs is how many runs go at once; < 1 means 1. Results do not
	// depend on it.
	Jobs int
	// OnRun, if not nil, is called after each run, from any goroutine but
	// never concurrently.
	OnRun func(SuiteCell)
	// Run, if not nil, runs instead of Simulate: the command line runs
	// policies with an RLActuator in lock step with their agent.
	Run func(context.Context, SimConfig) (Report, error)
	// Goals names the policies (Policy.Name, run as written) that
	// WriteSuiteMarkdown judges against the default's goals (GoalMisses);
	// nil judges DefaultGoalPolicies.
	Goals []string
}

// DefaultGoalPolicies are the policies a suite judges against the
// default's goals unless SuiteConfig.Goals names others.
var DefaultGoalPolicies = []string{"default", "default-slo"}

// CheckGoals reports a name in c.Goals that is no policy of c run as
// written, which would judge nothing, or one named twice.
func (c SuiteConfig) CheckGoals() error {
	for i, name := range c.Goals {
		switch {
		case slices.Contains(c.Goals[:i], name):
			return fmt.Errorf("goals: %q is named twice", name)
		case !slices.ContainsFunc(c.Policies, func(p Policy) bool { return p.Name == name && !p.PerAPI }):
			return fmt.Errorf("goals: %q is not a policy of the suite run as written (a policy run per API is judged by no goal)", name)
		}
	}
	return nil
}

// SuiteCell is one app × scenario of a suite: a report per policy, in
// SuiteConfig.Policies order.
type SuiteCell struct {
	App, Scenario string
	Random        bool
	Reports       []Report
}

// SuiteResult is a finished suite, its cells in order: the apps × scenarios,
// then the random apps × their scenarios.
type SuiteResult struct {
	Config SuiteConfig
	Cells  []SuiteCell
}

// Runs is the number of runs in the suite.
func (c SuiteConfig) Runs() int {
	return len(c.Policies) * (len(c.Apps)*len(c.Scenarios) + len(c.RandomApps)*len(c.RandomScenarios))
}

// RunSuite runs every cell of cfg. It stops at the first error.
func RunSuite(ctx context.Context, cfg SuiteConfig) (SuiteResult, error) {
	type job struct {
		cell, policy int
		app          App
		scenario     Scenario
		pol          Policy // cfg.Policies[policy], made for app
	}
	var cells []SuiteCell
	var jobs []job
	add := func(app App, names []string, random bool) error {
		for _, name := range names {
			sc, err := NewScenario(name, app, cfg.Options)
			if err != nil {
				return fmt.Errorf("app %s: %w", app.Name, err)
			}
			for p, pol := range cfg.Policies {
				if pol.ForApp != nil {
					made, err := pol.ForApp(app)
					if err != nil {
						return fmt.Errorf("app %s: %w", app.Name, err)
					}
					made.PerAPI = pol.PerAPI
					pol = made
				}
				jobs = append(jobs, job{cell: len(cells), policy: p, app: app, scenario: sc, pol: pol})
			}
			cells = append(cells, SuiteCell{App: app.Name, Scenario: name, Random: random, Reports: make([]Report, len(cfg.Policies))})
		}
		return nil
	}
	for _, app := range cfg.Apps {
		if err := add(app, cfg.Scenarios, false); err != nil {
			return SuiteResult{}, err
		}
	}
	for _, seed := range cfg.RandomApps {
		app := RandomAppOf(seed)
		if cfg.Sharing {
			app = WithSharing(app)
		}
		if err := add(app, cfg.RandomScenarios, true); err != nil {
			return SuiteResult{}, err
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		next     = make(chan job)
		wg       sync.WaitGroup
	)
	run := cfg.Run
	if run == nil {
		run = Simulate
	}
	for range max(cfg.Jobs, 1) {
		wg.Go(func() {
			for j := range next {
				r, err := run(ctx, SimConfig{App: j.app, Scenario: j.scenario, Policy: j.pol, Virtual: true, Seed: cfg.Seed})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("%s, %s, %s: %w", j.app.Name, j.scenario.Name, cfg.Policies[j.policy].Label(), err)
					cancel()
				}
				if err == nil {
					cells[j.cell].Reports[j.policy] = r
					if cfg.OnRun != nil {
						cfg.OnRun(cells[j.cell])
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		next <- j
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return SuiteResult{}, firstErr
	}
	return SuiteResult{Config: cfg, Cells: cells}, nil
}

// SuiteMean is one policy's means over some cells of a suite.
type SuiteMean struct {
	Cells int
	// Goodput ÷ proportional and ÷ optimal over the whole scenario and its
	// steady half.
	PerProportional, PerOptimal             float64
	SteadyPerProportional, SteadyPerOptimal float64
	// WorstAPISteadyPerProportional is the mean over cells of the lowest
	// steady goodput ÷ proportional of any API offered load.
	WorstAPISteadyPerProportional float64
	// SteadyP99WithinSLO is the fraction of cells in which every API's
	// steady p99 is within its SLO.
	SteadyP99WithinSLO float64
	// FeasibleCells are the cells in which the proportional oracle
	// (policy "static") keeps every API's steady p99 within its SLO, and
	// SteadyP99WithinFeasible the fraction of them in which this policy
	// does too. Where the oracle misses an SLO at the fair share, no
	// policy that delivers the fair share can be expected to meet it.
	// Both are zero when the suite has no static policy.
	FeasibleCells           int
	SteadyP99WithinFeasible float64
}

// p99WithinSLO reports whether every API's steady p99 is within its SLO.
func p99WithinSLO(r Report) bool {
	for _, name := range r.APIs {
		a := r.PerAPI[name]
		if a.Steady.P99Ms > a.SLOMs {
			return false
		}
	}
	return true
}

// staticIndex is the suite's proportional oracle among its policies, or -1.
func (s SuiteResult) staticIndex() int {
	for i, p := range s.Config.Policies {
		if p.Name == "static" && !p.PerAPI {
			return i
		}
	}
	return -1
}

// Means is policy p's means over the cells that keep says to.
func (s SuiteResult) Means(p int, keep func(SuiteCell) bool) SuiteMean {
	var m SuiteMean
	static := s.staticIndex()
	for _, c := range s.Cells {
		if !keep(c) {
			continue
		}
		r := c.Reports[p]
		m.Cells++
		m.PerProportional += r.GoodputPerProportional
		m.PerOptimal += r.GoodputPerOptimal
		m.SteadyPerProportional += r.Steady.GoodputPerProportional
		m.SteadyPerOptimal += r.Steady.GoodputPerOptimal
		worst := math.Inf(1)
		for _, name := range r.APIs {
			a := r.PerAPI[name]
			if a.Steady.ProportionalRPS > 0 {
				worst = math.Min(worst, a.Steady.GoodputPerProportional)
			}
		}
		if !math.IsInf(worst, 1) {
			m.WorstAPISteadyPerProportional += worst
		}
		within := p99WithinSLO(r)
		if within {
			m.SteadyP99WithinSLO++
		}
		if static >= 0 && p99WithinSLO(c.Reports[static]) {
			m.FeasibleCells++
			if within {
				m.SteadyP99WithinFeasible++
			}
		}
	}
	if m.FeasibleCells > 0 {
		m.SteadyP99WithinFeasible /= float64(m.FeasibleCells)
	}
	if m.Cells > 0 {
		n := float64(m.Cells)
		m.PerProportional /= n
		m.PerOptimal /= n
		m.SteadyPerProportional /= n
		m.SteadyPerOptimal /= n
		m.WorstAPISteadyPerProportional /= n
		m.SteadyP99WithinSLO /= n
	}
	return m
}

// WriteSuiteMarkdown writes the suite's table, per cell and policy goodput
// ÷ proportional / ÷ optimal over the whole scenario, then its means.
// command is how the suite was run, quoted at the top.
func WriteSuiteMarkdown(w io.Writer, s SuiteResult, command string) {
	cfg := s.Config
	fmt.Fprintf(w, "# Control-quality suite\n\nGenerated by `%s`. Virtual time, seed %d: the same command gives the same figures on any machine.\n\n", command, cfg.Seed)
	var apps []string
	for _, a := range cfg.Apps {
		apps = append(apps, a.Name)
	}
	fmt.Fprintf(w, "Apps %s × scenarios %s", strings.Join(apps, ", "), strings.Join(cfg.Scenarios, ", "))
	if len(cfg.RandomApps) > 0 {
		fmt.Fprintf(w, ", plus %d random apps (random:%d to random:%d) × scenarios %s", len(cfg.RandomApps), cfg.RandomApps[0], cfg.RandomApps[len(cfg.RandomApps)-1], strings.Join(cfg.RandomScenarios, ", "))
	}
	if cfg.Sharing {
		fmt.Fprint(w, ", every bounded service processor-sharing (`--sharing`)")
	}
	warmup := "the default warm-up"
	if cfg.Options.Warmup > 0 {
		warmup = cfg.Options.Warmup.String() + " of warm-up"
	}
	duration := DefaultDuration
	if cfg.Options.Duration > 0 {
		duration = cfg.Options.Duration
	}
	fmt.Fprintf(w, "; each scenario %v after %s (cold-start has none), at its default load.\n\n", duration, warmup)
	if cfg.Options.Burst > 1 {
		fmt.Fprintf(w, "Arrivals come in batches of %d requests at one instant, the batches Poisson at each API's rate ÷ %d: the same mean rate, in clumps.\n\n", cfg.Options.Burst, cfg.Options.Burst)
	}
	if cfg.Options.Think > 0 {
		fmt.Fprintf(w, "Clients are closed-loop: each API's rate is rate × %v users, who each wait for the answer, the refusal or the timeout and think for an exponential time of mean %v before the next request.\n\n", cfg.Options.Think, cfg.Options.Think)
	}
	fmt.Fprintf(w, "Policies run as written: a policy for API `*` is one controller for all APIs, and a file written for named APIs "+
		"(as `policies/mimd.cue` is for boutique's) protects only those, elsewhere nothing; `(per API)` marks a policy instantiated once per API.\n\n")
	fmt.Fprintf(w, "Each cell is goodput ÷ proportional / goodput ÷ optimal over the scenario after its warm-up. "+
		"*Proportional* is the offered mix scaled down uniformly until every bounded service fits (a fair share); "+
		"*optimal* is the goodput-maximal admission, the LP max Σ wᵢ·xᵢ subject to every bounded service's capacity "+
		"and 0 ≤ xᵢ ≤ offeredᵢ. Both are taken per second, capped at what was offered. "+
		"`static` and `static-optimal` are oracles that know the model: token buckets at 0.95 of each reference.\n\n")
	fmt.Fprint(w, "| app | scenario |")
	for _, p := range cfg.Policies {
		fmt.Fprintf(w, " %s |", p.Label())
	}
	fmt.Fprint(w, "\n|---|---|")
	for range cfg.Policies {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	for _, c := range s.Cells {
		fmt.Fprintf(w, "| %s | %s |", c.App, c.Scenario)
		for _, r := range c.Reports {
			fmt.Fprintf(w, " %.2f / %.2f |", r.GoodputPerProportional, r.GoodputPerOptimal)
		}
		fmt.Fprintln(w)
	}
	groups := []struct {
		name string
		keep func(SuiteCell) bool
	}{
		{"all cells", func(SuiteCell) bool { return true }},
		{"named apps", func(c SuiteCell) bool { return !c.Random }},
		{"random apps", func(c SuiteCell) bool { return c.Random }},
	}
	fmt.Fprintf(w, "\n## Suite means\n\n"+
		"Per policy: mean goodput ÷ proportional and ÷ optimal over the scenario and over its steady half (the last half), "+
		"the mean over cells of the worst API's steady goodput ÷ its proportional share, "+
		"and the share of cells in which every API's steady p99 is within its SLO: of all cells, "+
		"and of the cells where the proportional oracle `static` meets every SLO itself (*feasible*; "+
		"where even the oracle misses an SLO at the fair share, the app's own service-time variance does, "+
		"and no policy that delivers the fair share can be expected to meet it).\n\n")
	fmt.Fprintln(w, "| policy | cells | ÷ proportional | ÷ optimal | steady ÷ proportional | steady ÷ optimal | worst API steady ÷ proportional | steady p99 ≤ SLO | steady p99 ≤ SLO, feasible cells |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, g := range groups {
		if g.name == "random apps" && len(cfg.RandomApps) == 0 || g.name == "named apps" && len(cfg.Apps) == 0 {
			continue
		}
		for p, pol := range cfg.Policies {
			m := s.Means(p, g.keep)
			feasible := "–"
			if m.FeasibleCells > 0 {
				feasible = fmt.Sprintf("%.0f%% of %d", 100*m.SteadyP99WithinFeasible, m.FeasibleCells)
			}
			fmt.Fprintf(w, "| %s (%s) | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f%% | %s |\n", pol.Label(), g.name, m.Cells,
				m.PerProportional, m.PerOptimal, m.SteadyPerProportional, m.SteadyPerOptimal, m.WorstAPISteadyPerProportional, 100*m.SteadyP99WithinSLO, feasible)
		}
	}
	goals := s.Config.Goals
	if goals == nil {
		goals = DefaultGoalPolicies
	}
	for _, name := range goals {
		switch name {
		case "default":
			writeGoals(w, s, name, "The default policy against its goals")
		case "default-slo":
			writeGoals(w, s, name, "The default policy with the SLO stated against its goals")
		default:
			writeGoals(w, s, name, fmt.Sprintf("`%s` against the default policy's goals", name))
		}
	}
}

// writeGoals writes, for a suite that runs the policy name, which of the
// default's goals (GoalMisses) each cell misses, against the proportional oracle "static" when the suite runs it,
// under the heading title.
func writeGoals(w io.Writer, s SuiteResult, name, heading string) {
	def := -1
	for i, p := range s.Config.Policies {
		if p.Name == name && !p.PerAPI {
			def = i
		}
	}
	if def < 0 {
		return
	}
	static := s.staticIndex()
	type tally struct {
		cells, met, infeasible int
		misses                 []string
	}
	byGoal := map[string]*tally{}
	for _, g := range Goals {
		byGoal[g] = &tally{}
	}
	for _, c := range s.Cells {
		var oracle *Report
		if static >= 0 {
			oracle = &c.Reports[static]
		}
		missed := map[string][]GoalMiss{}
		for _, m := range GoalMisses(c.Reports[def], oracle) {
			missed[m.Goal] = append(missed[m.Goal], m)
		}
		for _, g := range Goals {
			if !goalApplies(g, c.Scenario) {
				continue
			}
			t := byGoal[g]
			t.cells++
			ms := missed[g]
			infeasible := len(ms) > 0
			for _, m := range ms {
				infeasible = infeasible && m.Infeasible
			}
			switch {
			case len(ms) == 0:
				t.met++
			case infeasible:
				t.infeasible++
			default:
				var details []string
				for _, m := range ms {
					if !m.Infeasible {
						details = append(details, m.Detail)
					}
				}
				if len(details) > 3 {
					details = append(details[:3], fmt.Sprintf("and %d more", len(details)-3))
				}
				t.misses = append(t.misses, fmt.Sprintf("%s %s: %s", c.App, c.Scenario, strings.Join(details, "; ")))
			}
		}
	}
	fmt.Fprintf(w, "\n## %s\n\n"+
		"Per goal, the cells where it applies, where `%s` meets it, where only the app misses it "+
		"(the proportional oracle `static` misses it too at the fair share: the same API's share or steady p99, a cold start's p99, the surge's recovery), "+
		"and the cells it misses. "+
		"The total goal is ≥ 0.95 of what the oracle keeps where the oracle itself keeps less than 0.9.\n\n", heading, name)
	fmt.Fprintln(w, "| goal | cells | met | the app's miss | missed |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, g := range Goals {
		t := byGoal[g]
		if t.cells == 0 {
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d |\n", g, t.cells, t.met, t.infeasible, len(t.misses))
	}
	for _, g := range Goals {
		t := byGoal[g]
		if len(t.misses) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nMissed, %s:\n\n", g)
		for _, m := range t.misses {
			fmt.Fprintf(w, "- %s\n", m)
		}
	}
}
