// Package components holds the circuit components of a Spillway policy.
//
// A component is pure: it keeps its state in struct fields and computes its
// outputs from its inputs once per tick. It has no clock, no goroutines and
// no I/O. A signal is a float64 and NaN means "invalid".
package components

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// Invalid is the invalid signal value. Test with IsValid, never with ==.
var Invalid = math.NaN()

// IsValid reports whether v is a valid signal (not NaN).
func IsValid(v float64) bool { return !math.IsNaN(v) }

// Port describes one input port of a component type.
type Port struct {
	// Name is the key under in_ports in a policy.
	Name string
	// Required ports must be wired; an unwired optional port reads Invalid.
	Required bool
	// Variadic ports take a list of signals; at most one, and it is last.
	Variadic bool
	// Bounds, when set, is the range a constant or a Variable wired to the
	// port must lie in (signals computed at run time are not checked).
	Bounds *Bounds
}

// Bounds is a closed range of port values.
type Bounds struct{ Min, Max float64 }

// NonNegative is [0, +Inf): rates, bursts and limits.
var NonNegative = &Bounds{Min: 0, Max: math.Inf(1)}

// Check reports a valid value outside b; an invalid value (NaN) is not
// checked, it means "no value".
func (b *Bounds) Check(v float64) error {
	if b == nil || !IsValid(v) || (v >= b.Min && v <= b.Max) {
		return nil
	}
	if v < b.Min {
		return fmt.Errorf("%g is below the minimum %g", v, b.Min)
	}
	return fmt.Errorf("%g is above the maximum %g", v, b.Max)
}

// Ports is the port layout of a component type.
type Ports struct {
	In  []Port
	Out []string
}

// Env is what a component learns about its circuit when it is provisioned.
type Env struct {
	// Interval is the policy's evaluation interval (one tick).
	Interval time.Duration
}

// Component is one node of a circuit.
type Component interface {
	// Ports returns the component's port layout. It must not depend on state.
	Ports() Ports
	// Execute computes one tick. in holds one value per input port in the
	// order of Ports().In, with a variadic last port expanded to all of its
	// wired signals; out has one slot per output port, in Ports().Out order.
	Execute(in, out []float64)
}

// Provisioner is implemented by components that derive state from their
// parameters and the evaluation interval (e.g. EMA window in ticks). An
// error here is a compile error at the component's position.
type Provisioner interface {
	Provision(env Env) error
}

// Selector names the traffic a FluxMeter reads or an actuator acts on.
type Selector struct {
	ControlPoint string `json:"control_point"`
	// API is the request label; "*" (the default) is the whole control point.
	API string `json:"api,omitempty"`
}

// Normalized returns s with API defaulted to "*".
func (s Selector) Normalized() Selector {
	if s.API == "" {
		s.API = "*"
	}
	return s
}

func (s Selector) String() string {
	s = s.Normalized()
	return s.ControlPoint + "/" + s.API
}

// FluxReading is one tick's measurement of a selector, fed to FluxMeter by
// the engine before the circuit runs. Latencies are milliseconds, rates are
// per second over the last tick; fields without data are Invalid.
type FluxReading struct {
	LatencyAvgMs, LatencyP50Ms, LatencyP90Ms, LatencyP95Ms, LatencyP99Ms float64
	IncomingRps, AcceptedRps, RejectedRps, GoodputRps                    float64
	InFlight                                                             float64
	// CompletedRps is the rate of admitted requests that finished: the
	// throughput the service delivered during the tick.
	CompletedRps float64
	// OldestInFlightMs is the age of the oldest admitted request still in
	// flight at the end of the tick (0 when none is), to within 134 ms.
	OldestInFlightMs float64
	// AnsweredLatencyAvgMs is the mean latency of the requests answered to
	// a client still waiting (not abandoned), or LatencyAvgMs when every
	// completed request was abandoned; AbandonedRps is the rate of the
	// requests whose client gave up before the answer.
	AnsweredLatencyAvgMs, AbandonedRps float64
	// SharedLatencyAvgMs is AnsweredLatencyAvgMs less the latency that was
	// each request's API's own, not shared with the other APIs, as a
	// bulkhead's shared concurrency limiter at the control point measured
	// it (actuators.Window.SharedLatencyAvgMs): what a queue that all APIs
	// cross raises, and neither one API's slower dependency nor a shift in
	// the mix of cheap and costly APIs does.
	SharedLatencyAvgMs float64
	// SharedLatencySemMs is SharedLatencyAvgMs's standard error
	// (actuators.Window.SharedLatencySemMs).
	SharedLatencySemMs float64
	// ScaledLatency* are LatencyAvgMs and its percentiles of each
	// answer's latency scaled by the flux meter's slo ÷ its API's SLO
	// (FluxMeter.APISLOs); equal to them without per-API SLOs.
	ScaledLatencyAvgMs, ScaledLatencyP50Ms, ScaledLatencyP90Ms, ScaledLatencyP95Ms, ScaledLatencyP99Ms float64
	// FullRps is the rate of the requests that the policy's own
	// concurrency limiters at the selector refused with every slot taken
	// (controlpoint.Limiter.Full): the limit bound during the tick,
	// whatever InFlight shows at its end. Another policy's limit there
	// binds on its own, and is not counted.
	FullRps float64
	// WorstAPILatency* are, over the last seconds, the largest over the
	// APIs of each one's mean and percentiles of its latency as a fraction
	// of its own SLO, times the flux meter's slo (the scaled latencies'
	// units), from coarse bins a quarter of an octave wide
	// (actuators.APITails); Invalid without per-API SLOs or while no API
	// has twenty answers' weight. The pooled scaled percentiles of one
	// tick are the costly APIs' where a cheap one is a tenth of the
	// answers; these are the worst API's.
	WorstAPILatencyAvgMs, WorstAPILatencyP50Ms, WorstAPILatencyP90Ms, WorstAPILatencyP95Ms, WorstAPILatencyP99Ms float64
}

