package engine_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

// agentPolicy puts two APIs of the control point "ingress" under agent
// control with no fallback (silence means no limit). Its RLActuators are
// components[1] (GET /a, signals *_0) and components[5] (GET /b, *_1).
const agentPolicy = `
package policies
import "spillway.dev/blueprints/topfull"
policies: "tf": topfull.#Policy & {
	config: {
		policy_name: "tf"
		fallback: "none"
		apis: [
			{name: "GET /a", control_point: "ingress", priority: 2, lower_bound: 10, upper_bound: {{UPPER_A}}},
			{name: "GET /b", control_point: "ingress", slo: "{{SLO_B}}"},
		]
	}
}
`

// agentSource is agentPolicy with GET /a's upper bound and GET /b's SLO.
func agentSource(upperA, sloB string) string {
	return strings.NewReplacer("{{UPPER_A}}", upperA, "{{SLO_B}}", sloB).Replace(agentPolicy)
}

// startAgents starts an engine on src with ticks and time driven by hand;
// the virtual clock reads 0 at Start.
func startAgents(t *testing.T, src string) (*engine.Engine, *enginetest.Clock) {
	t.Helper()
	clock := &enginetest.Clock{}
	return enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "tf.cue", src), Clock: clock.Now}), clock
}

// peekAgent is AgentAPIs' entry for name. Unlike AgentAPI, it is not a
// contact from the agent.
func peekAgent(t *testing.T, eng *engine.Engine, name string) engine.AgentAPI {
	t.Helper()
	for _, a := range eng.AgentAPIs() {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("AgentAPIs has no %q: %+v", name, eng.AgentAPIs())
	return engine.AgentAPI{}
}

// agentMode is the Mode /status shows for api.
func agentMode(t *testing.T, eng *engine.Engine, api string) string {
	t.Helper()
	for _, a := range eng.Status().Agents {
		if a.API == api {
			return a.Mode
		}
	}
	t.Fatalf("status has no agent API %q", api)
	return ""
}

// setpointOf is the rate of the token bucket that policy attached at
// selector ("control_point/api"), as /status shows it; NaN is no limit.
func setpointOf(t *testing.T, eng *engine.Engine, policy, selector string) float64 {
	t.Helper()
	for _, p := range eng.Status().Policies {
		if p.Name != policy {
			continue
		}
		for _, a := range p.Actuators {
			if a.Selector == selector {
				return float64(a.Setpoint)
			}
		}
	}
	t.Fatalf("policy %s has no actuator at %s", policy, selector)
	return 0
}

func signalOf(t *testing.T, eng *engine.Engine, policy, name string) float64 {
	t.Helper()
	v, err := eng.Signal(policy, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// admitEveryMs offers one request to api every millisecond for n ms,
// starting 1 ms from now; each admitted one finishes at once. It returns
// how many were admitted.
func admitEveryMs(clock *enginetest.Clock, cp *controlpoint.ControlPoint, api string, n int) (admitted int) {
	for range n {
		clock.Advance(time.Millisecond)
		if tk, d := cp.Admit(api); d == controlpoint.Accepted {
			tk.Done(true)
			admitted++
		}
	}
	return admitted
}

func TestAgentAPIsDescribeEveryAPIUnderAgentControl(t *testing.T) {
	eng, _ := startAgents(t, agentSource("500", "100ms"))
	// Ordered by cluster, then priority: GET /b has the default priority 1.
	// Before any tick the rate is the initial rate 1000, clamped to GET
	// /a's upper bound 500; the blueprint bounds GET /b to [10, 100000].
	want := []engine.AgentAPI{
		{Name: "GET /b", Policy: "tf", Cluster: "default", Priority: 1, SLO: 100 * time.Millisecond,
			LowerBound: 10, UpperBound: 100000, RateLimit: 1000},
		{Name: "GET /a", Policy: "tf", Cluster: "default", Priority: 2, SLO: time.Second,
			LowerBound: 10, UpperBound: 500, RateLimit: 500},
	}
	got := eng.AgentAPIs()
	if len(got) != len(want) {
		t.Fatalf("AgentAPIs() = %+v, want %+v", got, want)
	}
	// Before any tick no limit is in force (NaN), which == cannot compare.
	noLimit := func(a engine.AgentAPI) engine.AgentAPI {
		if !math.IsNaN(a.LimitInForce) {
			t.Errorf("%s: LimitInForce %v before any tick, want NaN (none)", a.Name, a.LimitInForce)
		}
		a.LimitInForce = 0
		return a
	}
	for i := range want {
		if g := noLimit(got[i]); !reflect.DeepEqual(g, want[i]) {
			t.Errorf("AgentAPIs()[%d] = %+v, want %+v", i, g, want[i])
		}
	}
	for _, w := range want {
		if a, ok := eng.AgentAPI(w.Name); !ok || !reflect.DeepEqual(noLimit(a), w) {
			t.Errorf("AgentAPI(%q) = %+v, %v; want %+v, true", w.Name, a, ok, w)
		}
	}
	if a, ok := eng.AgentAPI("GET /nope"); ok {
		t.Errorf("AgentAPI of an API no RLActuator controls = %+v, true; want false", a)
	}
	wantStatus := []engine.AgentStatus{
		{API: "GET /b", Policy: "tf", Cluster: "default", Priority: 1, RateLimit: 1000, Mode: "agent"},
		{API: "GET /a", Policy: "tf", Cluster: "default", Priority: 2, RateLimit: 500, Mode: "agent"},
	}
	st := eng.Status().Agents
	for i := range st {
		if !math.IsNaN(float64(st[i].LimitInForce)) {
			t.Errorf("Status().Agents[%d].LimitInForce = %v before any tick, want NaN", i, st[i].LimitInForce)
		}
		st[i].LimitInForce = 0
	}
	if len(st) != 2 || st[0] != wantStatus[0] || st[1] != wantStatus[1] {
		t.Errorf("Status().Agents = %+v, want %+v", st, wantStatus)
	}
}

func TestAgentAPIsAreOrderedByClusterPriorityAndName(t *testing.T) {
	eng, _ := startAgents(t, `
package policies
import "spillway.dev/blueprints/topfull"
policies: "tf": topfull.#Policy & {
	config: {
		policy_name: "tf"
		fallback: "none"
		apis: [
			{name: "GET /z", control_point: "ingress", priority: 2},
			{name: "GET /y", control_point: "ingress", priority: 2},
			{name: "GET /x", control_point: "ingress", priority: 3, cluster: "a"},
			{name: "GET /w", control_point: "ingress", priority: 1},
		]
	}
}
`)
	var got []string
	for _, a := range eng.AgentAPIs() {
		got = append(got, a.Cluster+" "+a.Name)
	}
	want := []string{"a GET /x", "default GET /w", "default GET /y", "default GET /z"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("AgentAPIs() order %q, want %q", got, want)
	}
}

func TestSetAgentRate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		api     string
		rate    float64
		want    float64 // the rate returned and in force after the next tick
		wantErr string
		unknown bool // the error wraps ErrUnknownAgentAPI
	}{
		{name: "a rate within the bounds is kept", api: "GET /a", rate: 50, want: 50},
		{name: "a fractional rate is kept, not truncated", api: "GET /a", rate: 123.456, want: 123.456},
		{name: "the bounds themselves are kept", api: "GET /a", rate: 500, want: 500},
		{name: "a rate below lower_bound is raised to it", api: "GET /a", rate: 5, want: 10},
		{name: "0 is raised to lower_bound", api: "GET /a", rate: 0, want: 10},
		{name: "a rate above upper_bound is cut to it", api: "GET /a", rate: 600, want: 500},
		{name: "the blueprint's default upper bound is 100000", api: "GET /b", rate: 1e6, want: 100000},
		{name: "NaN is rejected", api: "GET /a", rate: math.NaN(), wantErr: "rate NaN: must be finite and >= 0"},
		{name: "a negative rate is rejected", api: "GET /a", rate: -1, wantErr: "rate -1: must be finite and >= 0"},
		{name: "+Inf is rejected", api: "GET /a", rate: math.Inf(1), wantErr: "rate +Inf: must be finite and >= 0"},
		{name: "-Inf is rejected", api: "GET /a", rate: math.Inf(-1), wantErr: "rate -Inf: must be finite and >= 0"},
		{name: "an API no RLActuator controls is rejected", api: "GET /nope", rate: 50,
			wantErr: `"GET /nope": no running RLActuator controls this API`, unknown: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, clock := startAgents(t, agentSource("500", "100ms"))
			before := map[string]float64{"GET /a": 500, "GET /b": 1000} // initial rates
			got, err := eng.SetAgentRate(tc.api, tc.rate)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("SetAgentRate(%q, %v) = %v, %v; want error %q", tc.api, tc.rate, got, err, tc.wantErr)
				}
				if !math.IsNaN(got) {
					t.Errorf("SetAgentRate returned %v with its error, want NaN", got)
				}
				if errors.Is(err, engine.ErrUnknownAgentAPI) != tc.unknown {
					t.Errorf("errors.Is(%v, ErrUnknownAgentAPI) = %v, want %v", err, !tc.unknown, tc.unknown)
				}
				clock.Advance(time.Second)
				eng.Tick()
				for api, rate := range before {
					if a := peekAgent(t, eng, api); a.RateLimit != rate {
						t.Errorf("after a rejected rate, %s RateLimit = %v, want the initial %v", api, a.RateLimit, rate)
					}
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("SetAgentRate(%q, %v) = %v, %v; want %v, nil", tc.api, tc.rate, got, err, tc.want)
			}
			// The rate is in force from the API's next tick on.
			if a := peekAgent(t, eng, tc.api); a.RateLimit != before[tc.api] {
				t.Errorf("before the tick RateLimit = %v, want still %v", a.RateLimit, before[tc.api])
			}
			clock.Advance(time.Second)
			eng.Tick()
			if a := peekAgent(t, eng, tc.api); a.RateLimit != tc.want {
				t.Errorf("after the tick RateLimit = %v, want %v", a.RateLimit, tc.want)
			}
			if got := setpointOf(t, eng, "tf", "ingress/"+tc.api); got != tc.want {
				t.Errorf("after the tick the token bucket's rate = %v, want %v", got, tc.want)
			}
		})
	}
}

