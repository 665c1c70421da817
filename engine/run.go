package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/circuit"
	"github.com/spillway-dev/spillway/components"
	"github.com/spillway-dev/spillway/fleet"
	"github.com/spillway-dev/spillway/internal/promql"
)

// Options configures an engine.
type Options struct {
	// Policies is a directory of policy files (*.cue).
	Policies string
	// Specs are already-loaded policies; used instead of Policies when set.
	Specs []Spec
	// Clock returns monotonic nanoseconds. Default: time since Start.
	Clock func() int64
	// WakeAt arranges for wake to be called once Clock reads at least
	// deadline (nanoseconds), and returns a function that cancels it; the
	// tick loop sleeps on it until the next tick is due. Default: a
	// time.AfterFunc for deadline − Clock(), which is right for any Clock
	// that runs at the wall clock's pace. A virtual clock supplies its own.
	// Unused with ManualTicks.
	WakeAt func(deadline int64, wake func()) (stop func())
	// ManualTicks disables the engine's tickers; the caller drives every
	// policy with Tick (tests and the virtual-time simulator do).
	ManualTicks bool
	// AgentWait is how long a tick of a policy with an RLActuator waits,
	// between reading its flux meters and evaluating, for the agent to
	// post its rates for that tick (see agentwait.go), at most half the
	// policy's interval. Default DefaultAgentWait; negative: never wait.
	AgentWait time.Duration
	// Logger receives alerts and errors. Default: slog.Default().
	Logger *slog.Logger
	// Watch reloads the Policies directory whenever it changes.
	Watch bool
	// Debounce gathers a burst of file changes into one reload.
	// Default: DefaultDebounce.
	Debounce time.Duration
	// StaleAfterTicks is how many evaluation intervals a limiter's setpoint
	// stays in force without a tick (the loop stalled, the policy panicked
	// or was disabled, the engine closed); after that the limiter applies
	// its fail mode. Default DefaultStaleAfterTicks.
	StaleAfterTicks int
	// FailModes is the fail mode of each control point, by name: what its
	// limiters do once their setpoints are stale. A policy's actuator can
	// set its own with fail_mode. Default components.FailOpen.
	FailModes map[string]components.FailMode
	// Redis shares the policies' global rate limits (scope "global") with
	// the other engines on the same Redis. Without it a policy with a
	// global limit fails to load; policies without one never touch Redis.
	Redis *fleet.Options
	// Prometheus is the base URL of the Prometheus server that the
	// policies' PromQL components query (http://host:port). Without it a
	// policy with a PromQL component fails to load.
	Prometheus string
}

// DefaultStaleAfterTicks is Options.StaleAfterTicks's default.
const DefaultStaleAfterTicks = 5

// Engine runs policies against the control points of one process.
type Engine struct {
	opts     Options
	log      *slog.Logger
	registry *controlpoint.Registry

	mu       sync.Mutex // serialises swaps and dynamic-config changes
	policies atomic.Pointer[[]*Running]
	dynamic  map[string]*DynamicConfig // by policy name; survives reloads

	reloadMu sync.Mutex // one reload at a time
	reload   reloadState
	closed   bool // set by Close, under mu: no reload commits after it
	wg       sync.WaitGroup
	stop     context.CancelFunc
	// lifetime ends at Close; it cancels policy evaluations in progress.
	lifetime context.Context

	errMu      sync.Mutex
	lastErrors Diagnostics

	histories map[string]*policyHistory // by policy name; guarded by mu

	agents atomic.Pointer[map[string]*agentSlot] // by API name; see agent.go
	// wake rouses the tick loop before its next due tick: a timer fired,
	// an agent posted a rate (agentwait.go), or the running set changed.
	wake chan struct{}

	policyPanics atomic.Uint64

	fleet *fleet.Syncer // nil without Options.Redis; see global.go

	prometheus *promql.Client // nil without Options.Prometheus; see promql.go
}

// LastErrors returns the diagnostics of the last failed Apply or reload;
// they are cleared by the next successful one.
func (e *Engine) LastErrors() []Diagnostic {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	return append([]Diagnostic{}, e.lastErrors...)
}

func (e *Engine) setErrors(d Diagnostics) {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	e.lastErrors = d
}

