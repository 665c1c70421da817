package engine

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/components"
)

// Rejection explains a refusal at a control point: which policy's actuator
// refuses requests to the API now, and the signal values of the tick that
// set its limit.
type Rejection struct {
	// Policy and Component name the refusing actuator ("components[3].RateLimiter").
	Policy    string `json:"policy"`
	Component string `json:"component"`
	// Kind is "rate" (a RateLimiter) or "concurrency".
	Kind string `json:"kind"`
	// Selector is the actuator's control point and API ("ingress/*").
	Selector string `json:"selector"`
	// Limit is the setpoint in force: requests per second, or requests in
	// flight. NaN when the refusal is a stale fail-closed setpoint.
	Limit float64 `json:"limit"`
	// Tick is the policy's tick count when the explanation was read.
	Tick uint64 `json:"tick"`
	// RetryAfter is how long until the refusal may lift: the wait for the
	// bucket's next token, or for a concurrency limit one evaluation
	// interval (the next tick that may change it).
	RetryAfter time.Duration `json:"retry_after_ns"`
	// Text is the whole explanation in one line, e.g.
	// "web: components[4].RateLimiter rate_limit=212.4 from components[3].AIMDController (signal=48.1, setpoint=30.3, ...)".
	Text string `json:"text"`
}

// ExplainRejection names the actuator that refuses requests labelled api
// at controlPoint with decision d (RateLimited or ConcurrencyLimited; any
// other value considers both kinds, for a caller that saw a rejection but
// not its kind), and the inputs its limit came from at the last tick.
// Actuators on the API and on the whole control point ("*") are
// considered: one that refuses now first, then the API's own (Admit asks
// those first), then the first declared. ok is false when no running
// policy has an actuator of that kind there.
//
// It reads the limiters without locks and then takes the one chosen
// policy's lock to read the producing component's last inputs, so it is
// meant for rejections, not for every request.
func (e *Engine) ExplainRejection(controlPoint, api string, d controlpoint.Decision) (Rejection, bool) {
	if api == "" {
		api = controlpoint.AllAPIs
	}
	kindMatches := func(k components.SinkKind) bool {
		switch d {
		case controlpoint.RateLimited:
			return k == components.RateSink
		case controlpoint.ConcurrencyLimited:
			return k == components.ConcurrencySink
		}
		return true
	}
	now := e.opts.Clock()
	var state *controlpoint.API // nil: no such control point, so no limiter matches
	if cp := e.registry.Lookup(controlPoint); cp != nil {
		state = cp.Tracked(api)
	}
	var chosen *Running
	chosenSink, chosenRank := -1, -1
	for _, r := range e.Policies() {
		for i, s := range r.sinks {
			sel := s.comp.Selector().Normalized()
			if sel.ControlPoint != controlPoint || (sel.API != api && sel.API != controlpoint.AllAPIs) || !kindMatches(s.comp.Kind()) {
				continue
			}
			// As Admit asks them: the API's own actuators first, then the
			// control point's; one that refuses now before one that does not.
			rank := 0
			if refusesNow(s.limiter, state, now) {
				rank += 2
			}
			if sel.API == api {
				rank++
			}
			if rank > chosenRank {
				chosen, chosenSink, chosenRank = r, i, rank
			}
		}
	}
	if chosen == nil {
		return Rejection{}, false
	}
	return chosen.explainSink(chosenSink, now, state), true
}

// refusesNow reports whether l would refuse a request of api at now: a
// bucket with no whole token, a concurrency limit full for api (whose
// requests may not count against it, actuators.Partition), or a stale
// fail-closed setpoint.
func refusesNow(l *controlpoint.Limiter, api *controlpoint.API, now int64) bool {
	if staleAfter := l.StaleAfter.Load(); staleAfter > 0 && now-l.StampNs() > staleAfter {
		return l.FailClosed.Load()
	}
	if l.Bucket != nil {
		return !l.Bucket.Unlimited() && l.Bucket.Tokens(now) < 1
	}
	return api != nil && l.ConcurrencyFull(api)
}

