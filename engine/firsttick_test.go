package engine_test

import (
	"math"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

// A new policy ticks as it loads; live, that tick runs the tick loop's
// wake-up after the load, and its flux meters' window is that short. One
// answer in it would read as 20,000 a second: the window has no rates,
// and the next tick's window counts from the load.
func TestTheTickAtLoadReadsNoRates(t *testing.T) {
	src := enginetest.Policy("p", "100ms", `{FluxMeter: {
		selector: {control_point: "ingress"}
		out_ports: {completed_rps: "C", incoming_rps: "I"}
	}},`)
	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "p.cue", src), Clock: clock.Now})
	cp := eng.ControlPoints().Get("ingress")
	tk, d := cp.Admit("GET /x")
	if d != controlpoint.Accepted {
		t.Fatal("not admitted")
	}
	clock.Advance(50 * time.Microsecond)
	tk.Done(true)
	if n := eng.TickDue(); n != 1 {
		t.Fatalf("ticked %d policies at the load, want 1", n)
	}
	if c, i := signalOf(t, eng, "p", "C"), signalOf(t, eng, "p", "I"); !math.IsNaN(c) || !math.IsNaN(i) {
		t.Errorf("50 µs after the load: completed_rps %v, incoming_rps %v; want no rates (NaN)", c, i)
	}
	clock.AdvanceTo(100 * time.Millisecond)
	if n := eng.TickDue(); n != 1 {
		t.Fatalf("ticked %d policies an interval after the load, want 1", n)
	}
	if c := signalOf(t, eng, "p", "C"); math.Abs(c-10) > 1e-9 {
		t.Errorf("an interval after the load: completed_rps %v, want 10 (the one answer over 100 ms)", c)
	}
}
