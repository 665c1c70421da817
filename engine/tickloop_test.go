package engine_test

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

// variablePolicy is a one-component policy that ticks every interval.
func variablePolicy(t *testing.T, name, interval string) []engine.Spec {
	return enginetest.Load(t, name+".cue", enginetest.Policy(name, interval, `{Variable: {value: 1, out_ports: output: "V"}},`))
}

// startLoop starts an engine whose own tick loop runs on a virtual clock.
func startLoop(t *testing.T, specs []engine.Spec) (*engine.Engine, *enginetest.Clock) {
	t.Helper()
	clock := &enginetest.Clock{}
	eng, err := engine.Start(context.Background(), engine.Options{
		Specs: specs, Clock: clock.Now, WakeAt: clock.WakeAt,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng, clock
}

// sleepsUntil waits for the tick loop to go to sleep with one timer, set
// for deadline.
func sleepsUntil(t *testing.T, clock *enginetest.Clock, deadline time.Duration) {
	t.Helper()
	enginetest.Eventually(t, 10*time.Second, "the tick loop to sleep until "+deadline.String(), func() bool {
		return slices.Equal(clock.Deadlines(), []time.Duration{deadline})
	})
}

// tickTimes are the engine-clock times of policy's ticks.
func tickTimes(eng *engine.Engine, policy string) []time.Duration {
	var times []time.Duration
	for _, h := range eng.History(math.MinInt64) {
		if h.Policy == policy {
			for _, ns := range h.TimesNs {
				times = append(times, time.Duration(ns))
			}
		}
	}
	return times
}

// The tick loop sleeps on the engine clock until the next tick is due:
// it sets one timer, for exactly that time, and ticks nothing while the
// clock stands still. A tick that runs late (the machine was busy) does
// not move the ticks after it, and a stall skips the missed ticks rather
// than running them in a burst.
func TestTickLoopSleepsUntilTheNextDueTickWithoutDrift(t *testing.T) {
	const ms = time.Millisecond
	eng, clock := startLoop(t, variablePolicy(t, "p", "500ms"))

	sleepsUntil(t, clock, 500*ms)
	time.Sleep(30 * ms) // wall time passes; the virtual clock does not
	if got := tickTimes(eng, "p"); !slices.Equal(got, []time.Duration{0}) {
		t.Fatalf("ticks %v while the clock stood at the load, want [0s]", got)
	}
	sleepsUntil(t, clock, 500*ms) // still, and only, the one timer

	// Each tick runs 7 ms late; the schedule stays on the 500 ms grid.
	for i := 1; i <= 10; i++ {
		due := time.Duration(i) * 500 * ms
		clock.AdvanceTo(due + 7*ms)
		sleepsUntil(t, clock, due+500*ms)
	}
	want := []time.Duration{0}
	for i := 1; i <= 10; i++ {
		want = append(want, time.Duration(i)*500*ms+7*ms)
	}
	if got := tickTimes(eng, "p"); !slices.Equal(got, want) {
		t.Fatalf("ticks at %v, want %v", got, want)
	}

	// A stall of more than two intervals: one tick, then the grid again.
	clock.AdvanceTo(6400 * ms)
	sleepsUntil(t, clock, 6500*ms)
	clock.AdvanceTo(6500 * ms)
	sleepsUntil(t, clock, 7000*ms)
	if got := tickTimes(eng, "p")[11:]; !slices.Equal(got, []time.Duration{6400 * ms, 6500 * ms}) {
		t.Fatalf("after the stall, ticks at %v, want [6.4s 6.5s]", got)
	}
}

// A new policy ticks as it loads, not an interval later: until its first
// tick its actuators have no setpoint and fail open, and a service that
// starts under overload would let an interval of it through unchecked.
func TestTickLoopTicksANewPolicyAtOnce(t *testing.T) {
	const ms = time.Millisecond
	eng, clock := startLoop(t, variablePolicy(t, "p", "1s"))
	sleepsUntil(t, clock, 1000*ms)
	if got, want := tickTimes(eng, "p"), []time.Duration{0}; !slices.Equal(got, want) {
		t.Fatalf("p ticked at %v before its first interval elapsed, want %v", got, want)
	}
}

// A reload that shortens a policy's interval, or adds a policy with a
// shorter one, wakes the sleeping tick loop, which sleeps again until the
// earliest tick now due.
func TestTickLoopWakesForAShorterInterval(t *testing.T) {
	const ms = time.Millisecond
	eng, clock := startLoop(t, variablePolicy(t, "p", "1s"))
	clock.AdvanceTo(1000 * ms)
	sleepsUntil(t, clock, 2000*ms)

	// p now ticks every 100 ms, counted from its last tick at 1 s.
	clock.AdvanceTo(1050 * ms)
	if err := eng.Apply(variablePolicy(t, "p", "100ms")); err != nil {
		t.Fatal(err)
	}
	sleepsUntil(t, clock, 1100*ms)
	clock.AdvanceTo(1100 * ms)
	sleepsUntil(t, clock, 1200*ms)

	// q, added at 1.15 s, ticks at once and every 20 ms from then.
	clock.AdvanceTo(1150 * ms)
	both := append(variablePolicy(t, "p", "100ms"), variablePolicy(t, "q", "20ms")...)
	if err := eng.Apply(both); err != nil {
		t.Fatal(err)
	}
	sleepsUntil(t, clock, 1170*ms)
	clock.AdvanceTo(1170 * ms)
	sleepsUntil(t, clock, 1190*ms)

	// p's history restarted with its new interval.
	if got, want := tickTimes(eng, "p"), []time.Duration{1100 * ms}; !slices.Equal(got, want) {
		t.Fatalf("p ticked at %v since its reload, want %v", got, want)
	}
	if got, want := tickTimes(eng, "q"), []time.Duration{1150 * ms, 1170 * ms}; !slices.Equal(got, want) {
		t.Fatalf("q ticked at %v, want %v", got, want)
	}
}
