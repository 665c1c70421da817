package testbed

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBoutiqueMatchesItsDescription(t *testing.T) {
	app := Boutique()
	if err := app.Validate(); err != nil {
		t.Fatal(err)
	}
	if c := app.Capacity(); c < 1200 || c > 1300 {
		t.Errorf("Capacity() = %.0f req/s, want about 1270 so that 4× is about 5k req/s", c)
	}
	if n := len(app.Services); n < 5 || n > 7 {
		t.Errorf("%d services, want about 6", n)
	}
	calls := map[string]map[string]bool{} // API → services it touches
	for _, api := range app.APIs {
		calls[api.Name] = map[string]bool{}
		for _, c := range api.Calls {
			calls[api.Name][c.Service] = true
		}
	}
	for name, touched := range calls {
		if name != "checkout" && len(touched) >= len(calls["checkout"]) {
			t.Errorf("%s touches %d services, checkout %d; checkout should touch the most", name, len(touched), len(calls["checkout"]))
		}
	}
	if got := app.Services[app.sharedService()].Name; got != "productcatalog" {
		t.Errorf("sharedService() = %s, want productcatalog: all four APIs call it and it is the bottleneck", got)
	}
	want := map[string]float64{"home": 1000, "product": 1000, "cart": 2.0 / 0.003, "checkout": 200}
	for i, api := range app.APIs {
		if got := app.CapacityAlone(i); math.Abs(got-want[api.Name]) > 1e-6 {
			t.Errorf("CapacityAlone(%s) = %v, want %v", api.Name, got, want[api.Name])
		}
	}
}

func TestCapacityIsTheMixAtWhichTheBusiestServiceSaturates(t *testing.T) {
	constant := func(ms int) Dist { return Dist{Kind: Constant, Mean: time.Duration(ms) * time.Millisecond} }
	// a costs the db 10 ms, b costs it 30 ms; the db has 2 workers.
	app := App{
		Name: "mix", Entry: "web", ClientTimeout: time.Second,
		Services: []Service{{Name: "web"}, {Name: "db", Workers: 2}},
		APIs: []API{
			{Name: "a", SLO: time.Second, Priority: 1, Weight: 3, Calls: []Call{{Service: "web", Time: constant(1)}, {Service: "db", Time: constant(10)}}},
			{Name: "b", SLO: time.Second, Priority: 2, Weight: 1, Calls: []Call{{Service: "db", Time: constant(10)}, {Service: "db", Time: constant(20)}}},
		},
	}
	if err := app.Validate(); err != nil {
		t.Fatal(err)
	}
	// Per request of the mix the db works 0.75·10 + 0.25·30 = 15 ms, so 2
	// workers sustain 2/0.015 = 133.3 req/s.
	if got, want := app.Capacity(), 2/0.015; math.Abs(got-want) > 1e-9 {
		t.Errorf("Capacity() = %v, want %v", got, want)
	}
	if got := app.CapacityAlone(0); math.Abs(got-200) > 1e-9 {
		t.Errorf("CapacityAlone(a) = %v, want 200", got)
	}
	if got := app.CapacityAlone(1); math.Abs(got-2/0.03) > 1e-9 {
		t.Errorf("CapacityAlone(b) = %v, want %v: two calls to the db add up", got, 2/0.03)
	}
	shares := app.capacityShares([]float64{300, 0}, []float64{0, 2})
	if math.Abs(shares[0]-200) > 1e-9 || shares[1] != 0 {
		t.Errorf("capacityShares(300, 0) = %v, want [200 0]", shares)
	}
	shares = app.capacityShares([]float64{50, 10}, []float64{0, 1})
	// 50·10 ms + 10·30 ms = 0.8 worker-seconds per second on 1 worker: scale 1.25.
	if math.Abs(shares[0]-62.5) > 1e-9 || math.Abs(shares[1]-12.5) > 1e-9 {
		t.Errorf("capacityShares(50, 10) on 1 worker = %v, want [62.5 12.5]", shares)
	}
}

func TestTwoTierAppKeepsTheDemoCapacity(t *testing.T) {
	cfg := DefaultTwoTier()
	app := TwoTierApp(cfg)
	if err := app.Validate(); err != nil {
		t.Fatal(err)
	}
	if app.Capacity() != cfg.Capacity() || app.APIs[0].Label() != EntryPattern {
		t.Errorf("Capacity() = %v, label %q; want %v and %q", app.Capacity(), app.APIs[0].Label(), cfg.Capacity(), EntryPattern)
	}
}