// Running is one policy in an engine: its compiled circuit and the
// actuators and taps it attached to control points.
type Running struct {
	Circuit *Circuit
	mu      sync.Mutex // serialises ticks with status reads and reloads
	taps    []tap
	sinks   []sink
	lastNs  int64 // the engine clock at the last tick (or attach)
	// lastDue is when the last tick was due, on the engine clock: ticks
	// are due at lastDue + the evaluation interval, so a tick that runs
	// late does not push the next one later.
	lastDue int64
	alerts  map[string]uint64
	// retired is set, under mu, when a reload replaced or removed the
	// policy; a retired policy never ticks again.
	retired bool
	// carried counts the components whose state a reload kept.
	carried int
	dryRun  bool // effective dry-run: the spec's, unless dynamic config overrides it
	// hist records every tick (History, Stats); set before the policy is
	// published, shared by every version of the policy.
	hist *policyHistory
	// polls feed the policy's PromQL components; see promql.go.
	polls []poll
	// disabled is why the policy stopped ticking (a component panicked);
	// its actuators go stale and apply their fail mode. A reload that
	// changes the policy starts it afresh.
	disabled string
	// readings are the taps' last readings, one per source; observed says
	// that the next evaluation has not consumed them yet.
	readings []components.FluxReading
	observed bool
	// commands is the agents' commands for the next evaluation (reused).
	commands []circuit.AgentCommand
	// loads are the policy's service overload signals after its last
	// tick (see services.go).
	loads atomic.Pointer[[]ServiceLoad]
}

type tap struct {
	key    string
	source components.Source
	rec    *actuators.Recorder
	detach func()
	// fullSeen is what the policy's concurrency limiters at the tap's
	// selector had counted as refused at a full limit when the tap's
	// last window closed (fullOf).
	fullSeen uint64
}

type sink struct {
	key     string
	comp    components.Sink
	limiter *controlpoint.Limiter
	member  *fleet.Member // a global limit's part in the fleet, or nil
	exact   *fleet.Exact  // a global limit's per-request decider in exact mode, or nil
	detach  func()
}

// Start loads and compiles the policies, attaches them to control points,
// and, unless ManualTicks, ticks each at its evaluation interval until ctx
// is done. With Watch, it reloads the policy directory when it changes.
func Start(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Clock == nil {
		start := time.Now()
		opts.Clock = func() int64 { return int64(time.Since(start)) }
	}
	if opts.WakeAt == nil {
		opts.WakeAt = wallWakeAt(opts.Clock)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.StaleAfterTicks <= 0 {
		opts.StaleAfterTicks = DefaultStaleAfterTicks
	}
	for cp, mode := range opts.FailModes {
		if err := mode.Validate(); err != nil {
			return nil, fmt.Errorf("engine.Options.FailModes[%q]: %w", cp, err)
		}
	}
	e := &Engine{opts: opts, log: opts.Logger, registry: controlpoint.NewRegistry(opts.Clock), dynamic: map[string]*DynamicConfig{}, wake: make(chan struct{}, 1)}
	if err := e.startFleet(); err != nil {
		return nil, err
	}
	if err := e.startPrometheus(); err != nil {
		return nil, err
	}
	e.policies.Store(&[]*Running{})
	e.agents.Store(&map[string]*agentSlot{})
	ctx, e.stop = context.WithCancel(ctx)
	e.lifetime = ctx
	if opts.Specs != nil || opts.Policies == "" {
		if err := e.Apply(opts.Specs); err != nil {
			e.stop()
			return nil, err
		}
	} else if _, err := e.Reload(); err != nil {
		e.stop()
		return nil, err
	}
	if opts.Watch && opts.Policies != "" && opts.Specs == nil {
		// The watcher only signals; reloads run on their own goroutine, so
		// that a slow one neither holds up events nor Close.
		pending := make(chan struct{}, 1)
		go e.reloadWhenPending(ctx, pending)
		first := make(chan error, 1)
		var once sync.Once
		watcherDone := make(chan struct{})
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer close(watcherDone)
			WatchDir(ctx, opts.Policies, opts.Debounce, e.log, func() {
				select {
				case pending <- struct{}{}:
				default: // a reload is already pending; it will see this change
				}
			}, func(err error) {
				e.setWatchError(err)
				once.Do(func() { first <- err })
			})
		}()
		// A watch that cannot be set up at all fails Start; one that fails
		// later is retried for as long as the engine runs.
		select {
		case err := <-first:
			if err != nil {
				e.stop()
				e.wg.Wait()
				return nil, err
			}
		case <-watcherDone: // ctx ended before the watch was set up
		}
	}
	if !opts.ManualTicks {
		e.wg.Add(1)
		go e.tickLoop(ctx)
	}
	e.runFleet(ctx)
	return e, nil
}

// Close stops the tickers and the watcher and waits for them. It does not
// wait for a policy reload in progress: that reload's result is dropped.
// Close may be called more than once.
func (e *Engine) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.stop()
	e.wg.Wait()
}

// ControlPoints is the engine's registry of control points.
func (e *Engine) ControlPoints() *controlpoint.Registry { return e.registry }

// Now reads the engine's clock.
func (e *Engine) Now() int64 { return e.opts.Clock() }

