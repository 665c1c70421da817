package testbed

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/rlbridge"
)

// SimServer runs virtual episodes in lock step with an agent and serves
// them through the RL bridge: it is the bridge's Backend (the current
// episode's engine, and the app model's per-service overload for GET
// /services) and its Stepper (/step, /reset).
type SimServer struct {
	// Episode returns the run of an episode; seed is the /reset seed, or
	// one drawn from the server's own sequence.
	Episode func(seed uint64) (SimConfig, error)
	// Grace is the lock step's wait for the agent (0: DefaultStepGrace).
	Grace time.Duration

	mu    sync.Mutex
	seeds *rand.Rand
	ep    *episode
}

type episode struct {
	cancel   context.CancelFunc
	lockstep *Lockstep
	done     chan struct{}
	eng      *engine.Engine         // set once the run has started; guarded by SimServer.mu
	ended    bool                   // the last Step saw the end of the run
	services []rlbridge.ServiceInfo // at the last Step; guarded by SimServer.mu
	app      App
	scenario Scenario
	report   Report
	err      error
}

// NewSimServer serves episodes; seed starts the sequence of episode seeds
// used when /reset names none.
func NewSimServer(seed uint64, grace time.Duration, episode func(seed uint64) (SimConfig, error)) *SimServer {
	return &SimServer{Episode: episode, Grace: grace, seeds: rand.New(rand.NewPCG(seed, 0x5eed))}
}

// Backend is the bridge's view of the current episode: its engine's APIs,
// and its services' loads at the last step.
func (s *SimServer) Backend() SimBackend {
	return SimBackend{EngineBackend: rlbridge.EngineBackend{Engine: func() *engine.Engine {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.ep == nil {
			return nil
		}
		return s.ep.eng
	}}, server: s}
}

// SimBackend is SimServer's bridge backend: the engine's APIs, and the
// app model's per-service overload (rlbridge.ServiceBackend).
type SimBackend struct {
	rlbridge.EngineBackend
	server *SimServer
}

// Services is every bounded service's load over the last agent tick (the
// one the last Step returned), in the app's order; none before the first
// Step. The simulator always has them.
func (b SimBackend) Services() ([]rlbridge.ServiceInfo, bool) {
	b.server.mu.Lock()
	defer b.server.mu.Unlock()
	if b.server.ep == nil {
		return []rlbridge.ServiceInfo{}, true
	}
	return slices.Clone(b.server.ep.services), true
}

// serviceInfos converts the simulator's loads for the bridge.
func serviceInfos(loads []ServiceLoad) []rlbridge.ServiceInfo {
	out := make([]rlbridge.ServiceInfo, len(loads))
	for i, l := range loads {
		util, queue := l.Utilisation, l.QueueingMs
		out[i] = rlbridge.ServiceInfo{Name: l.Name, Utilisation: &util, QueueingMs: &queue, Overloaded: l.Overloaded}
	}
	return out
}

// Reset ends the current episode, if any, and starts a new one, paused at
// its first agent tick.
func (s *SimServer) Reset(ctx context.Context, seed *uint64) error {
	s.mu.Lock()
	old := s.ep
	s.ep = nil
	var next uint64
	if seed != nil {
		next = *seed
	} else {
		next = s.seeds.Uint64()
	}
	s.mu.Unlock()
	if old != nil {
		old.cancel()
		<-old.done
	}
	cfg, err := s.Episode(next)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	ep := &episode{cancel: cancel, lockstep: &Lockstep{Grace: s.Grace}, done: make(chan struct{}), app: cfg.App, scenario: cfg.Scenario}
	started := make(chan struct{})
	cfg.Lockstep = ep.lockstep
	cfg.Virtual = true
	onEngine := cfg.OnEngine
	cfg.OnEngine = func(eng *engine.Engine) {
		if onEngine != nil {
			onEngine(eng)
		}
		s.mu.Lock()
		ep.eng = eng
		s.mu.Unlock()
		close(started)
	}
	go func() {
		defer close(ep.done)
		r, err := Simulate(runCtx, cfg)
		s.mu.Lock()
		ep.report, ep.err = r, err
		s.mu.Unlock()
	}()
	select {
	case <-started:
	case <-ep.done:
		cancel()
		return fmt.Errorf("episode %d did not start: %w", next, ep.err)
	case <-ctx.Done():
		cancel()
		return ctx.Err()
	}
	s.mu.Lock()
	s.ep = ep
	s.mu.Unlock()
	return nil
}

