package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/rlbridge"
)

// wiring is a component without its source positions.
func wiring(t *testing.T, c engine.ComponentSpec) string {
	t.Helper()
	strip := func(bs []engine.PortBinding) []engine.PortBinding {
		out := make([]engine.PortBinding, len(bs))
		for i, b := range bs {
			b.Pos = engine.Position{}
			out[i] = b
		}
		return out
	}
	var params any
	if err := json.Unmarshal(c.Params, &params); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal([]any{c.Type, c.Path, params, strip(c.In), strip(c.Out)})
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

func TestTopFullPolicyFileIsTheGeneratedOne(t *testing.T) {
	file := loadPolicy(t, "../policies/topfull.cue")
	gen, err := TopFullPolicy(Boutique())
	if err != nil {
		t.Fatal(err)
	}
	if len(file) != 1 || len(gen.Templates) != 1 {
		t.Fatalf("%d policies in the file, %d generated; want 1 and 1", len(file), len(gen.Templates))
	}
	a, b := file[0], gen.Templates[0]
	if a.Name != b.Name || a.EvaluationInterval != b.EvaluationInterval || len(a.Components) != len(b.Components) {
		t.Fatalf("file %s every %v with %d components; generated %s every %v with %d", a.Name, a.EvaluationInterval, len(a.Components), b.Name, b.EvaluationInterval, len(b.Components))
	}
	for i := range a.Components {
		if wa, wb := wiring(t, a.Components[i]), wiring(t, b.Components[i]); wa != wb {
			t.Errorf("component %d differs:\nfile      %s\ngenerated %s", i, wa, wb)
		}
	}
}

func TestRandomAppsAreValidAndDiffer(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	capacities := map[int]bool{}
	for range 20 {
		app := RandomApp(rng)
		if err := app.Validate(); err != nil {
			t.Fatal(err)
		}
		sc := RandomScenario(app, rng)
		if err := sc.validate(app); err != nil {
			t.Fatal(err)
		}
		c := app.Capacity()
		if c < 0.2*Boutique().Capacity() || c > 5*Boutique().Capacity() {
			t.Errorf("capacity %.0f req/s is outside what the draws allow", c)
		}
		capacities[int(c)] = true
	}
	if len(capacities) < 15 {
		t.Errorf("only %d distinct capacities in 20 draws", len(capacities))
	}
}

// boutiqueEpisodes are RandomEpisodes on boutique's call graph only, cut
// short after the warm-up and the first random step: the lock step is the
// same in every second, and the whole episode is 65 s.
func boutiqueEpisodes(seed uint64) (SimConfig, error) {
	rng := rand.New(rand.NewPCG(seed, 0xa9e47))
	app := RandomApp(rng)
	p, err := TopFullPolicy(app)
	if err != nil {
		return SimConfig{}, err
	}
	sc := RandomScenario(app, rng)
	sc.Steps = sc.Steps[:2]
	sc.Duration = sc.Steps[1].Duration
	return SimConfig{App: app, Scenario: sc, Policy: p, Virtual: true, Seed: seed}, nil
}

func TestSimServerStepsInLockStep(t *testing.T) {
	srv := NewSimServer(1, 0, boutiqueEpisodes)
	defer srv.Close()
	ctx := context.Background()
	seed := uint64(3)
	if err := srv.Reset(ctx, &seed); err != nil {
		t.Fatal(err)
	}
	apis := srv.Backend().APIs()
	if len(apis) != 4 {
		t.Fatalf("%d APIs under agent control, want boutique's 4", len(apis))
	}
	first, err := srv.Step(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Tick 1 is the policy's at its load, at 0 s: the agent steps from
	// the next.
	if first.Tick != 2 || first.TimeS != 1 {
		t.Errorf("first step at tick %d, %gs; want tick 2 at 1s", first.Tick, first.TimeS)
	}
	// A rate set while the run is paused applies from that very tick.
	home := "GET /home"
	lower := srv.Backend().APIs()[3].LowerBound
	if !srv.Backend().SetRate(home, lower) {
		t.Fatal("SetRate refused")
	}
	var last rlbridge.StepResult
	for want := 3; want <= 5; want++ {
		if last, err = srv.Step(ctx); err != nil {
			t.Fatal(err)
		}
		if last.Tick != want {
			t.Fatalf("step %d reports tick %d", want-1, last.Tick)
		}
	}
	got := last.APIs[home]
	if got.RateLimit != lower || got.Goodput > lower+10 || got.OfferedRPS <= lower {
		t.Errorf("%s after cutting it to %g/s: %+v; want the rate in force and goodput within it while more is offered", home, lower, got)
	}
	// The optimal admission is reported for training: within what was
	// offered, and some of it at the warm-up's half load.
	for name, a := range last.APIs {
		if !(a.OptimalRPS > 0) || a.OptimalRPS > a.OfferedRPS+1e-6 {
			t.Errorf("%s: optimal_rps %v with %v offered; want in (0, offered]", name, a.OptimalRPS, a.OfferedRPS)
		}
	}
	// Stepping to the end: one Done answer, then ErrDone.
	for i := 0; ; i++ {
		res, err := srv.Step(ctx)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if res.Done {
			break
		}
		if i > 200 {
			t.Fatal("the 20 s episode did not end")
		}
	}
	if _, err := srv.Step(ctx); !errors.Is(err, rlbridge.ErrDone) {
		t.Errorf("step after the end: err %v, want rlbridge.ErrDone", err)
	}
	// A reset starts over.
	if err := srv.Reset(ctx, &seed); err != nil {
		t.Fatal(err)
	}
	if res, err := srv.Step(ctx); err != nil || res.Tick != 2 {
		t.Errorf("after reset: tick %d, err %v; want tick 2", res.Tick, err)
	}
}

func TestSimServerRunsAloneWhenTheAgentStopsStepping(t *testing.T) {
	srv := NewSimServer(1, 50*time.Millisecond, RandomEpisodes)
	defer srv.Close()
	ctx := context.Background()
	if err := srv.Reset(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Step(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := srv.Wait(ctx); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not go on alone after the grace")
	}
}

// TestRandomEpisodesTrainOnAppsTheSuiteNeverRuns: training episodes mix
// boutique-shaped apps with generated ones whose seeds are at least
// TrainingAppSeedMin, so the suite's random:1 to random:N never appear.
// An episode's policy is its app's TopFullPolicy, a CUE evaluation of
// seconds under the race detector, so one episode is drawn whole and the
// others only as far as their apps: seeds 1 to 12 give 10 generated apps
// and 2 boutique-shaped ones.
func TestRandomEpisodesTrainOnAppsTheSuiteNeverRuns(t *testing.T) {
	const episodes = 12
	generated := 0
	cfg, err := RandomEpisodes(1)
	if err != nil {
		t.Fatal(err)
	}
	if app, _ := randomEpisode(1); cfg.App.Name != app.Name || cfg.Policy.Name != "topfull" || len(cfg.Policy.Templates) == 0 || !cfg.Virtual {
		t.Fatalf("episode 1: app %q, policy %q (%d templates), virtual %v; want app %q under topfull in virtual time",
			cfg.App.Name, cfg.Policy.Name, len(cfg.Policy.Templates), cfg.Virtual, app.Name)
	}
	for seed := uint64(1); seed <= episodes; seed++ {
		app, _ := randomEpisode(seed)
		if app.Name == "random" {
			continue // boutique's call graph, scaled
		}
		generated++
		var n uint64
		if _, err := fmt.Sscanf(app.Name, "random-%d", &n); err != nil || n < TrainingAppSeedMin {
			t.Errorf("episode %d: app %q, want random-N with N >= %d", seed, app.Name, uint64(TrainingAppSeedMin))
		}
	}
	if generated < episodes/3 || generated > episodes-1 {
		t.Errorf("%d of %d episodes on generated apps, want about two in three and some boutique-shaped", generated, episodes)
	}
}

// The queue guard adds a policy of its own at 100 ms with, per control
// point, a concurrency limit driven by a controller, plus one baseline
// controller per API; without it there is only the fallback's. The
// blueprint's queue_guard puts the same circuit in the topfull policy.
func TestTopFullGuardAddsAConcurrencyLimitPerControlPoint(t *testing.T) {
	count := func(p Policy, typ string) int {
		n := 0
		for _, s := range p.Templates {
			for _, c := range s.Components {
				if c.Type == typ {
					n++
				}
			}
		}
		return n
	}
	app := Boutique()
	plain, err := TopFullPolicy(app)
	if err != nil {
		t.Fatal(err)
	}
	guarded, err := TopFullGuardPolicy(app)
	if err != nil {
		t.Fatal(err)
	}
	if guarded.Name != "topfull-guard" || plain.Name != "topfull" {
		t.Errorf("labels %q and %q", plain.Name, guarded.Name)
	}
	if got, want := count(guarded, "ConcurrencyLimiter"), count(plain, "ConcurrencyLimiter")+1; got != want {
		t.Errorf("guarded policy has %d concurrency limiters, want %d", got, want)
	}
	if got, want := count(guarded, "SLOConcurrencyController"), count(plain, "SLOConcurrencyController")+len(app.APIs)+1; got != want {
		t.Errorf("guarded policy has %d SLO controllers, want %d (one per API and the guard's)", got, want)
	}
	if len(guarded.Templates) != len(plain.Templates)+1 {
		t.Fatalf("guarded: %d policies, want %d", len(guarded.Templates), len(plain.Templates)+1)
	}
	guard := guarded.Templates[len(guarded.Templates)-1]
	if guard.Name != "boutique-topfull-guard-guard" || guard.EvaluationInterval != 100*time.Millisecond {
		t.Errorf("guard policy %q at %v, want boutique-topfull-guard-guard at 100ms", guard.Name, guard.EvaluationInterval)
	}
	src := strings.Replace(string(TopFullSource(app, "inline")), "\t\tapis: [", "\t\tqueue_guard: true\n\t\tapis: [", 1)
	specs, diags := engine.LoadSource("inline.cue", []byte(src))
	if len(diags.Errors()) > 0 {
		t.Fatal(diags.Errors())
	}
	inline := Policy{Templates: specs}
	if len(specs) != 1 || count(inline, "ConcurrencyLimiter") != count(guarded, "ConcurrencyLimiter") ||
		count(inline, "SLOConcurrencyController") != count(guarded, "SLOConcurrencyController") {
		t.Errorf("queue_guard: true: %d policies, %d limiters, %d controllers; want 1 and the guard's", len(specs),
			count(inline, "ConcurrencyLimiter"), count(inline, "SLOConcurrencyController"))
	}
}
