package components_test

import (
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"

	"github.com/spillway-dev/spillway/blueprints"
	"github.com/spillway-dev/spillway/components"
)

// schemaComponents compiles blueprints/schema.cue and returns #Component's
// definitions by type name, in schema order.
func schemaComponents(t *testing.T) (*cue.Context, []string, map[string]cue.Value) {
	t.Helper()
	src, err := blueprints.Module.ReadFile("schema.cue")
	if err != nil {
		t.Fatal(err)
	}
	ctx := cuecontext.New()
	schema := ctx.CompileBytes(src, cue.Filename("schema.cue"))
	if schema.Err() != nil {
		t.Fatal(schema.Err())
	}
	iter, err := schema.LookupPath(cue.ParsePath("#Component")).Fields(cue.Optional(true))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	defs := map[string]cue.Value{}
	for iter.Next() {
		name := iter.Selector().Unquoted()
		names = append(names, name)
		defs[name] = iter.Value()
	}
	return ctx, names, defs
}

// accepts reports whether the schema field f accepts x.
func accepts(ctx *cue.Context, f cue.Value, x any) bool {
	return f.Unify(ctx.Encode(x)).Validate(cue.Concrete(true)) == nil
}

// kindOf is the Param kind of the schema field f: a string field that
// takes "1s" and refuses "one" is a duration.
func kindOf(ctx *cue.Context, f cue.Value) (components.Kind, bool) {
	switch f.IncompleteKind() {
	case cue.IntKind:
		return components.Integer, true
	case cue.NumberKind, cue.FloatKind:
		return components.Number, true
	case cue.BoolKind:
		return components.Bool, true
	case cue.ListKind:
		return components.StringList, true
	case cue.StructKind:
		return components.DurationMap, true
	case cue.StringKind:
		if accepts(ctx, f, "1s") && !accepts(ctx, f, "one") {
			return components.DurationKind, true
		}
		return components.String, true
	}
	return 0, false
}

// schemaDefault parses the field's @default(...) attribute as kind.
func schemaDefault(f cue.Value, kind components.Kind) (any, bool, error) {
	attr := f.Attribute("default")
	if attr.Err() != nil {
		return nil, false, nil
	}
	text, err := attr.String(0)
	if err != nil {
		return nil, true, err
	}
	var v any
	switch kind {
	case components.Number:
		v, err = strconv.ParseFloat(text, 64)
	case components.Integer:
		v, err = strconv.Atoi(text)
	case components.DurationKind:
		v, err = time.ParseDuration(text)
	case components.Bool:
		v, err = strconv.ParseBool(text)
	case components.String:
		v = text
	}
	return v, true, err
}

// probes are the values at which a numeric range is compared: a spread of
// magnitudes, and each finite bound of r and its neighbours.
func probes(kind components.Kind, r components.Range, def any) []float64 {
	values := []float64{-1e9, -100, -10, -1, -0.5, -0.005, 0, 0.005, 0.5, 1, 1.5, 2, 5, 10, 15, 25, 99, 100, 101, 150, 1000, 1e9}
	if kind == components.DurationKind {
		values = []float64{-1e9, 0, 1, 1e6, 5e8, 1e9, 60e9, 600e9, 1e15}
	}
	for _, b := range []float64{r.Min, r.Max} {
		if math.IsInf(b, 0) {
			continue
		}
		step := math.Max(1e-6, math.Abs(b)*1e-9)
		if kind != components.Number {
			step = 1
		}
		values = append(values, b-step, b, b+step)
	}
	switch d := def.(type) {
	case float64:
		values = append(values, d)
	case int:
		values = append(values, float64(d))
	case time.Duration:
		values = append(values, float64(d))
	}
	if kind != components.Number {
		values = slices.DeleteFunc(values, func(v float64) bool { return v != math.Trunc(v) })
	}
	slices.Sort(values)
	return slices.Compact(values)
}

// encoded is v as the schema field of kind takes it.
func encoded(kind components.Kind, v float64) any {
	switch kind {
	case components.Integer:
		return int64(v)
	case components.DurationKind:
		return time.Duration(v).String()
	}
	return v
}