// The agent's rate reaches the token bucket at the next tick, with the
// blueprint's burst: max(0.05 s of the rate, 5 requests).
func TestAgentRateLimitsTheAPIFromTheNextTick(t *testing.T) {
	eng, clock := startAgents(t, agentSource("500", "100ms"))
	ingress := eng.ControlPoints().Get("ingress")
	if _, err := eng.SetAgentRate("GET /a", 50); err != nil {
		t.Fatal(err)
	}
	// Before the first tick no limit is in force: the rate is not yet applied.
	if got := admitEveryMs(clock, ingress, "GET /a", 100); got != 100 {
		t.Fatalf("before the first tick admitted %d of 100, want all", got)
	}
	clock.AdvanceTo(time.Second)
	eng.Tick()
	for _, s := range []struct {
		name string
		want float64
	}{{"AGENT_RATE_0", 50}, {"RATE_LIMIT_0", 50}, {"USING_FALLBACK_0", 0}, {"BURST_0", 5}} {
		if got := signalOf(t, eng, "tf", s.name); got != s.want {
			t.Errorf("%s = %v, want %v", s.name, got, s.want)
		}
	}
	if got := setpointOf(t, eng, "tf", "ingress/GET /a"); got != 50 {
		t.Errorf("token bucket rate %v, want 50", got)
	}
	// One arrival per ms over the next second: the full 5-token burst goes
	// at 1-5 ms, and 50/s refills from the first arrival on, at 1 ms:
	// 5 + floor(50 × 0.999) = 54.
	if got := admitEveryMs(clock, ingress, "GET /a", 1000); got != 54 {
		t.Errorf("admitted %d of 1000 in the second after the tick, want 54", got)
	}
	// GET /b keeps its own (initial) rate.
	if got := setpointOf(t, eng, "tf", "ingress/GET /b"); got != 1000 {
		t.Errorf("GET /b token bucket rate %v, want its initial 1000", got)
	}

	// A new rate waits for the next tick, and a fraction survives the trip.
	if _, err := eng.SetAgentRate("GET /a", 123.456); err != nil {
		t.Fatal(err)
	}
	if got := setpointOf(t, eng, "tf", "ingress/GET /a"); got != 50 {
		t.Errorf("between ticks the token bucket rate is %v, want still 50", got)
	}
	eng.Tick()
	if got := setpointOf(t, eng, "tf", "ingress/GET /a"); got != 123.456 {
		t.Errorf("after the tick the token bucket rate is %v, want 123.456", got)
	}
	if got := signalOf(t, eng, "tf", "RATE_LIMIT_0"); got != 123.456 {
		t.Errorf("RATE_LIMIT_0 = %v, want 123.456", got)
	}
}

