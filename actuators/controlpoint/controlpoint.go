// Package controlpoint is the request-side state of Spillway: named control
// points, the APIs seen at each, and the actuators and flux-meter taps that
// policies attach to them. Admit and Done are lock-free and allocation-free;
// attaching and detaching (on policy load) copy-on-write under a mutex.
package controlpoint

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/internal/shard"
)

// AllAPIs is the API label that selects every request at a control point.
// A request with no label is counted here only.
const AllAPIs = "*"

// OverflowAPI is the API label that counts, at each control point, the
// requests whose label the control point does not track on its own: labels
// past MaxAPIs, longer than MaxLabelLength or not valid UTF-8. It is an API
// like any other: its own outcome counters, its own durations, and a policy
// may attach to it by selecting "__overflow__". It is listed by APIs once a
// request was counted there or a policy declared it.
const OverflowAPI = "__overflow__"

// MaxAPIs bounds how many distinct API labels the requests of one control
// point may create, so that a classifier with unbounded output (a gRPC
// UnknownServiceHandler passes the client's method name) cannot grow memory
// without limit. Requests with further new labels are counted under
// OverflowAPI. Labels declared by policies (ControlPoint.Declare) do not
// count against it: the engine bounds them (engine.Caps).
const MaxAPIs = 1024

// MaxRequestLabels bounds the labels that requests create across all the
// control points of a registry, as MaxAPIs bounds them at one: a caller
// that names control points (the Check API creates up to 64) could
// otherwise make 64 × 1,024 labels, each a counter and a latency histogram
// in every scrape (half a gigabyte of /metrics, measured). Past it, new
// labels are counted under OverflowAPI at their control point, except the
// first OwnRequestLabels of each, so that control points filled with
// labels a client chose cannot take the routes of another.
const MaxRequestLabels = 4096

// OwnRequestLabels is how many labels every control point may create
// whatever the others created (MaxRequestLabels).
const OwnRequestLabels = 64

// MaxLabelLength is the longest API label, in bytes, that a control point
// tracks on its own; a request with a longer label is counted under
// OverflowAPI.
const MaxLabelLength = 256

// Clock returns monotonic nanoseconds. It must never go backwards.
type Clock func() int64

// Registry holds the control points of one engine, by name.
type Registry struct {
	clock Clock
	mu    sync.Mutex
	cps   atomic.Pointer[map[string]*ControlPoint]
	// durations is set once RecordDurations was called; shared with every
	// control point of the registry.
	durations atomic.Bool
	// requestLabels counts the labels requests created at all its control
	// points (MaxRequestLabels).
	requestLabels atomic.Int64
}

// NewRegistry returns an empty registry reading time from clock.
func NewRegistry(clock Clock) *Registry {
	r := &Registry{clock: clock}
	r.cps.Store(&map[string]*ControlPoint{})
	return r
}