// TestParamsAgreeWithSchema walks every component of the schema's
// #Component and compares each parameter with the Go side, Info.Params:
// the same parameters, of the same kind, with the same default (the
// schema's @default attribute) and accepting the same values.
func TestParamsAgreeWithSchema(t *testing.T) {
	ctx, names, defs := schemaComponents(t)
	for _, typ := range names {
		t.Run(typ, func(t *testing.T) {
			info, ok := components.Lookup(typ)
			if !ok {
				t.Fatalf("schema.cue lists %s, which no Go component registers", typ)
			}
			params := map[string]components.Param{}
			for _, p := range info.Params {
				if _, dup := params[p.Name]; dup {
					t.Errorf("Go declares %s twice", p.Name)
				}
				params[p.Name] = p
			}
			iter, err := defs[typ].Fields(cue.Optional(true))
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for iter.Next() {
				name, f := iter.Selector().Unquoted(), iter.Value()
				if name == "selector" || name == "in_ports" || name == "out_ports" {
					continue
				}
				kind, ok := kindOf(ctx, f)
				if !ok {
					t.Errorf("schema %s.%s is of kind %v, which a parameter cannot be", typ, name, f.IncompleteKind())
					continue
				}
				p, ok := params[name]
				if !ok {
					t.Errorf("schema %s.%s has no Go Param", typ, name)
					continue
				}
				seen[name] = true
				if p.Kind != kind {
					t.Errorf("%s.%s: schema kind %d, Go kind %d", typ, name, kind, p.Kind)
					continue
				}
				def, has, err := schemaDefault(f, kind)
				switch {
				case err != nil:
					t.Errorf("schema %s.%s: @default: %v", typ, name, err)
				case !has && p.Default != nil:
					t.Errorf("%s.%s: Go default %v, the schema has no @default", typ, name, p.Default)
				case has && p.Default != def:
					t.Errorf("%s.%s: Go default %#v, schema @default %#v", typ, name, p.Default, def)
				}
				if kind == components.Bool || kind == components.String || kind == components.StringList || kind == components.DurationMap {
					continue
				}
				for _, v := range probes(kind, p.Range, def) {
					inSchema, inGo := accepts(ctx, f, encoded(kind, v)), p.Range.Contains(v)
					if inSchema != inGo {
						t.Errorf("%s.%s = %v: schema accepts %v, Go (%v) accepts %v", typ, name, encoded(kind, v), inSchema, p.Range, inGo)
					}
				}
			}
			for name := range params {
				if !seen[name] {
					t.Errorf("Go declares %s.%s, which the schema does not have", typ, name)
				}
			}
		})
	}
	for _, typ := range components.Types() {
		if _, ok := defs[typ]; !ok {
			t.Errorf("Go registers %s, which schema.cue's #Component does not list", typ)
		}
	}
}

// TestRangeDescribesItself checks the error a Param gives out of range.
func TestRangeDescribesItself(t *testing.T) {
	for _, tc := range []struct {
		p    components.Param
		v    float64
		want string
	}{
		{components.Param{Name: "max_load_multiplier", Range: components.AtLeast(1)}, 0.5, "max_load_multiplier 0.5: must be >= 1"},
		{components.Param{Name: "utilization", Range: components.Above(0).AtMost(1)}, 1.5, "utilization 1.5: must be in (0, 1]"},
		{components.Param{Name: "inc_threshold", Range: components.Unbounded.Below(0)}, 0, "inc_threshold 0: must be < 0"},
		{components.Param{Name: "nreq", Kind: components.Integer, Range: components.Above(0).Multiples(10)}, 15, "nreq 15: must be > 0 and a multiple of 10"},
		{components.Param{Name: "slope", Range: components.Unbounded.WithoutZero()}, 0, "slope 0: must be finite and not 0"},
		{components.Param{Name: "timeout", Kind: components.DurationKind, Range: components.Above(0)}, 0, "timeout 0s: must be > 0s"},
		{components.Param{Name: "alpha", Range: components.AtLeast(0).AtMost(1)}, math.NaN(), "alpha NaN: must be in [0, 1]"},
	} {
		err := tc.p.Check(tc.v)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Check(%v) = %v, want %q", tc.v, err, tc.want)
		}
	}
	one := 1.0
	if v, err := (components.Param{Name: "x", Default: 2.0, Range: components.AtLeast(1)}).Float(nil); v != 2 || err != nil {
		t.Errorf("Float(nil) = %v, %v; want the default 2", v, err)
	}
	if v, err := (components.Param{Name: "x", Default: 2.0, Range: components.AtLeast(1)}).Float(&one); v != 1 || err != nil {
		t.Errorf("Float(&1) = %v, %v; want 1", v, err)
	}
	if _, err := (components.Param{Name: "x", Range: components.AtLeast(1)}).Float(nil); err == nil || !strings.Contains(err.Error(), "x is required") {
		t.Errorf("Float(nil) without a default: %v, want x is required", err)
	}
}