func TestBuiltinAppRejectsUnknownNames(t *testing.T) {
	for _, name := range AppNames() {
		if _, err := BuiltinApp(name); err != nil {
			t.Errorf("BuiltinApp(%q): %v", name, err)
		}
	}
	_, err := BuiltinApp("shop")
	if err == nil || !strings.Contains(err.Error(), `unknown app "shop" (built-in: boutique, hetero-cost, multi-bottleneck, two-tier; random:SEED; or give a .json file)`) {
		t.Errorf("BuiltinApp(shop) error = %v", err)
	}
}

const shopJSON = `{
  "name": "shop",
  "entry": "web",
  "client_timeout": "1s",
  "services": [{"name": "web"}, {"name": "db", "workers": 4}],
  "apis": [
    {"name": "browse", "slo": "50ms", "priority": 2, "weight": 0.8,
     "calls": [{"service": "web", "time": {"kind": "constant", "mean": "1ms"}},
               {"service": "db", "time": {"kind": "lognormal", "mean": "5ms", "sigma": 0.5}}]},
    {"name": "buy", "slo": "200ms",
     "calls": [{"service": "db", "time": {"kind": "exponential", "mean": "20ms"}}]}
  ]
}`

func TestLoadAppFileReadsTheJSONForm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shop.json")
	if err := os.WriteFile(path, []byte(shopJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	app, err := LoadAppFile(path)
	if err != nil {
		t.Fatal(err)
	}
	buy := app.APIs[1]
	if app.ClientTimeout != time.Second || app.Services[1].Workers != 4 || buy.Priority != 1 || buy.Weight != 1 ||
		buy.Calls[0].Time != (Dist{Kind: Exponential, Mean: 20 * time.Millisecond}) || app.APIs[0].Calls[1].Time.Sigma != 0.5 {
		t.Errorf("unexpected app: %+v", app)
	}
}

// A file far larger than any app within the bounds is refused before it
// is decoded.
func TestLoadAppFileRefusesAHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.json")
	if err := os.WriteFile(path, append([]byte(shopJSON), bytes.Repeat([]byte(" "), maxAppFileBytes)...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAppFile(path); err == nil || !strings.Contains(err.Error(), "huge.json: larger than 1048576 bytes: not an app file") {
		t.Errorf("err = %v, want the file refused for its size", err)
	}
}

func TestParseAppNamesTheOffendingField(t *testing.T) {
	tests := []struct {
		name, from, to, want string
	}{
		{"unknown service", `"service": "db", "time": {"kind": "exponential"`, `"service": "cache", "time": {"kind": "exponential"`,
			`apis[1].calls[0].service "cache": no such service (have web, db)`},
		{"unknown kind", `"kind": "exponential"`, `"kind": "uniform"`, `apis[1].calls[0].time.kind "uniform": must be`},
		{"bad duration", `"slo": "200ms"`, `"slo": "fast"`, `apis[1].slo "fast": time: invalid duration`},
		{"negative workers", `"workers": 4`, `"workers": -1`, `services[1].workers -1: must be >= 0`},
		{"unknown entry", `"entry": "web"`, `"entry": "gateway"`, `entry "gateway": no such service`},
		{"unknown field", `"client_timeout"`, `"timeout_client"`, `unknown field "timeout_client"`},
		{"syntax error has line:col", `"apis": [`, `"apis": [,`, `6:13: invalid character ','`},
		{"wrong type has line:col", `"workers": 4`, `"workers": "four"`, `5:65: services.workers: cannot use JSON string as int`},
		{"negative priority", `"priority": 2`, `"priority": -2`, `apis[0].priority -2: must be >= 1`},
	}
	for _, tt := range tests {
		src := strings.Replace(shopJSON, tt.from, tt.to, 1)
		if src == shopJSON {
			t.Fatalf("%s: %q not found in the fixture", tt.name, tt.from)
		}
		if _, err := ParseApp([]byte(src)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

func TestValidateRejectsBrokenApps(t *testing.T) {
	valid := func() App { return TwoTierApp(DefaultTwoTier()) }
	tests := []struct {
		name string
		edit func(*App)
		want string
	}{
		{"bad name", func(a *App) { a.Name = "Two Tier" }, `name "Two Tier": must match`},
		{"no timeout", func(a *App) { a.ClientTimeout = 0 }, "client_timeout 0s: must be > 0"},
		{"duplicate service", func(a *App) { a.Services[1].Name = "frontend" }, `services[1].name "frontend": declared twice`},
		{"no APIs", func(a *App) { a.APIs = nil }, "apis: must have at least one API"},
		{"no SLO", func(a *App) { a.APIs[0].SLO = 0 }, "apis[0].slo 0s: must be > 0"},
		{"no calls", func(a *App) { a.APIs[0].Calls = nil }, "apis[0].calls: must have at least one call"},
		{"NaN weight", func(a *App) { a.APIs[0].Weight = math.NaN() }, "apis[0].weight NaN"},
		{"zero weights", func(a *App) { a.APIs[0].Weight = 0 }, "apis: at least one weight must be > 0"},
		{"negative mean", func(a *App) { a.APIs[0].Calls[1].Time.Mean = -1 }, "apis[0].calls[1].time.mean -1ns: must be >= 0"},
		// An app file is input, and a run's time grows with each of these.
		{"too many APIs", func(a *App) {
			for i := range MaxAPIs {
				api := a.APIs[0]
				api.Name = fmt.Sprintf("extra%d", i)
				a.APIs = append(a.APIs, api)
			}
		}, "apis: 65, at most 64"},
		{"too many services", func(a *App) {
			for i := range MaxServices {
				a.Services = append(a.Services, Service{Name: fmt.Sprintf("extra%d", i), Workers: 1})
			}
		}, "services: 34, at most 32"},
		{"too many calls", func(a *App) {
			for len(a.APIs[0].Calls) <= MaxCalls {
				a.APIs[0].Calls = append(a.APIs[0].Calls, a.APIs[0].Calls[1])
			}
		}, "apis[0].calls: 17, at most 16"},
	}
	for _, tt := range tests {
		app := valid()
		tt.edit(&app)
		if err := app.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

func TestShippedAppsAreTheirJSONFiles(t *testing.T) {
	if got, want := AppNames(), []string{"boutique", "hetero-cost", "multi-bottleneck", "two-tier"}; !slices.Equal(got, want) {
		t.Errorf("AppNames() = %v, want %v", got, want)
	}
	for _, name := range AppNames() {
		app, err := BuiltinApp(name)
		if err != nil {
			t.Fatal(err)
		}
		if app.Name != name {
			t.Errorf("apps/%s.json names itself %q", name, app.Name)
		}
	}
	// two-tier is also built from a TwoTierConfig, for the demo; they agree.
	if got, want := mustBuiltin("two-tier"), TwoTierApp(DefaultTwoTier()); !reflect.DeepEqual(got, want) {
		t.Errorf("apps/two-tier.json = %+v, want TwoTierApp(DefaultTwoTier()) = %+v", got, want)
	}
	if _, err := BuiltinApp("../go.mod"); err == nil {
		t.Error("BuiltinApp reads outside apps/")
	}
}

func TestHeteroCostOptimumIsAboutTwiceProportional(t *testing.T) {
	app := HeteroCost()
	sc, err := NewScenario("priority-mix", app, ScenarioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rates, workers := sc.ratesAt(sc.Total()-time.Second), app.workers()
	prop := app.proportionalRates(rates, workers)
	opt, err := app.optimalRates(rates, workers)
	if err != nil {
		t.Fatal(err)
	}
	if got := (opt[0] + opt[1]) / (prop[0] + prop[1]); math.Abs(got-1.9) > 0.05 {
		t.Errorf("optimal / proportional = %.2f (%v / %v), want about 1.9", got, opt, prop)
	}
}

func TestRandomAppsAreValidVariedAndReproducible(t *testing.T) {
	apis, services := map[int]bool{}, map[int]bool{}
	for seed := range uint64(50) {
		app := RandomAppOf(seed)
		if err := app.Validate(); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if !reflect.DeepEqual(app, RandomAppOf(seed)) {
			t.Fatalf("seed %d: two draws differ", seed)
		}
		if c := app.Capacity(); math.IsInf(c, 0) || c <= 0 {
			t.Fatalf("seed %d: capacity %v", seed, c)
		}
		apis[len(app.APIs)] = true
		services[len(app.Services)-1] = true
		for _, api := range app.APIs {
			if n := len(api.Calls) - 1; n < 1 || n > 4 {
				t.Errorf("seed %d: %s has %d hops, want 1–4", seed, api.Name, n)
			}
			for _, c := range api.Calls[1:] {
				if c.Time.Mean < 500*time.Microsecond || c.Time.Mean > 50*time.Millisecond {
					t.Errorf("seed %d: %s costs %v at %s, want 0.5–50 ms", seed, api.Name, c.Time.Mean, c.Service)
				}
			}
		}
	}
	if len(apis) != 5 || len(services) != 4 {
		t.Errorf("50 seeds drew API counts %v and bounded-service counts %v, want every count of 2–6 and 1–4", apis, services)
	}
	if app, err := BuiltinApp("random:7"); err != nil || !reflect.DeepEqual(app, RandomAppOf(7)) {
		t.Errorf("BuiltinApp(random:7) = %v, %v; want RandomAppOf(7)", app.Name, err)
	}
}
