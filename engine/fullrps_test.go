package engine_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
)

// Two policies at one selector: "a" limits concurrency to 2, "b" to 100,
// and each reads the flux meter's full_rps there.
const fullRpsPolicies = `package p
import bp "spillway.dev/blueprints"
for name, limit in {a: 2, b: 100} {
	policies: (name): bp.#Policy & {
		policy_name: name
		evaluation_interval: "1s"
		components: [
			{FluxMeter: {selector: control_point: "ingress", out_ports: full_rps: "FULL"}},
			{Variable: {value: limit, out_ports: output: "LIMIT"}},
			{ConcurrencyLimiter: {selector: control_point: "ingress", in_ports: limit: "LIMIT"}},
		]
	}
}
`

// TestFullRpsCountsThePolicysOwnLimit fills policy a's limit of 2 and
// refuses three more requests: a's flux meter reads 3 refusals at a full
// limit over the second, b's none, since its own limit of 100 never was.
func TestFullRpsCountsThePolicysOwnLimit(t *testing.T) {
	eng, clock := startManual(t, "p.cue", fullRpsPolicies)
	ingress := eng.ControlPoints().Get("ingress")
	eng.Tick() // the limits are set
	var held []controlpoint.Ticket
	for range 5 {
		if tk, d := ingress.Admit("GET /"); d == controlpoint.Accepted {
			held = append(held, tk)
		}
	}
	if len(held) != 2 {
		t.Fatalf("%d admitted under a limit of 2", len(held))
	}
	clock.Store(int64(time.Second))
	eng.Tick()
	for policy, want := range map[string]float64{"a": 3, "b": 0} {
		if got, err := eng.Signal(policy, "FULL"); err != nil || got != want {
			t.Errorf("policy %s: FULL = %v (%v), want %v", policy, got, err, want)
		}
	}
	for _, tk := range held {
		tk.Done(true)
	}
}

// startManual starts an engine on the policies of src (named file), ticked
// by hand on a clock the test sets; it is closed when the test ends.
func startManual(t *testing.T, file, src string) (*engine.Engine, *atomic.Int64) {
	t.Helper()
	specs, diags := engine.LoadSource(file, []byte(src))
	if len(diags.Errors()) > 0 {
		t.Fatal(diags)
	}
	clock := new(atomic.Int64)
	eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, ManualTicks: true, Clock: clock.Load})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng, clock
}