// Apply compiles specs and swaps them in as the running set, all or
// nothing: on any error the running set is left untouched. Components,
// flux-meter windows and token buckets that are unchanged keep their state
// (see commit). After Close it refuses, as Reload does: nothing would
// tick the policies it attached.
func (e *Engine) Apply(specs []Spec) error {
	if e.isClosed() {
		return errClosed
	}
	next, diags := compileAll(specs)
	diags = append(diags, e.checkGlobal(next)...)
	diags = append(diags, e.checkPromQL(next)...)
	if len(diags.Errors()) > 0 {
		e.setErrors(diags)
		return diags
	}
	e.setErrors(nil)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed { // closed while it compiled
		return errClosed
	}
	e.commit(next)
	return nil
}

// compileAll compiles every spec; it returns the policies only when all
// compiled.
func compileAll(specs []Spec) ([]*Running, Diagnostics) {
	// Over the set's caps, nothing is compiled: that would cost what the
	// caps bound.
	diags := checkSetCaps(specs)
	if len(diags.Errors()) > 0 {
		return nil, diags.sorted()
	}
	var next []*Running
	for _, s := range specs {
		c, d := compileGuarded(s)
		diags = append(diags, d...)
		if c != nil {
			next = append(next, &Running{Circuit: c, alerts: map[string]uint64{}})
		}
	}
	// The set's checks run on what compiled, so that they are reported
	// beside another policy's errors.
	diags = append(diags, checkAgentNames(next)...)
	diags = append(diags, checkServiceNames(next)...)
	diags = append(diags, checkAPILabels(next)...)
	diags = append(diags, checkHistoryBudget(next)...)
	if len(diags.Errors()) > 0 {
		return nil, diags.sorted()
	}
	return next, diags
}

// CheckSet runs the checks that concern a whole policy set rather than one
// policy (the set's caps, agent API names unique across policies, the
// history budget), as Reload does; `spillway check` calls it on what
// compiled.
func CheckSet(circuits []*Circuit) Diagnostics {
	set := make([]*Running, len(circuits))
	specs := make([]Spec, len(circuits))
	for i, c := range circuits {
		set[i] = &Running{Circuit: c}
		specs[i] = c.Spec
	}
	diags := checkSetCaps(specs)
	diags = append(diags, checkAgentNames(set)...)
	diags = append(diags, checkServiceNames(set)...)
	diags = append(diags, checkAPILabels(set)...)
	return append(diags, checkHistoryBudget(set)...)
}

// compileGuarded is Compile with a component's panic (in decoding or
// Provision) turned into an error at the policy.
func compileGuarded(s Spec) (c *Circuit, diags Diagnostics) {
	defer func() {
		if p := recover(); p != nil {
			c, diags = nil, Diagnostics{{Pos: s.Pos, Message: fmt.Sprintf("policy %q: internal error while compiling (please report): %v", s.Name, p)}}
		}
	}()
	return Compile(s)
}

// commit swaps next in as the running set; e.mu is held. Each new policy
// adopts the state of the running policy of the same name:
//   - every component whose type, parameters, wiring and evaluation
//     interval are unchanged keeps its instance, so its state (EMA value and
//     warm-up, AIMD integrator, holder) carries over; its position in the
//     list does not matter;
//   - signal values carry over by name, so loops read last tick's values;
//   - a flux-meter window on the same selector and SLO keeps counting;
//   - a limiter on the same selector and kind is kept, with its tokens.
//
// What the new set does not adopt is detached once the new set is live.
func (e *Engine) commit(next []*Running) Change {
	now := e.opts.Clock()
	old := *e.policies.Load()
	byName := make(map[string]*Running, len(old))
	for _, o := range old {
		byName[o.Circuit.Spec.Name] = o
	}
	var ch Change
	e.declareAPILabels(next)
	share := historyShare(next)
	if w := checkHistoryBudget(next); len(w) > 0 {
		e.log.Warn("signal history shortened to fit its budget", "warning", w.Error())
	}
	for _, r := range next {
		name := r.Circuit.Spec.Name
		o := byName[name]
		delete(byName, name)
		if o == nil {
			ch.Added = append(ch.Added, name)
			e.attach(r, nil, now, share)
			continue
		}
		o.mu.Lock()
		o.retired = true
		e.attach(r, o, now, share)
		o.mu.Unlock()
		if r.carried == len(r.Circuit.nodes) && len(r.Circuit.nodes) == len(o.Circuit.nodes) {
			ch.Unchanged = append(ch.Unchanged, name)
		} else {
			ch.Updated = append(ch.Updated, PolicyUpdate{Name: name, Kept: r.carried, Components: len(r.Circuit.nodes)})
		}
	}
	for _, o := range old {
		if _, gone := byName[o.Circuit.Spec.Name]; gone {
			ch.Removed = append(ch.Removed, o.Circuit.Spec.Name)
			o.mu.Lock()
			o.retired = true
			o.mu.Unlock()
			e.forgetHistory(o.Circuit.Spec.Name)
		}
	}
	e.rebuildAgents(next)
	e.policies.Store(&next)
	e.wakeLoop() // a new or changed policy may be due sooner
	for _, o := range old {
		for _, t := range o.taps {
			if t.detach != nil {
				t.detach()
			}
		}
		for _, s := range o.sinks {
			if s.detach != nil {
				s.detach()
			}
		}
		o.stopQueries()
	}
	return ch
}

