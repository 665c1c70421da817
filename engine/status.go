package engine

import (
	"encoding/json"
	"math"
	"sort"
	"time"

	"github.com/spillway-dev/spillway/components"
)

// Status is a point-in-time view of an engine, served as JSON on /status.
type Status struct {
	Policies      []PolicyStatus       `json:"policies"`
	ControlPoints []ControlPointStatus `json:"control_points"`
	// Errors are the problems of the last failed load, if any; the
	// policies listed are the last good set, still running.
	Errors []Diagnostic `json:"errors"`
	// Reload is the policy directory's reload history.
	Reload *ReloadStatus `json:"reload,omitempty"`
	// Agents are the APIs under RL-agent control, with the mode in force.
	Agents []AgentStatus `json:"agents"`
}

// AgentStatus is one API under agent control (an RLActuator).
type AgentStatus struct {
	API       string `json:"api"`
	Policy    string `json:"policy"`
	Cluster   string `json:"cluster"`
	Priority  int    `json:"priority"`
	RateLimit Float  `json:"rate_limit"`
	// Mode is "agent", or "fallback" once the agent has been silent for
	// agent_timeout ticks.
	Mode string `json:"mode"`
	// LimitInForce is the rate limit in force: the agent's in agent mode,
	// the fallback's in fallback mode; null when none is.
	LimitInForce Float `json:"limit_in_force"`
	OfferedRPS   Float `json:"offered_rps"`
	GoodputRPS   Float `json:"goodput_rps"`
	LatencyMs    Float `json:"latency_ms"`
}

// Mode names the agent mode in force: "agent" or "fallback".
func (a AgentAPI) Mode() string {
	if a.UsingFallback {
		return "fallback"
	}
	return "agent"
}

// PolicyStatus describes one running policy.
type PolicyStatus struct {
	Name               string            `json:"name"`
	File               string            `json:"file"`
	EvaluationInterval string            `json:"evaluation_interval"`
	DryRun             bool              `json:"dry_run"`
	DynamicConfig      DynamicConfig     `json:"dynamic_config"`
	Ticks              uint64            `json:"ticks"`
	LastTick           time.Duration     `json:"last_tick_ns"`
	Signals            map[string]Float  `json:"signals"`
	DelayedEdges       []DelayedEdge     `json:"delayed_edges"`
	Alerts             map[string]uint64 `json:"alerts"`
	Actuators          []ActuatorStatus  `json:"actuators"`
	// Disabled is why the policy stopped ticking (a component panicked).
	Disabled string `json:"disabled,omitempty"`
	// Queries are the policy's PromQL queries and their last answers.
	Queries []QueryStatus `json:"queries,omitempty"`
}

// ActuatorStatus is one limiter a policy attached.
type ActuatorStatus struct {
	Selector    string `json:"selector"`
	Kind        string `json:"kind"`
	Setpoint    Float  `json:"setpoint"`
	Allowed     uint64 `json:"allowed"`
	Rejected    uint64 `json:"rejected"`
	WouldReject uint64 `json:"would_reject"`
	FailOpen    uint64 `json:"fail_open"`
	// FailMode is what the limiter does once its setpoint is stale, and
	// Stale counts the requests it decided that way.
	FailMode string `json:"fail_mode"`
	Stale    uint64 `json:"stale"`
	// SetpointAge is how long ago a tick last set the setpoint.
	SetpointAge time.Duration `json:"setpoint_age_ns"`
	// Global is set for a global rate limit: Setpoint is then this
	// engine's share of Global.Limit.
	Global *GlobalStatus `json:"global,omitempty"`
}

// ControlPointStatus counts decisions per API at one control point.
type ControlPointStatus struct {
	Name string      `json:"name"`
	APIs []APIStatus `json:"apis"`
}

// APIStatus counts decisions for one API label.
type APIStatus struct {
	API      string `json:"api"`
	Accepted uint64 `json:"accepted"`
	Rejected uint64 `json:"rejected"`
}

// Float is a signal value; invalid (NaN) encodes as JSON null.
type Float float64

// MarshalJSON encodes NaN and ±Inf as null.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(v)
}

// Status reports the running policies and control points.
func (e *Engine) Status() Status {
	st := Status{Policies: []PolicyStatus{}, ControlPoints: []ControlPointStatus{}, Errors: e.LastErrors(), Reload: e.reloadStatus(), Agents: []AgentStatus{}}
	for _, a := range e.AgentAPIs() {
		st.Agents = append(st.Agents, AgentStatus{
			API: a.Name, Policy: a.Policy, Cluster: a.Cluster, Priority: a.Priority, RateLimit: Float(a.RateLimit),
			Mode: a.Mode(), LimitInForce: Float(a.LimitInForce), OfferedRPS: Float(a.OfferedRPS), GoodputRPS: Float(a.GoodputRPS), LatencyMs: Float(a.LatencyMs),
		})
	}
	for _, r := range e.Policies() {
		dyn := e.DynamicConfigOf(r.Circuit.Spec.Name)
		r.mu.Lock()
		c := r.Circuit
		ps := PolicyStatus{
			Name:               c.Spec.Name,
			File:               c.Spec.File,
			EvaluationInterval: c.Spec.EvaluationInterval.String(),
			DryRun:             r.dryRun,
			DynamicConfig:      dyn,
			Ticks:              c.Ticks(),
			LastTick:           time.Duration(r.lastNs),
			Signals:            map[string]Float{},
			DelayedEdges:       append([]DelayedEdge{}, c.Delayed...),
			Alerts:             map[string]uint64{},
			Disabled:           r.disabled,
			Queries:            e.queryStatus(r),
		}
		for k, v := range c.Signals() {
			ps.Signals[k] = Float(v)
		}
		for k, v := range r.alerts {
			ps.Alerts[k] = v
		}
		for _, s := range r.sinks {
			as := ActuatorStatus{Selector: s.comp.Selector().Normalized().String()}
			l := s.limiter
			if l.Bucket != nil {
				as.Kind, as.Setpoint = "rate_limiter", Float(l.Bucket.Rate())
			} else {
				as.Kind, as.Setpoint = "concurrency_limiter", Float(l.Concurrency.Limit())
			}
			as.Allowed, as.Rejected = l.Allowed.Load(), l.Rejected.Load()
			as.WouldReject, as.FailOpen = l.WouldReject.Load(), l.FailOpen.Load()
			as.FailMode, as.Stale = string(components.FailOpen), l.Stale.Load()
			if l.FailClosed.Load() {
				as.FailMode = string(components.FailClosed)
			}
			as.SetpointAge = time.Duration(e.Now() - l.StampNs())
			if s.member != nil {
				as.Global = globalStatus(s.member, s.exact)
			}
			ps.Actuators = append(ps.Actuators, as)
		}
		r.mu.Unlock()
		st.Policies = append(st.Policies, ps)
	}
	names := e.registry.Names()
	sort.Strings(names)
	for _, name := range names {
		cp := e.registry.Get(name)
		cs := ControlPointStatus{Name: name}
		acc, rej := cp.API("*").Counts()
		cs.APIs = append(cs.APIs, APIStatus{API: "*", Accepted: acc, Rejected: rej})
		apis := cp.APIs()
		for _, label := range sortedKeys(apis) {
			acc, rej := apis[label].Counts()
			cs.APIs = append(cs.APIs, APIStatus{API: label, Accepted: acc, Rejected: rej})
		}
		st.ControlPoints = append(st.ControlPoints, cs)
	}
	return st
}
