package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/spillway-dev/spillway/circuit"
	"github.com/spillway-dev/spillway/components"
)

// Circuit is a compiled policy: its spec and its circuit.Circuit, the pure
// state machine that the engine ticks, with what the engine needs to know
// of each component (its spec and ports). A Circuit is not safe for
// concurrent use; the engine ticks each circuit from one goroutine at a
// time.
type Circuit struct {
	Spec Spec
	// Delayed lists the loop edges that read the previous tick's value.
	Delayed []DelayedEdge

	core    *circuit.Circuit
	nodes   []*node   // evaluation order, as core's
	signals []float64 // core.Values(): the signals after the last tick
	names   []string  // signal index → name
	sources []*node   // in core.Sources() order
	sinks   []*node   // in core.Sinks() order
	alerts  []*node
	agents  []*node // sources that are components.AgentActuator, in core.Agents() order
	queries []*node // components.QuerySource, fed by the engine's pollers
	loads   []*node // components.ServiceSignal, read after each tick (Engine.Services)
}

// DelayedEdge is a signal read one tick late to cut a loop.
type DelayedEdge struct {
	Signal string   `json:"signal"`
	From   string   `json:"from"` // producer component path
	To     string   `json:"to"`   // consumer component path
	Pos    Position `json:"pos"`
}

func (d DelayedEdge) String() string {
	return fmt.Sprintf("%s: signal %s from %s to %s reads the previous tick", d.Pos, d.Signal, d.From, d.To)
}

type node struct {
	spec  *ComponentSpec
	index int // declaration order
	at    int // evaluation order: the node's index in core
	comp  components.Component
	in    []circuit.Input
	port  []components.Port // per input slot, the port it belongs to
	wired []*PortBinding    // per input slot, what is wired to it, nil when nothing is
	out   []int             // signal index per output slot, -1 when unwired
}

// edge is a signal from one component to an input slot of another.
type edge struct {
	from, to *node
	slot     int
	b        *PortBinding
}

// compilation is the state of one Compile, passed from step to step.
type compilation struct {
	c     *Circuit
	caps  PolicyCaps
	diags Diagnostics
	nodes []*node // the components that built, in declaration order
	// failed holds the outputs of components that did not build: their
	// error is reported once, at the component, not again as "has no
	// producer" at every reader.
	failed      map[string]bool
	producer    map[string]*node
	producerAt  map[string]*PortBinding
	signalIndex map[string]int
	edges       []edge
}

func (k *compilation) fail(pos Position, format string, args ...any) {
	k.diags = append(k.diags, Diagnostic{Pos: pos, Message: fmt.Sprintf(format, args...)})
}

// Compile builds a circuit from a spec. Every problem is reported with the
// component path and source position. It runs in named steps, each on
// what the one before produced:
//
//  1. checkPolicyCaps: the policy's size and interval are within Caps;
//  2. resolveComponents: each component is built from its type and
//     parameters, and every input slot is laid out with the binding wired
//     to it, so that no later step recounts ports;
//  3. allocateSignals: each output binding gets a signal index;
//  4. wirePorts: each input slot reads its constant or its signal, and
//     each signal read is an edge of the graph;
//  5. orderAndCutLoops: the edges that close a loop read the previous tick,
//     the rest give the evaluation order;
//  6. build: the pure circuit.Circuit in that order.
func Compile(spec Spec) (*Circuit, Diagnostics) {
	k := &compilation{
		c:           &Circuit{Spec: spec},
		caps:        Caps.withDefaults(),
		failed:      map[string]bool{},
		producer:    map[string]*node{},
		producerAt:  map[string]*PortBinding{},
		signalIndex: map[string]int{},
	}
	if !k.checkPolicyCaps() {
		return nil, k.diags
	}
	k.resolveComponents()
	if !k.allocateSignals() {
		return nil, k.diags.sorted()
	}
	k.wirePorts()
	if len(k.diags) > 0 {
		return nil, k.diags.sorted()
	}
	k.orderAndCutLoops()
	k.build()
	return k.c, nil
}