// TestAgentAPIReportsTheLastTick drives GET /b (SLO 100 ms) through four
// 1-second ticks and reads what the agent sees after each.
func TestAgentAPIReportsTheLastTick(t *testing.T) {
	eng, clock := startAgents(t, agentSource("500", "100ms"))
	ingress := eng.ControlPoints().Get("ingress")
	admit := func(n int) []controlpoint.Ticket {
		t.Helper()
		var tickets []controlpoint.Ticket
		for range n {
			tk, d := ingress.Admit("GET /b")
			if d != controlpoint.Accepted {
				t.Fatalf("GET /b refused at %v", time.Duration(clock.Now()))
			}
			tickets = append(tickets, tk)
		}
		return tickets
	}
	done := func(tickets []controlpoint.Ticket, ok bool) {
		for _, tk := range tickets {
			tk.Done(ok)
		}
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 0.02*want } // histogram error ≤ 2 %

	// Tick 1, [0 s, 1 s]: 35 requests arrive at 100 ms. 5 fail after 10 ms,
	// 19 succeed after 50 ms and 1 after exactly the SLO, 10 succeed after
	// 200 ms, too late to be goodput. p95 is within the 200 ms group.
	clock.AdvanceTo(100 * time.Millisecond)
	failed, fast, atSLO, slow := admit(5), admit(19), admit(1), admit(10)
	clock.AdvanceTo(110 * time.Millisecond)
	done(failed, false)
	clock.AdvanceTo(150 * time.Millisecond)
	done(fast, true)
	clock.AdvanceTo(200 * time.Millisecond)
	done(atSLO, true)
	clock.AdvanceTo(300 * time.Millisecond)
	done(slow, true)
	clock.AdvanceTo(time.Second)
	eng.Tick()
	first, ok := eng.AgentAPI("GET /b")
	if !ok {
		t.Fatal("AgentAPI(GET /b) not found")
	}
	if first.OfferedRPS != 35 || first.GoodputRPS != 20 || !near(first.LatencyMs, 200) || first.Ticks != 1 {
		t.Errorf("tick 1: offered %v goodput %v latency %v ms ticks %d; want 35, 20 (OK within the SLO, the bound included), 200 ± 2 %%, 1",
			first.OfferedRPS, first.GoodputRPS, first.LatencyMs, first.Ticks)
	}
	// Reading resets nothing: a second read is the same.
	if again, _ := eng.AgentAPI("GET /b"); !reflect.DeepEqual(again, first) {
		t.Errorf("second read %+v, want the first %+v", again, first)
	}
	if a := peekAgent(t, eng, "GET /a"); a.OfferedRPS != 0 || a.GoodputRPS != 0 || a.LatencyMs != 0 || a.Ticks != 1 {
		t.Errorf("tick 1: idle GET /a reports %+v, want zeros and 1 tick", a)
	}
	for _, s := range eng.Status().Agents {
		if s.API == "GET /b" && (float64(s.OfferedRPS) != first.OfferedRPS || float64(s.GoodputRPS) != first.GoodputRPS || float64(s.LatencyMs) != first.LatencyMs) {
			t.Errorf("status shows %+v, AgentAPI %+v", s, first)
		}
	}

	// Tick 2, [1 s, 2 s]: one request arrives at 1.1 s and is still in
	// flight at 2 s. Latency is its age, 900 ms, read to within 134 ms: not
	// tick 1's p95.
	clock.AdvanceTo(1100 * time.Millisecond)
	stuck := admit(1)
	clock.AdvanceTo(2 * time.Second)
	eng.Tick()
	if a, _ := eng.AgentAPI("GET /b"); a.OfferedRPS != 1 || a.GoodputRPS != 0 || a.LatencyMs < 900 || a.LatencyMs > 900+134 || a.Ticks != 2 {
		t.Errorf("tick 2 (in flight): offered %v goodput %v latency %v ms ticks %d; want 1, 0, 900 to 1034 ms, 2",
			a.OfferedRPS, a.GoodputRPS, a.LatencyMs, a.Ticks)
	}

	// Tick 3, [2 s, 3 s]: it completes at 2.5 s after 1.4 s, OK but past
	// the SLO; nothing arrives.
	clock.AdvanceTo(2500 * time.Millisecond)
	done(stuck, true)
	clock.AdvanceTo(3 * time.Second)
	eng.Tick()
	if a, _ := eng.AgentAPI("GET /b"); a.OfferedRPS != 0 || a.GoodputRPS != 0 || !near(a.LatencyMs, 1400) || a.Ticks != 3 {
		t.Errorf("tick 3: offered %v goodput %v latency %v ms ticks %d; want 0, 0, 1400 ± 2 %%, 3",
			a.OfferedRPS, a.GoodputRPS, a.LatencyMs, a.Ticks)
	}

	// Tick 4, [3 s, 4 s]: idle. Latency is 0, not tick 3's p95.
	clock.AdvanceTo(4 * time.Second)
	eng.Tick()
	if a, _ := eng.AgentAPI("GET /b"); a.OfferedRPS != 0 || a.GoodputRPS != 0 || a.LatencyMs != 0 || a.Ticks != 4 {
		t.Errorf("tick 4 (idle): offered %v goodput %v latency %v ticks %d; want 0, 0, 0, 4",
			a.OfferedRPS, a.GoodputRPS, a.LatencyMs, a.Ticks)
	}
}

