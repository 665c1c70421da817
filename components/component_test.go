package components_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

// provisionComponent builds a component the way engine.Compile does: look the
// type up by name, decode its JSON parameters with DisallowUnknownFields and
// provision it with the evaluation interval.
func provisionComponent(typ, params string, interval time.Duration) (components.Component, error) {
	info, ok := components.Lookup(typ)
	if !ok {
		return nil, fmt.Errorf("component type %q is not registered", typ)
	}
	comp := info.New()
	if params != "" {
		dec := json.NewDecoder(bytes.NewReader([]byte(params)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(comp); err != nil {
			return nil, err
		}
	}
	if p, ok := comp.(components.Provisioner); ok {
		if err := p.Provision(components.Env{Interval: interval}); err != nil {
			return nil, err
		}
	}
	return comp, nil
}

// mustProvisionComponent is provisionComponent that fails the test on error.
func mustProvisionComponent(t testing.TB, typ, params string, interval time.Duration) components.Component {
	t.Helper()
	comp, err := provisionComponent(typ, params, interval)
	if err != nil {
		t.Fatalf("%s %s: %v", typ, params, err)
	}
	return comp
}

// tickIO is one tick: the input slots in Ports().In order (a variadic last
// port expanded) and the expected outputs in Ports().Out order.
type tickIO struct {
	in, want []float64
}

// runTickTable executes ticks in order and checks every output exactly (up
// to 1e-12 relative rounding); NaN (invalid) only equals NaN.
func runTickTable(t *testing.T, comp components.Component, ticks []tickIO) {
	t.Helper()
	ports := comp.Ports()
	fixed := len(ports.In)
	variadic := fixed > 0 && ports.In[fixed-1].Variadic
	for i, tk := range ticks {
		if !variadic && len(tk.in) != fixed {
			t.Fatalf("tick %d: table gives %d inputs, component has %d ports", i+1, len(tk.in), fixed)
		}
		if len(tk.want) != len(ports.Out) {
			t.Fatalf("tick %d: table gives %d outputs, component has %d", i+1, len(tk.want), len(ports.Out))
		}
		out := make([]float64, len(ports.Out))
		for j := range out {
			out[j] = -12345 // a value no test expects: catches unwritten slots
		}
		comp.Execute(append([]float64(nil), tk.in...), out)
		for j, want := range tk.want {
			if !sameSignal(out[j], want) {
				t.Errorf("tick %d: in %v: %s = %v, want %v", i+1, tk.in, ports.Out[j], out[j], want)
			}
		}
	}
}

// sameSignal reports whether got equals want: both invalid, or equal up to
// 1e-12 relative rounding.
func sameSignal(got, want float64) bool {
	if math.IsNaN(want) || math.IsNaN(got) {
		return math.IsNaN(want) && math.IsNaN(got)
	}
	if got == want {
		return true
	}
	if math.IsInf(got, 0) || math.IsInf(want, 0) {
		return false
	}
	return math.Abs(got-want) <= 1e-12*math.Max(1, math.Abs(want))
}

func TestSameSignal(t *testing.T) {
	nan := components.Invalid
	for _, tc := range []struct {
		got, want float64
		equal     bool
	}{
		{nan, nan, true},
		{nan, 0, false},
		{0, nan, false},
		{1, 1, true},
		{1, 1 + 1e-9, false},
		{0.1 + 0.2, 0.3, true},
		{math.Inf(1), math.Inf(1), true},
		{math.Inf(1), math.Inf(-1), false},
	} {
		if got := sameSignal(tc.got, tc.want); got != tc.equal {
			t.Errorf("sameSignal(%v, %v) = %v, want %v", tc.got, tc.want, got, tc.equal)
		}
	}
}

func TestComponentTypesAreRegistered(t *testing.T) {
	for _, typ := range []string{
		"AIMDController", "Alerter", "Arithmetic", "Clamp", "ConcurrencyLimiter", "Decider", "EMA",
		"FirstValid", "FluxMeter", "GradientController", "Holder", "Max", "Min", "RateLimiter", "Switcher", "Variable",
	} {
		info, ok := components.Lookup(typ)
		if !ok {
			t.Errorf("%s is not registered", typ)
			continue
		}
		if info.Type != typ {
			t.Errorf("Lookup(%q).Type = %q", typ, info.Type)
		}
	}
	if _, ok := components.Lookup("NoSuchComponent"); ok {
		t.Error("Lookup of an unknown type succeeded")
	}
}

func TestRegisterPanicsOnDuplicate(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("registering EMA twice did not panic")
		}
	}()
	components.Register(components.Info{Type: "EMA", New: func() components.Component { return &components.EMA{} }})
}