// baseParams is the smallest valid configuration of each type that needs
// one; a test adds one parameter to it.
var baseParams = map[string]map[string]any{
	"EMA":                     {"ema_window": "10s"},
	"Holder":                  {"hold_for": "2s"},
	"LatencyTargetController": {"target_latency": "100ms"},
	"Variable":                {"value": 1},
	"PromQL":                  {"query": "up"},
	"ServiceOverload":         {"service": "db"},
	"Arithmetic":              {"operator": "add"},
	"Decider":                 {"operator": "gt"},
	"FluxMeter":               {"selector": map[string]any{"control_point": "ingress"}},
	"RLActuator":              {"selector": map[string]any{"control_point": "ingress"}},
	"RateLimiter":             {"selector": map[string]any{"control_point": "ingress"}},
	"ConcurrencyLimiter":      {"selector": map[string]any{"control_point": "ingress"}},
}

// provisionWith provisions typ from its base parameters plus name: value.
func provisionWith(typ string, set map[string]any) (components.Component, error) {
	params := map[string]any{}
	for k, v := range baseParams[typ] {
		params[k] = v
	}
	for k, v := range set {
		params[k] = v
	}
	b, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	return provisionComponent(typ, string(b), time.Second)
}

// jsonValue is a Param's value as a policy writes it.
func jsonValue(kind components.Kind, v any) any {
	if d, ok := v.(time.Duration); ok && kind == components.DurationKind {
		return d.String()
	}
	return v
}

// TestProvisionRejectsWhatTheSchemaRejects gives each numeric parameter of
// each component every probe value outside its range: Provision must
// refuse it, naming the parameter. Together with
// TestParamsAgreeWithSchema, Go refuses whatever the schema refuses.
func TestProvisionRejectsWhatTheSchemaRejects(t *testing.T) {
	for _, typ := range components.Types() {
		if _, err := provisionWith(typ, nil); err != nil {
			t.Errorf("%s: the base parameters %v do not provision: %v", typ, baseParams[typ], err)
			continue
		}
		info, _ := components.Lookup(typ)
		for _, p := range info.Params {
			if p.Kind == components.Bool || p.Kind == components.String {
				continue
			}
			for _, v := range probes(p.Kind, p.Range, p.Default) {
				if p.Range.Contains(v) {
					continue
				}
				_, err := provisionWith(typ, map[string]any{p.Name: encoded(p.Kind, v)})
				if err == nil || !strings.Contains(err.Error(), p.Name) {
					t.Errorf("%s.%s = %v (outside %v): Provision gave %v, want an error naming %s", typ, p.Name, encoded(p.Kind, v), p.Range, err, p.Name)
				}
			}
		}
	}
}

// TestProvisionAppliesTheSchemaDefault provisions each component twice,
// without a parameter and with the parameter set to its default, and
// compares the two states: the default Go applies is the one it declares.
func TestProvisionAppliesTheSchemaDefault(t *testing.T) {
	for _, typ := range components.Types() {
		info, _ := components.Lookup(typ)
		for _, p := range info.Params {
			if p.Default == nil {
				continue
			}
			absent, err := provisionWith(typ, nil)
			if err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
			explicit, err := provisionWith(typ, map[string]any{p.Name: jsonValue(p.Kind, p.Default)})
			if err != nil {
				t.Errorf("%s.%s = its default %v: %v", typ, p.Name, p.Default, err)
				continue
			}
			a, e := reflect.ValueOf(absent).Elem(), reflect.ValueOf(explicit).Elem()
			clearPointers(a)
			clearPointers(e)
			if !sameState(a, e, 0) {
				t.Errorf("%s.%s: the state without it differs from the state with its default %v:\n%+v\n%+v", typ, p.Name, p.Default, absent, explicit)
			}
		}
	}
}

// clearPointers sets the exported pointer fields of the struct v (and of
// its embedded structs), the parameters a policy may leave out, to nil.
func clearPointers(v reflect.Value) {
	for i := range v.NumField() {
		f, sf := v.Field(i), v.Type().Field(i)
		switch {
		case sf.Anonymous && f.Kind() == reflect.Struct:
			clearPointers(f)
		case sf.IsExported() && f.Kind() == reflect.Pointer:
			f.SetZero()
		}
	}
}

// sameState compares a and b as reflect.DeepEqual does, unexported fields
// included, except that NaN equals NaN (an invalid signal) and functions
// are not compared.
func sameState(a, b reflect.Value, depth int) bool {
	if depth > 20 || a.Kind() != b.Kind() {
		return depth > 20
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		return x == y || (math.IsNaN(x) && math.IsNaN(y))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.String:
		return a.String() == b.String()
	case reflect.Struct:
		for i := range a.NumField() {
			if !sameState(a.Field(i), b.Field(i), depth+1) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameState(a.Elem(), b.Elem(), depth+1)
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !sameState(a.Index(i), b.Index(i), depth+1) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for _, k := range a.MapKeys() {
			if !sameState(a.MapIndex(k), b.MapIndex(k), depth+1) {
				return false
			}
		}
		return true
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return true
	}
	return false
}