// attach creates the policy's taps and actuators at its control points,
// adopting what it can from prev (the policy it replaces, locked, or nil),
// and binds it to its history, which keeps historyShare of the window.
func (e *Engine) attach(r *Running, prev *Running, now int64, share float64) {
	c := r.Circuit
	// A new policy's first tick is due at once: until it runs, its
	// actuators have no setpoint and fail open, and a service that starts
	// under overload would admit an interval's worth of it unchecked.
	r.lastNs, r.lastDue = now, subSaturating(now, int64(c.Spec.EvaluationInterval))
	if prev != nil {
		// The schedule carries over; a new interval counts from the last
		// tick, so a shorter one may make the policy due at once.
		r.lastNs, r.lastDue = prev.lastNs, prev.lastDue
		r.adoptState(prev)
	}
	r.hist = e.historyFor(c, share)
	for _, n := range c.sources {
		src := n.comp.(components.Source)
		sel := src.Selector().Normalized()
		slo := sourceSLO(src)
		apiSLOs := sourceAPISLOs(src)
		key := sel.String() + "|" + slo.String() + "|" + apiSLOKey(apiSLOs)
		if t, ok := prev.takeTap(key); ok {
			r.taps = append(r.taps, tap{key: key, source: src, rec: t.rec, detach: t.detach})
			continue
		}
		cp := e.registry.Get(sel.ControlPoint)
		rec := actuators.NewRecorderWithAPISLOs(slo, apiSLOTable(cp, apiSLOs))
		rec.Snapshot(now) // the first window starts at attach time
		api := cp.Declare(sel.API)
		r.taps = append(r.taps, tap{key: key, source: src, rec: rec, detach: api.AttachTap(rec)})
	}
	for _, n := range c.sinks {
		snk := n.comp.(components.Sink)
		sel := snk.Selector().Normalized()
		global := globalKey(snk)
		budget := exactBudget(snk)
		key := fmt.Sprintf("%s|%d|%s|%s", sel, snk.Kind(), global, budget)
		if s, ok := prev.takeSink(key); ok {
			e.setFailMode(s.limiter, snk, sel.ControlPoint, c.Spec.EvaluationInterval)
			r.sinks = append(r.sinks, sink{key: key, comp: snk, limiter: s.limiter, member: s.member, exact: s.exact, detach: s.detach})
			continue
		}
		l := &controlpoint.Limiter{}
		switch snk.Kind() {
		case components.RateSink:
			l.Bucket = actuators.NewTokenBucket(math.NaN(), 1, now)
		case components.ConcurrencySink:
			l.Concurrency = actuators.NewConcurrencyLimiter(math.NaN())
		}
		e.setFailMode(l, snk, sel.ControlPoint, c.Spec.EvaluationInterval)
		l.Stamp(now)
		var exact *fleet.Exact
		if budget > 0 && e.fleet != nil && l.Bucket != nil {
			exact = e.fleet.Exact(global, budget)
			l.Remote = exact // before the limiter is attached: Admit reads it without a lock
		}
		api := e.registry.Get(sel.ControlPoint).Declare(sel.API)
		s := sink{key: key, comp: snk, limiter: l, exact: exact, detach: api.AttachLimiter(l)}
		if global != "" && e.fleet != nil && l.Bucket != nil {
			s.member, s.detach = e.joinFleet(global, c.Spec.Name+"/"+sel.String(), l, s.detach)
		}
		if exact != nil {
			detach := s.detach
			s.detach = func() { detach(); exact.Close() }
		}
		r.sinks = append(r.sinks, s)
	}
	// Refusals at a full limit count from here: an adopted limiter's
	// count began under the policy this one replaces.
	for i, t := range r.taps {
		r.taps[i].fullSeen = r.fullOf(t.source)
	}
	e.attachQueries(r, prev)
	e.applyDynamic(r)
}

// declareAPILabels creates the control points and API labels that next
// selects, each control point's labels at once (ControlPoint.DeclareAll),
// so that attach finds them: a set of n labels costs O(n), where
// declaring them one by one copied the label map for each.
func (e *Engine) declareAPILabels(next []*Running) {
	byControlPoint := map[string][]string{}
	var order []string
	for _, r := range next {
		for _, n := range r.Circuit.declaring() {
			cp, labels := apiLabelsOf(n.comp)
			if _, seen := byControlPoint[cp]; !seen {
				order = append(order, cp)
			}
			byControlPoint[cp] = append(byControlPoint[cp], labels...)
		}
	}
	e.registry.GetAll(order)
	for _, name := range order {
		e.registry.Get(name).DeclareAll(byControlPoint[name])
	}
}

