package testbed

import (
	"container/heap"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/components"
	"github.com/spillway-dev/spillway/engine"
)

// virtualRun is the discrete-event driver: one goroutine, one virtual
// clock, and the real engine, control point and token buckets.
//
// Events, in the order in which those at the same instant are handled:
//
//  1. app changes (worker changes, delay changes, static oracle updates),
//     in time order;
//  2. the engine tick, every evaluation interval;
//  3. call completions, in the order they were scheduled;
//  4. client timeouts, in arrival order;
//  5. arrivals, by API order; with closed-loop clients (Scenario.Think),
//     users who end their think time instead, in the order they began it;
//  6. client retries (retry-storm), in the order they were scheduled;
//  7. progress reports: second T is final at (T+1) s + settle, where
//     settle is the client timeout, or with retries the longest a request
//     and all its retries can take, since by then every request that
//     arrived in it has ended.
//  8. service samples: at the end of each whole second, every bounded
//     service's busy and available worker time and its queue's waits so
//     far (the report's utilisation and queueing, ServiceStats).
//
// Only call completions need a heap, and it holds one entry per busy
// worker. Queued requests wait in per-service FIFO rings. Every admitted
// request has one client timeout, at arrival + ClientTimeout, and arrivals
// are in time order, so timeouts form a FIFO as well; a request that ends
// first leaves its timeout behind, and a generation number makes the stale
// entry a no-op. A request that times out while queued stays in its ring,
// marked abandoned, and is skipped without taking a worker when it reaches
// the head: the same service order as if it had left at once, which is
// what the live servers do. A request that times out on a worker finishes
// that call, as real work would, and makes no more calls.
type virtualRun struct {
	app      App
	scenario Scenario
	specs    []engine.Spec
	tally    *runTally
	onSecond func(int)
	onEngine func(*engine.Engine)
	lockstep *Lockstep
	optimal  bool // the static oracle admits the optimal reference

	now       int64 // virtual nanoseconds since the start of the run
	eng       *engine.Engine
	cp        *controlpoint.ControlPoint
	timeoutNs int64
	settleNs  int64 // see event 7

	apis      []virtualAPI
	services  []virtualService
	requests  []virtualRequest
	free      []int32
	calls     completionHeap
	timeouts  ring[timeoutEntry]
	changes   []appChange
	nextTick  int64
	tickEvery int64 // 0: no ticks (no policies)
	reported  int   // seconds reported so far
	sampled   int   // whole seconds whose service totals are in the tally
	retries   retryHeap
	retryRand *rand.Rand // backoff jitter
	// Closed-loop clients (Scenario.Think > 0): the users thinking, and
	// the source of their think times.
	wakes     wakeHeap
	thinkRand *rand.Rand

	// Service times are drawn per (request, call) from a source reseeded
	// with the request's demand seed, so the same arrival costs the same
	// under every policy: runs of one seed differ only by what the policy
	// did (common random numbers).
	timeSource *rand.PCG
	times      *rand.Rand
	// sharing are the indices of the processor-sharing services, whose
	// next ends (sharingState.nextAt) are events of their own.
	sharing []int
}

type virtualAPI struct {
	label    string
	rank     int // DAGOR's rank offset for the API's priority (dagorRanks)
	calls    []virtualCall
	arrivals *arrivals
	next     int64 // next arrival; -1 when there are no more
	demand   *rand.Rand
	// users is how many closed-loop users the API has, thinking or
	// waiting for a request; target is how many the current step wants,
	// and think their mean think time (Scenario.ThinkAt), in ns. A
	// thinking user over the target leaves when its think time ends.
	users, target int
	think         float64
}

type virtualCall struct {
	service int
	time    Dist
	extra   int64 // this API's extra time at the service (DelayChange.API), in ns
}

type virtualService struct {
	bounded bool
	workers int
	extra   int64 // added to every call's time (DelayChange), in ns
	// slow multiplies every call's sampled time (SlowdownChange); 0 is 1.
	slow  float64
	busy  int
	queue ring[int32]
	// sharing marks a processor-sharing service (Service.Sharing); its
	// calls are in ps, not queue, and busy is min(calls, workers).
	sharing bool
	ps      sharingState
	dagor   *dagorShedder // nil unless the policy is DagorPolicy

	// The overload signal's window (serviceLoads): worker-nanoseconds
	// busy and available since the last sample, and the waits of the
	// calls that started in it.
	busyNs, capacityNs, accountedAt int64
	waitNs                          int64
	started                         int64
	// total is the same since the start of the run, for the report.
	total serviceTotals
}

