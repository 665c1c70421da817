package components

import (
	"errors"
	"fmt"
	"math"
	"time"
)

func init() {
	Register(Info{Type: "RLActuator", New: func() Component { return &RLActuator{} },
		Params: []Param{rlAPI, rlSLO, rlPriority, rlCluster, rlSustainableRPS, rlLowerBound, rlUpperBound,
			rlInitialRate, rlAgentTimeout, rlFallbackUntilContact, rlServices}})
}

// Defaults of RLActuator.
const (
	// DefaultInitialRate is the rate before the agent sets one: what the
	// TopFull agent assumes after reset().
	DefaultInitialRate = 1000
	// DefaultAgentTimeout is how many ticks of agent silence switch an API
	// to its fallback.
	DefaultAgentTimeout = 5
	// DefaultAgentSLO is the goodput latency bound of an API that declares none.
	DefaultAgentSLO = time.Second
)

// The parameters of RLActuator (#RLActuator). api defaults to the
// selector's API, and an empty cluster is the default one.
var (
	rlAPI                  = Param{Name: "api", Kind: String}
	rlSLO                  = Param{Name: "slo", Kind: DurationKind, Default: DefaultAgentSLO, Range: Above(0)}
	rlPriority             = Param{Name: "priority", Kind: Integer, Default: 1, Range: AtLeast(1)}
	rlCluster              = Param{Name: "cluster", Kind: String, Default: "default"}
	rlSustainableRPS       = Param{Name: "sustainable_rps", Default: 0.0, Range: AtLeast(0)}
	rlLowerBound           = Param{Name: "lower_bound", Default: 0.0, Range: AtLeast(0)}
	rlUpperBound           = Param{Name: "upper_bound", Range: AtLeast(0)}
	rlInitialRate          = Param{Name: "initial_rate", Default: float64(DefaultInitialRate), Range: AtLeast(0)}
	rlAgentTimeout         = Param{Name: "agent_timeout", Kind: Integer, Default: DefaultAgentTimeout, Range: AtLeast(1)}
	rlFallbackUntilContact = Param{Name: "fallback_until_contact", Kind: Bool, Default: false}
	rlServices             = Param{Name: "services", Kind: StringList}
)

// MaxAgentServices bounds an RLActuator's services list.
const MaxAgentServices = 64

// RLActuator hands the rate limit of one API to an external agent (the
// TopFull PPO agent, through the RL bridge). The engine measures the API at
// Selector for the agent and passes it the agent's latest rate and contact
// count every tick (Command); the component itself is pure.
//
// rate_limit is the agent's rate clamped to [lower_bound, upper_bound].
// After agent_timeout ticks without a contact from the agent, it is the
// fallback input instead, clamped likewise, or invalid (no limit) when
// fallback is unwired or invalid. using_fallback is 1 then, 0 otherwise.
// With fallback_until_contact the fallback is in force from the first tick
// until the agent's first contact.
type RLActuator struct {
	// API is the name the agent uses in ?method=; default Selector.API.
	API    string   `json:"api"`
	Select Selector `json:"selector"`
	// SLOBound is the latency within which an OK response is goodput.
	SLOBound *Duration `json:"slo"`
	// Priority orders the APIs of a cluster, TopFull style: 1 first.
	Priority *int `json:"priority"`
	// Cluster groups the APIs that one agent process controls together.
	Cluster string `json:"cluster"`
	// SustainableRPS is the API's load capacity alone, for the agent; 0 unknown.
	SustainableRPS float64  `json:"sustainable_rps"`
	LowerBound     float64  `json:"lower_bound"`
	UpperBound     *float64 `json:"upper_bound"`
	InitialRate    *float64 `json:"initial_rate"`
	AgentTimeout   *int     `json:"agent_timeout"`
	// FallbackUntilContact puts the API on its fallback from the first
	// tick until the agent's first contact, instead of on initial_rate for
	// agent_timeout ticks: a process that starts under overload, or
	// without its agent, is protected from its first second.
	FallbackUntilContact bool `json:"fallback_until_contact"`
	// Services are the services the API's calls cross, told to the agent
	// so that it can form clusters from the services overloaded now.
	Services []string `json:"services"`

	// priority, agentTimeout and slo are the parameters in force.
	priority, agentTimeout int
	slo                    Duration

	agentRate    float64
	contacts     uint64
	seenContacts uint64
	silentTicks  int
	fallback     bool
	inForce      float64 // rate_limit of the last Execute; NaN: none
}

// AgentSpec is what an agent is told about an API under its control.
type AgentSpec struct {
	API            string
	Cluster        string
	Priority       int
	SLO            time.Duration
	SustainableRPS float64
	LowerBound     float64
	UpperBound     float64
	InitialRate    float64
	// Services are the services the API's calls cross; nil when unknown.
	Services []string
}

// Clamp bounds a rate to [LowerBound, UpperBound].
func (s AgentSpec) Clamp(ratePerSec float64) float64 {
	return math.Min(math.Max(ratePerSec, s.LowerBound), s.UpperBound)
}

// AgentActuator is a component driven by an external agent. The engine
// measures its selector (it is a Source), publishes the reading to the
// agent, and calls Command before each Execute.
type AgentActuator interface {
	Source
	Agent() AgentSpec
	// Command passes the agent's latest rate and how many times the agent
	// has contacted this API so far.
	Command(ratePerSec float64, contacts uint64)
	// UsingFallback reports whether the last Execute used the fallback.
	UsingFallback() bool
	// RateInForce is the rate limit the last Execute set, from the agent
	// or the fallback; invalid when it set none (a fallback without a rate).
	RateInForce() float64
	// Silence is how many agent contacts the actuator has seen and for how
	// many ticks the agent has been silent since; ResumeSilence takes them
	// over from the actuator this one replaces, so a reload neither revives
	// a dead agent nor restarts its timeout.
	Silence() (seenContacts uint64, silentTicks int)
	ResumeSilence(seenContacts uint64, silentTicks int)
}

