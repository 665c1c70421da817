package enginetest_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

func TestClockMovesOnlyForward(t *testing.T) {
	var c enginetest.Clock
	if c.Now() != 0 {
		t.Fatalf("a new clock reads %d, want 0", c.Now())
	}
	c.Advance(time.Second)
	c.AdvanceTo(500 * time.Millisecond) // in the past: no move
	if c.Now() != int64(time.Second) {
		t.Fatalf("after AdvanceTo a past instant the clock reads %d, want 1 s", c.Now())
	}
	c.AdvanceTo(3 * time.Second)
	if c.Now() != int64(3*time.Second) {
		t.Fatalf("after AdvanceTo(3 s) the clock reads %d", c.Now())
	}
	step := enginetest.Stepping(time.Millisecond)
	if a, b := step(), step(); b-a != int64(time.Millisecond) {
		t.Fatalf("a stepping clock read %d then %d, want 1 ms apart", a, b)
	}
}

// WakeAt's timers fire once the clock reaches them, at once when it
// already has, never when stopped, and Deadlines lists those pending.
func TestClockTimersFireWhenTheClockGetsThere(t *testing.T) {
	var c enginetest.Clock
	fired := map[string]int{}
	wake := func(name string) func() { return func() { fired[name]++ } }
	c.WakeAt(int64(2*time.Second), wake("2s"))
	c.WakeAt(int64(time.Second), wake("1s"))
	stop := c.WakeAt(int64(time.Second), wake("stopped"))
	stop()
	if got, want := c.Deadlines(), []time.Duration{time.Second, 2 * time.Second}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Deadlines() = %v, want %v", got, want)
	}
	c.Advance(time.Second)
	if !reflect.DeepEqual(fired, map[string]int{"1s": 1}) {
		t.Fatalf("at 1 s fired %v, want the 1 s timer once", fired)
	}
	c.AdvanceTo(5 * time.Second)
	c.WakeAt(int64(4*time.Second), wake("past"))
	if !reflect.DeepEqual(fired, map[string]int{"1s": 1, "2s": 1, "past": 1}) || len(c.Deadlines()) != 0 {
		t.Fatalf("at 5 s fired %v with %v pending, want every timer but the stopped one, once", fired, c.Deadlines())
	}
}

// A policy written with Policy loads, runs on a hand-ticked engine, and a
// second Load of the same source is an equal copy that shares nothing with
// the first.
func TestPolicyLoadsAndLoadReturnsCopies(t *testing.T) {
	src := enginetest.Policy("p", "1s", `{Variable: {value: 7, out_ports: output: "V"}},`)
	first := enginetest.Load(t, "p.cue", src)
	second := enginetest.Load(t, "p.cue", src)
	if len(first) != 1 || first[0].Name != "p" || first[0].EvaluationInterval != time.Second {
		t.Fatalf("specs %+v, want the one policy p ticking every 1 s", first)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("a second load differs from the first:\n%+v\n%+v", first, second)
	}
	second[0].Components[0].Type = "changed"
	if first[0].Components[0].Type == "changed" {
		t.Fatal("a second load shares its components with the first")
	}

	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Specs: first, Clock: clock.Now})
	clock.Advance(time.Second)
	eng.Tick()
	if v, err := eng.Signal("p", "V"); err != nil || v != 7 {
		t.Fatalf("V = %v, %v; want 7", v, err)
	}
}

func TestEventuallyWaitsForTheCondition(t *testing.T) {
	start := time.Now()
	enginetest.Eventually(t, 10*time.Second, "20 ms to pass", func() bool { return time.Since(start) > 20*time.Millisecond })
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("Eventually returned before its condition held")
	}
}
