package engine

import (
	"sort"

	"github.com/spillway-dev/spillway/components"
)

// ServiceLoad is one service's overload signal (a ServiceOverload
// component) after its policy's last tick, as the RL bridge serves it
// (GET /services).
type ServiceLoad struct {
	Service string
	Policy  string
	// Utilisation (a share of capacity) and QueueingMs (ms a call waits)
	// are the component's inputs at the tick; NaN when unknown.
	Utilisation, QueueingMs float64
	Overloaded              bool
	// AtNs is the engine clock at the tick.
	AtNs int64
}

// Services lists the service overload signals of the running policies, by
// service name; a policy that has not ticked yet reports none. ok is false
// when no running policy has a service overload signal at all.
func (e *Engine) Services() (loads []ServiceLoad, ok bool) {
	for _, r := range e.Policies() {
		ok = ok || len(r.Circuit.loads) > 0
		if l := r.loads.Load(); l != nil {
			loads = append(loads, *l...)
		}
	}
	sort.Slice(loads, func(i, j int) bool { return loads[i].Service < loads[j].Service })
	return loads, ok
}

// publishLoads republishes r's service signals after a tick at now; r.mu
// is held. It allocates only for a policy that has service signals.
func (r *Running) publishLoads(now int64) {
	if len(r.Circuit.loads) == 0 {
		return
	}
	loads := make([]ServiceLoad, len(r.Circuit.loads))
	for i, n := range r.Circuit.loads {
		l := n.comp.(components.ServiceSignal).Load()
		loads[i] = ServiceLoad{Service: l.Service, Policy: r.Circuit.Spec.Name, Utilisation: l.Utilisation,
			QueueingMs: l.QueueingMs, Overloaded: l.Overloaded, AtNs: now}
	}
	r.loads.Store(&loads)
}

// checkServiceNames reports two ServiceOverload components of the set for
// the same service: the bridge would serve two verdicts for it.
func checkServiceNames(set []*Running) Diagnostics {
	return checkUniqueNames(set, func(c *Circuit) []*node { return c.loads },
		func(n *node) string { return n.comp.(components.ServiceSignal).Load().Service },
		"service %q already has an overload signal,")
}
