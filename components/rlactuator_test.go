package components_test

import (
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

// rlTick is one tick of an RLActuator: what the engine commands before
// Execute (the agent's latest rate, NaN when it set none, and its contact
// count so far), the fallback input, and the expected outputs.
type rlTick struct {
	command  float64
	contacts uint64
	fallback float64
	// rate_limit, agent_rate, using_fallback.
	wantRateLimit, wantAgentRate, wantUsingFallback float64
}

// newRLActuator provisions an RLActuator from JSON parameters the way
// engine.Compile does.
func newRLActuator(t *testing.T, params string) *components.RLActuator {
	t.Helper()
	comp := mustProvisionComponent(t, "RLActuator", params, time.Second)
	a, ok := comp.(*components.RLActuator)
	if !ok {
		t.Fatalf("RLActuator is a %T", comp)
	}
	return a
}

func TestRLActuatorPortsAndInterfaces(t *testing.T) {
	a := newRLActuator(t, `{"selector":{"control_point":"ingress","api":"GET /a"}}`)
	ports := a.Ports()
	if len(ports.In) != 1 || ports.In[0].Name != "fallback" || ports.In[0].Required || ports.In[0].Variadic {
		t.Errorf("inputs %+v, want one optional port fallback", ports.In)
	}
	if want := []string{"rate_limit", "agent_rate", "using_fallback"}; !slices.Equal(ports.Out, want) {
		t.Errorf("outputs %v, want %v", ports.Out, want)
	}
	var comp components.Component = a
	if _, ok := comp.(components.AgentActuator); !ok {
		t.Error("RLActuator is not an AgentActuator: the engine would not drive it")
	}
	if _, ok := comp.(components.Source); !ok {
		t.Error("RLActuator is not a Source: the engine would not measure its selector")
	}
	if _, ok := comp.(components.Sink); ok {
		t.Error("RLActuator is a Sink: it must leave the limiter to a RateLimiter")
	}
}

// Everything but the selector has a default; the agent's name for the API
// is the selector's API label unless api says otherwise.
func TestRLActuatorProvisionDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, params string
		want         components.AgentSpec
		wantTimeout  int
	}{
		{
			name:   "only a selector: cluster default, priority 1, SLO 1 s, bounds [0, unbounded], initial rate 1000, timeout 5",
			params: `{"selector":{"control_point":"ingress","api":"GET /a"}}`,
			want: components.AgentSpec{
				API: "GET /a", Cluster: "default", Priority: 1, SLO: time.Second,
				SustainableRPS: 0, LowerBound: 0, UpperBound: math.MaxFloat64, InitialRate: 1000,
			},
			wantTimeout: 5,
		},
		{
			name:   "a selector without an API label names the whole control point *",
			params: `{"selector":{"control_point":"ingress"}}`,
			want: components.AgentSpec{
				API: "*", Cluster: "default", Priority: 1, SLO: time.Second,
				UpperBound: math.MaxFloat64, InitialRate: 1000,
			},
			wantTimeout: 5,
		},
		{
			name: "every parameter set is kept; api overrides the selector's label",
			params: `{"api":"checkout","selector":{"control_point":"ingress","api":"POST /checkout"},
				"slo":"250ms","priority":3,"cluster":"shop","sustainable_rps":200,
				"lower_bound":10,"upper_bound":300,"initial_rate":50,"agent_timeout":2}`,
			want: components.AgentSpec{
				API: "checkout", Cluster: "shop", Priority: 3, SLO: 250 * time.Millisecond,
				SustainableRPS: 200, LowerBound: 10, UpperBound: 300, InitialRate: 50,
			},
			wantTimeout: 2,
		},
		{
			// Agent() reports the configured initial rate; Execute clamps it
			// (see TestRLActuatorTicks).
			name:   "the initial rate is reported as configured, not clamped",
			params: `{"selector":{"control_point":"ingress"},"upper_bound":500}`,
			want: components.AgentSpec{
				API: "*", Cluster: "default", Priority: 1, SLO: time.Second,
				UpperBound: 500, InitialRate: 1000,
			},
			wantTimeout: 5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newRLActuator(t, tc.params)
			if got := a.Agent(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Agent() = %+v, want %+v", got, tc.want)
			}
			if a.FallbackAfter() != tc.wantTimeout {
				t.Errorf("FallbackAfter() = %d, want %d", a.FallbackAfter(), tc.wantTimeout)
			}
			if got := a.SLO(); got != tc.want.SLO {
				t.Errorf("SLO() = %v, want %v", got, tc.want.SLO)
			}
		})
	}
}

