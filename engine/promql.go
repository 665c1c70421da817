package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/spillway-dev/spillway/components"
	"github.com/spillway-dev/spillway/internal/promql"
)

// poll is one query source of a running policy and the poller that feeds
// it. The poller's goroutine belongs to the engine: it ends when the
// policy is replaced by one without the same query, or at Close.
type poll struct {
	key    string
	source components.QuerySource
	path   string // the component's path, for /status
	poller *promql.Poller
	stop   context.CancelFunc
}

// startPrometheus makes the Prometheus client when Options.Prometheus is
// set; pollers start as policies with PromQL components attach.
func (e *Engine) startPrometheus() error {
	if e.opts.Prometheus == "" {
		return nil
	}
	c, err := promql.NewClient(e.opts.Prometheus)
	if err != nil {
		return fmt.Errorf("engine.Options.Prometheus: %w", err)
	}
	e.prometheus = c
	return nil
}

// checkPromQL refuses a policy set with PromQL components when the engine
// has no Prometheus to ask: their signals would never be valid.
func (e *Engine) checkPromQL(set []*Running) Diagnostics {
	if e.opts.Prometheus != "" {
		return nil
	}
	var diags Diagnostics
	for _, r := range set {
		for _, n := range r.Circuit.queries {
			diags = append(diags, Diagnostic{Pos: n.spec.Pos, Message: fmt.Sprintf(
				"%s: a PromQL component needs a Prometheus server (spillway run --prometheus URL, or engine.Options.Prometheus)", n.spec.Path)})
		}
	}
	return diags
}

// attachQueries starts a poller for each query source of r, or adopts the
// running poller of the same query from prev (the policy r replaces, or
// nil), so that a reload neither restarts the query nor loses its answer.
// e.mu is held.
func (e *Engine) attachQueries(r *Running, prev *Running) {
	for _, n := range r.Circuit.queries {
		src := n.comp.(components.QuerySource)
		q := src.Query()
		key := fmt.Sprintf("%s|%s|%s", q.PromQL, q.Interval, q.Timeout)
		if p, ok := prev.takePoll(key); ok {
			p.source, p.path = src, n.spec.Path
			r.polls = append(r.polls, p)
			continue
		}
		p := poll{key: key, source: src, path: n.spec.Path, stop: func() {}}
		if e.prometheus == nil || e.closed {
			// checkPromQL refused this set, or Close has begun: no poller.
			r.polls = append(r.polls, p)
			continue
		}
		p.poller = promql.NewPoller(e.prometheus, q.PromQL, q.Interval, q.Timeout, e.opts.Clock)
		policy, path := r.Circuit.Spec.Name, n.spec.Path
		p.poller.OnChange = func(prev, next *promql.Answer) {
			switch {
			case next.Err == nil:
				e.log.Info("PromQL query answers again", "policy", policy, "component", path, "failures", next.Failures)
			case prev.Err == nil || next.Failures%100 == 0:
				e.log.Warn("PromQL query failed; its signal is invalid until it answers", "policy", policy, "component", path,
					"err", next.Err.Error(), "failures", next.Failures)
			}
		}
		ctx, cancel := context.WithCancel(e.lifetime)
		p.stop = cancel
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			p.poller.Run(ctx)
		}()
		r.polls = append(r.polls, p)
	}
}

// takePoll hands over prev's poll with key, if any; prev may be nil.
func (prev *Running) takePoll(key string) (poll, bool) {
	if prev == nil {
		return poll{}, false
	}
	for i, p := range prev.polls {
		if p.key == key && p.stop != nil {
			prev.polls[i].stop = nil // adopted: the old policy must not stop it
			return p, true
		}
	}
	return poll{}, false
}

// stopQueries stops the pollers of a policy that left the running set.
func (r *Running) stopQueries() {
	for i, p := range r.polls {
		if p.stop != nil {
			p.stop()
			r.polls[i].stop = nil
		}
	}
}

// observeQueries hands each query source its last answer and the answer's
// age, for the tick about to run. It never waits for a query. r.mu is held.
func (r *Running) observeQueries(now int64) {
	for _, p := range r.polls {
		if p.poller == nil {
			p.source.ObserveQuery(components.Invalid, 0)
			continue
		}
		a := p.poller.Last()
		p.source.ObserveQuery(a.Value, time.Duration(now-a.AtNs))
	}
}

// QueryStatus is one PromQL component's query as this engine last ran it.
type QueryStatus struct {
	Component string `json:"component"`
	Query     string `json:"query"`
	// Value is the last answer, null when the last query failed or none
	// has answered; Age is how long ago it came.
	Value    Float         `json:"value"`
	Age      time.Duration `json:"age_ns"`
	Failures uint64        `json:"failures"`
	// LastError is why the last query failed.
	LastError string `json:"last_error,omitempty"`
}

// queryStatus reports r's queries; r.mu is held.
func (e *Engine) queryStatus(r *Running) []QueryStatus {
	out := []QueryStatus{}
	now := e.Now()
	for _, p := range r.polls {
		qs := QueryStatus{Component: p.path, Query: p.source.Query().PromQL, Value: Float(components.Invalid)}
		if p.poller != nil {
			a := p.poller.Last()
			qs.Value, qs.Failures, qs.Age = Float(a.Value), a.Failures, time.Duration(now-a.AtNs)
			if a.Err != nil {
				qs.LastError = a.Err.Error()
			}
		}
		out = append(out, qs)
	}
	return out
}