// An agent that stays silent for agent_timeout (5) ticks loses control of
// the API to the fallback, here none (no limit); any contact gives it back
// at the next tick. Contacts are per API, except TouchAgents.
func TestAgentSilenceSwitchesToTheFallback(t *testing.T) {
	eng, clock := startAgents(t, agentSource("500", "100ms"))
	ingress := eng.ControlPoints().Get("ingress")
	nan := math.NaN()
	silent := func(*engine.Engine) {}
	read := func(e *engine.Engine) { e.AgentAPI("GET /a") }
	set := func(e *engine.Engine) { e.SetAgentRate("GET /a", 50) }
	touch := func(e *engine.Engine) { e.TouchAgents() }
	for i, tk := range []struct {
		what string
		// before is the agent's action before the tick.
		before func(*engine.Engine)
		// Modes of GET /a and GET /b, and GET /a's rate limit (NaN: none).
		wantA, wantB string
		wantRateA    float64
	}{
		{"silent 1", silent, "agent", "agent", 500},
		{"silent 2", silent, "agent", "agent", 500},
		{"silent 3", silent, "agent", "agent", 500},
		{"silent 4", silent, "agent", "agent", 500},
		{"silent 5 = agent_timeout", silent, "fallback", "fallback", nan},
		{"silent 6", silent, "fallback", "fallback", nan},
		{"SetAgentRate on GET /a", set, "agent", "fallback", 50},
		{"TouchAgents", touch, "agent", "agent", 50},
		{"GET /b silent 1", set, "agent", "agent", 50},
		{"GET /b silent 2", set, "agent", "agent", 50},
		{"GET /b silent 3", set, "agent", "agent", 50},
		{"GET /b silent 4", set, "agent", "agent", 50},
		{"GET /b silent 5", set, "agent", "fallback", 50},
		// Reads (GET /metrics) are not contacts: a scraper polling them
		// must not keep a dead agent's rate in force.
		{"AgentAPI reads only 1", read, "agent", "fallback", 50},
		{"AgentAPI reads only 2", read, "agent", "fallback", 50},
		{"AgentAPI reads only 3", read, "agent", "fallback", 50},
		{"AgentAPI reads only 4", read, "agent", "fallback", 50},
		{"AgentAPI reads only 5", read, "fallback", "fallback", nan},
	} {
		tk.before(eng)
		clock.AdvanceTo(time.Duration(i+1) * time.Second)
		eng.Tick()
		wantFallbackA := 0.0
		if tk.wantA == "fallback" {
			wantFallbackA = 1
		}
		gotRate := signalOf(t, eng, "tf", "RATE_LIMIT_0")
		if agentMode(t, eng, "GET /a") != tk.wantA || agentMode(t, eng, "GET /b") != tk.wantB ||
			signalOf(t, eng, "tf", "USING_FALLBACK_0") != wantFallbackA ||
			peekAgent(t, eng, "GET /a").UsingFallback != (tk.wantA == "fallback") ||
			!sameFloats([]float64{gotRate, peekAgent(t, eng, "GET /a").LimitInForce}, []float64{tk.wantRateA, tk.wantRateA}) {
			t.Errorf("tick %d (%s): modes %s, %s, USING_FALLBACK_0 %v, UsingFallback %v, RATE_LIMIT_0 %v; want %s, %s, %v, %v, %v",
				i+1, tk.what, agentMode(t, eng, "GET /a"), agentMode(t, eng, "GET /b"),
				signalOf(t, eng, "tf", "USING_FALLBACK_0"), peekAgent(t, eng, "GET /a").UsingFallback, gotRate,
				tk.wantA, tk.wantB, wantFallbackA, tk.wantA == "fallback", tk.wantRateA)
		}
		// Fallback "none" lifts the limit: the token bucket admits everything.
		if tk.wantA == "fallback" {
			if got := setpointOf(t, eng, "tf", "ingress/GET /a"); !math.IsNaN(got) {
				t.Errorf("tick %d (%s): token bucket rate %v, want NaN (no limit)", i+1, tk.what, got)
			}
			if got := admitEveryMs(clock, ingress, "GET /a", 100); got != 100 {
				t.Errorf("tick %d (%s): admitted %d of 100 in 100 ms in fallback \"none\", want all", i+1, tk.what, got)
			}
		}
	}
}