// Source is a component fed from outside the circuit (a FluxMeter).
type Source interface {
	Component
	Selector() Selector
	Observe(r FluxReading)
}

// SinkKind says which actuator a Sink drives.
type SinkKind int

const (
	// RateSink drives a token bucket: value is tokens/s, burst is tokens.
	RateSink SinkKind = iota
	// ConcurrencySink drives a concurrency limiter: value is requests in flight.
	ConcurrencySink
)

// Sink is a component whose last inputs become an actuator setpoint.
type Sink interface {
	Component
	Selector() Selector
	Kind() SinkKind
	// Setpoint returns the values latched by the last Execute. Invalid value
	// means "do not limit" (fail-open); Invalid burst means the default.
	Setpoint() (value, burst float64)
	// FailMode is what the actuator does when its setpoint goes stale: ""
	// (the control point's default), FailOpen or FailClosed.
	FailMode() FailMode
}

// FailMode is what an actuator does when the policy stopped setting it
// (the tick loop stalled, the policy panicked, the engine closed).
type FailMode string

const (
	// FailOpen admits every request: the service is unprotected, not down.
	FailOpen FailMode = "fail_open"
	// FailClosed rejects every request: for a downstream that must never
	// see unmetered load.
	FailClosed FailMode = "fail_closed"
)

// Validate accepts "", FailOpen and FailClosed.
func (m FailMode) Validate() error {
	switch m {
	case "", FailOpen, FailClosed:
		return nil
	}
	return fmt.Errorf("fail_mode %q: must be %q or %q", string(m), FailOpen, FailClosed)
}

// Alert is implemented by components that raise events (Alerter).
type Alert interface {
	// Firing reports whether the alert fired on the last Execute, and its name.
	Firing() (name string, firing bool)
}

// Info registers one component type.
type Info struct {
	// Type is the name used in policies, e.g. "EMA".
	Type string
	// New returns a zero component; its parameters are decoded into it as JSON.
	New func() Component
	// Params are its parameters (every key but selector, in_ports and
	// out_ports), as the schema declares them; see Param.
	Params []Param
}

var (
	registryMu sync.RWMutex
	registry   = map[string]Info{}
)

// Register adds a component type. It panics on a duplicate, at init time.
func Register(info Info) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[info.Type]; dup {
		panic("components: duplicate registration of " + info.Type)
	}
	registry[info.Type] = info
}

// Lookup returns the registered type, if any.
func Lookup(typ string) (Info, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	info, ok := registry[typ]
	return info, ok
}

// Types lists the registered type names, sorted.
func Types() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Duration is a time.Duration decoded from a CUE/JSON string such as "1500s".
type Duration time.Duration

// UnmarshalJSON accepts a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"500ms\": %w", err)
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Ticks returns how many ticks of interval d spans, rounded up (at least 1).
func (d Duration) Ticks(interval time.Duration) int {
	if interval <= 0 {
		return 1
	}
	n := int((time.Duration(d) + interval - 1) / interval)
	if n < 1 {
		n = 1
	}
	return n
}

func (d Duration) std() time.Duration { return time.Duration(d) }
