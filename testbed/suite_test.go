package testbed

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"
)

func TestSuiteIsDeterministicWhateverItsParallelism(t *testing.T) {
	t.Parallel() // virtual time: the machine's load cannot change what it asserts
	cfg := SuiteConfig{
		Policies:        []Policy{NoPolicy(), StaticPolicy(), StaticOptimalPolicy()},
		Apps:            []App{HeteroCost()},
		Scenarios:       []string{"steady", "cold-start"},
		RandomApps:      []uint64{1},
		RandomScenarios: []string{"steady"},
		Options:         ScenarioOptions{Warmup: 2 * time.Second, Duration: 10 * time.Second},
		Seed:            1,
	}
	if got := cfg.Runs(); got != 9 {
		t.Fatalf("Runs() = %d, want 3 policies × 3 cells", got)
	}
	var tables []string
	for _, jobs := range []int{1, 3} {
		cfg.Jobs = jobs
		runs := 0
		cfg.OnRun = func(SuiteCell) { runs++ }
		r, err := RunSuite(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if runs != cfg.Runs() {
			t.Errorf("OnRun called %d times, want %d", runs, cfg.Runs())
		}
		var b bytes.Buffer
		WriteSuiteMarkdown(&b, r, "spillway bench --suite")
		tables = append(tables, b.String())
		// On hetero-cost the optimal oracle reaches 0.95 of the optimum,
		// far above the proportional share.
		steady := r.Cells[0].Reports
		if got := steady[2].GoodputPerOptimal; got < 0.9 {
			t.Errorf("static-optimal on hetero-cost: goodput ÷ optimal %.2f, want >= 0.9", got)
		}
		if got := steady[1].GoodputPerOptimal; got > 0.5 {
			t.Errorf("static on hetero-cost: goodput ÷ optimal %.2f, want < 0.5: proportional is far below the limit", got)
		}
	}
	if tables[0] != tables[1] {
		t.Errorf("the suite differs between 1 and 3 jobs:\n%s\n%s", tables[0], tables[1])
	}
	for _, want := range []string{"| hetero-cost | cold-start |", "| random-1 | steady |", "| static-optimal (all cells) | 3 |"} {
		if !strings.Contains(tables[0], want) {
			t.Errorf("the table lacks %q:\n%s", want, tables[0])
		}
	}
}

// TestSuiteMeansCountFeasibleCellsByTheOracle: the feasible cells are those
// where the static oracle meets every SLO, and a policy's share is taken
// over them only.
func TestSuiteMeansCountFeasibleCellsByTheOracle(t *testing.T) {
	report := func(p99s ...float64) Report {
		r := Report{PerAPI: map[string]APIStats{}}
		for i, p99 := range p99s {
			name := string(rune('a' + i))
			r.APIs = append(r.APIs, name)
			a := APIStats{SLOMs: 100}
			a.Steady.P99Ms = p99
			r.PerAPI[name] = a
		}
		return r
	}
	s := SuiteResult{
		Config: SuiteConfig{Policies: []Policy{{Name: "static"}, {Name: "other"}}},
		Cells: []SuiteCell{
			{Reports: []Report{report(50, 90), report(80, 120)}},  // feasible, other misses
			{Reports: []Report{report(50, 150), report(80, 99)}},  // infeasible, other meets
			{Reports: []Report{report(100, 10), report(100, 10)}}, // feasible, both meet
		},
	}
	all := func(SuiteCell) bool { return true }
	m := s.Means(1, all)
	if m.FeasibleCells != 2 || m.SteadyP99WithinFeasible != 0.5 || math.Abs(m.SteadyP99WithinSLO-2.0/3) > 1e-12 {
		t.Errorf("other: feasible %d, within feasible %v, within all %v; want 2, 0.5, 2/3", m.FeasibleCells, m.SteadyP99WithinFeasible, m.SteadyP99WithinSLO)
	}
	if m := s.Means(0, all); m.SteadyP99WithinFeasible != 1 {
		t.Errorf("static within its own feasible cells %v, want 1", m.SteadyP99WithinFeasible)
	}
	s.Config.Policies[0].Name = "none"
	if m := s.Means(1, all); m.FeasibleCells != 0 || m.SteadyP99WithinFeasible != 0 {
		t.Errorf("without static: feasible %d, %v; want none", m.FeasibleCells, m.SteadyP99WithinFeasible)
	}
}

// TestSuiteJudgesTheNamedPoliciesAgainstTheGoals: Goals picks the policies
// whose cells the Markdown judges against the default's goals, nil keeps
// default and default-slo, and a name the suite does not run is refused.
func TestSuiteJudgesTheNamedPoliciesAgainstTheGoals(t *testing.T) {
	report := func(p99 float64) Report {
		a := APIStats{SLOMs: 100}
		a.Steady.P99Ms = p99
		return Report{APIs: []string{"a"}, PerAPI: map[string]APIStats{"a": a}}
	}
	s := SuiteResult{
		Config: SuiteConfig{Policies: []Policy{{Name: "static"}, {Name: "default"}, {Name: "mine"}}},
		Cells:  []SuiteCell{{App: "app", Scenario: "steady", Reports: []Report{report(50), report(80), report(150)}}},
	}
	write := func() string {
		var b strings.Builder
		WriteSuiteMarkdown(&b, s, "spillway bench --suite")
		return b.String()
	}
	md := write()
	if !strings.Contains(md, "## The default policy against its goals") || strings.Contains(md, "`mine`") {
		t.Errorf("without Goals, want the default's section only:\n%s", md)
	}
	s.Config.Goals = []string{"mine"}
	md = write()
	if !strings.Contains(md, "## `mine` against the default policy's goals") || strings.Contains(md, "## The default policy against") {
		t.Errorf("Goals [mine]: want mine's section only:\n%s", md)
	}
	if !strings.Contains(md, "- app steady: a: steady p99 150 ms over its 100 ms SLO") {
		t.Errorf("mine's miss is not listed:\n%s", md)
	}
	if err := s.Config.CheckGoals(); err != nil {
		t.Errorf("CheckGoals: %v", err)
	}
	s.Config.Goals = []string{"mine", "mine"}
	if err := s.Config.CheckGoals(); err == nil || !strings.Contains(err.Error(), `"mine" is named twice`) {
		t.Errorf("CheckGoals of a name given twice: %v, want an error naming it", err)
	}
	s.Config.Goals = []string{"vegas"}
	if err := s.Config.CheckGoals(); err == nil || !strings.Contains(err.Error(), `"vegas"`) {
		t.Errorf("CheckGoals of a policy not run: %v, want an error naming it", err)
	}
}