// checkPolicyCaps refuses a policy over the component cap or with an
// evaluation interval outside the caps' range, before any component is
// built. The interval's error is at the field where it is set.
func (k *compilation) checkPolicyCaps() bool {
	spec := &k.c.Spec
	if len(spec.Components) > k.caps.ComponentsPerPolicy {
		k.fail(spec.Pos, "policy %q has %d components, over the cap of %d (engine.Caps.ComponentsPerPolicy)", spec.Name, len(spec.Components), k.caps.ComponentsPerPolicy)
		return false
	}
	at := spec.IntervalPos
	if at.File == "" {
		at = spec.Pos
	}
	if spec.EvaluationInterval < k.caps.MinEvaluationInterval {
		k.fail(at, "policy %q: evaluation_interval %s is shorter than the minimum %s (engine.Caps.MinEvaluationInterval)", spec.Name, spec.EvaluationInterval, k.caps.MinEvaluationInterval)
		return false
	}
	if spec.EvaluationInterval > k.caps.MaxEvaluationInterval {
		k.fail(at, "policy %q: evaluation_interval %s is longer than the maximum %s (engine.Caps.MaxEvaluationInterval)", spec.Name, spec.EvaluationInterval, k.caps.MaxEvaluationInterval)
		return false
	}
	return true
}

// resolveComponents builds every component and lays out its input slots:
// one per fixed port, wired or not, then one per signal bound to a
// variadic port, in the order of the component's ports.
func (k *compilation) resolveComponents() {
	spec := &k.c.Spec
	env := components.Env{Interval: spec.EvaluationInterval}
	for i := range spec.Components {
		cs := &spec.Components[i]
		comp, err := buildComponent(cs, env)
		if err != nil {
			k.fail(cs.Pos, "%s", err)
			for _, b := range cs.Out {
				k.failed[b.Signal] = true
			}
			continue
		}
		n := &node{spec: cs, index: i, comp: comp}
		k.layOutInputs(n)
		k.nodes = append(k.nodes, n)
	}
}

// layOutInputs checks n's input bindings against its ports and makes its
// input slots, each with its port and binding.
func (k *compilation) layOutInputs(n *node) {
	cs, ports := n.spec, n.comp.Ports().In
	bound := map[string][]*PortBinding{}
	known := map[string]components.Port{}
	for _, p := range ports {
		known[p.Name] = p
	}
	for j := range cs.In {
		b := &cs.In[j]
		p, ok := known[b.Port]
		if !ok {
			k.fail(b.Pos, "%s.in_ports.%s: unknown port (%s has %s)", cs.Path, b.Port, cs.Type, portNames(ports))
			continue
		}
		if !p.Variadic && len(bound[b.Port]) > 0 {
			k.fail(b.Pos, "%s.in_ports.%s: port takes one signal", cs.Path, b.Port)
			continue
		}
		bound[b.Port] = append(bound[b.Port], b)
	}
	for _, p := range ports {
		bs := bound[p.Name]
		if len(bs) == 0 && p.Required {
			k.fail(cs.Pos, "%s.in_ports.%s: required input is not wired", cs.Path, p.Name)
		}
		if len(bs) == 0 && !p.Variadic {
			bs = []*PortBinding{nil} // an unwired fixed port still has its slot
		}
		for _, b := range bs {
			n.in = append(n.in, circuit.Input{Signal: -1, Value: math.NaN()})
			n.port = append(n.port, p)
			n.wired = append(n.wired, b)
		}
	}
}

// allocateSignals gives each output binding of each component a signal
// index. It reports false when the policy passes the signal cap, which
// ends the compilation.
func (k *compilation) allocateSignals() bool {
	for _, n := range k.nodes {
		cs, outs := n.spec, n.comp.Ports().Out
		n.out = make([]int, len(outs))
		for j := range n.out {
			n.out[j] = -1
		}
		for j := range cs.Out {
			b := &cs.Out[j]
			slot := indexOf(outs, b.Port)
			if slot < 0 {
				k.fail(b.Pos, "%s.out_ports.%s: unknown port (%s has %s)", cs.Path, b.Port, cs.Type, strings.Join(outs, ", "))
				continue
			}
			if prev, dup := k.producer[b.Signal]; dup {
				k.fail(b.Pos, "%s.out_ports.%s: signal %q already has a producer, %s at %s", cs.Path, b.Port, b.Signal, prev.spec.Path, k.producerAt[b.Signal].Pos)
				continue
			}
			idx := len(k.c.names)
			if idx >= k.caps.SignalsPerPolicy {
				k.fail(b.Pos, "%s.out_ports.%s: policy %q has more than %d signals (engine.Caps.SignalsPerPolicy)", cs.Path, b.Port, k.c.Spec.Name, k.caps.SignalsPerPolicy)
				return false
			}
			k.signalIndex[b.Signal] = idx
			k.c.names = append(k.c.names, b.Signal)
			k.producer[b.Signal] = n
			k.producerAt[b.Signal] = b
			n.out[slot] = idx
		}
	}
	return true
}

