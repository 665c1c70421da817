package testbed

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// DefaultWarmup is the light-load stretch before every scenario: 60 s, the
// latency-AIMD blueprint's EMA warm-up (seed 004), plus 5 s, so that a
// latency baseline is learned on a healthy app before the overload starts.
const DefaultWarmup = 65 * time.Second

// DefaultDuration is the default length of a scenario after its warm-up.
const DefaultDuration = 60 * time.Second

// warmupLoad is the load of the warm-up, as a multiple of capacity.
const warmupLoad = 0.5

// Scenario is a load schedule for one App: open-loop Poisson arrivals per
// API whose rates change in steps, plus changes to the app itself.
//
// Time 0 is the start of the run. The run begins with Warmup at half the
// app's capacity (none in cold-start); the scenario proper, which reports
// measure, is the Duration after it.
type Scenario struct {
	Name string
	// Load is the scenario's load parameter (see ScenarioNames).
	Load             float64
	Warmup, Duration time.Duration
	// Steps run back to back from time 0 and cover Warmup + Duration.
	Steps []Step
	// Changes alter the app during the run, in time order.
	Changes []WorkerChange
	// Delays add latency at unbounded services during the run, in time
	// order: no capacity changes, only the time a request takes.
	Delays []DelayChange
	// Slowdowns stretch the service times of bounded services during the
	// run, in time order: the time a request takes and the capacity
	// change together.
	Slowdowns []SlowdownChange
	// Retries is how many times a client retries a request that was
	// rejected or timed out (0: never), after a backoff of RetryBackoff·2ᵏ
	// before the k-th retry (from 0), jittered by ±50 %. A request and its
	// retries are one user request: offered once, goodput only if answered
	// within the SLO from its first attempt. Only the virtual driver
	// retries.
	Retries      int
	RetryBackoff time.Duration
	// Think, when > 0, makes the clients closed-loop: during each step an
	// API offered r req/s has Users(r) = ⌈r × Think⌉ users (at least one),
	// who each send a request, wait for its end (an answer, a refusal or
	// the client timeout, after any retries), think for an exponential
	// time of mean ThinkAt(r) = Users(r) ÷ r (Think, or a little more, so
	// that the users offer exactly r) and send the next. A step's rate is
	// then what its users offer if every answer is instant:
	// slow answers and long queues lower the offered load, as they do with
	// real users and with load generators that hold a fixed number of
	// connections, and fast refusals bring users back sooner. 0 is
	// open-loop Poisson arrivals at the step rates, which no answer slows.
	// Only the virtual driver runs closed-loop clients.
	Think time.Duration
	// Burst, when > 1, makes open-loop arrivals come Burst at a time, at
	// the same instant, the batches a Poisson process at the step rate ÷
	// Burst: the same mean rate, in the clumps of clients that fire
	// together (a timer on many hosts, a fan-out, a page that loads its
	// parts at once). 0 or 1: one at a time. Not with Think.
	Burst int
	// Marks are the times, from the start of the run, after which the time
	// to recover is measured: the start of the scenario proper and each
	// later step change or app change of note.
	Marks []time.Duration
}

// Step is a stretch of constant offered load.
type Step struct {
	Duration time.Duration
	// Rates is the offered load of each API, in App.APIs order, in req/s.
	Rates []float64
}

// WorkerChange sets the worker count of one service at a time.
type WorkerChange struct {
	At      time.Duration // from the start of the run
	Service string
	Workers int
}

// DelayChange sets the extra time every call at an unbounded service takes
// from time At on (0 removes it), or with API set, every call of that API
// there (a dependency only that API calls). The extra time holds no worker,
// so the app's capacity is unchanged: a slower dependency, not an
// overload.
type DelayChange struct {
	At      time.Duration // from the start of the run
	Service string
	API     string // "" for every API
	Extra   time.Duration
}

// SlowdownChange multiplies the time of every call at a bounded service by
// Factor from time At on (1 restores it). The longer call holds its
// worker, so the service's capacity divides by Factor while the latency of
// a call without a queue multiplies by it: a noisy neighbour, a colder
// cache or a worse query plan, not more workers or fewer.
type SlowdownChange struct {
	At      time.Duration // from the start of the run
	Service string
	Factor  float64
}

