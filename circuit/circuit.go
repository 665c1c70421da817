// Package circuit evaluates a compiled policy, a tick at a time, as a
// deterministic state machine in the manner of etcd's raft: Tick takes
// what the outside world measured (flux-meter readings, the RL agent's
// commands) and returns a Ready, what the outside world should apply
// (actuator setpoints, alerts, agent modes). It does no I/O, reads no
// clock and starts no goroutine; package engine is the shell that feeds
// it and applies what it returns.
//
// A Circuit is built from nodes already in evaluation order, with their
// inputs resolved to signal indexes (engine.Compile does that). It is not
// safe for concurrent use.
package circuit

import (
	"math"

	"github.com/spillway-dev/spillway/components"
)

// Input is where one input slot of a node reads from.
type Input struct {
	// Signal is the index of the signal read, or -1 for Value.
	Signal int
	// Delayed reads the signal's value of the previous tick, which cuts a
	// loop; the first tick reads it as invalid.
	Delayed bool
	// Value is the constant read when Signal is -1: NaN for an unwired
	// port.
	Value float64
}

// Node is one component and its wiring.
type Node struct {
	// Path locates the component in its policy ("components[2].EMA"); an
	// Alert carries it.
	Path      string
	Component components.Component
	// In has one entry per input slot, in the order of Ports().In with a
	// variadic port expanded.
	In []Input
	// Out is the signal index of each output slot, -1 when unwired.
	Out []int
}

// Circuit is a policy's components and the signals between them.
type Circuit struct {
	names   []string
	signals []float64 // values of the last tick
	prev    []float64 // values of the tick before
	nodes   []node
	sources []int // node indexes of components.Source nodes
	sinks   []int
	alerts  []int
	agents  []int // node indexes of components.AgentActuator nodes
	ticks   uint64
	ready   Ready // reused: Tick allocates nothing
}

// node is a Node with its buffers.
type node struct {
	Node
	in, out []float64
}

// New builds a circuit of the named signals (all invalid) and nodes, in
// evaluation order. A node is a source, sink, alert or agent actuator by
// the interfaces of its component (components.Source, Sink, Alert,
// AgentActuator).
//
// A node's wiring and buffers are copied into a few arrays shared by all
// nodes, in evaluation order, so that a tick walks memory in one
// direction: a process ticking a thousand policies spends most of a tick
// on cache misses.
func New(signalNames []string, nodes []Node) *Circuit {
	var ins, outs int
	for _, n := range nodes {
		ins += len(n.In)
		outs += len(n.Out)
	}
	values := make([]float64, 2*len(signalNames)+ins+outs)
	wiring, signalsOf := make([]Input, 0, ins), make([]int, 0, outs)
	c := &Circuit{
		names:   signalNames,
		signals: values[:len(signalNames):len(signalNames)],
		prev:    values[len(signalNames) : 2*len(signalNames) : 2*len(signalNames)],
		nodes:   make([]node, len(nodes)),
	}
	for i := range c.signals {
		c.signals[i], c.prev[i] = math.NaN(), math.NaN()
	}
	values = values[2*len(signalNames):]
	for i, n := range nodes {
		k := len(wiring)
		wiring = append(wiring, n.In...)
		n.In = wiring[k:len(wiring):len(wiring)]
		k = len(signalsOf)
		signalsOf = append(signalsOf, n.Out...)
		n.Out = signalsOf[k:len(signalsOf):len(signalsOf)]
		in, out := values[:len(n.In):len(n.In)], values[len(n.In):len(n.In)+len(n.Out):len(n.In)+len(n.Out)]
		values = values[len(n.In)+len(n.Out):]
		c.nodes[i] = node{Node: n, in: in, out: out}
		c.classify(i)
	}
	c.ready.Setpoints = make([]Setpoint, len(c.sinks))
	c.ready.Agents = make([]AgentMode, len(c.agents))
	return c
}

// classify files node i under the roles of its component.
func (c *Circuit) classify(i int) {
	comp := c.nodes[i].Component
	if _, ok := comp.(components.Source); ok {
		c.sources = append(c.sources, i)
	}
	if _, ok := comp.(components.AgentActuator); ok {
		c.agents = append(c.agents, i)
	}
	if _, ok := comp.(components.Sink); ok {
		c.sinks = append(c.sinks, i)
	}
	if _, ok := comp.(components.Alert); ok {
		c.alerts = append(c.alerts, i)
	}
}

// Inputs are what one tick consumes.
type Inputs struct {
	// Readings has one flux-meter reading per source, in Sources order, or
	// is nil when nothing new was measured (the sources keep their last).
	Readings []components.FluxReading
	// Agents has one command per agent actuator, in Agents order, or is
	// nil when there is no agent.
	Agents []AgentCommand
}

// AgentCommand is what the RL agent last told one API.
type AgentCommand struct {
	// Present is false when no agent has registered the API: the actuator
	// is not commanded.
	Present bool
	// RatePerSec is the rate the agent set (NaN before it set one).
	RatePerSec float64
	// Contacts counts the agent's contacts so far.
	Contacts uint64
}