// setFailMode sets how long l's setpoint stays fresh without a tick
// (Options.StaleAfterTicks intervals) and what it does then: the
// actuator's fail_mode, else the control point's from Options.FailModes,
// else fail-open.
func (e *Engine) setFailMode(l *controlpoint.Limiter, snk components.Sink, controlPoint string, interval time.Duration) {
	l.StaleAfter.Store(mulSaturating(int64(e.opts.StaleAfterTicks), int64(interval)))
	mode := snk.FailMode()
	if mode == "" {
		mode = e.opts.FailModes[controlPoint]
	}
	l.FailClosed.Store(mode == components.FailClosed)
}

// adoptState moves unchanged component instances, signal values, tick and
// alert counts from prev into r.
func (r *Running) adoptState(prev *Running) {
	c, pc := r.Circuit, prev.Circuit
	interval := c.Spec.EvaluationInterval
	pool := map[string][]components.Component{}
	if pc.Spec.EvaluationInterval == interval {
		for _, n := range pc.nodes {
			k := stateKey(n.spec)
			pool[k] = append(pool[k], n.comp)
		}
	}
	for _, n := range c.nodes {
		k := stateKey(n.spec)
		if list := pool[k]; len(list) > 0 {
			n.comp, pool[k] = list[0], list[1:]
			c.core.SetComponent(n.at, n.comp)
			r.carried++
		}
	}
	c.core.Adopt(pc.core)
	for k, v := range prev.alerts {
		r.alerts[k] = v
	}
}

// takeTap hands over prev's tap with key, if any; prev may be nil.
func (prev *Running) takeTap(key string) (tap, bool) {
	if prev == nil {
		return tap{}, false
	}
	for i, t := range prev.taps {
		if t.key == key && t.detach != nil {
			prev.taps[i].detach = nil // adopted: the old policy must not detach it
			return t, true
		}
	}
	return tap{}, false
}

// takeSink hands over prev's limiter with key, if any; prev may be nil.
func (prev *Running) takeSink(key string) (sink, bool) {
	if prev == nil {
		return sink{}, false
	}
	for i, s := range prev.sinks {
		if s.key == key && s.detach != nil {
			prev.sinks[i].detach = nil
			return s, true
		}
	}
	return sink{}, false
}

// stateKey identifies a component across reloads: its type, canonical
// parameters and wiring. Position in the list is not part of it.
func stateKey(cs *ComponentSpec) string {
	var b strings.Builder
	b.WriteString(cs.Type)
	b.WriteByte(0)
	var params any
	if len(cs.Params) > 0 && json.Unmarshal(cs.Params, &params) == nil {
		canon, _ := json.Marshal(params) // maps marshal with sorted keys
		b.Write(canon)
	}
	for _, list := range [][]PortBinding{cs.In, cs.Out} {
		b.WriteByte(0)
		for _, p := range list {
			if p.IsConst {
				fmt.Fprintf(&b, "%s=%v;", p.Port, p.Const)
			} else {
				fmt.Fprintf(&b, "%s<%s;", p.Port, p.Signal)
			}
		}
	}
	return b.String()
}

// sourceSLO is the goodput threshold of a flux meter, if it declares one.
func sourceSLO(src components.Source) time.Duration {
	if s, ok := src.(interface{ SLO() time.Duration }); ok {
		return s.SLO()
	}
	return 0
}

// sourceAPISLOs is the per-API SLOs of a flux meter, if it declares any.
func sourceAPISLOs(src components.Source) map[string]time.Duration {
	if s, ok := src.(interface {
		APISLOsByLabel() map[string]time.Duration
	}); ok {
		return s.APISLOsByLabel()
	}
	return nil
}

// apiSLOKey is per-API SLOs as part of a tap's key: sorted by label.
func apiSLOKey(slos map[string]time.Duration) string {
	var b strings.Builder
	for _, api := range slices.Sorted(maps.Keys(slos)) {
		fmt.Fprintf(&b, "%q=%v;", api, slos[api])
	}
	return b.String()
}

// apiSLOTable declares at cp each API of slos and returns their SLOs by
// API index (controlpoint.API.Index), as NewRecorderWithAPISLOs takes
// them; nil without. A label past the control point's MaxAPIs shares the
// overflow API's index: the tightest SLO of those wins there.
func apiSLOTable(cp *controlpoint.ControlPoint, slos map[string]time.Duration) []time.Duration {
	if len(slos) == 0 {
		return nil
	}
	var table []time.Duration
	for _, label := range slices.Sorted(maps.Keys(slos)) {
		i := cp.Declare(label).Index()
		if i >= len(table) {
			table = append(table, make([]time.Duration, i+1-len(table))...)
		}
		if table[i] == 0 || slos[label] < table[i] {
			table[i] = slos[label]
		}
	}
	return table
}

