package testbed

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// DefaultStepGrace is how long a virtual run waits, in wall time, for the
// agent's next step before it decides the agent is gone and runs on alone.
const DefaultStepGrace = 30 * time.Second

// ErrRunEnded is returned by Step once the run has ended.
var ErrRunEnded = errors.New("testbed: the run has ended")

// Lockstep couples a virtual run to an agent: the run pauses at every tick
// of a policy with an RLActuator, after the flux meters are read and before
// the circuit runs, until the agent calls Step. So one Step is one tick of
// virtual time, and the rates the agent sets while the run is paused apply
// from that very tick.
//
// If the agent does not step within Grace (wall time), the run stops
// waiting for it for good and runs on as fast as it can: the agent is gone,
// and its RLActuators fall back after their agent_timeout.
type Lockstep struct {
	// Grace is how long to wait for a step; 0 means DefaultStepGrace.
	Grace time.Duration

	once    sync.Once
	paused  chan StepState // the run is paused at a tick
	resume  chan struct{}
	ended   chan struct{}
	mu      sync.Mutex
	alone   bool // the agent missed its grace: never pause again
	started bool // the agent has stepped at least once
}

// StepState is where a paused run stands.
type StepState struct {
	Tick  int
	NowNs int64
	APIs  []engine.AgentAPI
	// Services are the bounded services' loads since the last agent tick.
	Services []ServiceLoad
}

func (l *Lockstep) init() {
	l.once.Do(func() {
		l.paused = make(chan StepState)
		l.resume = make(chan struct{})
		l.ended = make(chan struct{})
	})
}

// pause is called by the run at an agent tick, with the services' loads
// since the last one; it returns when the agent steps, the grace expires
// or ctx is done.
func (l *Lockstep) pause(ctx context.Context, eng *engine.Engine, now int64, services []ServiceLoad) {
	l.init()
	l.mu.Lock()
	alone := l.alone
	l.mu.Unlock()
	if alone {
		return
	}
	grace := l.Grace
	if grace <= 0 {
		grace = DefaultStepGrace
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	st := StepState{NowNs: now, APIs: eng.AgentAPIs(), Services: services}
	if len(st.APIs) > 0 {
		st.Tick = int(st.APIs[0].Ticks)
	}
	select {
	case l.paused <- st:
	case <-ctx.Done():
		return
	case <-timer.C:
		l.goAlone()
		return
	}
	select {
	case <-l.resume:
	case <-ctx.Done():
	case <-timer.C:
		l.goAlone()
	}
}

func (l *Lockstep) goAlone() {
	l.mu.Lock()
	l.alone = true
	l.mu.Unlock()
}

// end is called by the run when it has ended.
func (l *Lockstep) end() {
	l.init()
	close(l.ended)
}

// Step resumes a paused run (the first Step only waits for the first
// pause) and returns the state at the next agent tick, or ErrRunEnded.
func (l *Lockstep) Step(ctx context.Context) (StepState, error) {
	l.init()
	l.mu.Lock()
	first := !l.started
	l.started = true
	l.mu.Unlock()
	if !first {
		select {
		case l.resume <- struct{}{}:
		case <-l.ended:
			return StepState{}, ErrRunEnded
		case <-ctx.Done():
			return StepState{}, ctx.Err()
		}
	}
	select {
	case st := <-l.paused:
		return st, nil
	case <-l.ended:
		return StepState{}, ErrRunEnded
	case <-ctx.Done():
		return StepState{}, ctx.Err()
	}
}