// Step advances the current episode by one agent tick (starting one if
// there is none) and returns every API's state at the new tick. The step
// after the run's last answers Done; the ones after that rlbridge.ErrDone.
func (s *SimServer) Step(ctx context.Context) (rlbridge.StepResult, error) {
	s.mu.Lock()
	ep := s.ep
	s.mu.Unlock()
	if ep == nil {
		if err := s.Reset(ctx, nil); err != nil {
			return rlbridge.StepResult{}, err
		}
		s.mu.Lock()
		ep = s.ep
		s.mu.Unlock()
	}
	s.mu.Lock()
	eng, ended := ep.eng, ep.ended
	s.mu.Unlock()
	if ended {
		return rlbridge.StepResult{}, rlbridge.ErrDone
	}
	eng.TouchAgents()
	st, err := ep.lockstep.Step(ctx)
	switch {
	case errors.Is(err, ErrRunEnded):
		s.mu.Lock()
		ep.ended = true
		s.mu.Unlock()
		<-ep.done
		res := ep.stepResult(StepState{NowNs: eng.Now(), APIs: eng.AgentAPIs()})
		res.Done = true
		return res, nil
	case err != nil:
		return rlbridge.StepResult{}, err
	}
	res := ep.stepResult(st)
	s.mu.Lock()
	ep.services = res.Services
	s.mu.Unlock()
	return res, nil
}

// Wait waits for the current episode to end and returns its report.
func (s *SimServer) Wait(ctx context.Context) (Report, error) {
	s.mu.Lock()
	ep := s.ep
	s.mu.Unlock()
	if ep == nil {
		return Report{}, errors.New("testbed: no episode is running")
	}
	select {
	case <-ep.done:
	case <-ctx.Done():
		return Report{}, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return ep.report, ep.err
}

// Close ends the current episode.
func (s *SimServer) Close() {
	s.mu.Lock()
	ep := s.ep
	s.mu.Unlock()
	if ep != nil {
		ep.cancel()
		<-ep.done
	}
}

// stepResult is the /step answer at st, with each API's optimal admission
// at the tick's offered loads and the workers of that moment.
func (ep *episode) stepResult(st StepState) rlbridge.StepResult {
	res := rlbridge.StepResult{TimeS: float64(st.NowNs) / 1e9, APIs: map[string]rlbridge.StepAPI{}, Services: serviceInfos(st.Services)}
	offered := make([]float64, len(ep.app.APIs))
	index := map[string]int{}
	for i, api := range ep.app.APIs {
		index[api.Label()] = i
	}
	for _, a := range st.APIs {
		if i, ok := index[a.Name]; ok {
			offered[i] = a.OfferedRPS
		}
	}
	optimal, err := ep.app.optimalRates(offered, ep.scenario.workersAt(ep.app, time.Duration(st.NowNs)))
	if err != nil {
		optimal = nil
	}
	for _, a := range st.APIs {
		res.Tick = max(res.Tick, int(a.Ticks))
		sa := rlbridge.StepAPI{Goodput: a.GoodputRPS, Latency: a.LatencyMs, OfferedRPS: a.OfferedRPS, RateLimit: a.RateLimit, Mode: a.Mode()}
		if i, ok := index[a.Name]; ok && optimal != nil {
			sa.OptimalRPS = optimal[i]
		}
		res.APIs[a.Name] = sa
	}
	return res
}

// TrainingAppSeedMin is the least seed of a random app (RandomAppOf) that
// RandomEpisodes trains on; the suite and the benchmarks use seeds below
// it, so no app an agent is measured on was seen in its training.
const TrainingAppSeedMin = 1 << 40

// RandomEpisodes are training episodes, each drawn from the episode's
// seed: one time in three a RandomApp (boutique's call graph, scaled),
// otherwise a generated app (RandomAppOf, seed at least
// TrainingAppSeedMin: heterogeneous costs, one to four bottlenecks,
// skewed mixes and priorities), under RandomScenario and protected by its
// TopFullPolicy.
func RandomEpisodes(seed uint64) (SimConfig, error) {
	app, sc := randomEpisode(seed)
	p, err := TopFullPolicy(app)
	if err != nil {
		return SimConfig{}, err
	}
	return SimConfig{App: app, Scenario: sc, Policy: p, Virtual: true, Seed: seed}, nil
}

// randomEpisode draws the app and scenario of RandomEpisodes(seed).
func randomEpisode(seed uint64) (App, Scenario) {
	rng := rand.New(rand.NewPCG(seed, 0xa9e47))
	var app App
	if rng.IntN(3) == 0 {
		app = RandomApp(rng)
	} else {
		app = RandomAppOf(TrainingAppSeedMin + rng.Uint64()>>24)
	}
	return app, RandomScenario(app, rng)
}
