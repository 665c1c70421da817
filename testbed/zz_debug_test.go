package testbed

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"

	"github.com/spillway-dev/spillway/engine"
)

func TestZZDebug(t *testing.T) {
	if os.Getenv("ZZAPP") == "" {
		t.Skip()
	}
	app, err := LoadAppFile(os.Getenv("ZZAPP"))
	if err != nil {
		app, err = BuiltinApp(os.Getenv("ZZAPP"))
		if err != nil {
			t.Fatal(err)
		}
	}
	sc, err := NewScenario(os.Getenv("ZZSC"), app, ScenarioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var eng *engine.Engine
	_, err = Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Virtual: true, Seed: 1, Policy: defaultPolicy(t),
		OnEngine: func(e *engine.Engine) { eng = e }})
	if err != nil {
		t.Fatal(err)
	}
	from, _ := strconv.ParseFloat(os.Getenv("ZZFROM"), 64)
	to, _ := strconv.ParseFloat(os.Getenv("ZZTO"), 64)
	for _, ph := range eng.History(math.MinInt64) {
		for i, ts := range ph.TimesNs {
			sec := float64(ts)/1e9 - sc.Warmup.Seconds()
			if sec < from || sec > to {
				continue
			}
			line := fmt.Sprintf("%6.1f", sec)
			for _, s := range ph.Signals {
				line += fmt.Sprintf(" %s=%.4g", s.Signal, s.Values[i])
			}
			fmt.Println(line)
		}
	}
}