// Two RLActuators would give the agent two rates for one API name, even at
// different control points: the set is refused and the running one keeps
// running.
func TestTwoPoliciesCannotControlTheSameAPI(t *testing.T) {
	eng, clock := startAgents(t, agentSource("500", "100ms"))
	if _, err := eng.SetAgentRate("GET /a", 50); err != nil {
		t.Fatal(err)
	}
	both := enginetest.Load(t, "tf.cue", agentSource("500", "100ms")+`
policies: "other": topfull.#Policy & {
	config: {
		policy_name: "other"
		fallback: "none"
		apis: [{name: "GET /a", control_point: "egress"}]
	}
}
`)
	err := eng.Apply(both)
	const want = `tf.cue:19:17: policies.other.components[1].RLActuator: API "GET /a" is already under agent control by policies.tf.components[1].RLActuator at tf.cue:9:11`
	if err == nil || err.Error() != want {
		t.Fatalf("Apply = %v, want %q", err, want)
	}
	if ps := eng.Policies(); len(ps) != 1 || ps[0].Circuit.Spec.Name != "tf" {
		t.Errorf("a refused Apply changed the running set")
	}
	if a := peekAgent(t, eng, "GET /a"); a.Policy != "tf" || a.UpperBound != 500 {
		t.Errorf("GET /a is now %+v, want still policy tf's", a)
	}
	if len(eng.Status().Errors) != 1 {
		t.Errorf("status errors %v, want the refusal", eng.Status().Errors)
	}
	clock.Advance(time.Second)
	eng.Tick()
	if got := signalOf(t, eng, "tf", "RATE_LIMIT_0"); got != 50 {
		t.Errorf("RATE_LIMIT_0 = %v, want the agent's 50: the running policy must keep its agent", got)
	}
	if _, err := engine.Start(t.Context(), engine.Options{Specs: both, ManualTicks: true, Clock: clock.Now}); err == nil {
		t.Error("Start accepted two RLActuators on GET /a")
	}
}