// Policies returns the running policies.
func (e *Engine) Policies() []*Running { return *e.policies.Load() }

// Policy returns the running policy with the given name.
func (e *Engine) Policy(name string) (*Running, bool) {
	for _, r := range e.Policies() {
		if r.Circuit.Spec.Name == name {
			return r, true
		}
	}
	return nil, false
}

// Tick evaluates every running policy once at the engine clock's now.
func (e *Engine) Tick() {
	now := e.opts.Clock()
	for _, r := range e.Policies() {
		e.tickPolicy(r, now)
	}
}

// TickDue evaluates, at the engine clock's now, every running policy whose
// evaluation interval has elapsed since its last tick, and returns how
// many it ticked. The engine's own ticker calls it; a caller with
// ManualTicks (the virtual-time simulator) calls it at every interval of
// its finest policy.
func (e *Engine) TickDue() int {
	return e.TickDueSplit().Finish()
}

// PendingTicks is a tick begun by TickDueSplit: the flux meters of the due
// policies are read, their circuits not yet evaluated.
type PendingTicks struct {
	e        *Engine
	now      int64
	policies []*Running
}

// Agents reports whether a pending policy has an RLActuator: an agent
// reading the bridge now sees the tick's measurements.
func (p PendingTicks) Agents() bool {
	for _, r := range p.policies {
		if len(r.Circuit.agents) > 0 {
			return true
		}
	}
	return false
}

// Finish evaluates the pending policies and publishes their setpoints. It
// returns how many policies ticked.
func (p PendingTicks) Finish() int {
	for _, r := range p.policies {
		r.mu.Lock()
		p.e.evaluate(r, p.now)
		r.mu.Unlock()
	}
	return len(p.policies)
}

// TickDueSplit is the first half of TickDue: it snapshots the flux meters
// of the due policies and publishes what the RL bridge serves, and leaves
// the evaluation to Finish. In between, an agent in lock step with the
// simulator reads the tick and sets its rates, which Finish applies within
// the same tick.
func (e *Engine) TickDueSplit() PendingTicks {
	p := PendingTicks{e: e, now: e.opts.Clock()}
	for _, r := range e.Policies() {
		r.mu.Lock()
		if !r.retired && r.due(p.now) {
			e.observe(r, p.now)
			p.policies = append(p.policies, r)
		}
		r.mu.Unlock()
	}
	return p
}

// tickLoop ticks every policy at its evaluation interval on the engine
// clock. It sleeps until the next tick is due (or a waiting tick's agent
// wait ends), on Options.WakeAt, and is woken early when an agent posts or
// the running set changes.
func (e *Engine) tickLoop(ctx context.Context) {
	defer e.wg.Done()
	var waiting []awaitingTick
	stop := func() {}
	defer func() { stop() }()
	for {
		waiting = e.tickWall(waiting)
		stop()
		stop = func() {}
		if next, ok := e.nextWake(waiting); ok {
			stop = e.opts.WakeAt(next, e.wakeLoop)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		}
	}
}

// nextWake is when the tick loop has work next, on the engine clock: the
// earliest due tick of a policy that is not waiting for its agent, or the
// end of an agent wait. It reports false when there is none.
func (e *Engine) nextWake(waiting []awaitingTick) (int64, bool) {
	var next int64
	found := false
	earliest := func(t int64) {
		if !found || t < next {
			next, found = t, true
		}
	}
	for _, w := range waiting {
		earliest(w.deadline)
	}
	for _, r := range e.Policies() {
		if isWaiting(waiting, r) {
			continue
		}
		r.mu.Lock()
		if !r.retired {
			earliest(addSaturating(r.lastDue, int64(r.Circuit.Spec.EvaluationInterval)))
		}
		r.mu.Unlock()
	}
	return next, found
}

