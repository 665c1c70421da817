// Package enginetest holds the fixtures that tests of the engine and of the
// packages built on it share: a virtual clock moved by hand, an engine
// ticked by hand on it, one-policy files written inline, and a poll for
// conditions that come true on another goroutine. Tests import it; the
// library never does.
package enginetest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/testcli"
)

// Clock is a virtual monotonic clock in nanoseconds, for
// engine.Options.Clock, with timers for engine.Options.WakeAt: it reads 0
// until the test moves it, and a move fires the timers it reaches. Safe
// for concurrent use.
type Clock struct {
	ns     atomic.Int64
	mu     sync.Mutex
	timers map[*clockTimer]struct{}
}

type clockTimer struct {
	deadline int64
	wake     func()
}

// Now is the clock's reading in nanoseconds.
func (c *Clock) Now() int64 { return c.ns.Load() }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.ns.Add(int64(d))
	c.fire()
}

// AdvanceTo moves the clock forward to t after its zero; a clock already
// past t stays where it is, so time never runs backwards.
func (c *Clock) AdvanceTo(t time.Duration) {
	for {
		now := c.ns.Load()
		if int64(t) <= now || c.ns.CompareAndSwap(now, int64(t)) {
			break
		}
	}
	c.fire()
}

// WakeAt calls wake once the clock reads at least deadline: at once if it
// already does, else from the Advance or AdvanceTo that gets there. The
// function it returns cancels the call if it has not happened.
func (c *Clock) WakeAt(deadline int64, wake func()) (stop func()) {
	t := &clockTimer{deadline: deadline, wake: wake}
	c.mu.Lock()
	if c.timers == nil {
		c.timers = map[*clockTimer]struct{}{}
	}
	c.timers[t] = struct{}{}
	c.mu.Unlock()
	c.fire()
	return func() {
		c.mu.Lock()
		delete(c.timers, t)
		c.mu.Unlock()
	}
}

// Deadlines are the deadlines of the timers set with WakeAt that have
// neither fired nor been stopped, earliest first.
func (c *Clock) Deadlines() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var d []time.Duration
	for t := range c.timers {
		d = append(d, time.Duration(t.deadline))
	}
	slices.Sort(d)
	return d
}

// fire calls, outside the lock, the timers the clock has reached.
func (c *Clock) fire() {
	now := c.ns.Load()
	var due []*clockTimer
	c.mu.Lock()
	for t := range c.timers {
		if t.deadline <= now {
			due = append(due, t)
			delete(c.timers, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		t.wake()
	}
}

// Stepping is a clock that moves forward by step at every read: for tests
// that need time to pass but not any particular amount of it.
func Stepping(step time.Duration) func() int64 {
	var ns atomic.Int64
	return func() int64 { return ns.Add(int64(step)) }
}

// Policy is a policy file that declares one hand-written policy, name,
// ticking every interval (a CUE duration such as "1s"; empty for the
// schema's default), made of components: the CUE list elements, one per
// line, each followed by a comma.
func Policy(name, interval, components string) string {
	every := ""
	if interval != "" {
		every = fmt.Sprintf("\n\tevaluation_interval: %q", interval)
	}
	return fmt.Sprintf(`
package t
import bp "spillway.dev/blueprints"
policies: %[1]q: bp.#Policy & {
	policy_name: %[1]q%[2]s
	components: [
		%[3]s
	]
}
`, name, every, components)
}

// loaded holds the specs Load has evaluated, JSON-encoded by file name,
// source and caps.
var loaded sync.Map

// Load evaluates src as the policy file name and fails the test on any
// diagnostic, warnings included: a fixture is expected to be clean.
//
// The first load of a source goes through engine.LoadSource, as every load
// does in production; later loads of the same source in this test binary
// decode a copy of the first result, which is how the engine receives
// specs from its evaluator process anyway. A CUE evaluation costs up to
// seconds under the race detector, and table tests load one fixture per
// case. Tests of loading itself call engine.LoadSource.
func Load(t testing.TB, name, src string) []engine.Spec {
	t.Helper()
	key := fmt.Sprintf("%s\x00%s\x00%+v", name, src, engine.Caps)
	if encoded, ok := loaded.Load(key); ok {
		var specs []engine.Spec
		if err := json.Unmarshal(encoded.([]byte), &specs); err != nil {
			t.Fatalf("%s: decoding the specs loaded before: %v", name, err)
		}
		return specs
	}
	specs, diags := engine.LoadSource(name, []byte(src))
	if len(diags) > 0 {
		t.Fatalf("%s: %v", name, diags)
	}
	encoded, err := json.Marshal(specs)
	if err != nil {
		t.Fatalf("%s: encoding the specs: %v", name, err)
	}
	loaded.Store(key, encoded)
	return specs
}

// Start starts an engine whose ticks the test drives (engine.Engine.Tick)
// and closes it when the test ends. Unless opts says otherwise, its logs
// are discarded and its clock steps 1 ms at each read.
func Start(t testing.TB, opts engine.Options) *engine.Engine {
	t.Helper()
	opts.ManualTicks = true
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = Stepping(time.Millisecond)
	}
	eng, err := engine.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

// pollEvery is how often Eventually checks: short against a reload or a
// tick, long enough not to take a core from what it waits for.
const pollEvery = 5 * time.Millisecond

// Eventually checks cond until it holds and fails the test, naming what it
// waited for, if it still does not after limit. It replaces fixed sleeps:
// a test waits as long as the machine needs and not a moment more.
func Eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s still waiting for %s", limit, what)
		}
		time.Sleep(pollEvery)
	}
}

// Main is the body of a TestMain whose tests load policies: the spillway
// CLI, built without the race detector (testcli), evaluates them as
// engine.Limits.Evaluator, a real bounded child as in production; under
// -race the test binary re-executed would evaluate them about six times
// slower. It returns the exit code for os.Exit. engine's own tests keep
// the default evaluator covered.
func Main(m *testing.M) int {
	return testcli.Main(m, func(cli string) { engine.Limits.Evaluator = cli })
}