// MaxSlowdown bounds SlowdownChange.Factor both ways: a call at most 100
// times slower or faster than the app's model says.
const MaxSlowdown = 100

// slowdownErr is nil if service is a bounded service of app and factor a
// slowdown within MaxSlowdown either way (NaN is not), and says why not
// otherwise.
func slowdownErr(app App, service string, factor float64) error {
	if k := app.serviceIndex(service); k < 0 || app.Services[k].Workers == 0 || !(factor >= 1.0/MaxSlowdown && factor <= MaxSlowdown) {
		return fmt.Errorf("service %q slowdown %v: want a bounded service and a factor in [%v, %v]", service, factor, 1.0/MaxSlowdown, float64(MaxSlowdown))
	}
	return nil
}

// ScenarioOptions parameterise NewScenario; zero fields take defaults.
type ScenarioOptions struct {
	// Warmup is the light-load stretch before the scenario (default
	// DefaultWarmup). It is never shorter than 1 s.
	Warmup time.Duration
	// Duration is the scenario's length after the warm-up (default
	// DefaultDuration); at least 10 s, so every step lasts at least 1 s.
	Duration time.Duration
	// Load is the scenario's load parameter; 0 takes the scenario's default.
	Load float64
	// Think, when > 0, makes the clients closed-loop (Scenario.Think).
	Think time.Duration
	// Burst, when > 1, makes arrivals come in batches (Scenario.Burst).
	Burst int
}

// MaxBurst bounds Scenario.Burst: a batch is that many requests at one
// instant, far beyond what any test needs.
const MaxBurst = 10_000

// MaxUsers bounds the closed-loop users of one API in one step: a run
// keeps one entry per user, and the bound is far above what a run within
// the request budget can use.
const MaxUsers = 1_000_000

// scenarioKinds are the known scenarios, in documentation order.
var scenarioKinds = []struct {
	name        string
	defaultLoad float64
	doc         string
	build       func(b *scenarioBuilder)
	noWarmup    bool // the scenario starts at time 0, whatever Warmup says
}{
	{"steady", 4, "every API at LOAD× its share of capacity (default 4)", buildSteady, false},
	{"surge", 4, "0.5× for 20% of the duration, LOAD× (default 4) for 40%, 0.5× for 40%", buildSurge, false},
	{"ramp", 5, "from 0.5× up to LOAD× (default 5) in 1 s steps", buildRamp, false},
	{"capacity-drop", 0.8, "LOAD× (default 0.8); a third in, half the workers of the most shared service die", buildCapacityDrop, false},
	{"flash-crowd", 8, "0.8×; from 25% to 50% of the duration the heaviest API jumps to LOAD× (default 8) its share", buildFlashCrowd, false},
	{"priority-mix", 1.5, "every API at LOAD× (default 1.5) its capacity alone, so all contend over capacity", buildPriorityMix, false},
	{"cold-start", 3, "LOAD× (default 3) from the very first second: no warm-up, so nothing was learned on a healthy app", buildSteady, true},
	{"retry-storm", 2, "0.8× for 20% of the duration, LOAD× (default 2) for 20%, 0.8× for 60%; clients retry rejected and timed-out requests up to 3 times, backing off 100 ms·2ᵏ ± 50 %", buildRetryStorm, false},
	{"slow-drift", 0.8, "LOAD× (default 0.8); over the first half, the most shared service loses half its workers one by one; at three quarters they all return", buildSlowDrift, false},
	{"mix-shift", 2, "LOAD× (default 2) of the capacity at the offered mix throughout; from a third to two thirds of the duration the costliest API makes up 80% of the requests", buildMixShift, false},
	{"slow-dependency", 2, "LOAD× (default 2); from a third to two thirds of the duration every call at the entry takes longer (twice the app's mean latency without a queue, at most a quarter of the tightest SLO), holding no worker: latency rises, capacity does not", buildSlowDependency, false},
	{"hung-dependency", 2, "LOAD× (default 2); from a third to two thirds of the duration the least requested API's calls at the entry hang for twice the client timeout, holding no worker, as a dependency of that API alone that stops answering (with one API, all of them)", buildHungDependency, false},
	{"slow-api", 2, "LOAD× (default 2); from a third to two thirds the least requested API's calls at the entry take its SLO longer (at most half the client timeout), holding no worker: one API's own dependency slows, its answers still come", buildSlowAPI, false},
	{"slow-service", 2, "LOAD× (default 2); from a third to two thirds of the duration every call at the most shared service takes twice as long, holding its worker, as under a noisy neighbour: its capacity halves and its latency without a queue doubles", buildSlowService, false},
	{"scale-out", 3, "LOAD× (default 3) the capacity before; a third in, every bounded service's workers double, as an autoscaler adds replicas: the limit must find capacity it never saw", buildScaleOut, false},
}