// serviceTotals is a bounded service's worker-nanoseconds busy and
// available, and the calls that took a worker and their waits in its
// queue, since the start of a run: the report's utilisation and queueing
// over a window are the differences of two of them (ServiceStats).
type serviceTotals struct {
	busyNs, capacityNs, waitNs, started int64
}

// account adds the time since the last change of busy or workers to the
// window; call it before either changes.
func (s *virtualService) account(now int64) {
	elapsed := now - s.accountedAt
	s.busyNs += int64(s.busy) * elapsed
	s.capacityNs += int64(s.workers) * elapsed
	s.total.busyNs += int64(s.busy) * elapsed
	s.total.capacityNs += int64(s.workers) * elapsed
	s.accountedAt = now
}

type virtualRequest struct {
	ticket    controlpoint.Ticket
	first     int64 // arrival of the user request's first attempt
	demand    uint64
	attempt   int32 // 0 for the first attempt, then 1, 2, … for retries
	api       int32
	call      int32 // index of the current call
	second    int32
	queued    int64 // when the current call joined its service's queue
	gen       uint32
	abandoned bool // the client timed out
}

type timeoutEntry struct {
	at  int64
	req int32
	gen uint32
}

// appChange is an event of kind 1: workers of a service change, or the
// static oracle re-reads the capacity.
type appChange struct {
	at      int64
	service int // -1 for an oracle update
	workers int
	// delay marks a DelayChange: the service's extra time becomes extra,
	// or, for api ≥ 0, that API's calls at the service.
	delay bool
	// users marks the start of a step under closed-loop clients: every
	// API's users are brought to the step's count.
	users bool
	extra int64
	api   int
	// slow marks a SlowdownChange: the service's calls take factor times
	// their sampled time.
	slow   bool
	factor float64
}

// Streams of the seeded RNGs, one per purpose and API, kept apart so that
// one never shifts another.
const (
	streamArrivals = 1 << 32 // + API index
	streamDemand   = 2 << 32 // + API index
	streamLive     = 3 << 32 // + API index << 16 + call index: live service times
	streamRetry    = 5 << 32 // backoff jitter of client retries
	streamThink    = 6 << 32 // think times of closed-loop users
)

func newVirtualRun(app App, s Scenario, p Policy, specs []engine.Spec, seed uint64, onSecond func(int)) *virtualRun {
	v := &virtualRun{
		app: app, scenario: s, specs: specs, onSecond: onSecond,
		tally:      newRunTally(app, s),
		timeoutNs:  int64(app.ClientTimeout),
		timeSource: rand.NewPCG(0, 0),
		retryRand:  rand.New(rand.NewPCG(seed, streamRetry)),
		thinkRand:  rand.New(rand.NewPCG(seed, streamThink)),
	}
	v.settleNs = v.timeoutNs
	if s.Retries > 0 {
		v.settleNs = int64(s.Retries+1)*v.timeoutNs + int64(s.maxBackoff())
	}
	v.times = rand.New(v.timeSource)
	ranks, nRanks := dagorRanks(app)
	for _, svc := range app.Services {
		vs := virtualService{bounded: svc.Workers > 0, workers: svc.Workers, sharing: svc.Sharing()}
		if p.Dagor && vs.bounded {
			vs.dagor = newDagorShedder(nRanks)
		}
		if vs.sharing {
			vs.ps.nextAt = -1
			v.sharing = append(v.sharing, len(v.services))
		}
		v.services = append(v.services, vs)
	}
	for i, api := range app.APIs {
		a := virtualAPI{
			label:    api.Label(),
			rank:     ranks[i],
			arrivals: newArrivalStream(s.phases(i), seed, streamArrivals+uint64(i)).inBatches(s.Burst),
			demand:   rand.New(rand.NewPCG(seed, streamDemand+uint64(i))),
		}
		for _, c := range api.Calls {
			a.calls = append(a.calls, virtualCall{service: app.serviceIndex(c.Service), time: c.Time})
		}
		a.next = -1 // closed-loop users send instead
		if s.Think <= 0 {
			a.next = nextOffset(a.arrivals)
		}
		v.apis = append(v.apis, a)
	}
	if s.Think > 0 {
		var at time.Duration
		for _, st := range s.Steps {
			v.changes = append(v.changes, appChange{at: int64(at), service: -1, users: true})
			at += st.Duration
		}
	}
	for _, c := range s.Changes {
		v.changes = append(v.changes, appChange{at: int64(c.At), service: app.serviceIndex(c.Service), workers: c.Workers})
	}
	for _, c := range s.Slowdowns {
		v.changes = append(v.changes, appChange{at: int64(c.At), service: app.serviceIndex(c.Service), slow: true, factor: c.Factor})
	}
	for _, d := range s.Delays {
		api := -1
		if d.API != "" {
			api = app.apiIndex(d.API)
		}
		v.changes = append(v.changes, appChange{at: int64(d.At), service: app.serviceIndex(d.Service), delay: true, extra: int64(d.Extra), api: api})
	}
	if p.Static {
		v.optimal = p.Optimal
		for _, at := range staticChanges(s) {
			v.changes = append(v.changes, appChange{at: int64(at), service: -1})
		}
	}
	// Worker changes come before oracle updates at the same instant, so
	// the oracle sees the new workers.
	sortChanges(v.changes)
	// Tick at the finest period that lands on every policy's interval;
	// Engine.TickDue picks the policies that are due.
	for _, spec := range specs {
		v.tickEvery = gcd(v.tickEvery, int64(spec.EvaluationInterval))
	}
	v.nextTick = 0 // a new policy's first tick is due at once
	return v
}