// The agent's rate lives outside the policies: a reload keeps it, and new
// bounds clamp it without overwriting it.
func TestReloadKeepsTheAgentsRate(t *testing.T) {
	t.Parallel()
	eng, clock := startAgents(t, agentSource("500", "100ms"))
	if _, err := eng.SetAgentRate("GET /a", 77); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	eng.Tick()
	for i, step := range []struct {
		name string
		src  string
		// want is GET /a's RateLimit after Apply and its RATE_LIMIT_0 after
		// the next tick; wantUpper its upper bound.
		want, wantUpper float64
	}{
		{"the same spec again", agentSource("500", "100ms"), 77, 500},
		{"another API changed", agentSource("500", "250ms"), 77, 500},
		{"an upper bound below the rate clamps it", agentSource("60", "250ms"), 60, 60},
		{"the old bound back restores the agent's rate", agentSource("500", "250ms"), 77, 500},
	} {
		if err := eng.Apply(enginetest.Load(t, "tf.cue", step.src)); err != nil {
			t.Fatalf("step %d (%s): %v", i+1, step.name, err)
		}
		a := peekAgent(t, eng, "GET /a")
		if a.RateLimit != step.want || a.UpperBound != step.wantUpper || a.Ticks != uint64(i+1) {
			t.Errorf("step %d (%s): after Apply GET /a RateLimit %v, UpperBound %v, Ticks %d; want %v, %v, %d",
				i+1, step.name, a.RateLimit, a.UpperBound, a.Ticks, step.want, step.wantUpper, i+1)
		}
		clock.Advance(time.Second)
		eng.Tick()
		if got := signalOf(t, eng, "tf", "RATE_LIMIT_0"); got != step.want {
			t.Errorf("step %d (%s): RATE_LIMIT_0 = %v, want %v", i+1, step.name, got, step.want)
		}
	}
	if got := peekAgent(t, eng, "GET /b").SLO; got != 250*time.Millisecond {
		t.Errorf("GET /b SLO %v after the reloads, want 250ms", got)
	}

	// An API the new set drops is forgotten; brought back, it starts over
	// at its initial rate.
	if err := eng.Apply(enginetest.Load(t, "tf.cue", strings.Replace(agentSource("500", "100ms"), `"GET /a"`, `"GET /c"`, 1))); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.SetAgentRate("GET /a", 77); !errors.Is(err, engine.ErrUnknownAgentAPI) {
		t.Errorf("SetAgentRate on a dropped API: %v, want ErrUnknownAgentAPI", err)
	}
	if err := eng.Apply(enginetest.Load(t, "tf.cue", agentSource("500", "100ms"))); err != nil {
		t.Fatal(err)
	}
	if got := peekAgent(t, eng, "GET /a").RateLimit; got != 500 {
		t.Errorf("GET /a brought back has RateLimit %v, want the initial 1000 clamped to 500", got)
	}
}

