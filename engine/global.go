package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/components"
	"github.com/spillway-dev/spillway/fleet"
)

// globalLimit is a rate limiter whose limit is the fleet's (scope
// "global"); its bucket holds this engine's share.
type globalLimit interface{ GlobalKey() string }

// globalKey is the key of a sink's global limit, or "" for a local one.
func globalKey(snk components.Sink) string {
	if g, ok := snk.(globalLimit); ok {
		return g.GlobalKey()
	}
	return ""
}

// exactLimit is a global rate limit that may decide in Redis (mode exact).
type exactLimit interface{ ExactBudget() time.Duration }

// exactBudget is the Redis time budget of a sink's global limit in exact
// mode, or 0 (lease mode, or a local limit).
func exactBudget(snk components.Sink) time.Duration {
	if x, ok := snk.(exactLimit); ok && globalKey(snk) != "" {
		return x.ExactBudget()
	}
	return 0
}

// startFleet connects the engine to Redis when Options.Redis is set; the
// sync loop starts with runFleet, once the policies are attached.
func (e *Engine) startFleet() error {
	if e.opts.Redis == nil {
		return nil
	}
	s, err := fleet.New(*e.opts.Redis, e.log)
	if err != nil {
		return fmt.Errorf("engine.Options.Redis: %w", err)
	}
	e.fleet = s
	return nil
}

// runFleet syncs once, so that an engine starts with its share rather than
// the whole limit when Redis answers within one sync interval, then keeps
// syncing until ctx ends. Requests never wait for it.
func (e *Engine) runFleet(ctx context.Context) {
	if e.fleet == nil {
		return
	}
	e.fleet.SyncOnce(ctx)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.fleet.Run(ctx)
	}()
}

// checkGlobal refuses a policy set with global limits when the engine has
// no Redis: enforcing them locally would admit the limit on every instance.
func (e *Engine) checkGlobal(set []*Running) Diagnostics {
	if e.opts.Redis != nil {
		return nil
	}
	var diags Diagnostics
	for _, r := range set {
		for _, n := range r.Circuit.sinks {
			if key := globalKey(n.comp.(components.Sink)); key != "" {
				diags = append(diags, Diagnostic{Pos: n.spec.Pos, Message: fmt.Sprintf(
					"%s: global rate limit %q needs Redis (spillway run --redis ADDR, or engine.Options.Redis)", n.spec.Path, key)})
			}
		}
	}
	return diags
}

// joinFleet makes the limiter l of a global sink a member of its key's
// limit, under a name unique in the engine (policy/selector), and returns
// the member and the detach function that also leaves.
func (e *Engine) joinFleet(key, name string, l *controlpoint.Limiter, detach func()) (*fleet.Member, func()) {
	arrivals := func() uint64 {
		return l.Allowed.Load() + l.Rejected.Load() + l.WouldReject.Load() + l.FailOpen.Load()
	}
	m := e.fleet.Join(key, name, l.Bucket.SetRateAndBurst, arrivals)
	e.fleet.Kick()
	return m, func() {
		detach()
		m.Leave()
		e.fleet.Kick() // tell the fleet now, not a member TTL from now
	}
}

// GlobalStatus is a global rate limit as this engine sees it.
type GlobalStatus struct {
	Key string `json:"key"`
	// Limit is the fleet's, Share this engine's part, in requests/s.
	Limit Float `json:"limit"`
	Share Float `json:"share"`
	// Demand is the requests offered here per second, averaged as the
	// engine reports it (see fleet.Status); FleetDemand the fleet's at the
	// last sync.
	Demand      Float `json:"demand_rps"`
	FleetDemand Float `json:"fleet_demand_rps"`
	// Live is the member count Redis reported; Planned the count the share
	// was planned with (higher while a fall is not yet believed).
	Live    int `json:"live_members"`
	Planned int `json:"planned_members"`
	// Mode is synced, fail_static (Redis did not answer the last sync: the
	// share is held) or unsynced (no sync has answered yet).
	Mode        string        `json:"mode"`
	LastSyncAge time.Duration `json:"last_sync_age_ns"`
	LastError   string        `json:"last_error,omitempty"`
	// Exact is set in exact mode: the requests Redis decided, and those
	// left to the share (Mode above is then the fallback's).
	Exact *ExactStatus `json:"exact,omitempty"`
}

// ExactStatus is an exact-mode global limit's record.
type ExactStatus struct {
	Budget     time.Duration `json:"budget_ns"`
	Answered   uint64        `json:"answered"`
	Unanswered uint64        `json:"unanswered"`
	LastError  string        `json:"last_error,omitempty"`
}

func globalStatus(m *fleet.Member, x *fleet.Exact) *GlobalStatus {
	st := m.Status(time.Now())
	gs := &GlobalStatus{
		Key: st.Key, Limit: Float(st.Limit), Share: Float(st.Share),
		Demand: Float(st.Demand), FleetDemand: Float(st.FleetDemand),
		Live: st.Live, Planned: st.Planned, Mode: st.Mode,
		LastSyncAge: st.LastSyncAge, LastError: st.LastError,
	}
	if x != nil {
		xs := x.Status()
		gs.Exact = &ExactStatus{Budget: xs.Budget, Answered: xs.Answered, Unanswered: xs.Unanswered, LastError: xs.LastError}
	}
	return gs
}