// Get returns the named control point, creating it on first use.
func (r *Registry) Get(name string) *ControlPoint {
	if cp := (*r.cps.Load())[name]; cp != nil {
		return cp
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.cps.Load()
	if cp := old[name]; cp != nil {
		return cp
	}
	cp := r.newControlPoint(name)
	next := make(map[string]*ControlPoint, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = cp
	r.cps.Store(&next)
	return cp
}

// newControlPoint makes a control point of r, not yet listed; r.mu is held.
func (r *Registry) newControlPoint(name string) *ControlPoint {
	cp := &ControlPoint{Name: name, clock: r.clock, durations: &r.durations, shared: &r.requestLabels}
	cp.all = newAPI(cp, AllAPIs, 0)
	cp.all.labelled = &cp.apis
	cp.overflow = newAPI(cp, OverflowAPI, 1)
	cp.indices = 2
	if r.durations.Load() {
		cp.all.recordDurations()
		cp.overflow.recordDurations()
	}
	cp.apis.Store(&map[string]*API{})
	return cp
}

// GetAll creates every named control point that does not exist yet, as
// Get does, with one copy of the registry's map for all of them: creating
// n control points costs O(n + existing), where n calls of Get cost
// O(n × existing).
func (r *Registry) GetAll(names []string) {
	missing := func() []string {
		var out []string
		m := *r.cps.Load()
		for _, name := range names {
			if m[name] == nil {
				out = append(out, name)
			}
		}
		return out
	}
	if len(missing()) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	names = missing()
	if len(names) == 0 {
		return
	}
	old := *r.cps.Load()
	next := make(map[string]*ControlPoint, len(old)+len(names))
	for k, v := range old {
		next[k] = v
	}
	for _, name := range names {
		if next[name] == nil {
			next[name] = r.newControlPoint(name)
		}
	}
	r.cps.Store(&next)
}

// Lookup returns the named control point, or nil if none was created.
func (r *Registry) Lookup(name string) *ControlPoint { return (*r.cps.Load())[name] }

// Names lists the control points created so far.
func (r *Registry) Names() []string {
	m := *r.cps.Load()
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	return names
}

// Clock returns the registry's clock.
func (r *Registry) Clock() Clock { return r.clock }

// RecordDurations makes every API of every control point, present and
// future, keep a cumulative request-duration histogram
// (ControlPoint.Durations), for an exporter to read. Until it is called,
// finishing a request records no duration beyond the flux meters', so a
// process without metrics pays one pointer load per request for them. It
// cannot be undone.
func (r *Registry) RecordDurations() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.durations.Store(true)
	for _, cp := range *r.cps.Load() {
		cp.mu.Lock()
		cp.all.recordDurations()
		cp.overflow.recordDurations()
		for _, a := range *cp.apis.Load() {
			a.recordDurations()
		}
		cp.mu.Unlock()
	}
}

// ControlPoint is one place where requests are admitted or rejected, such
// as an HTTP server or a gRPC server.
type ControlPoint struct {
	Name      string
	clock     Clock
	durations *atomic.Bool // the registry's RecordDurations switch
	all       *API
	overflow  *API
	// full is set once requests created MaxAPIs labels, so that a request
	// with yet another new label goes to overflow without taking mu.
	full atomic.Bool
	// overflowListed is set once overflow is in apis.
	overflowListed atomic.Bool
	mu             sync.Mutex
	requestLabels  int // labels created by requests, not declared; under mu
	// shared is the registry's count of labels created by requests at all
	// its control points (MaxRequestLabels); pastOwn is set once requests
	// created OwnRequestLabels here, from when the count binds.
	shared  *atomic.Int64
	pastOwn atomic.Bool
	indices int // the APIs created so far, for API.index; under mu
	// apis holds every label tracked on its own, declared or created by a
	// request, and OverflowAPI once listed. Copy-on-write under mu.
	apis atomic.Pointer[map[string]*API]
}

// API returns the state that a request labelled label is counted under,
// creating the label's own on first use: AllAPIs (or "") is the
// control-point-wide state; a label already tracked, declared or not, is
// its own; a new label gets its own while requests have created fewer than
// MaxAPIs labels here and, past its first OwnRequestLabels,
// MaxRequestLabels in the registry, and is valid UTF-8 of at most
// MaxLabelLength bytes; anything else is OverflowAPI's state. It takes a mutex only to create a
// label.
func (cp *ControlPoint) API(label string) *API {
	if label == "" || label == AllAPIs {
		return cp.all
	}
	if a := (*cp.apis.Load())[label]; a != nil {
		return a
	}
	return cp.untracked(label)
}

// untracked is API for a label not in apis when it was looked up.
func (cp *ControlPoint) untracked(label string) *API {
	if label == OverflowAPI || !trackable(label) || cp.full.Load() || (cp.pastOwn.Load() && cp.shared.Load() >= MaxRequestLabels) {
		return cp.overflowAPI()
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if a := (*cp.apis.Load())[label]; a != nil {
		return a
	}
	if cp.requestLabels >= MaxAPIs || (cp.requestLabels >= OwnRequestLabels && cp.shared.Load() >= MaxRequestLabels) {
		return cp.listOverflow()
	}
	cp.shared.Add(1)
	cp.requestLabels++
	cp.pastOwn.Store(cp.requestLabels >= OwnRequestLabels)
	cp.full.Store(cp.requestLabels >= MaxAPIs)
	return cp.add(label)
}

// Declare returns the state of an API label that a policy selects, creating
// it if needed. Unlike a request's label it always gets its own state, even
// once requests created MaxAPIs labels, so that a per-API limiter applies to
// exactly its API; requests carrying the label then find it. AllAPIs (or "")
// and OverflowAPI return those states. A label no request can be counted
// under on its own (longer than MaxLabelLength or not valid UTF-8) returns
// OverflowAPI's state, where such requests are counted; a policy that
// selects one should be refused before it gets here.
func (cp *ControlPoint) Declare(label string) *API {
	switch {
	case label == "" || label == AllAPIs:
		return cp.all
	case label == OverflowAPI || !trackable(label):
		return cp.overflowAPI()
	}
	if a := (*cp.apis.Load())[label]; a != nil {
		return a
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if a := (*cp.apis.Load())[label]; a != nil {
		return a
	}
	return cp.add(label)
}

// DeclareAll declares every label, as Declare does, with one copy of the
// control point's label map for all of them: declaring n labels costs
// O(n + existing), where n calls of Declare cost O(n × existing). A
// policy set's labels are declared with it before they are attached, so
// that its Declare calls find them.
func (cp *ControlPoint) DeclareAll(labels []string) {
	isNew := func(apis map[string]*API, label string) bool {
		return label != "" && label != AllAPIs && label != OverflowAPI && trackable(label) && apis[label] == nil
	}
	if !slices.ContainsFunc(labels, func(l string) bool { return isNew(*cp.apis.Load(), l) }) {
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	old := *cp.apis.Load()
	next := make(map[string]*API, len(old)+len(labels))
	for k, v := range old {
		next[k] = v
	}
	for _, label := range labels {
		if isNew(next, label) {
			next[label] = cp.newLabel(label)
		}
	}
	cp.apis.Store(&next)
}

// Tracked returns the state a request labelled label is counted under, as
// API does, but creates nothing: an untracked label gets OverflowAPI's.
func (cp *ControlPoint) Tracked(label string) *API {
	if label == "" || label == AllAPIs {
		return cp.all
	}
	if a := (*cp.apis.Load())[label]; a != nil {
		return a
	}
	return cp.overflow
}

// APIs returns the per-label states known so far (not AllAPIs), including
// OverflowAPI once it counted a request or was declared.
func (cp *ControlPoint) APIs() map[string]*API { return *cp.apis.Load() }

// CountedAs is the label that a request labelled label is counted under
// as far as the label alone decides: AllAPIs for "", OverflowAPI for one
// longer than MaxLabelLength or not valid UTF-8, label itself otherwise
// (which becomes OverflowAPI too once the label bounds, MaxAPIs and
// MaxRequestLabels, are reached). Records kept
// beside the control point, such as a decision log, use it so that they
// name what the control point counts and stay bounded.
func CountedAs(label string) string {
	switch {
	case label == "":
		return AllAPIs
	case !trackable(label):
		return OverflowAPI
	}
	return label
}

// trackable reports whether a label may have its own state.
func trackable(label string) bool {
	return len(label) <= MaxLabelLength && utf8.ValidString(label)
}

// overflowAPI returns the overflow state, listing it first if needed.
func (cp *ControlPoint) overflowAPI() *API {
	if !cp.overflowListed.Load() {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		cp.listOverflow()
	}
	return cp.overflow
}

// listOverflow puts the overflow state in apis; cp.mu must be held.
func (cp *ControlPoint) listOverflow() *API {
	if !cp.overflowListed.Load() {
		cp.store(OverflowAPI, cp.overflow)
		cp.overflowListed.Store(true)
	}
	return cp.overflow
}

// add creates label's state and lists it; cp.mu must be held.
func (cp *ControlPoint) add(label string) *API {
	a := cp.newLabel(label)
	cp.store(label, a)
	return a
}

// newLabel creates label's state, not yet listed; cp.mu must be held.
func (cp *ControlPoint) newLabel(label string) *API {
	a := newAPI(cp, label, cp.indices)
	cp.indices++
	// Its partition in every concurrency limiter of the whole control
	// point, so that its first request allocates nothing.
	for _, l := range cp.all.att.Load().limiters {
		if l.Concurrency != nil {
			l.Concurrency.Partition(a.index)
		}
	}
	if cp.durations.Load() {
		a.recordDurations()
	}
	return a
}

// store publishes a copy of apis with label added; cp.mu must be held.
func (cp *ControlPoint) store(label string, a *API) {
	old := *cp.apis.Load()
	next := make(map[string]*API, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[label] = a
	cp.apis.Store(&next)
}

// Decision is the outcome of Admit.
type Decision uint8

const (
	// Accepted requests proceed and must be finished with Ticket.Done.
	Accepted Decision = iota
	// RateLimited requests were refused by a token bucket.
	RateLimited
	// ConcurrencyLimited requests were refused by a concurrency limiter.
	ConcurrencyLimited
)

// Outcome is how a request was decided, as counted per API and exported as
// the decision label of spillway_requests_total. Every request has exactly
// one outcome, counted both under its API label and under AllAPIs.
type Outcome uint8

const (
	// OutcomeAccepted: admitted, and at least one limit was in force.
	OutcomeAccepted Outcome = iota
	// OutcomeRejected: refused by a limiter.
	OutcomeRejected
	// OutcomeWouldReject: admitted only because a limiter that would have
	// refused it is in dry-run.
	OutcomeWouldReject
	// OutcomePassthrough: admitted with no limit in force, because no
	// limiter is attached or every attached limiter's setpoint is invalid
	// or stale (fail-open).
	OutcomePassthrough
	numOutcomes
)

// Outcomes lists every outcome, in the order of their values.
var Outcomes = []Outcome{OutcomeAccepted, OutcomeRejected, OutcomeWouldReject, OutcomePassthrough}

// String is the outcome's decision label: accepted, rejected, would_reject
// or passthrough.
func (o Outcome) String() string {
	switch o {
	case OutcomeAccepted:
		return "accepted"
	case OutcomeRejected:
		return "rejected"
	case OutcomeWouldReject:
		return "would_reject"
	case OutcomePassthrough:
		return "passthrough"
	}
	return "unknown"
}

// Ticket is an admitted request. Done must be called exactly once.
type Ticket struct {
	api              *API
	apiAtt, allAtt   *attachments // apiAtt is nil when api is the control point's own
	apiHeld, allHeld uint64       // concurrency slots held, one bit per limiter
	startNs          int64
}

// Admit decides one request labelled label, counted as API(label) says.
// The label should come from the server (route pattern, gRPC method); one
// the client controls, such as the method an UnknownServiceHandler serves,
// is bounded by MaxAPIs, MaxLabelLength and OverflowAPI. A request with a
// tracked label takes no lock.
func (cp *ControlPoint) Admit(label string) (Ticket, Decision) {
	return cp.API(label).Admit()
}

// Admit decides one request counted under a, as ControlPoint.Admit does
// for a request whose label API resolved to a. A caller that resolves a
// label once (a route's pattern) and keeps the state skips the lookup on
// every later request; API never replaces the state it returned for a
// label that has its own (a.Label == label). It is lock-free and
// allocation-free.
func (a *API) Admit() (Ticket, Decision) {
	all := a.cp.all
	now := a.clock()      // the start time too: one clock read at admission
	proc := shard.Index() // for every counter this request adds to
	t := Ticket{api: a, allAtt: all.att.Load(), startNs: now}
	var v verdict
	if a != all {
		t.apiAtt = a.att.Load()
		if len(t.apiAtt.limiters) != 0 {
			held, said, d := t.apiAtt.admit(now, proc, a.index)
			v |= said
			if d != Accepted {
				t.apiAtt.arrive(proc, now, false)
				if len(t.allAtt.taps) != 0 {
					t.allAtt.arrive(proc, now, false)
				}
				a.count(proc, OutcomeRejected)
				return Ticket{}, d
			}
			t.apiHeld = held
		}
	}
	if len(t.allAtt.limiters) != 0 {
		held, said, d := t.allAtt.admit(now, proc, a.index)
		v |= said
		if d != Accepted {
			if t.apiAtt != nil {
				if t.apiHeld != 0 {
					t.apiAtt.release(t.apiHeld, a.index, actuators.Unmeasured, -1)
				}
				if len(t.apiAtt.taps) != 0 {
					t.apiAtt.arrive(proc, now, false)
				}
			}
			if len(t.allAtt.taps) != 0 {
				t.allAtt.arrive(proc, now, false)
			}
			a.count(proc, OutcomeRejected)
			return Ticket{}, d
		}
		t.allHeld = held
	}
	if t.apiAtt != nil && len(t.apiAtt.taps) != 0 {
		t.apiAtt.arrive(proc, now, true)
	}
	if len(t.allAtt.taps) != 0 {
		t.allAtt.arrive(proc, now, true)
	}
	a.count(proc, v.outcome())
	return t, Accepted
}

// Done finishes an admitted request; ok is false for a server error.
func (t Ticket) Done(ok bool) {
	if t.allAtt != nil {
		t.finish(ok, false, t.api.clock()-t.startNs)
	}
}

// Abandon finishes an admitted request whose client gave up before the
// answer (its context was canceled: a client timeout, a closed
// connection). It counts as an error, and the flux meters count it as
// abandoned (Window.Abandoned), so that a latency the clients walked away
// from can be told from the latency of the answers. Its slots held no
// useful work, which is what a shared concurrency limiter's partitions are
// sized by (actuators.Partition).
func (t Ticket) Abandon() {
	if t.allAtt != nil {
		t.finish(false, true, t.api.clock()-t.startNs)
	}
}

// DoneAfter finishes an admitted request whose latency was measured
// elsewhere (a proxy in front that reports completions after the fact,
// such as Envoy's access log). A negative latency counts as 0.
func (t Ticket) DoneAfter(ok bool, latency time.Duration) {
	if t.allAtt != nil {
		t.finish(ok, false, int64(latency))
	}
}

// AbandonAfter is Abandon for a request whose latency was measured
// elsewhere, as DoneAfter is Done's (a proxy in front whose access log
// says the client went away). A negative latency counts as 0.
func (t Ticket) AbandonAfter(latency time.Duration) {
	if t.allAtt != nil {
		t.finish(false, true, int64(latency))
	}
}

// finish is Done, DoneAfter, Abandon and AbandonAfter for an admitted request.
func (t *Ticket) finish(ok, abandoned bool, latencyNs int64) {
	latencyNs = max(latencyNs, 0)
	use := actuators.Useful
	if !ok || abandoned {
		use = actuators.Wasted
	}
	// The part of the latency that is the API's own, and its offset from
	// the mix's reference latency: a meter of every API's requests leaves
	// both out of its shared latency, a meter of this API's alone only
	// the first (it sees no mix).
	var ownNs, offsetNs int64
	if t.apiHeld != 0 {
		ownNs, offsetNs = t.apiAtt.release(t.apiHeld, t.api.index, use, latencyNs)
	}
	if t.allHeld != 0 {
		own, off := t.allAtt.release(t.allHeld, t.api.index, use, latencyNs)
		ownNs = max(ownNs, own)
		if offsetNs == 0 {
			offsetNs = off
		}
	}
	if len(t.allAtt.taps) != 0 || (t.apiAtt != nil && len(t.apiAtt.taps) != 0) {
		proc := shard.Index() // maybe not Admit's: the request may have moved
		if t.apiAtt != nil {
			t.apiAtt.done(proc, t.api.index, t.startNs, latencyNs, ownNs, ok, abandoned)
		}
		t.allAtt.done(proc, t.api.index, t.startNs, latencyNs, ownNs+offsetNs, ok, abandoned)
	}
	// One histogram per request: its label's, or the control point's own
	// when it has none. ControlPoint.Durations adds them up for AllAPIs.
	if h := t.api.durations.Load(); h != nil {
		h.Record(latencyNs)
	}
}

// API is the state of one API label at a control point.
type API struct {
	Label string
	cp    *ControlPoint
	clock Clock // the control point's
	// index numbers the APIs of the control point from 0 (AllAPIs, then
	// OverflowAPI, then each label as it was created): the partition of a
	// shared concurrency limiter its requests are counted in.
	index     int
	att       atomic.Pointer[attachments]
	durations atomic.Pointer[actuators.CumulativeHistogram] // nil until Registry.RecordDurations
	mu        sync.Mutex
	// outcomes counts requests per outcome, one cache line of counters per
	// processor (shard.Index), so that requests on several cores do not
	// contend. A request is counted once, under its label's API, or under
	// the control point's own when it has none; the control point's Count
	// adds up.
	outcomes []outcomeShard // read-only after newAPI
	// labelled is set on the control point's own API (AllAPIs) only: the
	// per-label APIs whose outcomes its counts include.
	labelled *atomic.Pointer[map[string]*API]
}

// outcomeShard is one processor's outcome counters, alone on a cache line.
type outcomeShard struct {
	n [numOutcomes]atomic.Uint64
	_ [64 - 8*numOutcomes]byte
}

func newAPI(cp *ControlPoint, label string, index int) *API {
	a := &API{Label: label, cp: cp, clock: cp.clock, index: index, outcomes: make([]outcomeShard, shard.Count())}
	a.att.Store(&attachments{})
	return a
}

// count adds one request with outcome o, on processor proc.
func (a *API) count(proc int, o Outcome) {
	a.outcomes[proc&(len(a.outcomes)-1)].n[o].Add(1)
}

// ownCount returns the requests with outcome o counted under a itself.
func (a *API) ownCount(o Outcome) uint64 {
	var n uint64
	for i := range a.outcomes {
		n += a.outcomes[i].n[o].Load()
	}
	return n
}

// Counts returns the totals of admitted requests (accepted, would-reject
// and passthrough outcomes) and of rejected ones.
func (a *API) Counts() (accepted, rejected uint64) {
	accepted = a.Count(OutcomeAccepted) + a.Count(OutcomeWouldReject) + a.Count(OutcomePassthrough)
	return accepted, a.Count(OutcomeRejected)
}

// Count returns how many requests had outcome o; for AllAPIs, at the whole
// control point. Each counter only grows, and so does the sum.
func (a *API) Count(o Outcome) uint64 {
	if o >= numOutcomes {
		return 0
	}
	n := a.ownCount(o)
	if a.labelled != nil {
		for _, labelled := range *a.labelled.Load() {
			n += labelled.ownCount(o)
		}
	}
	return n
}

// Durations reads the cumulative request-duration histogram of the
// admitted requests to label that finished; for AllAPIs (or ""), of every
// request to the control point. ok is false before
// Registry.RecordDurations.
//
// Each request is recorded once, under its label or, without one, under
// the control point's own histogram; the AllAPIs read adds every label's
// to that. Each bucket only grows, so the sum does too.
func (cp *ControlPoint) Durations(label string) (c actuators.CumulativeCounts, ok bool) {
	a := cp.API(label)
	h := a.durations.Load()
	if h == nil {
		return c, false
	}
	c = h.Read()
	if a == cp.all {
		for _, labelled := range *cp.apis.Load() {
			if h := labelled.durations.Load(); h != nil {
				c.Add(h.Read())
			}
		}
	}
	return c, true
}

func (a *API) recordDurations() {
	if a.durations.Load() != nil {
		return
	}
	h, err := actuators.NewCumulativeHistogram(actuators.RequestDurationBounds)
	if err != nil {
		panic(err) // RequestDurationBounds is a constant list
	}
	a.durations.CompareAndSwap(nil, h)
}

// attachments is an immutable snapshot of what policies attached to an API.
type attachments struct {
	taps     []*actuators.Recorder
	limiters []*Limiter
}

// Index numbers the API at its control point, as a recorder with per-API
// SLOs looks its SLO up (actuators.NewRecorderWithAPISLOs): AllAPIs is 0.
func (a *API) Index() int { return a.index }

// Attach adds a flux-meter tap and returns a function that removes it.
func (a *API) AttachTap(r *actuators.Recorder) (detach func()) {
	a.update(func(at *attachments) { at.taps = append(at.taps, r) })
	return func() {
		a.update(func(at *attachments) { at.taps = without(at.taps, r) })
	}
}

// AttachLimiter adds an actuator and returns a function that removes it.
// At most 64 limiters may be attached to one API. A limiter that was never
// stamped (stamp 0) is stamped with the control point's clock, so that it
// goes stale StaleAfter after it was attached unless a tick stamps it.
func (a *API) AttachLimiter(l *Limiter) (detach func()) {
	l.stampNs.CompareAndSwap(0, a.clock())
	l.allocateCounters()
	a.update(func(at *attachments) {
		if len(at.limiters) < 64 {
			at.limiters = append(at.limiters, l)
		}
	})
	if l.Concurrency != nil {
		// The partitions of the APIs known now, so that their requests
		// allocate nothing. Attached first: an API created meanwhile
		// (ControlPoint.add) either is listed here or sees the limiter
		// and makes its own.
		l.Concurrency.Partition(a.index)
		if a == a.cp.all {
			a.cp.mu.Lock()
			l.Concurrency.Partition(a.cp.overflow.index)
			for _, x := range *a.cp.apis.Load() {
				l.Concurrency.Partition(x.index)
			}
			a.cp.mu.Unlock()
		}
	}
	return func() {
		a.update(func(at *attachments) { at.limiters = without(at.limiters, l) })
	}
}

func (a *API) update(change func(*attachments)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.att.Load()
	next := &attachments{
		taps:     append([]*actuators.Recorder(nil), old.taps...),
		limiters: append([]*Limiter(nil), old.limiters...),
	}
	change(next)
	a.att.Store(next)
}

func without[T comparable](list []T, x T) []T {
	out := list[:0]
	for _, v := range list {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

func (at *attachments) arrive(proc int, now int64, admitted bool) {
	for _, r := range at.taps {
		r.ArriveOn(proc, now, admitted)
	}
}

func (at *attachments) done(proc, api int, startNs, latencyNs, ownNs int64, ok, abandoned bool) {
	for _, r := range at.taps {
		if abandoned {
			r.AbandonAPIOn(proc, api, startNs, latencyNs)
		} else {
			r.DoneAPIOn(proc, api, startNs, latencyNs, ownNs, ok)
		}
	}
}

// verdict gathers what the limiters consulted for one request said.
type verdict uint8

const (
	limitInForce    verdict = 1 << iota // a limiter with a valid setpoint admitted the request
	dryRunWouldDeny                     // a dry-run limiter would have refused it
)

// outcome is the outcome of an admitted request.
func (v verdict) outcome() Outcome {
	switch {
	case v&dryRunWouldDeny != 0:
		return OutcomeWouldReject
	case v&limitInForce != 0:
		return OutcomeAccepted
	}
	return OutcomePassthrough
}

// admit asks every limiter about a request of the API numbered index, and
// returns the slots they hold and what they said. On a refusal it releases
// what it acquired.
func (at *attachments) admit(now int64, proc, index int) (held uint64, v verdict, d Decision) {
	for i, l := range at.limiters {
		ok, acquired, said := l.allow(now, proc, index)
		v |= said
		if acquired {
			held |= 1 << uint(i)
		}
		if !ok {
			if held != 0 {
				at.release(held, index, actuators.Unmeasured, -1)
			}
			if l.Concurrency != nil {
				return 0, v, ConcurrencyLimited
			}
			return 0, v, RateLimited
		}
	}
	return held, v, Accepted
}

// release gives back the slots held (one bit per limiter) by a request of
// the API numbered index, which used them as use says and took latencyNs
// (negative: unknown), and returns the part of that latency the limiters
// found its API's own, and its API's offset from the mix's reference
// latency (ConcurrencyLimiter.ReleaseAfter). A dry run's tests cap
// nothing, so judge nothing: its limiters count for neither. Of the
// others, the largest own part counts, and the first offset not 0.
func (at *attachments) release(held uint64, index int, use actuators.Use, latencyNs int64) (ownNs, offsetNs int64) {
	for i := 0; held != 0; i++ {
		if held&1 != 0 {
			l := at.limiters[i]
			own, off := l.Concurrency.ReleaseAfter(l.Concurrency.Partition(index), use, latencyNs)
			if !l.DryRun.Load() {
				ownNs = max(ownNs, own)
				if offsetNs == 0 {
					offsetNs = off
				}
			}
		}
		held >>= 1
	}
	return ownNs, offsetNs
}

// Limiter is one actuator attached by a policy: a token bucket or a
// concurrency limiter, with the policy's dry-run switch, its fail mode and
// its counters. Every field is safe for concurrent use. The counters are
// sharded per processor (actuators.Counter), so that requests on several
// cores do not contend for them.
//
// A concurrency limiter counts every request it admits, whatever its
// setpoint: one admitted while the limit was invalid or stale (fail-open)
// holds a slot too, so that a limit set while such requests are in flight
// is measured against all of them. Dry-run is the exception: a request
// admitted only because of DryRun (would_reject) holds no slot, so that the
// slots held are those enforcement would have granted and would_reject
// counts what enforcement would refuse. Switching DryRun off may therefore
// admit beyond the limit until the would_reject requests still in flight
// finish.
//
// Staleness (DESIGN §4): every setpoint carries the engine time of the
// tick that produced it (Stamp). While StaleAfter is positive and a request
// arrives more than StaleAfter after the stamp, the limiter's setpoint is
// stale and its fail mode decides: fail-open (the default) admits the
// request as passthrough, FailClosed refuses it (or, in DryRun, admits it
// as would_reject). A stale limiter consults neither its bucket nor its
// concurrency slots.
type Limiter struct {
	Bucket      *actuators.TokenBucket
	Concurrency *actuators.ConcurrencyLimiter
	// Remote, when set (before the limiter is attached), decides each
	// request of a rate limiter first; the bucket decides only the requests
	// it leaves unanswered (a global limit's exact mode, whose bucket holds
	// the engine's lease share as the fail-static fallback).
	Remote RemoteDecider
	// DryRun counts would-be rejections but admits everything.
	DryRun atomic.Bool
	// StaleAfter is how long after its last stamp the setpoint is stale, in
	// nanoseconds of the control point's clock; 0 (or less) means never.
	StaleAfter atomic.Int64
	// FailClosed makes a stale limiter refuse requests instead of
	// admitting them.
	FailClosed atomic.Bool

	Allowed     actuators.Counter // admitted by this limiter
	Rejected    actuators.Counter // refused, including while stale and FailClosed
	WouldReject actuators.Counter // refused, but admitted because of DryRun
	FailOpen    actuators.Counter // admitted because the setpoint is invalid or stale
	Stale       actuators.Counter // decided by the fail mode because the setpoint is stale
	// Full counts the requests its concurrency limit refused (or, in
	// DryRun, would have) with every slot taken
	// (actuators.ConcurrencyLimiter.Full), not at a partition's cap or
	// the unanswered APIs' quarter: the limit bound, whatever the count
	// in flight shows at a tick.
	Full actuators.Counter
	// RemoteFallback counts the requests Remote left unanswered, which the
	// bucket decided.
	RemoteFallback actuators.Counter

	stampNs atomic.Int64 // engine time of the setpoint's tick
}

// RemoteDecider decides requests elsewhere (in Redis, for a global limit's
// exact mode). Decide must be safe for concurrent use and return within
// its own time budget; now is the control point's clock.
type RemoteDecider interface {
	Decide(now int64) RemoteVerdict
}

// RemoteVerdict is a RemoteDecider's answer for one request.
type RemoteVerdict int8

// The answers of a RemoteDecider.
const (
	// RemoteUnanswered leaves the request to the limiter's bucket: no
	// answer within the budget, or the remote is known to be down.
	RemoteUnanswered RemoteVerdict = iota
	// RemoteAdmit and RemoteReject are the remote's decision.
	RemoteAdmit
	RemoteReject
	// RemoteUnlimited admits: no limit is set (fail-open).
	RemoteUnlimited
)

// Stamp records that the setpoint was set by the tick at nowNs (the
// engine's clock, the control point's). The engine calls it after setting
// the setpoint, each tick.
func (l *Limiter) Stamp(nowNs int64) { l.stampNs.Store(nowNs) }

// StampNs returns the engine time of the last Stamp, or of the attachment
// if none came before it.
func (l *Limiter) StampNs() int64 { return l.stampNs.Load() }

// allocateCounters allocates the counters' shards, so that the first
// requests do not.
func (l *Limiter) allocateCounters() {
	for _, c := range []*actuators.Counter{&l.Allowed, &l.Rejected, &l.Full, &l.WouldReject, &l.FailOpen, &l.Stale, &l.RemoteFallback} {
		c.Add(0)
	}
}

// allow decides for one limiter; acquired reports a held concurrency slot,
// said whether a limit was in force or would have refused in dry-run. proc
// is the caller's processor, for the counters.
func (l *Limiter) allow(now int64, proc, index int) (ok, acquired bool, said verdict) {
	if staleAfter := l.StaleAfter.Load(); staleAfter > 0 && now-l.stampNs.Load() > staleAfter {
		return l.stale(proc, index)
	}
	if l.Bucket != nil {
		if l.Remote != nil {
			switch l.Remote.Decide(now) {
			case RemoteAdmit:
				l.Allowed.AddOn(proc, 1)
				return true, false, limitInForce
			case RemoteReject:
				return l.refuse(proc)
			case RemoteUnlimited:
				l.FailOpen.AddOn(proc, 1)
				return true, false, 0
			}
			l.RemoteFallback.AddOn(proc, 1)
		}
		allowed, limited := l.Bucket.Admit(now)
		if !limited {
			l.FailOpen.AddOn(proc, 1)
			return true, false, 0
		}
		if allowed {
			l.Allowed.AddOn(proc, 1)
			return true, false, limitInForce
		}
		return l.refuse(proc)
	}
	switch l.Concurrency.AcquireIn(l.Concurrency.Partition(index)) {
	case actuators.Unlimited:
		l.FailOpen.AddOn(proc, 1)
		return true, true, 0
	case actuators.Acquired:
		if l.Concurrency.Limit() > 1e18 { // a limit no server reaches
			l.FailOpen.AddOn(proc, 1)
			return true, true, 0
		}
		l.Allowed.AddOn(proc, 1)
		return true, true, limitInForce
	}
	if l.Concurrency.Full() {
		l.Full.AddOn(proc, 1)
	}
	return l.refuse(proc)
}

// stale applies the fail mode to a request that met a stale setpoint.
func (l *Limiter) stale(proc, index int) (ok, acquired bool, said verdict) {
	l.Stale.AddOn(proc, 1)
	if !l.FailClosed.Load() {
		l.FailOpen.AddOn(proc, 1)
		return true, l.hold(index), 0
	}
	return l.refuse(proc)
}

// refuse refuses a request, or admits it as would_reject in dry-run.
func (l *Limiter) refuse(proc int) (ok, acquired bool, said verdict) {
	if l.DryRun.Load() {
		l.WouldReject.AddOn(proc, 1)
		return true, false, dryRunWouldDeny
	}
	l.Rejected.AddOn(proc, 1)
	return false, false, 0
}

// hold takes a concurrency slot beyond the limit for a request admitted
// because the setpoint is stale (fail-open), and reports whether it did.
func (l *Limiter) hold(index int) (acquired bool) {
	if l.Concurrency == nil {
		return false
	}
	l.Concurrency.HoldIn(l.Concurrency.Partition(index))
	return true
}

// TestCap returns the cap Separate put on a's requests in flight at the
// limiter while it tests a's latency, or while a's own bottleneck queues
// (0: none), and a's requests in flight there; 0, 0 for a token bucket.
func (l *Limiter) TestCap(a *API) (capSlots, inFlight int64) {
	if l.Concurrency == nil {
		return 0, 0
	}
	p := l.Concurrency.Partition(a.index)
	_, capSlots = p.Separated()
	return capSlots, p.InFlight()
}

// UnansweredQuarter reports whether a is unanswered at the limiter and
// held to the unanswered APIs' quarter of its limit
// (actuators.ConcurrencyLimiter.UnansweredQuarter), with the quarter and
// the unanswered requests in flight; false for a token bucket.
func (l *Limiter) UnansweredQuarter(a *API) (held bool, quarter, inFlight int64) {
	if l.Concurrency == nil {
		return false, 0, 0
	}
	return l.Concurrency.UnansweredQuarter(l.Concurrency.Partition(a.index))
}

// ConcurrencyFull reports whether the limiter's concurrency limit would
// refuse a request counted under a now (actuators.ConcurrencyLimiter.FullFor,
// in a's partition); false for a token bucket.
func (l *Limiter) ConcurrencyFull(a *API) bool {
	return l.Concurrency != nil && l.Concurrency.FullFor(l.Concurrency.Partition(a.index))
}
