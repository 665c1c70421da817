package engine_test

import (
	"math"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

// TestWallTickWaitsForTheAgent drives the tick loop's steps by hand: a
// tick of an agent's policy observes, waits until the agent has posted a
// rate for each API or the wait is over, and only then evaluates, so the
// rates answer the tick they were computed from.
func TestWallTickWaitsForTheAgent(t *testing.T) {
	eng, clock := startAgents(t, agentSource("500", "100ms"))
	post := func(api string, rate float64) {
		t.Helper()
		if _, err := eng.SetAgentRate(api, rate); err != nil {
			t.Fatal(err)
		}
	}

	clock.AdvanceTo(time.Second)
	w := eng.TickWall(nil)
	if len(w) != 1 {
		t.Fatalf("after the first tick's observe %d policies wait, want 1", len(w))
	}
	if got := peekAgent(t, eng, "GET /a").Ticks; got != 1 {
		t.Fatalf("the agent sees tick %d while the tick waits, want 1", got)
	}
	if got := setpointOf(t, eng, "tf", "ingress/GET /a"); !math.IsNaN(got) {
		t.Fatalf("before the evaluation GET /a's rate is %v, want none", got)
	}
	post("GET /a", 50)
	if w = eng.TickWall(w); len(w) != 1 {
		t.Fatal("the tick evaluated with one of its two APIs answered")
	}
	post("GET /b", 60)
	if w = eng.TickWall(w); len(w) != 0 {
		t.Fatal("the tick still waits after the agent answered for both APIs")
	}
	if a, b := setpointOf(t, eng, "tf", "ingress/GET /a"), setpointOf(t, eng, "tf", "ingress/GET /b"); a != 50 || b != 60 {
		t.Fatalf("after the answer the rates are %v and %v, want 50 and 60 within the tick", a, b)
	}

	// A silent agent holds the tick for the wait, DefaultAgentWait, then
	// the tick evaluates with the last rates and counts the silence.
	clock.AdvanceTo(2 * time.Second)
	if w = eng.TickWall(nil); len(w) != 1 {
		t.Fatal("the second tick does not wait for a live agent")
	}
	clock.AdvanceTo(2*time.Second + engine.DefaultAgentWait - time.Millisecond)
	if w = eng.TickWall(w); len(w) != 1 {
		t.Fatal("the tick stopped waiting before DefaultAgentWait")
	}
	clock.AdvanceTo(2*time.Second + engine.DefaultAgentWait)
	if w = eng.TickWall(w); len(w) != 0 {
		t.Fatal("the tick still waits after DefaultAgentWait")
	}
	if got := setpointOf(t, eng, "tf", "ingress/GET /a"); got != 50 {
		t.Fatalf("after the wait GET /a's rate is %v, want its last 50", got)
	}

	// Once the silence puts every API on its fallback (agent_timeout 5
	// ticks), ticks no longer wait.
	for s := 3; s <= 7; s++ {
		clock.AdvanceTo(time.Duration(s) * time.Second)
		w = eng.TickWall(nil)
		clock.AdvanceTo(time.Duration(s)*time.Second + engine.DefaultAgentWait)
		eng.TickWall(w)
	}
	if got := agentMode(t, eng, "GET /a"); got != "fallback" {
		t.Fatalf("after 6 silent ticks GET /a's mode is %q, want fallback", got)
	}
	clock.AdvanceTo(8 * time.Second)
	if w = eng.TickWall(nil); len(w) != 0 {
		t.Fatal("a tick waits for an agent whose APIs are all on their fallback")
	}
}

// TestWallTickWithoutAgentWait evaluates at once when waits are off.
func TestWallTickWithoutAgentWait(t *testing.T) {
	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "tf.cue", agentSource("500", "100ms")), Clock: clock.Now, AgentWait: -1})
	if _, err := eng.SetAgentRate("GET /a", 50); err != nil {
		t.Fatal(err)
	}
	clock.AdvanceTo(time.Second)
	if w := eng.TickWall(nil); len(w) != 0 {
		t.Fatal("a tick waits with AgentWait < 0")
	}
	if got := setpointOf(t, eng, "tf", "ingress/GET /a"); got != 50 {
		t.Fatalf("GET /a's rate is %v, want 50", got)
	}
}