// Ports: fallback → rate_limit, agent_rate, using_fallback.
func (*RLActuator) Ports() Ports {
	return Ports{In: []Port{{Name: "fallback"}}, Out: []string{"rate_limit", "agent_rate", "using_fallback"}}
}

// Provision applies the defaults and checks the bounds.
func (a *RLActuator) Provision(Env) error {
	if a.Select.ControlPoint == "" {
		return errors.New("selector.control_point is required")
	}
	if a.API == "" {
		a.API = a.Select.Normalized().API
	}
	if a.Cluster == "" {
		a.Cluster = rlCluster.Default.(string)
	}
	var err error
	if a.priority, err = rlPriority.Int(a.Priority); err != nil {
		return fmt.Errorf("%w (1 is the highest)", err)
	}
	if a.agentTimeout, err = rlAgentTimeout.Int(a.AgentTimeout); err != nil {
		return fmt.Errorf("%w tick", err)
	}
	if a.slo, err = rlSLO.Duration(a.SLOBound); err != nil {
		return err
	}
	if err := rlLowerBound.Check(a.LowerBound); err != nil {
		return err
	}
	if a.UpperBound != nil && (!(*a.UpperBound >= a.LowerBound) || math.IsInf(*a.UpperBound, 0)) {
		return fmt.Errorf("upper_bound %v: must be finite and >= lower_bound %v", *a.UpperBound, a.LowerBound)
	}
	if err := rlSustainableRPS.Check(a.SustainableRPS); err != nil {
		return err
	}
	if len(a.Services) > MaxAgentServices {
		return fmt.Errorf("services: %d names, over the maximum of %d", len(a.Services), MaxAgentServices)
	}
	seen := map[string]bool{}
	for i, s := range a.Services {
		switch {
		case s == "":
			return fmt.Errorf("services[%d]: must not be empty", i)
		case seen[s]:
			return fmt.Errorf("services[%d]: %q is listed twice", i, s)
		}
		seen[s] = true
	}
	initial, err := rlInitialRate.Float(a.InitialRate)
	if err != nil {
		return err
	}
	a.agentRate = a.Agent().Clamp(initial)
	a.inForce = Invalid
	if a.FallbackUntilContact {
		a.silentTicks = a.agentTimeout
	}
	return nil
}

// Agent describes the API to the agent.
func (a *RLActuator) Agent() AgentSpec {
	initial := float64(DefaultInitialRate)
	if a.InitialRate != nil {
		initial = *a.InitialRate
	}
	upper := math.MaxFloat64 // no upper bound
	if a.UpperBound != nil {
		upper = *a.UpperBound
	}
	return AgentSpec{
		API: a.API, Cluster: a.Cluster, Priority: a.priority, SLO: time.Duration(a.slo),
		SustainableRPS: a.SustainableRPS, LowerBound: a.LowerBound, UpperBound: upper,
		InitialRate: initial, Services: a.Services,
	}
}

// Selector is where the API is measured.
func (a *RLActuator) Selector() Selector { return a.Select }

// SLO is the goodput latency bound.
func (a *RLActuator) SLO() time.Duration { return time.Duration(a.slo) }

// FallbackAfter is agent_timeout in force: the ticks of agent silence
// before the fallback takes over.
func (a *RLActuator) FallbackAfter() int { return a.agentTimeout }

// Observe does nothing: the engine hands the measurement to the agent, and
// the circuit reads the API through a FluxMeter.
func (a *RLActuator) Observe(FluxReading) {}

// Command passes the agent's rate (invalid keeps the last) and contact count.
func (a *RLActuator) Command(ratePerSec float64, contacts uint64) {
	if IsValid(ratePerSec) {
		a.agentRate = a.Agent().Clamp(ratePerSec)
	}
	a.contacts = contacts
}

// UsingFallback reports whether the last Execute used the fallback.
func (a *RLActuator) UsingFallback() bool { return a.fallback }

// RateInForce is the rate_limit the last Execute set.
func (a *RLActuator) RateInForce() float64 { return a.inForce }

// Silence reports the contacts seen and the ticks of silence since.
func (a *RLActuator) Silence() (uint64, int) { return a.seenContacts, a.silentTicks }

// ResumeSilence takes over the silence of the actuator this one replaces.
func (a *RLActuator) ResumeSilence(seenContacts uint64, silentTicks int) {
	a.seenContacts, a.contacts, a.silentTicks = seenContacts, seenContacts, silentTicks
	a.fallback = silentTicks >= a.agentTimeout
}

// Execute counts the ticks of agent silence and picks the agent's rate or
// the fallback.
func (a *RLActuator) Execute(in, out []float64) {
	if a.contacts != a.seenContacts {
		a.seenContacts, a.silentTicks = a.contacts, 0
	} else {
		a.silentTicks++
	}
	a.fallback = a.silentTicks >= a.agentTimeout
	out[1] = a.agentRate
	if !a.fallback {
		out[0], out[2] = a.agentRate, 0
		a.inForce = out[0]
		return
	}
	out[0], out[2] = in[0], 1
	if IsValid(in[0]) {
		out[0] = a.Agent().Clamp(in[0])
	}
	a.inForce = out[0]
}
