package testbed

import (
	"path/filepath"
	"strings"
	"testing"
)

// The adversarial apps (apps/adversarial/, docs/simulator.md "Adversarial
// apps") are the suite's blind spots, run by hand with `spillway sim --app
// FILE`; this keeps every file loadable, named after itself, and bounded,
// so that each can be overloaded by every scenario.
func TestAdversarialAppsLoad(t *testing.T) {
	files, err := filepath.Glob("apps/adversarial/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 6 {
		t.Fatalf("apps/adversarial: %d apps, want at least 6", len(files))
	}
	for _, file := range files {
		app, err := LoadAppFile(file)
		if err != nil {
			t.Error(err)
			continue
		}
		if want := strings.TrimSuffix(filepath.Base(file), ".json"); app.Name != want {
			t.Errorf("%s: name %q, want %q", file, app.Name, want)
		}
		for _, name := range ScenarioNames() {
			if _, err := NewScenario(name, app, ScenarioOptions{}); err != nil {
				t.Errorf("%s: %v", file, err)
			}
		}
	}
}

// many-servers answers in 500 ms, five ticks: a controller that decides
// every tick grows the limit past the 512 workers before the queue shows,
// then cuts every tick while that queue drains, down to a third of the
// capacity (0.78 of the share in the steady half, before windows lasted
// one round trip). Deciding once per baseline rtt keeps ≥ 0.95 with p99
// within the SLO.
func TestDefaultPolicyDecidesOncePerRoundTrip(t *testing.T) {
	app, err := LoadAppFile("apps/adversarial/many-servers.json")
	if err != nil {
		t.Fatal(err)
	}
	r := simulateVirtual(t, app, "steady", defaultPolicy(t))
	api := r.PerAPI["thumbnail"]
	if got := r.Steady.GoodputRatio; got < 0.95 {
		t.Errorf("steady goodput %.2f of proportional, want ≥ 0.95", got)
	}
	if api.Steady.P99Ms > api.SLOMs {
		t.Errorf("steady p99 %.0f ms over the %.0f ms SLO", api.Steady.P99Ms, api.SLOMs)
	}
}