// wirePorts fills each wired input slot: a constant is checked against its
// port's bounds, a signal must have a producer and becomes an edge.
func (k *compilation) wirePorts() {
	for _, n := range k.nodes {
		for slot, b := range n.wired {
			if b == nil {
				continue
			}
			p := n.port[slot]
			from := k.producer[b.Signal]
			switch {
			case b.IsConst:
				n.in[slot].Value = b.Const
				if err := p.Bounds.Check(b.Const); err != nil {
					k.fail(b.Pos, "%s.in_ports.%s: %v", n.spec.Path, b.Port, err)
				}
			case from == nil && k.failed[b.Signal]:
				// Reported at its producer.
			case from == nil:
				k.fail(b.Pos, "%s.in_ports.%s: signal %q has no producer", n.spec.Path, b.Port, b.Signal)
			default:
				if v, ok := from.comp.(*components.Variable); ok {
					if err := p.Bounds.Check(*v.Value); err != nil {
						k.fail(b.Pos, "%s.in_ports.%s: Variable %q (%s): %v", n.spec.Path, b.Port, b.Signal, from.spec.Path, err)
					}
				}
				n.in[slot].Signal = k.signalIndex[b.Signal]
				k.edges = append(k.edges, edge{from: from, to: n, slot: slot, b: b})
			}
		}
	}
}

