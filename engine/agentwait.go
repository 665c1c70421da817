package engine

import (
	"time"

	"github.com/spillway-dev/spillway/components"
)

// DefaultAgentWait is Options.AgentWait's default.
const DefaultAgentWait = 100 * time.Millisecond

// An agent acts on a tick's measurements: it reads them from the bridge
// once the tick has observed its flux meters, and posts its rates. Were
// the tick to evaluate at once, those rates would come into force only at
// the next tick, one interval after the measurements they answer; the
// simulator's lock step, where the agent is trained, puts them in force
// within the tick that was measured. On the wall clock the engine does the
// same: the tick of a policy with an RLActuator whose agent is in contact
// observes, then waits until the agent has posted a rate for each of the
// policy's APIs, or Options.AgentWait has passed, before it evaluates.
//
// A silent agent costs each tick the wait until its actuators fall back;
// from then on, and before the agent's first contact with
// fallback_until_contact, the tick does not wait.

// awaitingTick is a policy that has observed and waits for its agent.
type awaitingTick struct {
	r        *Running
	slots    []*agentSlot
	contacts []uint64 // each slot's contacts at observe
	deadline int64
}

// agentWait is how long a tick of r may wait for its agent.
func (e *Engine) agentWait(r *Running) time.Duration {
	w := e.opts.AgentWait
	if w == 0 {
		w = DefaultAgentWait
	}
	// Leave the evaluation most of the interval.
	return min(w, r.Circuit.Spec.EvaluationInterval/2)
}

// awaitAgent returns the wait of a tick of r that has just observed, or
// false when the tick should evaluate now: the policy has no RLActuator,
// or every one of them is on its fallback, or waits are off. r.mu is held.
func (e *Engine) awaitAgent(r *Running, now int64) (awaitingTick, bool) {
	if len(r.Circuit.agents) == 0 || e.opts.AgentWait < 0 {
		return awaitingTick{}, false
	}
	slots := *e.agents.Load()
	w := awaitingTick{r: r, deadline: now + int64(e.agentWait(r))}
	live := false
	for _, n := range r.Circuit.agents {
		a := n.comp.(components.AgentActuator)
		live = live || !a.UsingFallback()
		s := slots[a.Agent().API]
		if s == nil {
			continue
		}
		w.slots = append(w.slots, s)
		w.contacts = append(w.contacts, s.contacts.Load())
	}
	if !live || len(w.slots) == 0 {
		return awaitingTick{}, false
	}
	return w, true
}

// answered reports whether the agent has posted for every API since observe.
func (w *awaitingTick) answered() bool {
	for i, s := range w.slots {
		if s.contacts.Load() == w.contacts[i] {
			return false
		}
	}
	return true
}

// tickWall is one wake-up of the engine's tick loop: it evaluates the
// waiting ticks whose agent has answered or whose wait is over, then
// starts the due ones. It returns the ticks still waiting.
func (e *Engine) tickWall(waiting []awaitingTick) []awaitingTick {
	now := e.opts.Clock()
	kept := waiting[:0]
	for _, w := range waiting {
		if w.answered() || now >= w.deadline {
			w.r.mu.Lock()
			e.evaluate(w.r, now)
			w.r.mu.Unlock()
			continue
		}
		kept = append(kept, w)
	}
	waiting = kept
	for _, r := range e.Policies() {
		if isWaiting(waiting, r) {
			continue
		}
		r.mu.Lock()
		if !r.retired && r.due(now) {
			e.observe(r, now)
			if w, ok := e.awaitAgent(r, now); ok {
				waiting = append(waiting, w)
			} else {
				e.evaluate(r, now)
			}
		}
		r.mu.Unlock()
	}
	return waiting
}

// isWaiting reports whether a tick of r is among waiting.
func isWaiting(waiting []awaitingTick, r *Running) bool {
	for _, w := range waiting {
		if w.r == r {
			return true
		}
	}
	return false
}

// agentPosted wakes the tick loop: an agent has posted a rate, and a tick
// waiting for it may evaluate now.
func (e *Engine) agentPosted() { e.wakeLoop() }
