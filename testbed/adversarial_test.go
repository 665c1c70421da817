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