// ScenarioNames lists the known scenarios.
func ScenarioNames() []string {
	names := make([]string, len(scenarioKinds))
	for i, k := range scenarioKinds {
		names[i] = k.name
	}
	return names
}

// ScenarioHelp describes every scenario, one per line.
func ScenarioHelp() string {
	var b strings.Builder
	for _, k := range scenarioKinds {
		fmt.Fprintf(&b, "  %-14s %s\n", k.name, k.doc)
	}
	return b.String()
}

// NewScenario builds the named scenario for app. Load multiples "×" are of
// the app's capacity at its nominal mix (App.Capacity), split between APIs
// by Weight, unless the scenario says otherwise.
func NewScenario(name string, app App, opts ScenarioOptions) (Scenario, error) {
	if err := app.Validate(); err != nil {
		return Scenario{}, fmt.Errorf("app %s: %w", app.Name, err)
	}
	if c := app.Capacity(); math.IsInf(c, 1) || c <= 0 {
		return Scenario{}, fmt.Errorf("app %s: no API calls a bounded service with a service time > 0, so its capacity is unbounded and it cannot be overloaded", app.Name)
	}
	if opts.Warmup == 0 {
		opts.Warmup = DefaultWarmup
	}
	if opts.Duration == 0 {
		opts.Duration = DefaultDuration
	}
	switch {
	case opts.Warmup < time.Second:
		return Scenario{}, fmt.Errorf("warm-up %v: must be >= 1s", opts.Warmup)
	case opts.Duration < 10*time.Second:
		return Scenario{}, fmt.Errorf("duration %v: must be >= 10s", opts.Duration)
	case opts.Warmup%time.Second != 0 || opts.Duration%time.Second != 0:
		return Scenario{}, fmt.Errorf("warm-up %v and duration %v: must be whole seconds", opts.Warmup, opts.Duration)
	case opts.Load < 0 || math.IsNaN(opts.Load) || math.IsInf(opts.Load, 0):
		return Scenario{}, fmt.Errorf("load %v: must be finite and > 0", opts.Load)
	case opts.Think < 0:
		return Scenario{}, fmt.Errorf("think time %v: must be >= 0 (0: open-loop clients)", opts.Think)
	case opts.Burst < 0 || opts.Burst > MaxBurst:
		return Scenario{}, fmt.Errorf("burst %d: must be within [0, %d] (0 or 1: one arrival at a time)", opts.Burst, MaxBurst)
	case opts.Burst > 1 && opts.Think > 0:
		return Scenario{}, fmt.Errorf("burst %d with a think time of %v: bursts are of open-loop arrivals; closed-loop users send when they are done thinking", opts.Burst, opts.Think)
	}
	for _, k := range scenarioKinds {
		if k.name != name {
			continue
		}
		load := opts.Load
		if load == 0 {
			load = k.defaultLoad
		}
		if k.noWarmup {
			opts.Warmup = 0
		}
		b := &scenarioBuilder{app: app, s: Scenario{Name: name, Load: load, Warmup: opts.Warmup, Duration: opts.Duration}}
		if opts.Warmup > 0 {
			b.step(opts.Warmup, b.mix(warmupLoad))
		}
		b.mark(opts.Warmup)
		k.build(b)
		if b.err != nil {
			return Scenario{}, b.err
		}
		b.s.Think, b.s.Burst = opts.Think, opts.Burst
		if err := b.s.checkUsers(); err != nil {
			return Scenario{}, err
		}
		return b.s, nil
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q (known: %s)", name, strings.Join(ScenarioNames(), ", "))
}

type scenarioBuilder struct {
	app App
	s   Scenario
	end time.Duration // end of the steps so far
	err error         // a scenario the app cannot run
}

// mix is the nominal mix at load× capacity, per API.
func (b *scenarioBuilder) mix(load float64) []float64 {
	rates := b.app.Weights()
	c := b.app.Capacity()
	for i := range rates {
		rates[i] *= load * c
	}
	return rates
}

func (b *scenarioBuilder) step(d time.Duration, rates []float64) {
	b.s.Steps = append(b.s.Steps, Step{Duration: d, Rates: rates})
	b.end += d
}

func (b *scenarioBuilder) mark(at time.Duration) {
	if len(b.s.Marks) == 0 || b.s.Marks[len(b.s.Marks)-1] != at {
		b.s.Marks = append(b.s.Marks, at)
	}
}

// fraction is f of the duration, in whole seconds, at least 1 s.
func (b *scenarioBuilder) fraction(f float64) time.Duration {
	return max(time.Second, (time.Duration(f*float64(b.s.Duration))/time.Second)*time.Second)
}

func buildSteady(b *scenarioBuilder) { b.step(b.s.Duration, b.mix(b.s.Load)) }

func buildSurge(b *scenarioBuilder) {
	low, high := b.fraction(0.2), b.fraction(0.4)
	b.step(low, b.mix(0.5))
	b.mark(b.end)
	b.step(high, b.mix(b.s.Load))
	b.mark(b.end)
	b.step(b.s.Duration-low-high, b.mix(0.5))
}

func buildRamp(b *scenarioBuilder) {
	seconds := int(b.s.Duration / time.Second)
	for i := range seconds {
		load := 0.5 + (b.s.Load-0.5)*float64(i)/float64(max(seconds-1, 1))
		b.step(time.Second, b.mix(load))
	}
}

func buildCapacityDrop(b *scenarioBuilder) {
	shared := b.app.Services[b.app.sharedService()]
	drop := b.fraction(1.0 / 3)
	b.step(b.s.Duration, b.mix(b.s.Load))
	at := b.s.Warmup + drop
	b.s.Changes = append(b.s.Changes, WorkerChange{At: at, Service: shared.Name, Workers: shared.Workers - shared.Workers/2})
	b.mark(at)
}

func buildFlashCrowd(b *scenarioBuilder) {
	heaviest := 0
	for i, api := range b.app.APIs {
		if api.Weight > b.app.APIs[heaviest].Weight {
			heaviest = i
		}
	}
	before, flash := b.fraction(0.25), b.fraction(0.25)
	base := b.mix(0.8)
	crowd := b.mix(0.8)
	crowd[heaviest] = b.mix(b.s.Load)[heaviest]
	b.step(before, base)
	b.mark(b.end)
	b.step(flash, crowd)
	b.mark(b.end)
	b.step(b.s.Duration-before-flash, base)
}

// buildScaleOut doubles every bounded service a third in, under a load
// that overloads the app before and after: the learned limits are then
// half of what the app can serve, and only growth finds the rest.
func buildScaleOut(b *scenarioBuilder) {
	b.step(b.s.Duration, b.mix(b.s.Load))
	at := b.s.Warmup + b.fraction(1.0/3)
	for _, svc := range b.app.Services {
		if svc.Workers > 0 {
			b.s.Changes = append(b.s.Changes, WorkerChange{At: at, Service: svc.Name, Workers: 2 * svc.Workers})
		}
	}
	b.mark(at)
}

// buildSlowService doubles the service time at the most shared bounded
// service for the middle third: a latency rise that is partly the
// service's own and partly the queue its halved capacity builds. A policy
// that reads every rise over a baseline as queue cuts to a quarter of the
// capacity; one that reads it as a slower dependency keeps the queue.
func buildSlowService(b *scenarioBuilder) {
	shared := b.app.Services[b.app.sharedService()]
	b.step(b.s.Duration, b.mix(b.s.Load))
	from := b.s.Warmup + b.fraction(1.0/3)
	to := b.s.Warmup + b.fraction(2.0/3)
	b.s.Slowdowns = append(b.s.Slowdowns, SlowdownChange{At: from, Service: shared.Name, Factor: 2}, SlowdownChange{At: to, Service: shared.Name, Factor: 1})
	b.mark(from)
	b.mark(to)
}

// buildSlowDrift takes workers away one at a time, at even intervals over
// the first half of the duration (5 minutes with --duration 10m), until
// half are gone, and gives them all back at three quarters: a slow loss of
// capacity that no step detector sees, then a sudden recovery.
func buildSlowDrift(b *scenarioBuilder) {
	shared := b.app.Services[b.app.sharedService()]
	b.step(b.s.Duration, b.mix(b.s.Load))
	lost := shared.Workers / 2
	for k := 1; k <= lost; k++ {
		at := b.s.Warmup + (time.Duration(k) * b.s.Duration / 2 / time.Duration(lost)).Truncate(time.Second)
		b.s.Changes = append(b.s.Changes, WorkerChange{At: at, Service: shared.Name, Workers: shared.Workers - k})
	}
	back := b.s.Warmup + b.fraction(0.75)
	b.s.Changes = append(b.s.Changes, WorkerChange{At: back, Service: shared.Name, Workers: shared.Workers})
	b.mark(back)
}

// buildMixShift moves the mix to the costliest API (the most time at
// bounded services per request) for the middle third, at the same multiple
// of the capacity at each mix: no capacity changes, but every request
// takes longer on average. A controller that reads a longer mean latency
// as a queue cuts admission that the app could serve.
func buildMixShift(b *scenarioBuilder) {
	costliest, most := 0, -1.0
	for i := range b.app.APIs {
		var cost float64
		for s, d := range b.app.demand(i) {
			if b.app.Services[s].Workers > 0 {
				cost += d
			}
		}
		if cost > most {
			costliest, most = i, cost
		}
	}
	// The other APIs keep their nominal proportions in the other 20 %.
	shifted := b.app.Weights()
	others := 1 - shifted[costliest]
	for i := range shifted {
		if others > 0 {
			shifted[i] *= 0.2 / others
		}
	}
	shifted[costliest] = 0.8
	if others <= 0 {
		shifted[costliest] = 1
	}
	scale := b.app.scale(shifted, b.app.workers())
	for i := range shifted {
		shifted[i] *= b.s.Load * scale
	}
	first := b.fraction(1.0 / 3)
	b.step(first, b.mix(b.s.Load))
	b.mark(b.end)
	b.step(b.fraction(2.0/3)-first, shifted)
	b.mark(b.end)
	b.step(b.s.Duration-b.fraction(2.0/3), b.mix(b.s.Load))
}

// buildSlowDependency makes the entry slower for the middle third of the
// duration, as a dependency that answers late would, without taking any
// capacity away: the latency rises but the app serves as much as before.
// A controller that reads every latency rise as a queue cuts admission
// that the app could serve.
func buildSlowDependency(b *scenarioBuilder) {
	if b.app.Services[b.app.serviceIndex(b.app.Entry)].Workers != 0 {
		b.err = fmt.Errorf("scenario slow-dependency: app %s: its entry %s has workers; the extra time must hold none, so the entry must be unbounded", b.app.Name, b.app.Entry)
		return
	}
	b.step(b.s.Duration, b.mix(b.s.Load))
	extra := b.app.slowDependencyExtra()
	from, to := b.s.Warmup+b.fraction(1.0/3), b.s.Warmup+b.fraction(2.0/3)
	b.s.Delays = append(b.s.Delays, DelayChange{At: from, Service: b.app.Entry, Extra: extra}, DelayChange{At: to, Service: b.app.Entry})
	b.mark(from)
	b.mark(to)
}

// buildHungDependency makes one API's calls at the entry hang, past the
// client timeout, for the middle third of the duration: a dependency of
// that API alone stops answering. Its requests fail whatever a policy does,
// and hold no worker; the other APIs could be served as before. A policy
// that lets the hung requests hold the admission the others need loses
// their goodput too. In an app of one API every request hangs, and what
// tells policies apart is how they recover.
func buildHungDependency(b *scenarioBuilder) {
	if b.app.Services[b.app.serviceIndex(b.app.Entry)].Workers != 0 {
		b.err = fmt.Errorf("scenario hung-dependency: app %s: its entry %s has workers; the hang must hold none, so the entry must be unbounded", b.app.Name, b.app.Entry)
		return
	}
	weights := b.app.Weights()
	hung := 0
	for i := range weights {
		if weights[i] < weights[hung] {
			hung = i
		}
	}
	b.step(b.s.Duration, b.mix(b.s.Load))
	from, to := b.s.Warmup+b.fraction(1.0/3), b.s.Warmup+b.fraction(2.0/3)
	api := b.app.APIs[hung].Name
	b.s.Delays = append(b.s.Delays, DelayChange{At: from, Service: b.app.Entry, API: api, Extra: 2 * b.app.ClientTimeout},
		DelayChange{At: to, Service: b.app.Entry, API: api})
	b.mark(from)
	b.mark(to)
}

// buildSlowAPI slows one API's calls at the entry by its SLO (at most half
// the client timeout) for the middle third: a dependency of that API
// alone answers late but answers. The other APIs could be served as
// before; a policy that reads the slow API's latency as everyone's queue
// cuts them too.
func buildSlowAPI(b *scenarioBuilder) {
	buildHungDependency(b)
	if b.err != nil {
		return
	}
	api := b.app.APIs[b.app.apiIndex(b.s.Delays[0].API)]
	b.s.Delays[0].Extra = min(api.SLO, b.app.ClientTimeout/2)
}

// slowDependencyExtra is slow-dependency's extra time: twice the mean
// no-queue latency of the nominal mix, at most a quarter of the tightest
// SLO, so that answers stay within their SLO and goodput stays possible.
func (a App) slowDependencyExtra() time.Duration {
	weights := a.Weights()
	var mean float64
	tightest := time.Duration(math.MaxInt64)
	for i, api := range a.APIs {
		for _, c := range api.Calls {
			mean += weights[i] * c.Time.Mean.Seconds()
		}
		tightest = min(tightest, api.SLO)
	}
	return min(time.Duration(2*mean*float64(time.Second)), tightest/4).Round(time.Millisecond)
}

// retryStormRetries and retryStormBackoff are the clients of retry-storm:
// three retries, after 100, 200 and 400 ms, each ± 50 %.
const (
	retryStormRetries = 3
	retryStormBackoff = 100 * time.Millisecond
)

// buildRetryStorm is a short overload under retrying clients: retries
// amplify it, and a policy that lets timeouts pile up can keep the app
// overloaded after the offered load has fallen back below capacity.
func buildRetryStorm(b *scenarioBuilder) {
	b.s.Retries, b.s.RetryBackoff = retryStormRetries, retryStormBackoff
	before, high := b.fraction(0.2), b.fraction(0.2)
	b.step(before, b.mix(0.8))
	b.mark(b.end)
	b.step(high, b.mix(b.s.Load))
	b.mark(b.end)
	b.step(b.s.Duration-before-high, b.mix(0.8))
}

// maxBackoff is the longest a request can wait in backoff over all its
// retries.
func (s Scenario) maxBackoff() time.Duration {
	var total time.Duration
	for k := range s.Retries {
		total += s.RetryBackoff << k
	}
	return total * 3 / 2
}

func buildPriorityMix(b *scenarioBuilder) {
	rates := make([]float64, len(b.app.APIs))
	for i := range rates {
		rates[i] = b.s.Load * b.app.CapacityAlone(i)
	}
	b.step(b.s.Duration, rates)
}

// phases returns API api's offered load as load-generator phases.
func (s Scenario) phases(api int) []Phase {
	phases := make([]Phase, len(s.Steps))
	for i, st := range s.Steps {
		phases[i] = Phase{Duration: st.Duration, Rate: st.Rates[api]}
	}
	return phases
}

// Requests is how many requests the scenario offers in expectation, each
// retry it allows counted as one (an upper bound where clients retry, or
// are closed-loop: their users offer the rate when every answer is
// instant, and less otherwise).
func (s Scenario) Requests() float64 {
	var n float64
	for _, st := range s.Steps {
		for _, r := range st.Rates {
			n += r * st.Duration.Seconds()
		}
	}
	return n * float64(1+s.Retries)
}

// Users is how many closed-loop users offer rate: rate × Think, rounded
// up, so that each thinks Think or a little more (ThinkAt), and at least
// one for a rate above 0.
func (s Scenario) Users(rate float64) int {
	if rate <= 0 || s.Think <= 0 {
		return 0
	}
	n := math.Ceil(rate*s.Think.Seconds() - 1e-9)
	if n > MaxUsers {
		return MaxUsers + 1 // refused by checkUsers
	}
	return max(1, int(n))
}

// ThinkAt is the mean think time of the Users(rate) users of a rate:
// Users(rate) ÷ rate, so that they offer exactly rate when every answer
// is instant (0 for no rate).
func (s Scenario) ThinkAt(rate float64) time.Duration {
	if rate <= 0 || s.Think <= 0 {
		return 0
	}
	return time.Duration(float64(s.Users(rate)) / rate * float64(time.Second))
}

// userStreams are the closed-loop users of a live run against the app at
// base, per API.
func (s Scenario) userStreams(base string, app App, rt *runTally) []*userStream {
	var out []*userStream
	for i, api := range app.APIs {
		us := &userStream{url: base + api.Path(), tally: rt.tallies[i]}
		for _, st := range s.Steps {
			us.users = append(us.users, s.Users(st.Rates[i]))
			us.think = append(us.think, s.ThinkAt(st.Rates[i]))
		}
		out = append(out, us)
	}
	return out
}

// liveUsers is how many user goroutines a live closed-loop run needs: each
// API's largest step.
func (s Scenario) liveUsers() int {
	if s.Think <= 0 || len(s.Steps) == 0 {
		return 0
	}
	n := 0
	for i := range s.Steps[0].Rates {
		most := 0
		for _, st := range s.Steps {
			most = max(most, s.Users(st.Rates[i]))
		}
		n += most
	}
	return n
}

// stepDurations are the steps' lengths, in order.
func (s Scenario) stepDurations() []time.Duration {
	out := make([]time.Duration, len(s.Steps))
	for i, st := range s.Steps {
		out[i] = st.Duration
	}
	return out
}

// checkUsers refuses a closed-loop scenario with more users than MaxUsers
// in one step of one API.
func (s Scenario) checkUsers() error {
	if s.Think <= 0 {
		return nil
	}
	for i, st := range s.Steps {
		for j, r := range st.Rates {
			if s.Users(r) > MaxUsers {
				return fmt.Errorf("scenario %s: Steps[%d].Rates[%d] %g req/s with a think time of %v: more than %d users; shorten the think time", s.Name, i, j, r, s.Think, MaxUsers)
			}
		}
	}
	return nil
}

// Total is Warmup + Duration.
func (s Scenario) Total() time.Duration { return s.Warmup + s.Duration }

// ratesAt returns the offered rates of the step that covers time at.
func (s Scenario) ratesAt(at time.Duration) []float64 {
	var end time.Duration
	for _, st := range s.Steps {
		end += st.Duration
		if at < end {
			return st.Rates
		}
	}
	return s.Steps[len(s.Steps)-1].Rates
}

// demandAt is what closed-loop users offer at time at, per API, when
// every answer takes the API's no-queue latency (its calls' mean times,
// stretched by the slowdowns of that moment, and the slower dependencies
// then, at most the client timeout):
// users ÷ (think time + that latency). It stands for the offered load in
// the references of a closed-loop run, since the arrivals counted depend
// on the policy: one that keeps users waiting lowers them, and must not
// lower its own reference with them.
func (s Scenario) demandAt(app App, at time.Duration) []float64 {
	rates := s.ratesAt(at)
	extra := make([]time.Duration, len(app.Services)) // every API's
	own := make([][]time.Duration, len(app.APIs))     // one API's
	for _, d := range s.Delays {
		if d.At > at {
			continue
		}
		k := app.serviceIndex(d.Service)
		if d.API == "" {
			extra[k] = d.Extra
			continue
		}
		i := app.apiIndex(d.API)
		if own[i] == nil {
			own[i] = make([]time.Duration, len(app.Services))
		}
		own[i][k] = d.Extra
	}
	slow := s.slowdownAt(app, at)
	out := make([]float64, len(app.APIs))
	for i, api := range app.APIs {
		var latency time.Duration
		for _, c := range api.Calls {
			k := app.serviceIndex(c.Service)
			latency += time.Duration(float64(c.Time.Mean)*slow[k]) + extra[k]
			if own[i] != nil {
				latency += own[i][k]
			}
		}
		latency = min(latency, app.ClientTimeout)
		if n := s.Users(rates[i]); n > 0 {
			out[i] = float64(n) / (s.ThinkAt(rates[i]) + latency).Seconds()
		}
	}
	return out
}

// workersAt returns every service's worker count at time at, divided by
// its slowdown then: the worker-seconds of the model's service times that
// the service does per second, which is what the references need.
func (s Scenario) workersAt(app App, at time.Duration) []float64 {
	w := app.workers()
	for _, c := range s.Changes {
		if c.At <= at {
			w[app.serviceIndex(c.Service)] = float64(c.Workers)
		}
	}
	for k, f := range s.slowdownAt(app, at) {
		w[k] /= f
	}
	return w
}

// slowdownAt returns every service's slowdown factor at time at (1: none).
func (s Scenario) slowdownAt(app App, at time.Duration) []float64 {
	f := make([]float64, len(app.Services))
	for k := range f {
		f[k] = 1
	}
	for _, c := range s.Slowdowns {
		if c.At <= at {
			f[app.serviceIndex(c.Service)] = c.Factor
		}
	}
	return f
}

// validate checks a Scenario built by hand against app.
func (s Scenario) validate(app App) error {
	if len(s.Steps) == 0 {
		return fmt.Errorf("scenario %s: no steps", s.Name)
	}
	var total time.Duration
	for i, st := range s.Steps {
		if st.Duration <= 0 {
			return fmt.Errorf("scenario %s: Steps[%d].Duration %v: must be > 0", s.Name, i, st.Duration)
		}
		if len(st.Rates) != len(app.APIs) {
			return fmt.Errorf("scenario %s: Steps[%d].Rates: %d rates for %d APIs", s.Name, i, len(st.Rates), len(app.APIs))
		}
		for j, r := range st.Rates {
			if r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
				return fmt.Errorf("scenario %s: Steps[%d].Rates[%d] %v: must be finite and >= 0", s.Name, i, j, r)
			}
		}
		total += st.Duration
	}
	if total != s.Total() {
		return fmt.Errorf("scenario %s: steps last %v, want Warmup + Duration = %v", s.Name, total, s.Total())
	}
	if s.Think < 0 {
		return fmt.Errorf("scenario %s: Think %v: must be >= 0 (0: open-loop clients)", s.Name, s.Think)
	}
	if err := s.checkUsers(); err != nil {
		return err
	}
	for i, c := range s.Changes {
		if app.serviceIndex(c.Service) < 0 || c.Workers < 0 {
			return fmt.Errorf("scenario %s: Changes[%d]: service %q workers %d: no such service or negative workers", s.Name, i, c.Service, c.Workers)
		}
	}
	for i, c := range s.Slowdowns {
		if err := slowdownErr(app, c.Service, c.Factor); err != nil {
			return fmt.Errorf("scenario %s: Slowdowns[%d]: %w", s.Name, i, err)
		}
	}
	for i, d := range s.Delays {
		if k := app.serviceIndex(d.Service); k < 0 || app.Services[k].Workers != 0 || d.Extra < 0 {
			return fmt.Errorf("scenario %s: Delays[%d]: service %q extra %v: want an unbounded service and extra >= 0", s.Name, i, d.Service, d.Extra)
		}
		if d.API != "" && !app.calls(d.API, d.Service) {
			return fmt.Errorf("scenario %s: Delays[%d]: API %q does not call service %q", s.Name, i, d.API, d.Service)
		}
	}
	return nil
}