// Ready is what one tick produced. Its slices belong to the circuit and
// are valid until the next Tick.
type Ready struct {
	// Tick counts the ticks evaluated, this one included.
	Tick uint64
	// Setpoints has one entry per sink, in Sinks order.
	Setpoints []Setpoint
	// Alerts are the alerts that fired this tick.
	Alerts []Alert
	// Agents has one entry per agent actuator, in Agents order.
	Agents []AgentMode
}

// Setpoint is a sink's latched values: invalid Value means no limit
// (fail-open), invalid Burst the actuator's default.
type Setpoint struct{ Value, Burst float64 }

// Alert is one alert that fired.
type Alert struct {
	Name string
	// Path is the alerting component's place in the policy.
	Path string
}

// AgentMode is an agent actuator's state after a tick.
type AgentMode struct {
	// SeenContacts and SilentTicks are its count of the agent's contacts
	// and the ticks since the last one (components.AgentActuator.Silence).
	SeenContacts uint64
	SilentTicks  int
	// UsingFallback is true while the agent is silent past its timeout.
	UsingFallback bool
	// RateInForce is the rate limit the actuator applies (NaN: none).
	RateInForce float64
}

// Tick evaluates every node once, in order, after handing the sources
// their readings and the agent actuators their commands. Delayed inputs
// read the previous tick.
func (c *Circuit) Tick(in Inputs) Ready {
	for i, r := range in.Readings {
		c.nodes[c.sources[i]].Component.(components.Source).Observe(r)
	}
	for i, cmd := range in.Agents {
		if cmd.Present {
			c.nodes[c.agents[i]].Component.(components.AgentActuator).Command(cmd.RatePerSec, cmd.Contacts)
		}
	}
	copy(c.prev, c.signals)
	for i := range c.signals {
		c.signals[i] = math.NaN()
	}
	for k := range c.nodes {
		n := &c.nodes[k]
		for i, r := range n.In {
			switch {
			case r.Signal < 0:
				n.in[i] = r.Value
			case r.Delayed:
				n.in[i] = c.prev[r.Signal]
			default:
				n.in[i] = c.signals[r.Signal]
			}
		}
		n.Component.Execute(n.in, n.out)
		for i, s := range n.Out {
			if s >= 0 {
				c.signals[s] = n.out[i]
			}
		}
	}
	c.ticks++
	return c.collect()
}

// collect fills the Ready of the tick just evaluated.
func (c *Circuit) collect() Ready {
	r := &c.ready
	r.Tick = c.ticks
	for i, k := range c.sinks {
		value, burst := c.nodes[k].Component.(components.Sink).Setpoint()
		r.Setpoints[i] = Setpoint{Value: value, Burst: burst}
	}
	r.Alerts = r.Alerts[:0]
	for _, k := range c.alerts {
		if name, firing := c.nodes[k].Component.(components.Alert).Firing(); firing {
			r.Alerts = append(r.Alerts, Alert{Name: name, Path: c.nodes[k].Path})
		}
	}
	for i, k := range c.agents {
		a := c.nodes[k].Component.(components.AgentActuator)
		seen, silent := a.Silence()
		r.Agents[i] = AgentMode{SeenContacts: seen, SilentTicks: silent, UsingFallback: a.UsingFallback(), RateInForce: a.RateInForce()}
	}
	return *r
}

// Values are the signals' values after the last tick, by index. The
// slice is the circuit's own: it changes at every Tick.
func (c *Circuit) Values() []float64 { return c.signals }

// Names are the signals' names, by index.
func (c *Circuit) Names() []string { return c.names }

// Ticks counts the ticks evaluated.
func (c *Circuit) Ticks() uint64 { return c.ticks }

// NodeInputs are the values node i read at the last tick, by input slot.
func (c *Circuit) NodeInputs(i int) []float64 { return c.nodes[i].in }

// Wiring is node i's inputs and outputs as the circuit keeps them (see
// New); callers must not modify them.
func (c *Circuit) Wiring(i int) (in []Input, out []int) { return c.nodes[i].In, c.nodes[i].Out }

// Component is node i's component.
func (c *Circuit) Component(i int) components.Component { return c.nodes[i].Component }

// Sources, Sinks and Agents are the node indexes of the sources, sinks
// and agent actuators, in the order Inputs and Ready list them.
func (c *Circuit) Sources() []int { return c.sources }

// Sinks: see Sources.
func (c *Circuit) Sinks() []int { return c.sinks }

// Agents: see Sources.
func (c *Circuit) Agents() []int { return c.agents }

// Alerts are the node indexes of the components.Alert nodes.
func (c *Circuit) Alerts() []int { return c.alerts }

// SetComponent replaces node i's component by one of the same type,
// parameters and wiring whose state carries over (a reload).
func (c *Circuit) SetComponent(i int, comp components.Component) { c.nodes[i].Component = comp }

// Adopt continues prev's run in c, for a reload: every signal that prev
// has by name takes its last value, and the tick count goes on.
func (c *Circuit) Adopt(prev *Circuit) {
	index := make(map[string]int, len(prev.names))
	for j, name := range prev.names {
		index[name] = j
	}
	for i, name := range c.names {
		if j, ok := index[name]; ok {
			c.signals[i] = prev.signals[j]
		}
	}
	c.ticks = prev.ticks
}
