package engine

import (
	"fmt"
	"math"
	"sort"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/circuit"
	"github.com/spillway-dev/spillway/components"
	"github.com/spillway-dev/spillway/fleet"
)

// AgentAPI is one API under the control of an external agent (an
// RLActuator), as the RL bridge reports it. Rates are per second.
type AgentAPI struct {
	Name           string
	Policy         string
	Cluster        string
	Priority       int
	SLO            time.Duration
	SustainableRPS float64
	LowerBound     float64
	UpperBound     float64
	// Services are the services the API's calls cross (the policy's); nil
	// when unknown.
	Services []string
	// RateLimit is the agent's rate, clamped: the initial rate until the
	// agent sets one.
	RateLimit float64
	// OfferedRPS, GoodputRPS and LatencyMs describe the last complete tick.
	// LatencyMs is the p95 of the requests that completed in it; 0 when the
	// tick was idle; the age of the oldest request in flight when some are
	// in flight but none completed.
	OfferedRPS float64
	GoodputRPS float64
	LatencyMs  float64
	// UsingFallback is true once the agent has been silent for the
	// actuator's agent_timeout ticks.
	UsingFallback bool
	// LimitInForce is the rate limit the last tick set, the agent's or
	// the fallback's (see UsingFallback); NaN when it set none.
	LimitInForce float64
	// Ticks counts the ticks that measured the API.
	Ticks uint64
	// Global is set when the API's rate is the fleet's: a global
	// RateLimiter sits at the actuator's selector.
	Global *AgentGlobal
}

// AgentGlobal is the fleet's side of an API whose rate is global.
type AgentGlobal struct {
	Key string
	// Share is this engine's part of LimitInForce, requests per second,
	// at the last tick (NaN: no limit in force).
	Share float64
}

// agentSlot is the mailbox between the bridge and one RLActuator. It
// outlives reloads, so the agent's rate survives them.
type agentSlot struct {
	rate     atomic.Uint64 // float64 bits of the last rate set; NaN: none
	contacts atomic.Uint64
	state    atomic.Pointer[AgentAPI] // republished every tick
	// The actuator's silence after its last tick, for the one that
	// replaces it on a reload; written under the policy's lock.
	seenContacts atomic.Uint64
	silentTicks  atomic.Int64
	ticked       atomic.Bool
}

// ErrUnknownAgentAPI is returned for an API no running RLActuator controls.
var ErrUnknownAgentAPI = fmt.Errorf("no running RLActuator controls this API")

// AgentAPIs lists the APIs under agent control, by cluster, priority and name.
func (e *Engine) AgentAPIs() []AgentAPI {
	slots := *e.agents.Load()
	out := make([]AgentAPI, 0, len(slots))
	for _, s := range slots {
		out = append(out, *s.state.Load())
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Cluster != b.Cluster {
			return a.Cluster < b.Cluster
		}
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		return a.Name < b.Name
	})
	return out
}

// AgentAPI returns one API under agent control. A read is not a contact
// from the agent: only SetAgentRate and TouchAgents are.
func (e *Engine) AgentAPI(name string) (AgentAPI, bool) {
	s := (*e.agents.Load())[name]
	if s == nil {
		return AgentAPI{}, false
	}
	return *s.state.Load(), true
}

// SetAgentRate sets the agent's rate for an API, clamped to its bounds; it
// takes effect at the API's next tick and counts as a contact. rate must be
// finite and >= 0.
func (e *Engine) SetAgentRate(name string, ratePerSec float64) (float64, error) {
	if math.IsNaN(ratePerSec) || math.IsInf(ratePerSec, 0) || ratePerSec < 0 {
		return math.NaN(), fmt.Errorf("rate %v: must be finite and >= 0", ratePerSec)
	}
	s := (*e.agents.Load())[name]
	if s == nil {
		return math.NaN(), fmt.Errorf("%q: %w", name, ErrUnknownAgentAPI)
	}
	st := s.state.Load()
	clamped := math.Min(math.Max(ratePerSec, st.LowerBound), st.UpperBound)
	s.rate.Store(math.Float64bits(clamped))
	s.contacts.Add(1)
	e.agentPosted()
	return clamped, nil
}

// TouchAgents counts a contact from the agent on every API (the simulator's
// /step, which returns every API's measurement at once).
func (e *Engine) TouchAgents() {
	for _, s := range *e.agents.Load() {
		s.contacts.Add(1)
	}
	e.agentPosted()
}

// checkAgentNames reports two RLActuators controlling the same API name.
func checkAgentNames(next []*Running) Diagnostics {
	return checkUniqueNames(next, func(c *Circuit) []*node { return c.agents },
		func(n *node) string { return n.comp.(components.AgentActuator).Agent().API },
		"API %q is already under agent control")
}

// checkUniqueNames reports every node of nodes(circuit), over the set,
// whose name(node) an earlier one has: taken is the message's start, with
// a %q for the name.
func checkUniqueNames(set []*Running, nodes func(*Circuit) []*node, name func(*node) string, taken string) Diagnostics {
	var diags Diagnostics
	seen := map[string]*node{}
	for _, r := range set {
		for _, n := range nodes(r.Circuit) {
			if prev, dup := seen[name(n)]; dup {
				diags = append(diags, Diagnostic{Pos: n.spec.Pos, Message: fmt.Sprintf(
					"%s: "+taken+" by %s at %s", n.spec.Path, name(n), prev.spec.Path, prev.spec.Pos)})
				continue
			}
			seen[name(n)] = n
		}
	}
	return diags
}

