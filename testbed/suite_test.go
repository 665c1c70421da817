package testbed

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestSuiteIsDeterministicWhateverItsParallelism(t *testing.T) {
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