func nextOffset(a *arrivals) int64 {
	at, ok := a.next()
	if !ok {
		return -1
	}
	return int64(at)
}

func sortChanges(c []appChange) {
	for i := 1; i < len(c); i++ { // insertion sort: stable, and c is short
		for j := i; j > 0 && (c[j].at < c[j-1].at || (c[j].at == c[j-1].at && c[j].service >= 0 && c[j-1].service < 0)); j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
}

// ServiceLoad is one bounded service's overload signal over a window of
// virtual time: what the simulator reports for dynamic clusters (GET
// /services).
type ServiceLoad struct {
	Name string
	// Utilisation is the busy share of the workers: worker-time busy ÷
	// worker-time available (1 when the service had no workers).
	Utilisation float64
	// QueueingMs is the mean wait of the calls that started at the
	// service in the window, from joining its queue to taking a worker.
	QueueingMs float64
	// Overloaded is Utilisation ≥ OverloadUtilisation or QueueingMs ≥
	// OverloadQueueingMs.
	Overloaded bool
}

// The simulator's overload thresholds (ServiceLoad.Overloaded): those of
// the ServiceOverload component, which serves the same verdict live.
const (
	OverloadUtilisation = components.DefaultOverloadUtilisation
	OverloadQueueingMs  = components.DefaultOverloadQueueingMs
)

// serviceLoads samples every bounded service's load since the last
// sample, in Services order, and starts the next window.
func (v *virtualRun) serviceLoads() []ServiceLoad {
	var out []ServiceLoad
	for i := range v.services {
		s := &v.services[i]
		if !s.bounded {
			continue
		}
		s.account(v.now)
		load := ServiceLoad{Name: v.app.Services[i].Name, Utilisation: 1}
		if s.capacityNs > 0 {
			load.Utilisation = float64(s.busyNs) / float64(s.capacityNs)
		}
		if s.started > 0 {
			load.QueueingMs = float64(s.waitNs) / float64(s.started) / 1e6
		}
		load.Overloaded = load.Utilisation >= OverloadUtilisation || load.QueueingMs >= OverloadQueueingMs
		out = append(out, load)
		s.busyNs, s.capacityNs, s.waitNs, s.started = 0, 0, 0, 0
	}
	return out
}

// sampleServices appends every bounded service's totals at the end of a
// whole second (v.sampled) to the tally, in Services order.
func (v *virtualRun) sampleServices() {
	var at []serviceTotals
	for i := range v.services {
		if s := &v.services[i]; s.bounded {
			s.account(v.now)
			at = append(at, s.total)
		}
	}
	v.tally.services = append(v.tally.services, at)
}

// run simulates the whole scenario and returns its tallies.
func (v *virtualRun) run(ctx context.Context) error {
	var err error
	v.eng, err = engine.Start(ctx, engine.Options{
		Specs:       v.specs,
		Clock:       func() int64 { return v.now },
		ManualTicks: true,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	defer v.eng.Close()
	if v.lockstep != nil {
		defer v.lockstep.end()
	}
	if v.onEngine != nil {
		v.onEngine(v.eng)
	}
	v.cp = v.eng.ControlPoints().Get(ControlPoint)

	seconds := secondsIn(v.scenario.Total())
	end := int64(v.scenario.Total()) + v.settleNs
	for events := 0; ; events++ {
		if events&0xffff == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		kind, at := v.next(seconds)
		if kind == eventNone || at > end {
			break
		}
		v.now = at
		switch kind {
		case eventChange:
			if err := v.change(v.changes[0]); err != nil {
				return err
			}
			v.changes = v.changes[1:]
		case eventTick:
			pending := v.eng.TickDueSplit()
			// The tick at a policy's load has measured nothing: the agent
			// steps from the first tick after it, as it does live.
			if v.lockstep != nil && pending.Agents() && v.now > 0 {
				v.lockstep.pause(ctx, v.eng, v.now, v.serviceLoads())
			}
			pending.Finish()
			v.nextTick += v.tickEvery
		case eventCompletion:
			v.complete(v.calls.pop().req)
		case eventSharing:
			v.sharingDone(v.nextSharing())
		case eventTimeout:
			v.timeout(v.timeouts.pop())
		case eventArrival:
			v.arrive(v.nextArrival())
		case eventWake:
			v.wake(int(heap.Pop(&v.wakes).(wakeEntry).api))
		case eventRetry:
			r := heap.Pop(&v.retries).(retryEntry)
			v.attempt(int(r.api), int(r.second), r.first, r.attempt, r.demand)
		case eventSample:
			v.sampled++
			v.sampleServices()
		case eventReport:
			if v.onSecond != nil {
				v.onSecond(v.reported)
			}
			v.reported++
		}
	}
	return nil
}

type eventKind int

const (
	eventNone eventKind = iota
	eventChange
	eventTick
	eventCompletion
	eventSharing
	eventTimeout
	eventArrival
	eventWake
	eventRetry
	eventReport
	eventSample
)

// next returns the earliest pending event; ties go to the lower kind.
func (v *virtualRun) next(seconds int) (eventKind, int64) {
	kind, at := eventNone, int64(0)
	consider := func(k eventKind, t int64) {
		if kind == eventNone || t < at {
			kind, at = k, t
		}
	}
	if len(v.changes) > 0 {
		consider(eventChange, v.changes[0].at)
	}
	if v.tickEvery > 0 {
		consider(eventTick, v.nextTick)
	}
	if v.calls.len() > 0 {
		consider(eventCompletion, v.calls.top().at)
	}
	if i := v.nextSharing(); i >= 0 {
		consider(eventSharing, v.services[i].ps.nextAt)
	}
	if v.timeouts.len() > 0 {
		consider(eventTimeout, v.timeouts.peek().at)
	}
	if i := v.nextArrival(); i >= 0 {
		consider(eventArrival, v.apis[i].next)
	}
	if v.wakes.Len() > 0 {
		consider(eventWake, v.wakes.items[0].at)
	}
	if v.retries.Len() > 0 {
		consider(eventRetry, v.retries.items[0].at)
	}
	if v.reported < seconds {
		consider(eventReport, int64(v.reported+1)*int64(time.Second)+v.settleNs)
	}
	if v.sampled < seconds {
		consider(eventSample, int64(v.sampled+1)*int64(time.Second))
	}
	return kind, at
}

// nextArrival is the API with the earliest next arrival, or -1.
func (v *virtualRun) nextArrival() int {
	best := -1
	for i := range v.apis {
		if v.apis[i].next >= 0 && (best < 0 || v.apis[i].next < v.apis[best].next) {
			best = i
		}
	}
	return best
}

func (v *virtualRun) change(c appChange) error {
	if c.users {
		v.setUsers()
		return nil
	}
	if c.service < 0 {
		return applyStatic(v.eng, v.app, v.scenario, time.Duration(c.at), v.optimal)
	}
	s := &v.services[c.service]
	if c.slow {
		s.slow = c.factor
		return nil
	}
	if c.delay {
		if c.api < 0 {
			s.extra = c.extra
			return nil
		}
		for j := range v.apis[c.api].calls {
			if call := &v.apis[c.api].calls[j]; call.service == c.service {
				call.extra = c.extra
			}
		}
		return nil
	}
	s.account(v.now)
	if s.sharing {
		s.ps.advance(v.now, s.workers)
		s.workers = c.workers
		s.busy = min(s.ps.jobs.Len(), s.workers)
		v.sharingSchedule(c.service)
		return nil
	}
	s.workers = c.workers
	v.dispatch(s)
	return nil
}

func (v *virtualRun) arrive(api int) {
	a := &v.apis[api]
	second := int(a.next / int64(time.Second))
	demand := a.demand.Uint64() // drawn for every arrival, admitted or not
	a.next = nextOffset(a.arrivals)
	v.tally.tallies[api].arrive(second, false)
	v.attempt(api, second, v.now, 0, demand)
}

// setUsers brings every API's closed-loop users to the count of the step
// that starts now. New users begin with a think time, so they do not all
// send at the step's first instant; users over the count leave as their
// think times end.
func (v *virtualRun) setUsers() {
	rates := v.scenario.ratesAt(time.Duration(v.now))
	for i := range v.apis {
		a := &v.apis[i]
		a.target = v.scenario.Users(rates[i])
		if a.target > 0 {
			a.think = float64(v.scenario.ThinkAt(rates[i]))
		}
		for ; a.users < a.target; a.users++ {
			v.think(i)
		}
	}
}

// think starts a think time of one of API api's closed-loop users.
func (v *virtualRun) think(api int) {
	at := v.now + int64(v.thinkRand.ExpFloat64()*v.apis[api].think)
	heap.Push(&v.wakes, wakeEntry{at: at, seq: v.wakes.seq, api: int32(api)})
	v.wakes.seq++
}

// wake is the end of a closed-loop user's think time: it sends its next
// request, or leaves if its API has more users than the step wants or the
// scenario is over.
func (v *virtualRun) wake(api int) {
	a := &v.apis[api]
	if a.users > a.target || v.now >= int64(v.scenario.Total()) {
		a.users--
		return
	}
	second := int(v.now / int64(time.Second))
	demand := a.demand.Uint64()
	v.tally.tallies[api].arrive(second, false)
	v.attempt(api, second, v.now, 0, demand)
}

// ended is the end of a user request, its retries included: under
// closed-loop clients its user begins to think.
func (v *virtualRun) ended(api int) {
	if v.scenario.Think > 0 {
		v.think(api)
	}
}

// attempt is one attempt of a user request that first arrived at first, in
// second: the first, or a client retry.
func (v *virtualRun) attempt(api, second int, first int64, attempt int32, demand uint64) {
	a := &v.apis[api]
	ticket, decision := v.cp.Admit(a.label)
	if decision != controlpoint.Accepted {
		if !v.retry(api, second, first, attempt, demand) {
			v.tally.tallies[api].complete(second, outcome{status: http.StatusTooManyRequests})
			v.ended(api)
		}
		return
	}
	idx := v.alloc()
	r := &v.requests[idx]
	r.ticket, r.first, r.demand, r.attempt = ticket, first, demand, attempt
	r.api, r.call, r.second, r.abandoned = int32(api), 0, int32(second), false
	v.timeouts.push(timeoutEntry{at: v.now + v.timeoutNs, req: idx, gen: r.gen})
	v.enter(idx)
}

func (v *virtualRun) alloc() int32 {
	if n := len(v.free); n > 0 {
		idx := v.free[n-1]
		v.free = v.free[:n-1]
		return idx
	}
	v.requests = append(v.requests, virtualRequest{})
	return int32(len(v.requests) - 1)
}

// release frees a request slot; its stale timeout no longer matches.
func (v *virtualRun) release(idx int32) {
	r := &v.requests[idx]
	r.gen++
	r.ticket = controlpoint.Ticket{}
	v.free = append(v.free, idx)
}

// enter queues request idx at the service of its current call, or, under
// DagorPolicy, sheds it there.
func (v *virtualRun) enter(idx int32) {
	r := &v.requests[idx]
	s := &v.services[v.apis[r.api].calls[r.call].service]
	if !s.bounded {
		v.start(idx)
		return
	}
	if s.dagor != nil && !s.dagor.Admit(v.now, v.apis[r.api].rank+dagorUser(r.demand)) {
		v.shed(idx)
		return
	}
	r.queued = v.now
	if s.sharing {
		v.sharingEnter(v.apis[r.api].calls[r.call].service, idx)
		return
	}
	if s.busy < s.workers && s.queue.len() == 0 {
		s.account(v.now)
		s.busy++
		v.start(idx)
		return
	}
	s.queue.push(idx)
}

// shed ends request idx at a DAGOR service that rejected it: the entry
// answers 503, and the calls it made before are spent.
func (v *virtualRun) shed(idx int32) {
	r := &v.requests[idx]
	r.ticket.Done(false)
	if !v.retry(int(r.api), int(r.second), r.first, r.attempt, r.demand) {
		v.tally.tallies[r.api].complete(int(r.second), outcome{status: http.StatusServiceUnavailable})
		v.ended(int(r.api))
	}
	v.release(idx)
}

// start begins request idx's current call on a worker.
func (v *virtualRun) start(idx int32) {
	r := &v.requests[idx]
	call := &v.apis[r.api].calls[r.call]
	if s := &v.services[call.service]; s.bounded {
		s.waitNs += v.now - r.queued
		s.started++
		s.total.waitNs += v.now - r.queued
		s.total.started++
		if s.dagor != nil {
			s.dagor.Started(v.now, time.Duration(v.now-r.queued))
		}
	}
	v.calls.push(completion{at: v.now + v.callTime(idx), req: idx})
}

// callTime is the time request idx's current call takes on one worker:
// its sample of the call's time, slowed and delayed as the service and
// the API are now.
func (v *virtualRun) callTime(idx int32) int64 {
	r := &v.requests[idx]
	call := &v.apis[r.api].calls[r.call]
	v.timeSource.Seed(r.demand, mix64(r.demand+uint64(r.call)))
	svc := &v.services[call.service]
	d := int64(call.time.Sample(v.times))
	if svc.slow > 0 {
		d = int64(float64(d) * svc.slow)
	}
	return d + svc.extra + call.extra
}

// dispatch hands free workers of s to queued requests, skipping abandoned ones.
func (v *virtualRun) dispatch(s *virtualService) {
	for s.busy < s.workers && s.queue.len() > 0 {
		idx := s.queue.pop()
		if v.requests[idx].abandoned {
			v.release(idx)
			continue
		}
		s.account(v.now)
		s.busy++
		v.start(idx)
	}
}

// complete ends request idx's current call.
func (v *virtualRun) complete(idx int32) {
	r := &v.requests[idx]
	a := &v.apis[r.api]
	if s := &v.services[a.calls[r.call].service]; s.bounded {
		s.account(v.now)
		s.busy--
		v.dispatch(s)
	}
	v.proceed(idx)
}

// proceed moves request idx on from the call that just ended: to its next
// call, or to its answer.
func (v *virtualRun) proceed(idx int32) {
	r := &v.requests[idx]
	a := &v.apis[r.api]
	if r.abandoned {
		v.release(idx)
		return
	}
	r.call++
	if int(r.call) < len(a.calls) {
		v.enter(idx)
		return
	}
	r.ticket.Done(true)
	v.tally.tallies[r.api].complete(int(r.second), outcome{status: http.StatusOK, latency: time.Duration(v.now - r.first)})
	v.ended(int(r.api))
	v.release(idx)
}

// timeout is the client giving up on a request.
func (v *virtualRun) timeout(e timeoutEntry) {
	r := &v.requests[e.req]
	if r.gen != e.gen {
		return // the request ended earlier
	}
	r.abandoned = true
	r.ticket.Abandon() // the entry answers a canceled request with an error
	if !v.retry(int(r.api), int(r.second), r.first, r.attempt, r.demand) {
		v.tally.tallies[r.api].complete(int(r.second), outcome{timeout: true, latency: time.Duration(v.now - r.first)})
		v.ended(int(r.api))
	}
}

// retry schedules the next attempt of a user request whose attempt failed,
// if the scenario's clients have a retry left: after a backoff of
// RetryBackoff·2ᵏ for the k-th retry (from 0), jittered uniformly by ±50 %.
// The retry costs what the first attempt did (same demand seed).
func (v *virtualRun) retry(api, second int, first int64, attempt int32, demand uint64) bool {
	if int(attempt) >= v.scenario.Retries {
		return false
	}
	backoff := float64(v.scenario.RetryBackoff<<attempt) * (0.5 + v.retryRand.Float64())
	heap.Push(&v.retries, retryEntry{at: v.now + int64(backoff), seq: v.retries.seq, api: int32(api), second: int32(second), first: first, attempt: attempt + 1, demand: demand})
	v.retries.seq++
	return true
}

// retryEntry is a client retry due at a virtual time.
type retryEntry struct {
	at, first   int64
	seq         uint64 // ties go in scheduling order
	api, second int32
	attempt     int32
	demand      uint64
}

// retryHeap and wakeHeap are container/heaps of retries and of think
// times.
type (
	retryHeap = timedHeap[retryEntry]
	wakeHeap  = timedHeap[wakeEntry]
)

func (e retryEntry) when() (int64, uint64) { return e.at, e.seq }
func (e wakeEntry) when() (int64, uint64)  { return e.at, e.seq }

// timedHeap is a container/heap of entries by (at, seq): by time, ties in
// the order they were scheduled (seq counts them).
type timedHeap[T interface{ when() (int64, uint64) }] struct {
	items []T
	seq   uint64
}

func (h *timedHeap[T]) Len() int { return len(h.items) }
func (h *timedHeap[T]) Less(i, j int) bool {
	at, seq := h.items[i].when()
	bt, bseq := h.items[j].when()
	return at < bt || (at == bt && seq < bseq)
}
func (h *timedHeap[T]) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *timedHeap[T]) Push(x any)    { h.items = append(h.items, x.(T)) }
func (h *timedHeap[T]) Pop() any {
	last := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return last
}

// wakeEntry is a closed-loop user whose think time ends at a virtual time.
type wakeEntry struct {
	at  int64
	seq uint64 // ties go in the order the think times began
	api int32
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// mix64 is SplitMix64's finaliser: it decorrelates nearby seeds.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// completion is a call that ends at a virtual time.
type completion struct {
	at  int64
	seq uint64 // ties end in scheduling order
	req int32
}

// completionHeap is a binary min-heap by (at, seq).
type completionHeap struct {
	items []completion
	seq   uint64
}

func (h *completionHeap) len() int        { return len(h.items) }
func (h *completionHeap) top() completion { return h.items[0] }
func (h *completionHeap) less(i, j int) bool {
	a, b := &h.items[i], &h.items[j]
	return a.at < b.at || (a.at == b.at && a.seq < b.seq)
}

func (h *completionHeap) push(c completion) {
	c.seq = h.seq
	h.seq++
	h.items = append(h.items, c)
	for i := len(h.items) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h.items[i], h.items[parent] = h.items[parent], h.items[i]
		i = parent
	}
}

func (h *completionHeap) pop() completion {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	for i := 0; ; {
		smallest, l, r := i, 2*i+1, 2*i+2
		if l < last && h.less(l, smallest) {
			smallest = l
		}
		if r < last && h.less(r, smallest) {
			smallest = r
		}
		if smallest == i {
			break
		}
		h.items[i], h.items[smallest] = h.items[smallest], h.items[i]
		i = smallest
	}
	return top
}

// ring is a growable FIFO queue.
type ring[T any] struct {
	buf        []T
	head, size int
}

func (q *ring[T]) len() int { return q.size }
func (q *ring[T]) peek() T  { return q.buf[q.head] }

func (q *ring[T]) push(x T) {
	if q.size == len(q.buf) {
		grown := make([]T, max(16, 2*len(q.buf)))
		n := copy(grown, q.buf[q.head:])
		copy(grown[n:], q.buf[:q.head])
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = x
	q.size++
}

func (q *ring[T]) pop() T {
	x := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.size--
	return x
}