// wakeLoop rouses the tick loop; it never blocks.
func (e *Engine) wakeLoop() {
	select {
	case e.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// wallWakeAt is Options.WakeAt's default: a wall-clock timer for the time
// between clock's now and the deadline.
func wallWakeAt(clock func() int64) func(int64, func()) func() {
	return func(deadline int64, wake func()) func() {
		t := time.AfterFunc(time.Duration(max(subSaturating(deadline, clock()), 0)), wake)
		return func() { t.Stop() }
	}
}

// due reports whether r's next tick is due at now. r.mu is held.
func (r *Running) due(now int64) bool {
	return subSaturating(now, r.lastDue) >= int64(r.Circuit.Spec.EvaluationInterval)
}

// addSaturating is a+b, or the int64 bound it would pass. The engine
// clock's sums with an interval (whatever a virtual clock reads) and the
// staleness product saturate instead of wrapping into the past.
func addSaturating(a, b int64) int64 {
	if s := a + b; (s > a) == (b > 0) {
		return s
	}
	if b > 0 {
		return math.MaxInt64
	}
	return math.MinInt64
}

// subSaturating is a−b, or the int64 bound it would pass.
func subSaturating(a, b int64) int64 {
	if b == math.MinInt64 {
		if a >= 0 {
			return math.MaxInt64
		}
		return a - b
	}
	return addSaturating(a, -b)
}

// mulSaturating is a×b for a, b ≥ 0, or math.MaxInt64 when it is more.
func mulSaturating(a, b int64) int64 {
	if a > 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}

// advanceSchedule records a tick at now. A tick on time or late moves
// lastDue to the latest due time not after now, so lateness does not
// accumulate and ticks missed by a stall are skipped rather than run in a
// burst; a tick before its due time (Tick, by hand) starts the schedule
// afresh at now. r.mu is held.
func (r *Running) advanceSchedule(now int64) {
	r.lastNs = now
	interval := int64(r.Circuit.Spec.EvaluationInterval)
	if !r.due(now) {
		r.lastDue = now
		return
	}
	r.lastDue += subSaturating(now, r.lastDue) / interval * interval
}

// tickPolicy runs one tick: snapshot the flux meters, evaluate the
// circuit, publish the setpoints.
func (e *Engine) tickPolicy(r *Running, now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.retired {
		return
	}
	e.observe(r, now)
	e.evaluate(r, now)
}

// observe is the first step of a tick: snapshot the flux meters, and
// publish what agents read. r.mu is held.
func (e *Engine) observe(r *Running, now int64) {
	defer e.recoverPolicy(r)
	r.advanceSchedule(now)
	if r.disabled != "" {
		return
	}
	if len(r.readings) != len(r.taps) {
		r.readings = make([]components.FluxReading, len(r.taps))
	}
	r.observed = true
	var w actuators.Window
	for i, t := range r.taps {
		// A new policy's first tick comes right after its load: a window
		// of microseconds, whose one answer would read as thousands a
		// second. It reads no rates, and the window stays open for the
		// next tick.
		t.rec.SnapshotAfter(&w, now, int64(r.Circuit.Spec.EvaluationInterval)/10)
		rd := reading(&w)
		// Refusals at a full limit: the policy's own limiters', since
		// the last window. Another policy's limit at the same selector
		// binds on its own.
		rd.FullRps = math.NaN()
		if full := r.fullOf(t.source); w.Seconds() > 0 {
			rd.FullRps = w.Rate(full - t.fullSeen)
			r.taps[i].fullSeen = full
		}
		r.readings[i] = rd
		if a, ok := t.source.(components.AgentActuator); ok {
			e.publishAgentReading(r.Circuit.Spec.Name, a, rd)
		}
	}
	r.observeQueries(now)
}

// fullOf is what the policy's concurrency limiters at src's selector
// have counted as refused with every slot taken (controlpoint.Limiter.Full).
func (r *Running) fullOf(src components.Source) uint64 {
	sel := src.Selector().Normalized()
	var n uint64
	for _, s := range r.sinks {
		if s.limiter.Concurrency != nil && s.comp.Selector().Normalized() == sel {
			n += s.limiter.Full.Load()
		}
	}
	return n
}

// recoverPolicy turns a panic in a policy's tick into a disabled policy:
// logged, counted and shown on /status, never a crash of the host. r.mu
// is held.
func (e *Engine) recoverPolicy(r *Running) {
	p := recover()
	if p == nil {
		return
	}
	r.disabled = fmt.Sprintf("panic in a tick: %v", p)
	e.policyPanics.Add(1)
	e.log.Error("policy disabled: a component panicked; its actuators apply their fail mode once their setpoints go stale; fix or reload the policy",
		"policy", r.Circuit.Spec.Name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
}

// PolicyPanics counts policies disabled by a panic since Start.
func (e *Engine) PolicyPanics() uint64 { return e.policyPanics.Load() }

// evaluate is the rest of a tick: evaluate the circuit and publish its
// setpoints. r.mu is held; a policy retired since observe does nothing.
func (e *Engine) evaluate(r *Running, now int64) {
	if r.retired || r.disabled != "" {
		return
	}
	defer e.recoverPolicy(r)
	start := time.Now() // wall time, for spillway_tick_duration_seconds only
	var in circuit.Inputs
	if r.observed {
		in.Readings, r.observed = r.readings, false
	}
	if agents := r.Circuit.agents; len(agents) > 0 {
		if len(r.commands) != len(agents) {
			r.commands = make([]circuit.AgentCommand, len(agents))
		}
		for i, n := range agents {
			r.commands[i] = e.agentCommand(n.comp.(components.AgentActuator))
		}
		in.Agents = r.commands
	}
	ready := r.Circuit.core.Tick(in)
	interval := r.Circuit.Spec.EvaluationInterval.Seconds()
	for i, s := range r.sinks {
		value, burst := ready.Setpoints[i].Value, ready.Setpoints[i].Burst
		switch {
		case s.limiter.Bucket != nil:
			if !components.IsValid(burst) && components.IsValid(value) {
				burst = math.Max(1, value*interval) // one tick's worth of tokens
			}
			if s.exact != nil {
				s.exact.SetLimit(value, burst) // the fleet's, decided request by request in Redis
			}
			if s.member != nil {
				s.member.SetLimit(value, burst) // the fleet's; the bucket gets this engine's share
			} else if components.IsValid(burst) {
				s.limiter.Bucket.SetRateAndBurst(value, burst)
			} else {
				s.limiter.Bucket.SetRate(value)
			}
		case s.limiter.Concurrency != nil:
			s.limiter.Concurrency.SetLimit(value)
			if b, ok := s.comp.(interface{ IsBulkhead() bool }); ok {
				s.limiter.Concurrency.Rebalance(b.IsBulkhead(), -math.Expm1(-interval/bulkheadWindow.Seconds()))
				// A dry run's caps refuse nothing, so its tests would
				// judge by what they did not do.
				s.limiter.Concurrency.Separate(b.IsBulkhead() && !s.limiter.DryRun.Load(), interval)
			}
		}
		s.limiter.Stamp(now)
	}
	// After the limits: a global agent rate's share is this engine's part
	// of the limit just set, not of the last tick's.
	for i, n := range r.Circuit.agents {
		a := n.comp.(components.AgentActuator)
		e.publishAgentMode(a, ready.Agents[i], r.globalMember(a.Selector()))
	}
	r.publishLoads(now)
	for _, a := range ready.Alerts {
		r.alerts[a.Name]++
		e.log.Warn("spillway alert", "policy", r.Circuit.Spec.Name, "alert", a.Name, "component", a.Path)
	}
	r.hist.record(r.Circuit, now, time.Since(start))
}

// bulkheadWindow is the time constant over which a shared concurrency
// limiter's partitions measure the useful fraction of their requests.
const bulkheadWindow = time.Second

// readingQuantiles are the latency quantiles of a flux-meter reading, in
// increasing order, so that one pass over the histogram reads them all.
var readingQuantiles = [4]float64{0.50, 0.90, 0.95, 0.99}

// reading converts a recorder window into a flux-meter reading.
func reading(w *actuators.Window) components.FluxReading {
	var p, sp [4]float64
	w.QuantilesMs(readingQuantiles[:], p[:])
	if w.Scaled {
		w.ScaledQuantilesMs(readingQuantiles[:], sp[:])
	} else {
		sp = p
	}
	tail := w.WorstAPILatencyMs()
	return components.FluxReading{
		LatencyAvgMs: w.LatencyAvgMs(),
		LatencyP50Ms: p[0],
		LatencyP90Ms: p[1],
		LatencyP95Ms: p[2],
		LatencyP99Ms: p[3],
		IncomingRps:  w.Rate(w.Incoming),
		AcceptedRps:  w.Rate(w.Accepted),
		RejectedRps:  w.Rate(w.Rejected),
		GoodputRps:   w.Rate(w.Goodput),
		InFlight:     float64(w.InFlight),
		CompletedRps: w.Rate(w.Completed),
		// Whole milliseconds: the age is only known to within a slot.
		OldestInFlightMs:     float64(w.OldestInFlightNs / 1e6),
		AnsweredLatencyAvgMs: w.AnsweredLatencyAvgMs(),
		AbandonedRps:         w.Rate(w.Abandoned),
		SharedLatencyAvgMs:   w.SharedLatencyAvgMs(),
		SharedLatencySemMs:   w.SharedLatencySemMs(),
		ScaledLatencyAvgMs:   w.ScaledLatencyAvgMs(),
		ScaledLatencyP50Ms:   sp[0],
		ScaledLatencyP90Ms:   sp[1],
		ScaledLatencyP95Ms:   sp[2],
		ScaledLatencyP99Ms:   sp[3],
		WorstAPILatencyAvgMs: tail[0],
		WorstAPILatencyP50Ms: tail[1],
		WorstAPILatencyP90Ms: tail[2],
		WorstAPILatencyP95Ms: tail[3],
		WorstAPILatencyP99Ms: tail[4],
	}
}

// Signal returns a signal of a running policy after its last tick.
func (e *Engine) Signal(policy, name string) (float64, error) {
	r, ok := e.Policy(policy)
	if !ok {
		return math.NaN(), fmt.Errorf("no running policy %q", policy)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.Circuit.Signal(name)
	if !ok {
		return math.NaN(), errors.New("policy " + policy + " has no signal " + name)
	}
	return v, nil
}