// explainSink explains the i-th actuator of r, for a request of api (nil:
// unknown).
func (r *Running) explainSink(i int, now int64, api *controlpoint.API) Rejection {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.Circuit
	s := r.sinks[i]
	n := c.sinks[i]
	interval := c.Spec.EvaluationInterval
	x := Rejection{
		Policy:     c.Spec.Name,
		Component:  componentLabel(n.spec.Path),
		Kind:       "rate",
		Selector:   s.comp.Selector().String(),
		Tick:       c.Ticks(),
		RetryAfter: interval,
	}
	var b strings.Builder
	b.WriteString(c.Spec.Name)
	b.WriteString(": ")
	b.WriteString(componentLabel(n.spec.Path))
	l := s.limiter
	stale := false
	if staleAfter := l.StaleAfter.Load(); staleAfter > 0 && now-l.StampNs() > staleAfter {
		stale = true
	}
	switch {
	case l.Bucket != nil:
		x.Limit = l.Bucket.Rate()
		if rate, tokens := l.Bucket.Rate(), l.Bucket.Tokens(now); rate > 0 && tokens < 1 {
			x.RetryAfter = time.Duration((1 - tokens) / rate * float64(time.Second))
		}
	default:
		x.Kind = "concurrency"
		x.Limit = l.Concurrency.Limit()
	}
	if stale {
		x.Limit = math.NaN()
		b.WriteString(" fail_closed: setpoint stale for ")
		b.WriteString(time.Duration(now - l.StampNs()).Round(time.Millisecond).String())
		x.Text = b.String()
		return x
	}
	port := "limit"
	if len(n.port) > 0 {
		port = n.port[0].Name
	}
	b.WriteByte(' ')
	b.WriteString(port)
	b.WriteByte('=')
	b.WriteString(formatSignal(x.Limit))
	if x.Kind == "concurrency" {
		b.WriteString(" (in flight ")
		b.WriteString(strconv.FormatInt(l.Concurrency.InFlight(), 10))
		b.WriteByte(')')
		if api != nil {
			// The API's own cap (a test of its latency, or a queue at a
			// bottleneck of its own), or the unanswered APIs' quarter,
			// refused it, not the shared limit.
			if capSlots, inFlight := l.TestCap(api); capSlots > 0 && inFlight >= capSlots {
				apiRefusal(&b, api.Label, " capped at ", capSlots, " in flight (a test of its latency, or a queue of its own)", inFlight)
			} else if held, quarter, inFlight := l.UnansweredQuarter(api); held {
				apiRefusal(&b, api.Label, " unanswered (its clients give up on most of its requests): unanswered APIs hold at most ",
					quarter, " in flight", inFlight)
			}
		}
	}
	if len(n.in) > 0 {
		if in := n.in[0]; in.Signal >= 0 {
			b.WriteString(" from ")
			if p := c.producer(in.Signal); p != nil {
				b.WriteString(componentLabel(p.spec.Path))
				b.WriteString(" (")
				for j, ref := range p.in {
					if j > 0 {
						b.WriteString(", ")
					}
					name := p.port[j].Name
					if ref.Signal >= 0 {
						name = c.names[ref.Signal]
					}
					b.WriteString(name)
					b.WriteByte('=')
					b.WriteString(formatSignal(c.core.NodeInputs(p.at)[j]))
				}
				b.WriteByte(')')
			} else {
				b.WriteString(c.names[in.Signal])
			}
		}
	}
	x.Text = b.String()
	return x
}

// producer is the node whose output is signal index s, or nil.
func (c *Circuit) producer(s int) *node {
	for _, n := range c.nodes {
		for _, o := range n.out {
			if o == s {
				return n
			}
		}
	}
	return nil
}

// apiRefusal appends "; API label" what n after " (in flight inFlight)":
// why one API's request was refused at a concurrency limit with room.
func apiRefusal(b *strings.Builder, label, what string, n int64, after string, inFlight int64) {
	b.WriteString("; API ")
	b.WriteString(label)
	b.WriteString(what)
	b.WriteString(strconv.FormatInt(n, 10))
	b.WriteString(after)
	b.WriteString(" (in flight ")
	b.WriteString(strconv.FormatInt(inFlight, 10))
	b.WriteByte(')')
}

// formatSignal prints a signal value rounded to one decimal, "invalid" for
// NaN.
func formatSignal(v float64) string {
	if v != v {
		return "invalid"
	}
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}
