package engine_test

import (
	"context"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
)

// explainPolicy: a rate limit on the whole control point computed from a
// Variable, fail-closed, and a concurrency limit of 1 on one API.
const explainPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: web: bp.#Policy & {
	policy_name: "web"
	evaluation_interval: "1s"
	components: [
		{Variable: {value: 10, out_ports: output: "CAPACITY"}},
		{Arithmetic: {operator: "mul", in_ports: {lhs: "CAPACITY", rhs: 0.5}, out_ports: output: "RATE"}},
		{RateLimiter: {selector: control_point: "web", fail_mode: "fail_closed", in_ports: {rate_limit: "RATE", burst: 1}}},
		{ConcurrencyLimiter: {selector: {control_point: "web", api: "GET /slow"}, in_ports: limit: 1}},
	]
}
`

func TestExplainRejectionNamesTheActuatorAndTheInputsOfItsTick(t *testing.T) {
	var now atomic.Int64
	eng := startWeb(t, explainPolicy, engine.Options{Clock: now.Load, StaleAfterTicks: 2})
	cp := eng.ControlPoints().Get("web")

	if _, ok := eng.ExplainRejection("elsewhere", "x", controlpoint.RateLimited); ok {
		t.Error("a control point no policy selects has an explanation")
	}

	// The bucket (5/s, burst 1) admits one request, then refuses.
	if _, d := cp.Admit("GET /fast"); d != controlpoint.Accepted {
		t.Fatalf("first request: %v", d)
	}
	if _, d := cp.Admit("GET /fast"); d != controlpoint.RateLimited {
		t.Fatalf("second request: %v, want rate limited", d)
	}
	x, ok := eng.ExplainRejection("web", "GET /fast", controlpoint.RateLimited)
	const wantRate = "web: components[2].RateLimiter rate_limit=5 from components[1].Arithmetic (CAPACITY=10, rhs=0.5)"
	if !ok || x.Text != wantRate || x.Policy != "web" || x.Component != "components[2].RateLimiter" || x.Kind != "rate" || x.Limit != 5 || x.Selector != "web/*" {
		t.Errorf("rate explanation %+v, want text %q", x, wantRate)
	}
	if x.RetryAfter <= 0 || x.RetryAfter > 200*time.Millisecond {
		t.Errorf("retry after %s, want the wait for the next token at 5/s, in (0, 200ms]", x.RetryAfter)
	}

	// Holding GET /slow's one slot refuses the next by concurrency.
	now.Add(int64(time.Second)) // a token for it
	ticket, d := cp.Admit("GET /slow")
	if d != controlpoint.Accepted {
		t.Fatalf("GET /slow: %v", d)
	}
	if _, d := cp.Admit("GET /slow"); d != controlpoint.ConcurrencyLimited {
		t.Fatalf("second GET /slow: %v, want concurrency limited", d)
	}
	x, ok = eng.ExplainRejection("web", "GET /slow", controlpoint.ConcurrencyLimited)
	if !ok || x.Text != "web: components[3].ConcurrencyLimiter limit=1 (in flight 1)" || x.RetryAfter != time.Second {
		t.Errorf("concurrency explanation %+v", x)
	}
	// Not knowing the kind, the refusing actuator is found.
	if x, _ := eng.ExplainRejection("web", "GET /slow", 0); x.Kind != "concurrency" {
		t.Errorf("kind unknown: explained %+v, want the full concurrency limit", x)
	}
	ticket.Done(true)

	// Without ticks the fail-closed bucket goes stale and refuses.
	now.Add(int64(3 * time.Second))
	if _, d := cp.Admit("GET /fast"); d != controlpoint.RateLimited {
		t.Fatalf("request to a stale fail-closed bucket: %v, want rate limited", d)
	}
	x, _ = eng.ExplainRejection("web", "GET /fast", controlpoint.RateLimited)
	if !strings.HasSuffix(x.Text, "RateLimiter fail_closed: setpoint stale for 4s") || !math.IsNaN(x.Limit) {
		t.Errorf("stale explanation %+v", x)
	}
}

// startWeb starts an engine on policy (the file web.cue) with opts,
// ticked by hand and logging nothing, closed when the test ends, and
// ticks it once.
func startWeb(t *testing.T, policy string, opts engine.Options) *engine.Engine {
	t.Helper()
	specs, diags := engine.LoadSource("web.cue", []byte(policy))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	opts.Specs, opts.ManualTicks, opts.Logger = specs, true, slog.New(slog.DiscardHandler)
	eng, err := engine.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	eng.Tick()
	return eng
}

// quarterPolicy: a concurrency limit of 8 shared by every API of "web",
// with the bulkhead on (the default).
const quarterPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: web: bp.#Policy & {
	policy_name: "web"
	evaluation_interval: "1s"
	components: [
		{ConcurrencyLimiter: {selector: control_point: "web", in_ports: limit: 8}},
	]
}
`

// TestExplainUnansweredQuarter: "pay"'s requests were all abandoned and
// "browse"'s answered, so pay is unanswered and held to a quarter of the
// limit (2 of 8). A refusal of pay's third request while the limit has
// room says why, instead of naming a limit that is not full.
func TestExplainUnansweredQuarter(t *testing.T) {
	var now atomic.Int64
	eng := startWeb(t, quarterPolicy, engine.Options{Clock: now.Load})
	cp := eng.ControlPoints().Get("web")
	for range 5 {
		tk, d := cp.Admit("pay")
		if d != controlpoint.Accepted {
			t.Fatalf("pay: %v", d)
		}
		tk.Abandon()
		tk, d = cp.Admit("browse")
		if d != controlpoint.Accepted {
			t.Fatalf("browse: %v", d)
		}
		tk.Done(true)
	}
	now.Add(int64(time.Second))
	eng.Tick()
	var held []controlpoint.Ticket
	for range 2 {
		tk, d := cp.Admit("pay")
		if d != controlpoint.Accepted {
			t.Fatalf("pay under the quarter: %v", d)
		}
		held = append(held, tk)
	}
	if _, d := cp.Admit("pay"); d != controlpoint.ConcurrencyLimited {
		t.Fatalf("pay beyond the quarter: %v, want ConcurrencyLimited", d)
	}
	x, ok := eng.ExplainRejection("web", "pay", controlpoint.ConcurrencyLimited)
	if !ok {
		t.Fatal("no explanation")
	}
	if !strings.Contains(x.Text, "API pay unanswered") || !strings.Contains(x.Text, "at most 2 in flight") {
		t.Errorf("refusal by the unanswered APIs' quarter explained as %q, want it to name pay as unanswered and the quarter of 2", x.Text)
	}
	for _, tk := range held {
		tk.Abandon()
	}
}
