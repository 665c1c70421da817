package rlbridge

import (
	"math"

	"github.com/spillway-dev/spillway/engine"
)

// EngineBackend serves the RLActuators of an engine. Engine returns the
// engine to serve; it may change (the simulator starts one per episode) and
// may be nil, when no API is under agent control.
type EngineBackend struct {
	Engine func() *engine.Engine
}

// ForEngine serves one engine.
func ForEngine(eng *engine.Engine) EngineBackend {
	return EngineBackend{Engine: func() *engine.Engine { return eng }}
}

// APIs lists the engine's APIs under agent control.
func (b EngineBackend) APIs() []APIInfo {
	eng := b.Engine()
	if eng == nil {
		return []APIInfo{}
	}
	apis := eng.AgentAPIs()
	out := make([]APIInfo, len(apis))
	for i, a := range apis {
		out[i] = Info(a)
	}
	return out
}

// Info is the /apis entry of an API.
func Info(a engine.AgentAPI) APIInfo {
	info := APIInfo{
		Name: a.Name, Policy: a.Policy, Cluster: a.Cluster, Priority: a.Priority,
		SLOMs: float64(a.SLO.Microseconds()) / 1e3, SustainableRPS: a.SustainableRPS,
		LowerBound: a.LowerBound, UpperBound: a.UpperBound, RateLimit: a.RateLimit,
		OfferedRPS: a.OfferedRPS, Mode: a.Mode(), LimitInForce: nullable(a.LimitInForce), Tick: a.Ticks,
		Services: a.Services,
	}
	if a.Global != nil {
		info.Global = &GlobalInfo{Key: a.Global.Key, Share: nullable(a.Global.Share)}
	}
	return info
}

// nullable is a number for JSON: nil when there is none (NaN, a limit not
// in force or a signal not known, or ±Inf).
func nullable(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// Services lists the engine's service overload signals (ServiceOverload
// components), by name; false when no running policy has one.
func (b EngineBackend) Services() ([]ServiceInfo, bool) {
	eng := b.Engine()
	if eng == nil {
		return nil, false
	}
	loads, ok := eng.Services()
	out := make([]ServiceInfo, len(loads))
	for i, l := range loads {
		out[i] = ServiceInfo{Name: l.Service, Utilisation: nullable(l.Utilisation), QueueingMs: nullable(l.QueueingMs), Overloaded: l.Overloaded}
	}
	return out, ok
}

// Metrics reports an API's last complete tick. Reading it is not a contact
// from the agent: a dashboard or scraper polling it must not keep a dead
// agent's rate in force. Only set_rate (and the simulator's /step) is.
func (b EngineBackend) Metrics(api string) (Metrics, bool) {
	eng := b.Engine()
	if eng == nil {
		return Metrics{}, false
	}
	a, ok := eng.AgentAPI(api)
	if !ok {
		return Metrics{}, false
	}
	return Metrics{Goodput: a.GoodputRPS, Latency: a.LatencyMs}, true
}

// SetRate sets the agent's rate of an API, clamped to its bounds.
func (b EngineBackend) SetRate(api string, ratePerSec float64) bool {
	eng := b.Engine()
	if eng == nil {
		return false
	}
	_, err := eng.SetAgentRate(api, ratePerSec)
	return err == nil
}
