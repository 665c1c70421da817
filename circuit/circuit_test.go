package circuit_test

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/spillway-dev/spillway/circuit"
	"github.com/spillway-dev/spillway/components"
)

// build makes a provisioned component of typ from its JSON parameters.
func build(t *testing.T, typ, params string) components.Component {
	t.Helper()
	info, ok := components.Lookup(typ)
	if !ok {
		t.Fatalf("no component type %s", typ)
	}
	c := info.New()
	if err := json.Unmarshal([]byte(params), c); err != nil {
		t.Fatal(err)
	}
	if p, ok := c.(components.Provisioner); ok {
		if err := p.Provision(components.Env{Interval: 1e9}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// outputs is an Out list of n unwired slots but slot → signal.
func outputs(n int, slot, signal int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = -1
	}
	out[slot] = signal
	return out
}

func constant(v float64) circuit.Input { return circuit.Input{Signal: -1, Value: v} }
func signal(i int) circuit.Input       { return circuit.Input{Signal: i} }

// Signals of the test circuit.
const (
	incoming = iota // the flux meter's incoming_rps
	limit           // incoming × 0.5
	count           // ticks so far: previous count (or 0) + 1
	over            // incoming > 100
	previous        // last tick's count, or 0 on the first
)

// shedHalf meters incoming traffic, limits it to half with a burst of 5,
// alerts above 100 requests per second and counts its own ticks through a
// loop.
func shedHalf(t *testing.T) *circuit.Circuit {
	return circuit.New([]string{"INCOMING", "LIMIT", "COUNT", "OVER", "PREVIOUS"}, []circuit.Node{
		{Path: "components[0].FluxMeter", Component: build(t, "FluxMeter", `{"selector":{"control_point":"ingress"}}`),
			Out: outputs(fluxMeterPorts(t), 5, incoming)},
		{Path: "components[1].Arithmetic", Component: build(t, "Arithmetic", `{"operator":"mul"}`),
			In: []circuit.Input{signal(incoming), constant(0.5)}, Out: []int{limit}},
		{Path: "components[2].FirstValid", Component: build(t, "FirstValid", `{}`),
			In: []circuit.Input{{Signal: count, Delayed: true}, constant(0)}, Out: []int{previous}},
		{Path: "components[3].Arithmetic", Component: build(t, "Arithmetic", `{"operator":"add"}`),
			In: []circuit.Input{signal(previous), constant(1)}, Out: []int{count}},
		{Path: "components[4].Decider", Component: build(t, "Decider", `{"operator":"gt"}`),
			In: []circuit.Input{signal(incoming), constant(100)}, Out: []int{over}},
		{Path: "components[5].Alerter", Component: build(t, "Alerter", `{"alert_name":"overload"}`),
			In: []circuit.Input{signal(over)}},
		{Path: "components[6].RateLimiter", Component: build(t, "RateLimiter", `{"selector":{"control_point":"ingress"}}`),
			In: []circuit.Input{signal(limit), constant(5)}},
	})
}

// fluxMeterPorts is the number of a FluxMeter's output ports.
func fluxMeterPorts(t *testing.T) int {
	info, ok := components.Lookup("FluxMeter")
	if !ok {
		t.Fatal("no FluxMeter component")
	}
	return len(info.New().Ports().Out)
}

func same(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

func TestTickTurnsReadingsIntoSetpointsAndAlerts(t *testing.T) {
	c := shedHalf(t)
	nan := math.NaN()
	for i, tick := range []struct {
		name     string
		readings []components.FluxReading // nil: nothing new measured
		values   []float64                // INCOMING, LIMIT, COUNT, OVER, PREVIOUS
		setpoint circuit.Setpoint
		alerts   []circuit.Alert
	}{
		{"no reading yet: every measured signal invalid, the limiter fails open", nil,
			[]float64{nan, nan, 1, nan, 0}, circuit.Setpoint{Value: nan, Burst: 5}, nil},
		{"50 req/s: a limit of 25", []components.FluxReading{{IncomingRps: 50}},
			[]float64{50, 25, 2, 0, 1}, circuit.Setpoint{Value: 25, Burst: 5}, nil},
		{"nothing new measured: the source keeps its last reading", nil,
			[]float64{50, 25, 3, 0, 2}, circuit.Setpoint{Value: 25, Burst: 5}, nil},
		{"300 req/s: a limit of 150 and the alert", []components.FluxReading{{IncomingRps: 300}},
			[]float64{300, 150, 4, 1, 3}, circuit.Setpoint{Value: 150, Burst: 5},
			[]circuit.Alert{{Name: "overload", Path: "components[5].Alerter"}}},
	} {
		ready := c.Tick(circuit.Inputs{Readings: tick.readings})
		if ready.Tick != uint64(i+1) || c.Ticks() != uint64(i+1) {
			t.Fatalf("%s: Ready.Tick %d, Ticks %d, want %d", tick.name, ready.Tick, c.Ticks(), i+1)
		}
		for s, want := range tick.values {
			if got := c.Values()[s]; !same(got, want) {
				t.Errorf("%s: %s = %v, want %v", tick.name, c.Names()[s], got, want)
			}
		}
		if len(ready.Setpoints) != 1 || !same(ready.Setpoints[0].Value, tick.setpoint.Value) || ready.Setpoints[0].Burst != tick.setpoint.Burst {
			t.Errorf("%s: setpoints %v, want [%v]", tick.name, ready.Setpoints, tick.setpoint)
		}
		if len(ready.Alerts) != len(tick.alerts) || (len(tick.alerts) > 0 && ready.Alerts[0] != tick.alerts[0]) {
			t.Errorf("%s: alerts %v, want %v", tick.name, ready.Alerts, tick.alerts)
		}
	}
	if got := c.NodeInputs(1); got[0] != 300 || got[1] != 0.5 {
		t.Errorf("the multiplier read %v, want [300 0.5]", got)
	}
}

func TestTickCommandsAgentsAndReportsTheirMode(t *testing.T) {
	c := circuit.New([]string{"RATE"}, []circuit.Node{{
		Path:      "components[0].RLActuator",
		Component: build(t, "RLActuator", `{"selector":{"control_point":"ingress","api":"GET /a"},"agent_timeout":2}`),
		In:        []circuit.Input{constant(7)},
		Out:       []int{0, -1, -1},
	}})
	if len(c.Agents()) != 1 || len(c.Sources()) != 1 || len(c.Sinks()) != 0 {
		t.Fatalf("agents %v, sources %v, sinks %v: want the actuator as agent and source only", c.Agents(), c.Sources(), c.Sinks())
	}
	for _, tick := range []struct {
		name string
		cmd  circuit.AgentCommand
		want circuit.AgentMode
	}{
		{"the agent sets 42", circuit.AgentCommand{Present: true, RatePerSec: 42, Contacts: 1},
			circuit.AgentMode{SeenContacts: 1, RateInForce: 42}},
		{"silent once", circuit.AgentCommand{Present: true, RatePerSec: math.NaN(), Contacts: 1},
			circuit.AgentMode{SeenContacts: 1, SilentTicks: 1, RateInForce: 42}},
		{"silent for agent_timeout ticks: the fallback input", circuit.AgentCommand{Present: true, RatePerSec: math.NaN(), Contacts: 1},
			circuit.AgentMode{SeenContacts: 1, SilentTicks: 2, UsingFallback: true, RateInForce: 7}},
		{"no agent registered: not commanded, still silent", circuit.AgentCommand{},
			circuit.AgentMode{SeenContacts: 1, SilentTicks: 3, UsingFallback: true, RateInForce: 7}},
	} {
		ready := c.Tick(circuit.Inputs{Agents: []circuit.AgentCommand{tick.cmd}})
		if ready.Agents[0] != tick.want {
			t.Errorf("%s: mode %+v, want %+v", tick.name, ready.Agents[0], tick.want)
		}
		if got := c.Values()[0]; got != tick.want.RateInForce {
			t.Errorf("%s: RATE %v, want %v", tick.name, got, tick.want.RateInForce)
		}
	}
}

func TestAdoptCarriesSignalsAndTicks(t *testing.T) {
	old := shedHalf(t)
	old.Tick(circuit.Inputs{Readings: []components.FluxReading{{IncomingRps: 50}}})
	old.Tick(circuit.Inputs{})
	next := shedHalf(t)
	next.Adopt(old)
	if next.Ticks() != 2 || next.Values()[count] != 2 {
		t.Fatalf("after Adopt: ticks %d, COUNT %v; want 2 and 2", next.Ticks(), next.Values()[count])
	}
	next.SetComponent(0, old.Component(0)) // the flux meter keeps its reading
	next.Tick(circuit.Inputs{})
	if v := next.Values(); v[count] != 3 || v[limit] != 25 {
		t.Fatalf("the tick after Adopt: COUNT %v, LIMIT %v; want 3 and 25", v[count], v[limit])
	}
}

func TestTickAllocatesNothing(t *testing.T) {
	c := shedHalf(t)
	in := circuit.Inputs{Readings: []components.FluxReading{{IncomingRps: 300}}}
	if n := testing.AllocsPerRun(100, func() { c.Tick(in) }); n != 0 {
		t.Fatalf("Tick allocates %v times, want 0", n)
	}
}
