package components_test

import (
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/load"

	"github.com/spillway-dev/spillway/blueprints"
	"github.com/spillway-dev/spillway/components"
)

// blueprintParams are the places where a blueprint's #Config takes a
// component's parameters under their own names, to pass them on. own lists
// the parameters whose blueprint default is deliberately not the
// component's, and why.
var blueprintParams = []struct {
	blueprint, path, typ string
	own                  map[string]string
}{
	{"latencyaimd", "#Config.rate_controller", "AIMDController", nil},
	{"latencyaimd", "#Config.latency_baseliner.ema", "EMA", map[string]string{
		"warmup_window": "seed 004's blueprint waits 60 s for a baseline",
		"correction_factor_on_max_envelope_violation": "seed 004's blueprint pulls the baseline down by 0.95",
	}},
	{"topfull", "#Config.latency_aimd", "AIMDController", nil},
	{"topfull", "#Config.latency_aimd", "EMA", map[string]string{
		"warmup_window": "the latencyaimd fallback's, seed 004's 60 s",
		"correction_factor_on_max_envelope_violation": "the latencyaimd fallback's, seed 004's 0.95",
	}},
	{"topfull", "#Config", "RLActuator", nil},
	{"topfull", "#API", "RLActuator", map[string]string{
		"lower_bound": "the TopFull artifact never lets the agent cut an API below 10 requests per second",
	}},
	{"latencytarget", "#Config.controller", "LatencyTargetController", nil},
	{"slo", "#Config.controller", "SLOConcurrencyController", nil},
	{"vegas", "#Config.vegas", "VegasController", nil},
	{"envoygradient", "#Config.envoy_gradient", "EnvoyGradientController", nil},
	{"gradient2", "#Config.gradient2", "Gradient2Controller", nil},
}

// loadBlueprint compiles one embedded blueprint package, from a copy of
// the module on disk.
func loadBlueprint(t *testing.T, ctx *cue.Context, name string) cue.Value {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(blueprints.Module, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := blueprints.Module.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(path)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	insts := load.Instances([]string{"./" + name}, &load.Config{Dir: dir})
	if insts[0].Err != nil {
		t.Fatal(insts[0].Err)
	}
	v := ctx.BuildInstance(insts[0])
	if v.Err() != nil {
		t.Fatal(v.Err())
	}
	return v
}

// defaultOf is the value a blueprint field takes when the user sets none.
func defaultOf(f cue.Value, kind components.Kind) (any, bool) {
	d, ok := f.Default()
	if !ok && !f.IsConcrete() {
		return nil, false
	}
	if !ok {
		d = f
	}
	switch kind {
	case components.Number:
		x, err := d.Float64()
		return x, err == nil
	case components.Integer:
		x, err := d.Int64()
		return int(x), err == nil
	case components.DurationKind:
		s, err := d.String()
		if err != nil {
			return nil, false
		}
		x, err := time.ParseDuration(s)
		return x, err == nil
	case components.Bool:
		x, err := d.Bool()
		return x, err == nil
	}
	x, err := d.String()
	return x, err == nil
}

// TestBlueprintDefaultsAreTheSchemas checks every parameter a blueprint
// passes on to a component: its default is the schema's (unless the
// blueprint says why it has its own), and the blueprint accepts no value
// the schema refuses.
func TestBlueprintDefaultsAreTheSchemas(t *testing.T) {
	ctx, _, defs := schemaComponents(t)
	instances := map[string]cue.Value{}
	for _, row := range blueprintParams {
		t.Run(row.blueprint+"/"+row.path+"/"+row.typ, func(t *testing.T) {
			inst, ok := instances[row.blueprint]
			if !ok {
				inst = loadBlueprint(t, ctx, row.blueprint)
				instances[row.blueprint] = inst
			}
			config := inst.LookupPath(cue.ParsePath(row.path))
			if !config.Exists() {
				t.Fatalf("blueprint %s has no %s", row.blueprint, row.path)
			}
			info, _ := components.Lookup(row.typ)
			compared := 0
			for _, p := range info.Params {
				f := config.LookupPath(cue.MakePath(cue.Str(p.Name)))
				if !f.Exists() {
					f = config.LookupPath(cue.MakePath(cue.Str(p.Name).Optional()))
				}
				if !f.Exists() {
					continue
				}
				compared++
				schemaField := defs[row.typ].LookupPath(cue.MakePath(cue.Str(p.Name).Optional()))
				if !schemaField.Exists() {
					schemaField = defs[row.typ].LookupPath(cue.MakePath(cue.Str(p.Name)))
				}
				want, hasWant, err := schemaDefault(schemaField, p.Kind)
				if err != nil {
					t.Fatal(err)
				}
				got, hasGot := defaultOf(f, p.Kind)
				reason, own := row.own[p.Name]
				switch {
				case own && hasGot && hasWant && got == want:
					t.Errorf("%s.%s: listed as the blueprint's own default (%s), but it is the schema's %v", row.path, p.Name, reason, want)
				case !own && hasGot && hasWant && !sameDefault(got, want):
					t.Errorf("%s.%s: blueprint default %v, schema @default %v", row.path, p.Name, got, want)
				}
				if p.Kind == components.Bool || p.Kind == components.String {
					continue
				}
				for _, v := range probes(p.Kind, p.Range, want) {
					x := encoded(p.Kind, v)
					if accepts(ctx, f, x) && !accepts(ctx, schemaField, x) {
						t.Errorf("%s.%s = %v: the blueprint accepts it, the schema refuses it", row.path, p.Name, x)
					}
				}
			}
			if compared == 0 {
				t.Errorf("%s has none of %s's parameters", row.path, row.typ)
			}
		})
	}
}

// sameDefault compares two defaults, numbers by value.
func sameDefault(a, b any) bool {
	x, xok := a.(float64)
	y, yok := b.(float64)
	if xok && yok {
		return x == y || (math.IsNaN(x) && math.IsNaN(y))
	}
	return a == b
}
