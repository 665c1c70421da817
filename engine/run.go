package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/components"
)

// Options configures an engine.
type Options struct {
	// Policies is a directory of policy files (*.cue).
	Policies string
	// Specs are already-loaded policies; used instead of Policies when set.
	Specs []Spec
	// Clock returns monotonic nanoseconds. Default: time since Start.
	Clock func() int64
	// ManualTicks disables the engine's tickers; the caller drives every
	// policy with Tick (tests and the virtual-time simulator do).
	ManualTicks bool
	// Logger receives alerts and errors. Default: slog.Default().
	Logger *slog.Logger
}

// Engine runs policies against the control points of one process.
type Engine struct {
	opts     Options
	log      *slog.Logger
	registry *controlpoint.Registry

	mu       sync.Mutex // guards policies during swaps
	policies atomic.Pointer[[]*Running]
	wg       sync.WaitGroup
	stop     context.CancelFunc

	errMu      sync.Mutex
	lastErrors Diagnostics
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
	mu      sync.Mutex // serialises ticks with status reads
	taps    []tap
	sinks   []sink
	lastNs  int64
	alerts  map[string]uint64
	detach  []func()
}

type tap struct {
	source components.Source
	rec    *actuators.Recorder
}

type sink struct {
	comp    components.Sink
	limiter *controlpoint.Limiter
}

// Start loads and compiles the policies, attaches them to control points,
// and, unless ManualTicks, ticks each at its evaluation interval until ctx
// is done.
func Start(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Clock == nil {
		start := time.Now()
		opts.Clock = func() int64 { return int64(time.Since(start)) }
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	specs := opts.Specs
	if specs == nil && opts.Policies != "" {
		var diags Diagnostics
		specs, diags = LoadDir(opts.Policies)
		if len(diags.Errors()) > 0 {
			return nil, diags
		}
	}
	e := &Engine{opts: opts, log: opts.Logger, registry: controlpoint.NewRegistry(opts.Clock)}
	e.policies.Store(&[]*Running{})
	if err := e.Apply(specs); err != nil {
		return nil, err
	}
	ctx, e.stop = context.WithCancel(ctx)
	if !opts.ManualTicks {
		e.wg.Add(1)
		go e.tickLoop(ctx)
	}
	return e, nil
}

// Close stops the tickers and waits for them.
func (e *Engine) Close() {
	e.stop()
	e.wg.Wait()
}

// ControlPoints is the engine's registry of control points.
func (e *Engine) ControlPoints() *controlpoint.Registry { return e.registry }

// Now reads the engine's clock.
func (e *Engine) Now() int64 { return e.opts.Clock() }

// Apply compiles specs and swaps them in as the running set, all or
// nothing: on any error the running set is left untouched.
func (e *Engine) Apply(specs []Spec) error {
	var diags Diagnostics
	var next []*Running
	for _, s := range specs {
		c, d := Compile(s)
		diags = append(diags, d...)
		if c != nil {
			next = append(next, &Running{Circuit: c, alerts: map[string]uint64{}})
		}
	}
	if len(diags.Errors()) > 0 {
		diags = diags.sorted()
		e.setErrors(diags)
		return diags
	}
	e.setErrors(nil)
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Clock()
	for _, r := range next {
		e.attach(r, now)
	}
	old := e.policies.Swap(&next)
	for _, r := range *old {
		for _, d := range r.detach {
			d()
		}
	}
	return nil
}

// attach creates the policy's taps and actuators at its control points.
func (e *Engine) attach(r *Running, now int64) {
	c := r.Circuit
	for _, n := range c.sources {
		src := n.comp.(components.Source)
		sel := src.Selector().Normalized()
		rec := actuators.NewRecorder(sourceSLO(src))
		rec.Snapshot(now) // the first window starts at attach time
		api := e.registry.Get(sel.ControlPoint).API(sel.API)
		r.detach = append(r.detach, api.AttachTap(rec))
		r.taps = append(r.taps, tap{source: src, rec: rec})
	}
	for _, n := range c.sinks {
		snk := n.comp.(components.Sink)
		sel := snk.Selector().Normalized()
		l := &controlpoint.Limiter{}
		switch snk.Kind() {
		case components.RateSink:
			l.Bucket = actuators.NewTokenBucket(math.NaN(), 1, now)
		case components.ConcurrencySink:
			l.Concurrency = actuators.NewConcurrencyLimiter(math.NaN())
		}
		l.DryRun.Store(c.Spec.DryRun)
		api := e.registry.Get(sel.ControlPoint).API(sel.API)
		r.detach = append(r.detach, api.AttachLimiter(l))
		r.sinks = append(r.sinks, sink{comp: snk, limiter: l})
	}
	r.lastNs = now
}

// sourceSLO is the goodput threshold of a flux meter, if it declares one.
func sourceSLO(src components.Source) time.Duration {
	if s, ok := src.(interface{ SLO() time.Duration }); ok {
		return s.SLO()
	}
	return 0
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

func (e *Engine) tickLoop(ctx context.Context) {
	defer e.wg.Done()
	// One loop for every policy: wake at the finest interval and tick each
	// policy whose interval has elapsed on the engine clock.
	const resolution = 10 * time.Millisecond
	t := time.NewTicker(resolution)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := e.opts.Clock()
			for _, r := range e.Policies() {
				if time.Duration(now-r.last()) >= r.Circuit.Spec.EvaluationInterval {
					e.tickPolicy(r, now)
				}
			}
		}
	}
}

func (r *Running) last() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastNs
}

// tickPolicy runs one tick: snapshot the flux meters, evaluate the
// circuit, publish the setpoints.
func (e *Engine) tickPolicy(r *Running, now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.taps {
		w := t.rec.Snapshot(now)
		t.source.Observe(reading(&w))
	}
	r.Circuit.Tick()
	interval := r.Circuit.Spec.EvaluationInterval.Seconds()
	for _, s := range r.sinks {
		value, burst := s.comp.Setpoint()
		switch {
		case s.limiter.Bucket != nil:
			if !components.IsValid(burst) && components.IsValid(value) {
				burst = math.Max(1, value*interval) // one tick's worth of tokens
			}
			if components.IsValid(burst) {
				s.limiter.Bucket.SetBurst(burst)
			}
			s.limiter.Bucket.SetRate(value)
		case s.limiter.Concurrency != nil:
			s.limiter.Concurrency.SetLimit(value)
		}
	}
	for _, n := range r.Circuit.alerts {
		if name, firing := n.comp.(components.Alert).Firing(); firing {
			r.alerts[name]++
			e.log.Warn("spillway alert", "policy", r.Circuit.Spec.Name, "alert", name, "component", n.spec.Path)
		}
	}
	r.lastNs = now
}

// reading converts a recorder window into a flux-meter reading.
func reading(w *actuators.Window) components.FluxReading {
	return components.FluxReading{
		LatencyAvgMs: w.LatencyAvgMs(),
		LatencyP50Ms: w.QuantileMs(0.50),
		LatencyP90Ms: w.QuantileMs(0.90),
		LatencyP95Ms: w.QuantileMs(0.95),
		LatencyP99Ms: w.QuantileMs(0.99),
		IncomingRps:  w.Rate(w.Incoming),
		AcceptedRps:  w.Rate(w.Accepted),
		RejectedRps:  w.Rate(w.Rejected),
		GoodputRps:   w.Rate(w.Goodput),
		InFlight:     float64(w.InFlight),
		CompletedRps: w.Rate(w.Completed),
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