// tickDuePolicies are a 500 ms policy without agents and a 1 s TopFull one.
const tickDuePolicies = `
package policies
import (
	bp "spillway.dev/blueprints"
	"spillway.dev/blueprints/topfull"
)
policies: fast: bp.#Policy & {
	policy_name: "fast"
	evaluation_interval: "500ms"
	components: [{Variable: {value: 1, out_ports: output: "V"}}]
}
policies: slow: topfull.#Policy & {
	config: {
		policy_name: "slow"
		fallback: "none"
		apis: [{name: "GET /a", control_point: "ingress"}]
	}
}
`

func TestTickDueTicksThePoliciesWhoseIntervalElapsed(t *testing.T) {
	eng, clock := startAgents(t, tickDuePolicies)
	ticks := func(name string) uint64 {
		r, ok := eng.Policy(name)
		if !ok {
			t.Fatalf("no policy %s", name)
		}
		return r.Circuit.Ticks()
	}
	for _, tc := range []struct {
		at                    time.Duration
		wantTicked            int
		wantFast, wantSlow    uint64
		wantAgents            bool // PendingTicks.Agents
		splitInsteadOfTickDue bool
	}{
		// A new policy's first tick is due at once (its actuators have no
		// setpoint until it runs); the next ones on the grid from its load.
		{at: 250 * time.Millisecond, wantTicked: 2, wantFast: 1, wantSlow: 1},
		{at: 300 * time.Millisecond, wantTicked: 0, wantFast: 1, wantSlow: 1},
		{at: 500 * time.Millisecond, wantTicked: 1, wantFast: 2, wantSlow: 1},
		{at: 500 * time.Millisecond, wantTicked: 0, wantFast: 2, wantSlow: 1}, // not again at the same time
		{at: 999 * time.Millisecond, wantTicked: 0, wantFast: 2, wantSlow: 1},
		{at: time.Second, wantTicked: 2, wantFast: 3, wantSlow: 2},
		{at: 1500 * time.Millisecond, wantTicked: 1, wantFast: 4, wantSlow: 2},
		{at: 2 * time.Second, wantTicked: 2, wantFast: 5, wantSlow: 3},
		{at: 2500 * time.Millisecond, wantTicked: 1, wantFast: 6, wantSlow: 3, splitInsteadOfTickDue: true},
		{at: 3 * time.Second, wantTicked: 2, wantFast: 7, wantSlow: 4, wantAgents: true, splitInsteadOfTickDue: true},
		// Late: a late tick does not move the schedule; the next is due
		// on the grid, one interval after the tick that was due.
		{at: 3700 * time.Millisecond, wantTicked: 1, wantFast: 8, wantSlow: 4},
		{at: 4 * time.Second, wantTicked: 2, wantFast: 9, wantSlow: 5},
	} {
		clock.AdvanceTo(tc.at)
		var got int
		if tc.splitInsteadOfTickDue {
			p := eng.TickDueSplit()
			if p.Agents() != tc.wantAgents {
				t.Errorf("at %v: PendingTicks.Agents() = %v, want %v", tc.at, p.Agents(), tc.wantAgents)
			}
			got = p.Finish()
		} else {
			got = eng.TickDue()
		}
		if got != tc.wantTicked || ticks("fast") != tc.wantFast || ticks("slow") != tc.wantSlow {
			t.Errorf("at %v: ticked %d, fast %d ticks, slow %d; want %d, %d, %d",
				tc.at, got, ticks("fast"), ticks("slow"), tc.wantTicked, tc.wantFast, tc.wantSlow)
		}
	}
}

