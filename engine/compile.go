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
	out   []int             // signal index per output slot, -1 when unwired
}

// Compile builds a circuit from a spec. Every problem is reported with the
// component path and source position.
func Compile(spec Spec) (*Circuit, Diagnostics) {
	c := &Circuit{Spec: spec}
	var diags Diagnostics
	fail := func(pos Position, format string, args ...any) {
		diags = append(diags, Diagnostic{Pos: pos, Message: fmt.Sprintf(format, args...)})
	}
	caps := Caps.withDefaults()
	if len(spec.Components) > caps.ComponentsPerPolicy {
		fail(spec.Pos, "policy %q has %d components, over the cap of %d (engine.Caps.ComponentsPerPolicy)", spec.Name, len(spec.Components), caps.ComponentsPerPolicy)
		return nil, diags
	}
	if spec.EvaluationInterval < caps.MinEvaluationInterval {
		fail(spec.Pos, "policy %q: evaluation_interval %s is shorter than the minimum %s (engine.Caps.MinEvaluationInterval)", spec.Name, spec.EvaluationInterval, caps.MinEvaluationInterval)
		return nil, diags
	}
	env := components.Env{Interval: spec.EvaluationInterval}
	signalIndex := map[string]int{}
	producer := map[string]*node{}
	producerAt := map[string]PortBinding{}
	// failed holds the outputs of components that did not build: their
	// error is reported once, at the component, not again as "has no
	// producer" at every reader.
	failed := map[string]bool{}
	var all []*node

	for i := range spec.Components {
		cs := &c.Spec.Components[i]
		comp, err := buildComponent(cs, env)
		if err != nil {
			fail(cs.Pos, "%s", err)
			for _, b := range cs.Out {
				failed[b.Signal] = true
			}
			continue
		}
		n := &node{spec: cs, index: i, comp: comp}
		ports := comp.Ports()
		// Inputs: one slot per fixed port, variadic port expanded last.
		bound := map[string][]PortBinding{}
		known := map[string]components.Port{}
		for _, p := range ports.In {
			known[p.Name] = p
		}
		for _, b := range cs.In {
			p, ok := known[b.Port]
			if !ok {
				fail(b.Pos, "%s.in_ports.%s: unknown port (%s has %s)", cs.Path, b.Port, cs.Type, portNames(ports.In))
				continue
			}
			if !p.Variadic && len(bound[b.Port]) > 0 {
				fail(b.Pos, "%s.in_ports.%s: port takes one signal", cs.Path, b.Port)
				continue
			}
			bound[b.Port] = append(bound[b.Port], b)
		}
		for _, p := range ports.In {
			bs := bound[p.Name]
			if len(bs) == 0 {
				if p.Required {
					fail(cs.Pos, "%s.in_ports.%s: required input is not wired", cs.Path, p.Name)
				}
				if !p.Variadic {
					n.in = append(n.in, circuit.Input{Signal: -1, Value: math.NaN()})
				}
				continue
			}
			for range bs {
				n.in = append(n.in, circuit.Input{Signal: -1, Value: math.NaN()})
			}
		}
		n.port = make([]components.Port, 0, len(n.in))
		for _, p := range ports.In {
			for k := max(len(bound[p.Name]), boolInt(!p.Variadic)); k > 0; k-- {
				n.port = append(n.port, p)
			}
		}
		n.out = make([]int, len(ports.Out))
		for j := range n.out {
			n.out[j] = -1
		}
		for _, b := range cs.Out {
			slot := indexOf(ports.Out, b.Port)
			if slot < 0 {
				fail(b.Pos, "%s.out_ports.%s: unknown port (%s has %s)", cs.Path, b.Port, cs.Type, strings.Join(ports.Out, ", "))
				continue
			}
			if prev, dup := producer[b.Signal]; dup {
				fail(b.Pos, "%s.out_ports.%s: signal %q already has a producer, %s at %s", cs.Path, b.Port, b.Signal, prev.spec.Path, producerAt[b.Signal].Pos)
				continue
			}
			idx := len(c.names)
			if idx >= caps.SignalsPerPolicy {
				fail(b.Pos, "%s.out_ports.%s: policy %q has more than %d signals (engine.Caps.SignalsPerPolicy)", cs.Path, b.Port, spec.Name, caps.SignalsPerPolicy)
				return nil, diags.sorted()
			}
			signalIndex[b.Signal] = idx
			c.names = append(c.names, b.Signal)
			producer[b.Signal] = n
			producerAt[b.Signal] = b
			n.out[slot] = idx
		}
		all = append(all, n)
	}

	// Wire inputs now that every producer is known; collect graph edges.
	type edge struct {
		from, to *node
		slot     int
		b        PortBinding
	}
	var edges []edge
	for _, n := range all {
		slot := 0
		for _, p := range n.comp.Ports().In {
			var bs []PortBinding
			for _, b := range n.spec.In {
				if b.Port == p.Name {
					bs = append(bs, b)
				}
			}
			if len(bs) == 0 {
				if !p.Variadic {
					slot++
				}
				continue
			}
			for _, b := range bs {
				switch {
				case b.IsConst:
					n.in[slot].Value = b.Const
					if err := p.Bounds.Check(b.Const); err != nil {
						fail(b.Pos, "%s.in_ports.%s: %v", n.spec.Path, b.Port, err)
					}
				case producer[b.Signal] == nil && failed[b.Signal]:
					// Reported at its producer.
				case producer[b.Signal] == nil:
					fail(b.Pos, "%s.in_ports.%s: signal %q has no producer", n.spec.Path, b.Port, b.Signal)
				default:
					if v, ok := producer[b.Signal].comp.(*components.Variable); ok {
						if err := p.Bounds.Check(*v.Value); err != nil {
							fail(b.Pos, "%s.in_ports.%s: Variable %q (%s): %v", n.spec.Path, b.Port, b.Signal, producer[b.Signal].spec.Path, err)
						}
					}
					n.in[slot].Signal = signalIndex[b.Signal]
					edges = append(edges, edge{from: producer[b.Signal], to: n, slot: slot, b: b})
				}
				slot++
			}
		}
	}
	if len(diags) > 0 {
		return nil, diags.sorted()
	}

	// Cut loops: inside a strongly connected component, an edge whose
	// source is declared at or after its destination reads the last tick.
	pos := map[*node]int{}
	for i, n := range all {
		pos[n] = i
	}
	adj := make([][]int, len(all))
	for _, e := range edges {
		adj[pos[e.from]] = append(adj[pos[e.from]], pos[e.to])
	}
	scc := stronglyConnected(adj)
	indeg := make([]int, len(all))
	succ := make([][]int, len(all))
	for _, e := range edges {
		f, t := pos[e.from], pos[e.to]
		if scc[f] == scc[t] && f >= t {
			e.to.in[e.slot].Delayed = true
			c.Delayed = append(c.Delayed, DelayedEdge{Signal: e.b.Signal, From: e.from.spec.Path, To: e.to.spec.Path, Pos: e.b.Pos})
			continue
		}
		succ[f] = append(succ[f], t)
		indeg[t]++
	}
	// Kahn's algorithm, ties broken by declaration order for determinism.
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
	nodes := make([]circuit.Node, len(c.nodes))
	for i, n := range c.nodes {
		n.at = i
		nodes[i] = circuit.Node{Path: n.spec.Path, Component: n.comp, In: n.in, Out: n.out}
		if _, ok := n.comp.(components.QuerySource); ok {
			c.queries = append(c.queries, n)
		}
	}
	c.core = circuit.New(c.names, nodes)
	c.signals = c.core.Values()
	pick := func(at []int) []*node {
		picked := make([]*node, len(at))
		for i, k := range at {
			picked[i] = c.nodes[k]
		}
		return picked
	}
	c.sources, c.sinks, c.alerts, c.agents = pick(c.core.Sources()), pick(c.core.Sinks()), pick(c.core.Alerts()), pick(c.core.Agents())
	return c, nil
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

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
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