func TestRLActuatorSelectorIsWhereTheAPIIsMeasured(t *testing.T) {
	a := newRLActuator(t, `{"api":"checkout","selector":{"control_point":"ingress","api":"POST /checkout"}}`)
	want := components.Selector{ControlPoint: "ingress", API: "POST /checkout"}
	if got := a.Selector(); got != want {
		t.Errorf("Selector() = %+v, want %+v", got, want)
	}
}

func TestRLActuatorProvisionErrors(t *testing.T) {
	selector := components.Selector{ControlPoint: "ingress", API: "GET /a"}
	for _, tc := range []struct {
		name   string
		params string
		// comp, when set, is provisioned as is: JSON cannot carry ±Inf or NaN.
		comp    *components.RLActuator
		wantErr string
	}{
		{name: "the selector's control point is required", params: `{"selector":{"api":"GET /a"}}`,
			wantErr: "selector.control_point is required"},
		{name: "no selector at all", params: `{}`,
			wantErr: "selector.control_point is required"},
		{name: "priority below 1", params: `{"selector":{"control_point":"ingress"},"priority":-1}`,
			wantErr: "priority -1: must be >= 1 (1 is the highest)"},
		{name: "negative agent_timeout", params: `{"selector":{"control_point":"ingress"},"agent_timeout":-2}`,
			wantErr: "agent_timeout -2: must be >= 1 tick"},
		{name: "negative lower_bound", params: `{"selector":{"control_point":"ingress"},"lower_bound":-1}`,
			wantErr: "lower_bound -1: must be >= 0"},
		{name: "infinite lower_bound", comp: &components.RLActuator{Select: selector, LowerBound: math.Inf(1)},
			wantErr: "lower_bound +Inf: must be >= 0"},
		{name: "NaN lower_bound", comp: &components.RLActuator{Select: selector, LowerBound: math.NaN()},
			wantErr: "lower_bound NaN: must be >= 0"},
		{name: "upper_bound below lower_bound", params: `{"selector":{"control_point":"ingress"},"lower_bound":10,"upper_bound":5}`,
			wantErr: "upper_bound 5: must be finite and >= lower_bound 10"},
		{name: "infinite upper_bound", comp: &components.RLActuator{Select: selector, UpperBound: floatPtr(math.Inf(1))},
			wantErr: "upper_bound +Inf: must be finite and >= lower_bound 0"},
		{name: "negative sustainable_rps", params: `{"selector":{"control_point":"ingress"},"sustainable_rps":-1}`,
			wantErr: "sustainable_rps -1: must be >= 0"},
		{name: "unknown parameter", params: `{"selector":{"control_point":"ingress"},"rate":5}`,
			wantErr: `json: unknown field "rate"`},
		{name: "slo must be a duration string", params: `{"selector":{"control_point":"ingress"},"slo":100}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.comp != nil {
				err = tc.comp.Provision(components.Env{Interval: time.Second})
			} else {
				_, err = provisionComponent("RLActuator", tc.params, time.Second)
			}
			switch {
			case err == nil:
				t.Fatalf("no error, want %q", tc.wantErr)
			case tc.wantErr != "" && err.Error() != tc.wantErr:
				t.Errorf("error %q, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestRLActuatorTicks(t *testing.T) {
	nan := components.Invalid
	inf := math.Inf(1)
	bounded := `{"selector":{"control_point":"ingress","api":"GET /a"},"lower_bound":10,"upper_bound":500}`
	for _, tc := range []struct {
		name   string
		params string
		ticks  []rlTick
	}{
		{
			name:   "before the agent sets a rate, the rate is the default initial rate 1000",
			params: `{"selector":{"control_point":"ingress","api":"GET /a"}}`,
			ticks: []rlTick{
				{nan, 1, nan, 1000, 1000, 0},
				{nan, 2, 40, 1000, 1000, 0}, // the fallback input is ignored in agent mode
				{250, 3, nan, 250, 250, 0},
			},
		},
		{
			name:   "the initial rate is clamped to the upper bound",
			params: bounded,
			ticks:  []rlTick{{nan, 1, nan, 500, 500, 0}},
		},
		{
			name:   "the initial rate is clamped to the lower bound",
			params: `{"selector":{"control_point":"ingress"},"lower_bound":10,"initial_rate":3}`,
			ticks:  []rlTick{{nan, 1, nan, 10, 10, 0}},
		},
		{
			name:   "initial_rate replaces the default",
			params: `{"selector":{"control_point":"ingress"},"initial_rate":42.5}`,
			ticks:  []rlTick{{nan, 1, nan, 42.5, 42.5, 0}},
		},
		{
			name:   "the agent's rate is clamped to [lower_bound, upper_bound], fractions kept",
			params: bounded,
			ticks: []rlTick{
				{5, 1, nan, 10, 10, 0},
				{600, 2, nan, 500, 500, 0},
				{123.456, 3, nan, 123.456, 123.456, 0},
				{0, 4, nan, 10, 10, 0},
				{10, 5, nan, 10, 10, 0},    // the lower bound itself
				{500, 6, nan, 500, 500, 0}, // the upper bound itself
				{inf, 7, nan, 500, 500, 0},
				{-inf, 8, nan, 10, 10, 0},
			},
		},
		{
			name:   "without an upper bound any finite rate passes, 0 included",
			params: `{"selector":{"control_point":"ingress"}}`,
			ticks: []rlTick{
				{0, 1, nan, 0, 0, 0},
				{1e9, 2, nan, 1e9, 1e9, 0},
			},
		},
		{
			name:   "an invalid command keeps the last rate",
			params: bounded,
			ticks: []rlTick{
				{200, 1, nan, 200, 200, 0},
				{nan, 2, nan, 200, 200, 0},
				{nan, 3, nan, 200, 200, 0},
				{300, 4, nan, 300, 300, 0},
				{nan, 5, nan, 300, 300, 0},
			},
		},
		{
			name:   "an agent that never contacts falls back at the agent_timeout-th tick, not before",
			params: `{"selector":{"control_point":"ingress"},"agent_timeout":3}`,
			ticks: []rlTick{
				{nan, 0, 70, 1000, 1000, 0}, // silent tick 1
				{nan, 0, 70, 1000, 1000, 0}, // silent tick 2
				{nan, 0, 70, 70, 1000, 1},   // silent tick 3 = agent_timeout
				{nan, 0, 80, 80, 1000, 1},   // the fallback is followed tick by tick
			},
		},
		{
			name:   "fallback_until_contact: the fallback from the first tick until the agent's first contact",
			params: `{"selector":{"control_point":"ingress"},"agent_timeout":3,"fallback_until_contact":true}`,
			ticks: []rlTick{
				{nan, 0, 40, 40, 1000, 1},
				{nan, 0, 45, 45, 1000, 1},
				{nan, 1, 50, 1000, 1000, 0}, // first contact: the agent's (initial) rate
				{200, 2, 55, 200, 200, 0},
				{nan, 2, 60, 200, 200, 0},
				{nan, 2, 65, 200, 200, 0},
				{nan, 2, 70, 70, 200, 1}, // agent_timeout ticks of silence
			},
		},
		{
			name:   "the default agent_timeout is 5 ticks",
			params: `{"selector":{"control_point":"ingress"}}`,
			ticks: []rlTick{
				{nan, 0, 70, 1000, 1000, 0},
				{nan, 0, 70, 1000, 1000, 0},
				{nan, 0, 70, 1000, 1000, 0},
				{nan, 0, 70, 1000, 1000, 0},
				{nan, 0, 70, 70, 1000, 1},
			},
		},
		{
			name:   "a contact resets the silence and returns to agent mode",
			params: `{"selector":{"control_point":"ingress"},"agent_timeout":2}`,
			ticks: []rlTick{
				{200, 1, 70, 200, 200, 0}, // contact
				{nan, 1, 70, 200, 200, 0}, // silent 1
				{nan, 1, 70, 70, 200, 1},  // silent 2: fallback
				{nan, 1, 70, 70, 200, 1},  // silent 3
				{nan, 2, 70, 200, 200, 0}, // a read without a new rate is a contact
				{nan, 2, 70, 200, 200, 0}, // silent 1
				{nan, 2, 70, 70, 200, 1},  // silent 2: fallback again
				{300, 7, 70, 300, 300, 0}, // several contacts since the last tick count as one
				{nan, 7, 70, 300, 300, 0},
			},
		},
		{
			name:   "a new rate without a new contact is silence: agent_rate follows, rate_limit stays on the fallback",
			params: `{"selector":{"control_point":"ingress"},"agent_timeout":1}`,
			ticks: []rlTick{
				{nan, 0, 70, 70, 1000, 1},
				{400, 0, 70, 70, 400, 1},
				{nan, 1, 70, 400, 400, 0},
			},
		},
		{
			name:   "agent_timeout 1: every tick without a contact uses the fallback",
			params: `{"selector":{"control_point":"ingress"},"agent_timeout":1}`,
			ticks: []rlTick{
				{nan, 1, 70, 1000, 1000, 0},
				{nan, 1, 70, 70, 1000, 1},
				{nan, 2, 70, 1000, 1000, 0},
				{nan, 3, 70, 1000, 1000, 0},
				{nan, 3, 70, 70, 1000, 1},
			},
		},
		{
			name:   "the fallback is clamped to the bounds",
			params: `{"selector":{"control_point":"ingress"},"lower_bound":10,"upper_bound":500,"agent_timeout":1}`,
			ticks: []rlTick{
				{nan, 0, 5, 10, 500, 1},
				{nan, 0, 900, 500, 500, 1},
				{nan, 0, 250.5, 250.5, 500, 1},
				{nan, 0, 0, 10, 500, 1},
				{nan, 0, inf, 500, 500, 1},
			},
		},
		{
			name:   "an invalid or unwired fallback is no limit: rate_limit invalid",
			params: bounded,
			ticks: []rlTick{
				{100, 1, nan, 100, 100, 0},
				{nan, 1, nan, 100, 100, 0},
				{nan, 1, nan, 100, 100, 0},
				{nan, 1, nan, 100, 100, 0},
				{nan, 1, nan, 100, 100, 0},
				{nan, 1, nan, nan, 100, 1}, // silent tick 5
				{nan, 1, 60, 60, 100, 1},   // a valid fallback again
				{nan, 1, nan, nan, 100, 1},
				{nan, 2, nan, 100, 100, 0}, // the agent is back
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newRLActuator(t, tc.params)
			outs := a.Ports().Out
			for i, tk := range tc.ticks {
				a.Command(tk.command, tk.contacts)
				out := []float64{-12345, -12345, -12345} // a value no test expects
				a.Execute([]float64{tk.fallback}, out)
				want := []float64{tk.wantRateLimit, tk.wantAgentRate, tk.wantUsingFallback}
				for j := range want {
					if !sameSignal(out[j], want[j]) {
						t.Errorf("tick %d: Command(%v, %d), fallback %v: %s = %v, want %v",
							i+1, tk.command, tk.contacts, tk.fallback, outs[j], out[j], want[j])
					}
				}
				if got, want := a.UsingFallback(), tk.wantUsingFallback == 1; got != want {
					t.Errorf("tick %d: UsingFallback() = %v, want %v", i+1, got, want)
				}
			}
		})
	}
}

func TestAgentSpecClamp(t *testing.T) {
	spec := components.AgentSpec{LowerBound: 10, UpperBound: 500}
	for _, tc := range []struct{ rate, want float64 }{
		{5, 10}, {10, 10}, {123.456, 123.456}, {500, 500}, {501, 500},
		{math.Inf(1), 500}, {math.Inf(-1), 10},
	} {
		if got := spec.Clamp(tc.rate); got != tc.want {
			t.Errorf("Clamp(%v) = %v, want %v", tc.rate, got, tc.want)
		}
	}
}

func floatPtr(v float64) *float64 { return &v }

func TestRLActuatorUpperBoundZeroAdmitsNothing(t *testing.T) {
	c := mustProvisionComponent(t, "RLActuator", `{"selector":{"control_point":"ingress","api":"GET /a"},"upper_bound":0}`, time.Second)
	a := c.(*components.RLActuator)
	a.Command(250, 1)
	out := make([]float64, 3)
	a.Execute([]float64{components.Invalid}, out)
	if out[0] != 0 || a.Agent().UpperBound != 0 {
		t.Errorf("rate_limit %v, upper bound %v; want 0 and 0: an explicit upper_bound 0 is a bound, not its absence", out[0], a.Agent().UpperBound)
	}
}