// Between TickDueSplit and Finish the agent reads the tick's measurement
// and sets its rate, which Finish applies in the same tick: the TopFull
// simulator's lock step.
func TestTickDueSplitAppliesARateSetBeforeFinish(t *testing.T) {
	eng, clock := startAgents(t, agentSource("500", "100ms"))
	// A new policy's first tick is due at once; the next, an interval on.
	if p := eng.TickDueSplit(); !p.Agents() || p.Finish() != 1 {
		t.Fatal("a new policy's first tick was not due at once")
	}
	ingress := eng.ControlPoints().Get("ingress")
	// Until the agent's first contact the fallback decides.
	if got := admitEveryMs(clock, ingress, "GET /a", 250); got == 0 {
		t.Fatal("admitted none of 250 before the agent's first contact")
	}
	if p := eng.TickDueSplit(); p.Agents() || p.Finish() != 0 {
		t.Fatal("a policy was due before its interval elapsed")
	}
	clock.AdvanceTo(time.Second)
	p := eng.TickDueSplit()
	if !p.Agents() {
		t.Error("PendingTicks.Agents() = false for a TopFull policy")
	}
	a, _ := eng.AgentAPI("GET /a")
	if a.OfferedRPS != 250 || a.Ticks != 2 {
		t.Errorf("between TickDueSplit and Finish GET /a offered %v after %d ticks, want this tick's 250 after 2", a.OfferedRPS, a.Ticks)
	}
	r, _ := eng.Policy("tf")
	if got := r.Circuit.Ticks(); got != 1 {
		t.Errorf("the circuit ran %d times before Finish, want 1", got)
	}
	if _, err := eng.SetAgentRate("GET /a", 80); err != nil {
		t.Fatal(err)
	}
	if got := p.Finish(); got != 1 {
		t.Errorf("Finish() = %d, want 1", got)
	}
	if got := setpointOf(t, eng, "tf", "ingress/GET /a"); got != 80 {
		t.Errorf("token bucket rate after Finish %v, want the rate set before it, 80", got)
	}
	if got, want := signalOf(t, eng, "tf", "AGENT_RATE_0"), 80.0; got != want {
		t.Errorf("AGENT_RATE_0 = %v, want %v", got, want)
	}
	if got := peekAgent(t, eng, "GET /a").RateLimit; got != 80 {
		t.Errorf("RateLimit after Finish %v, want 80", got)
	}
	if got := r.Circuit.Ticks(); got != 2 {
		t.Errorf("the circuit ran %d times, want 2", got)
	}
}

func TestReloadKeepsAnAgentsSilence(t *testing.T) {
	eng, clock := startAgents(t, agentSource("500", "100ms"))
	if _, err := eng.SetAgentRate("GET /a", 123.456); err != nil {
		t.Fatal(err)
	}
	tick := func() {
		clock.Advance(time.Second)
		eng.Tick()
	}
	for range 6 { // the contact, then 5 silent ticks
		tick()
	}
	if a := peekAgent(t, eng, "GET /a"); !a.UsingFallback {
		t.Fatalf("GET /a after 5 silent ticks: mode %s, want fallback", a.Mode())
	}
	// A reload that changes the actuator must not bring the dead agent back.
	if err := eng.Apply(enginetest.Load(t, "tf.cue", agentSource("400", "100ms"))); err != nil {
		t.Fatal(err)
	}
	if a := peekAgent(t, eng, "GET /a"); !a.UsingFallback {
		t.Errorf("right after the reload: mode %s, want fallback", a.Mode())
	}
	tick()
	if a := peekAgent(t, eng, "GET /a"); !a.UsingFallback {
		t.Errorf("a tick after the reload: mode %s, want fallback", a.Mode())
	}
	if got := signalOf(t, eng, "tf", "USING_FALLBACK_0"); got != 1 {
		t.Errorf("USING_FALLBACK_0 = %v after the reload, want 1", got)
	}
	// A contact still brings it back.
	if _, err := eng.SetAgentRate("GET /a", 50); err != nil {
		t.Fatal(err)
	}
	tick()
	if a := peekAgent(t, eng, "GET /a"); a.UsingFallback || a.RateLimit != 50 {
		t.Errorf("after a contact: mode %s, rate %v; want agent, 50", a.Mode(), a.RateLimit)
	}
}