func TestProvisionErrors(t *testing.T) {
	for _, tc := range []struct {
		name, typ, params string
		interval          time.Duration
	}{
		{"EMA needs ema_window", "EMA", `{"warmup_window":"1s"}`, time.Second},
		{"EMA window shorter than the interval", "EMA", `{"ema_window":"400ms"}`, 500 * time.Millisecond},
		{"EMA negative warm-up", "EMA", `{"ema_window":"2s","warmup_window":"-1s"}`, time.Second},
		{"EMA max correction above 1", "EMA", `{"ema_window":"2s","correction_factor_on_max_envelope_violation":1.2}`, time.Second},
		{"EMA max correction 0", "EMA", `{"ema_window":"2s","correction_factor_on_max_envelope_violation":0}`, time.Second},
		{"EMA min correction below 1", "EMA", `{"ema_window":"2s","correction_factor_on_min_envelope_violation":0.9}`, time.Second},
		{"EMA unknown field", "EMA", `{"ema_window":"2s","alpha":0.3}`, time.Second},
		{"EMA duration must be a string", "EMA", `{"ema_window":2}`, time.Second},
		{"GradientController slope 0", "GradientController", `{"slope":0}`, time.Second},
		{"GradientController min_gradient above max_gradient", "GradientController", `{"min_gradient":0.9,"max_gradient":0.5}`, time.Second},
		{"AIMDController max_load_multiplier 0", "AIMDController", `{"max_load_multiplier":0}`, time.Second},
		{"AIMDController negative increment", "AIMDController", `{"load_multiplier_linear_increment":-0.1}`, time.Second},
		{"AIMDController min_gradient above max_gradient", "AIMDController", `{"min_gradient":2}`, time.Second},
		{"Arithmetic unknown operator", "Arithmetic", `{"operator":"mod"}`, time.Second},
		{"Arithmetic needs an operator", "Arithmetic", ``, time.Second},
		{"Decider unknown operator", "Decider", `{"operator":"ge"}`, time.Second},
		{"Holder needs hold_for", "Holder", ``, time.Second},
		{"Variable needs a value", "Variable", `{}`, time.Second},
		{"Clamp has no parameters", "Clamp", `{"min":1}`, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := provisionComponent(tc.typ, tc.params, tc.interval); err == nil {
				t.Errorf("%s %s: no error", tc.typ, tc.params)
			}
		})
	}
}

func TestDurationTicks(t *testing.T) {
	for _, tc := range []struct {
		duration string
		interval time.Duration
		want     int
	}{
		{"1500s", 500 * time.Millisecond, 3000},
		{"60s", 500 * time.Millisecond, 120},
		{"2500ms", time.Second, 3}, // rounded up
		{"1s", time.Second, 1},
		{"1ns", time.Second, 1},
		{"0s", time.Second, 1}, // at least one tick
		{"5s", 0, 1},
	} {
		var d components.Duration
		if err := json.Unmarshal([]byte(`"`+tc.duration+`"`), &d); err != nil {
			t.Fatalf("%s: %v", tc.duration, err)
		}
		if got := d.Ticks(tc.interval); got != tc.want {
			t.Errorf("Duration(%s).Ticks(%v) = %d, want %d", tc.duration, tc.interval, got, tc.want)
		}
	}
}