// rebuildAgents points the bridge at the RLActuators of the running set
// next; e.mu is held. Slots of APIs that stay keep the agent's rate.
func (e *Engine) rebuildAgents(next []*Running) {
	old := *e.agents.Load()
	slots := map[string]*agentSlot{}
	for _, r := range next {
		for _, n := range r.Circuit.agents {
			a := n.comp.(components.AgentActuator)
			spec := a.Agent()
			s := old[spec.API]
			if s == nil {
				s = &agentSlot{}
				s.rate.Store(math.Float64bits(math.NaN()))
			} else if s.ticked.Load() {
				a.ResumeSilence(s.seenContacts.Load(), int(s.silentTicks.Load()))
			}
			slots[spec.API] = s
			st := agentState(r.Circuit.Spec.Name, a, s)
			if prev := s.state.Load(); prev != nil {
				st.OfferedRPS, st.GoodputRPS, st.LatencyMs, st.Ticks = prev.OfferedRPS, prev.GoodputRPS, prev.LatencyMs, prev.Ticks
				st.Global = prev.Global
			}
			s.state.Store(st)
		}
	}
	e.agents.Store(&slots)
}

// agentState is what the bridge reports for a, from its last reading.
func agentState(policy string, a components.AgentActuator, s *agentSlot) *AgentAPI {
	spec := a.Agent()
	rate := math.Float64frombits(s.rate.Load())
	if math.IsNaN(rate) {
		rate = spec.InitialRate
	}
	return &AgentAPI{
		Name: spec.API, Policy: policy, Cluster: spec.Cluster, Priority: spec.Priority, SLO: spec.SLO,
		SustainableRPS: spec.SustainableRPS, LowerBound: spec.LowerBound, UpperBound: spec.UpperBound,
		Services: spec.Services, RateLimit: spec.Clamp(rate), UsingFallback: a.UsingFallback(), LimitInForce: a.RateInForce(),
	}
}

// publishAgentReading republishes an API's state after its flux snapshot.
func (e *Engine) publishAgentReading(policy string, a components.AgentActuator, r components.FluxReading) {
	s := (*e.agents.Load())[a.Agent().API]
	if s == nil {
		return
	}
	st := agentState(policy, a, s)
	st.OfferedRPS = zeroIfInvalid(r.IncomingRps)
	st.GoodputRPS = zeroIfInvalid(r.GoodputRps)
	switch {
	case components.IsValid(r.LatencyP95Ms):
		st.LatencyMs = r.LatencyP95Ms
	case r.InFlight > 0:
		st.LatencyMs = r.OldestInFlightMs
	default:
		st.LatencyMs = 0
	}
	if prev := s.state.Load(); prev != nil {
		st.Ticks = prev.Ticks + 1
		st.Global = prev.Global
	}
	s.state.Store(st)
}

// globalMember is the fleet member of r's global RateLimiter at sel, or
// nil: what makes an agent's rate at sel the fleet's.
func (r *Running) globalMember(sel components.Selector) *fleet.Member {
	sel = sel.Normalized()
	for _, s := range r.sinks {
		if s.member != nil && s.comp.Kind() == components.RateSink && s.comp.Selector().Normalized() == sel {
			return s.member
		}
	}
	return nil
}

// agentCommand is the agent's latest rate and contacts for a.
func (e *Engine) agentCommand(a components.AgentActuator) circuit.AgentCommand {
	s := (*e.agents.Load())[a.Agent().API]
	if s == nil {
		return circuit.AgentCommand{}
	}
	return circuit.AgentCommand{Present: true, RatePerSec: math.Float64frombits(s.rate.Load()), Contacts: s.contacts.Load()}
}

// publishAgentMode republishes an API's state after its circuit ran and
// left a in mode; global is the fleet member of a global RateLimiter at
// a's selector, or nil.
func (e *Engine) publishAgentMode(a components.AgentActuator, mode circuit.AgentMode, global *fleet.Member) {
	s := (*e.agents.Load())[a.Agent().API]
	if s == nil {
		return
	}
	s.seenContacts.Store(mode.SeenContacts)
	s.silentTicks.Store(int64(mode.SilentTicks))
	s.ticked.Store(true)
	prev := s.state.Load()
	st := *prev
	st.UsingFallback = mode.UsingFallback
	st.LimitInForce = mode.RateInForce
	st.Global = nil
	if global != nil {
		st.Global = &AgentGlobal{Key: global.Key(), Share: global.Share()}
	}
	rate := math.Float64frombits(s.rate.Load())
	if !math.IsNaN(rate) {
		st.RateLimit = a.Agent().Clamp(rate)
	}
	s.state.Store(&st)
}

func zeroIfInvalid(v float64) float64 {
	if components.IsValid(v) {
		return v
	}
	return 0
}