// orderAndCutLoops cuts every loop: inside a strongly connected component,
// an edge whose source is declared at or after its destination reads the
// last tick. The other edges order the evaluation (Kahn's algorithm, ties
// broken by declaration order for determinism).
func (k *compilation) orderAndCutLoops() {
	all, c := k.nodes, k.c
	pos := make(map[*node]int, len(all))
	for i, n := range all {
		pos[n] = i
	}
	adj := make([][]int, len(all))
	for _, e := range k.edges {
		adj[pos[e.from]] = append(adj[pos[e.from]], pos[e.to])
	}
	scc := stronglyConnected(adj)
	indeg := make([]int, len(all))
	succ := make([][]int, len(all))
	for _, e := range k.edges {
		f, t := pos[e.from], pos[e.to]
		if scc[f] == scc[t] && f >= t {
			e.to.in[e.slot].Delayed = true
			c.Delayed = append(c.Delayed, DelayedEdge{Signal: e.b.Signal, From: e.from.spec.Path, To: e.to.spec.Path, Pos: e.b.Pos})
			continue
		}
		succ[f] = append(succ[f], t)
		indeg[t]++
	}
	var ready []int
	for i := range all {
		if indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	for len(ready) > 0 {
		sort.Ints(ready)
		i := ready[0]
		ready = ready[1:]
		c.nodes = append(c.nodes, all[i])
		for _, t := range succ[i] {
			if indeg[t]--; indeg[t] == 0 {
				ready = append(ready, t)
			}
		}
	}
}

// build makes the pure circuit from the ordered nodes and indexes the
// nodes the engine feeds or reads by their role.
func (k *compilation) build() {
	c := k.c
	nodes := make([]circuit.Node, len(c.nodes))
	for i, n := range c.nodes {
		n.at = i
		nodes[i] = circuit.Node{Path: n.spec.Path, Component: n.comp, In: n.in, Out: n.out}
		if _, ok := n.comp.(components.QuerySource); ok {
			c.queries = append(c.queries, n)
		}
		if _, ok := n.comp.(components.ServiceSignal); ok {
			c.loads = append(c.loads, n)
		}
	}
	c.core = circuit.New(c.names, nodes)
	for i, n := range c.nodes {
		n.in, n.out = c.core.Wiring(i) // the circuit's copies, laid out together
	}
	c.signals = c.core.Values()
	pick := func(at []int) []*node {
		picked := make([]*node, len(at))
		for i, k := range at {
			picked[i] = c.nodes[k]
		}
		return picked
	}
	c.sources, c.sinks, c.alerts, c.agents = pick(c.core.Sources()), pick(c.core.Sinks()), pick(c.core.Alerts()), pick(c.core.Agents())
}

// buildComponent makes a component from its spec: looked up by type, its
// parameters decoded strictly, provisioned. Errors name the component.
func buildComponent(cs *ComponentSpec, env components.Env) (components.Component, error) {
	info, ok := components.Lookup(cs.Type)
	if !ok {
		return nil, fmt.Errorf("%s: unknown component type %q (known: %s)", cs.Path, cs.Type, strings.Join(components.Types(), ", "))
	}
	comp := info.New()
	if len(cs.Params) > 0 {
		dec := json.NewDecoder(bytes.NewReader(cs.Params))
		dec.DisallowUnknownFields()
		if err := dec.Decode(comp); err != nil {
			return nil, paramError(cs, err)
		}
	}
	if p, ok := comp.(components.Provisioner); ok {
		if err := p.Provision(env); err != nil {
			return nil, fmt.Errorf("%s: %v", cs.Path, err)
		}
	}
	return comp, nil
}

// paramError words a parameter decoding error as a field path and what
// was expected, not as encoding/json's `json: unknown field "windw"`. The
// schema catches these first for every type it knows; this covers the
// types it does not.
func paramError(cs *ComponentSpec, err error) error {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		want := typeErr.Type.String()
		switch typeErr.Type.Kind() {
		case reflect.Float32, reflect.Float64, reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64:
			want = "a number"
		case reflect.String:
			want = "a string"
		case reflect.Bool:
			want = "true or false"
		}
		return fmt.Errorf("%s.%s: want %s, got %s", cs.Path, typeErr.Field, want, typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return fmt.Errorf("%s.%s: unknown field", cs.Path, field)
	}
	return fmt.Errorf("%s: %v", cs.Path, strings.TrimPrefix(err.Error(), "json: "))
}

// stronglyConnected labels each vertex with its SCC id (Tarjan).
func stronglyConnected(adj [][]int) []int {
	n := len(adj)
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	comp := make([]int, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	next, label := 0, 0
	var visit func(v int)
	visit = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range adj[v] {
			if index[w] < 0 {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				comp[w] = label
				if w == v {
					break
				}
			}
			label++
		}
	}
	for v := 0; v < n; v++ {
		if index[v] < 0 {
			visit(v)
		}
	}
	return comp
}

// checkVariable reports whether value may flow from the signal name (a
// Variable's output) into every port it is wired to: the same bounds that
// Compile checks for the declared value, for dynamic config.
func (c *Circuit) checkVariable(name string, value float64) error {
	idx := indexOf(c.names, name)
	for _, n := range c.nodes {
		for slot, r := range n.in {
			if idx < 0 || r.Signal != idx {
				continue
			}
			if err := n.port[slot].Bounds.Check(value); err != nil {
				return fmt.Errorf("variable %q feeds %s.in_ports.%s: %v", name, n.spec.Path, n.port[slot].Name, err)
			}
		}
	}
	return nil
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func portNames(ports []components.Port) string {
	names := make([]string, len(ports))
	for i, p := range ports {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// Tick evaluates every component once, in topological order, with no new
// flux-meter readings and no agent commands. Delayed inputs read the
// previous tick; the first tick reads them as invalid.
func (c *Circuit) Tick() { c.core.Tick(circuit.Inputs{}) }

// Signal returns the value of a named signal after the last tick.
func (c *Circuit) Signal(name string) (float64, bool) {
	i := indexOf(c.names, name)
	if i < 0 {
		return math.NaN(), false
	}
	return c.signals[i], true
}

// Signals returns every signal's value after the last tick, by name.
func (c *Circuit) Signals() map[string]float64 {
	m := make(map[string]float64, len(c.names))
	for i, n := range c.names {
		m[n] = c.signals[i]
	}
	return m
}

// Ticks is how many ticks the circuit has evaluated.
func (c *Circuit) Ticks() uint64 { return c.core.Ticks() }
