package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// quickAIMD is latency AIMD with a 2 s EMA warm-up, so that it acts
// within a short run.
const quickAIMD = `package quick

import "spillway.dev/blueprints/latencyaimd"

policies: quick: latencyaimd.#Policy & {
	config: {
		policy_name: "quick"
		flux_meter: selector: {control_point: "ingress"}
		latency_baseliner: ema: warmup_window: "2s"
	}
}
`

func quickPolicy(t testing.TB) Policy {
	t.Helper()
	specs, diags := engine.LoadSource("quick.cue", []byte(quickAIMD))
	if len(diags.Errors()) > 0 {
		t.Fatal(diags)
	}
	return Policy{Name: "quick-aimd", Templates: specs}
}

func simulate(t testing.TB, app App, scenario string, opts ScenarioOptions, p Policy, seed uint64) Report {
	t.Helper()
	s, err := NewScenario(scenario, app, opts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Simulate(context.Background(), SimConfig{App: app, Scenario: s, Policy: p, Virtual: true, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestVirtualSameSeedSameReportBitForBit(t *testing.T) {
	t.Parallel() // virtual time: the machine's load cannot change what it asserts
	opts := ScenarioOptions{Warmup: 5 * time.Second, Duration: 10 * time.Second}
	policy := quickPolicy(t)
	encode := func(seed uint64) []byte {
		b, err := json.Marshal(simulate(t, Boutique(), "surge", opts, policy, seed))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first, second, other := encode(7), encode(7), encode(8)
	if !bytes.Equal(first, second) {
		t.Errorf("two runs with seed 7 differ:\n%s\n%s", first, second)
	}
	if bytes.Equal(first, other) {
		t.Errorf("seeds 7 and 8 gave the same report")
	}
	var r Report
	if err := json.Unmarshal(first, &r); err != nil {
		t.Fatal(err)
	}
	if r.Rejected == 0 {
		t.Errorf("the policy rejected nothing in a 4× surge; the determinism test should exercise it")
	}
}

func TestVirtualLightLoadIsAllGoodput(t *testing.T) {
	r := simulate(t, Boutique(), "steady", ScenarioOptions{Warmup: 2 * time.Second, Duration: 10 * time.Second, Load: 0.3}, NoPolicy(), 1)
	checkReport(t, r)
	if r.Rejected != 0 || r.Timeouts != 0 || r.Errors != 0 {
		t.Errorf("Rejected %d, Timeouts %d, Errors %d; want none at 0.3× capacity", r.Rejected, r.Timeouts, r.Errors)
	}
	if r.GoodputRatio < 0.99 || r.RecoveryS == nil || *r.RecoveryS != 0 {
		t.Errorf("goodput ratio %.3f, recovery %v; want about 1 and 0 s", r.GoodputRatio, r.RecoveryS)
	}
	if want := 0.3 * Boutique().Capacity(); r.OfferedRPS < 0.9*want || r.OfferedRPS > 1.1*want {
		t.Errorf("offered %.0f req/s, want about %.0f", r.OfferedRPS, want)
	}
	if r.P50Ms <= 0 || r.P99Ms < r.P50Ms || r.P999Ms < r.P99Ms {
		t.Errorf("p50 %v, p99 %v, p99.9 %v; want 0 < p50 <= p99 <= p99.9", r.P50Ms, r.P99Ms, r.P999Ms)
	}
}

func TestVirtualPoliciesSeeTheSameArrivals(t *testing.T) {
	t.Parallel() // virtual time: the machine's load cannot change what it asserts
	opts := ScenarioOptions{Warmup: 2 * time.Second, Duration: 10 * time.Second}
	none := simulate(t, Boutique(), "steady", opts, NoPolicy(), 3)
	static := simulate(t, Boutique(), "steady", opts, StaticPolicy(), 3)
	offered := func(r Report) []int {
		var out []int
		for _, s := range r.Seconds {
			out = append(out, s.Offered)
		}
		return out
	}
	if !slices.Equal(offered(none), offered(static)) {
		t.Errorf("offered per second differs between policies on one seed:\n%v\n%v", offered(none), offered(static))
	}
	if static.Rejected == 0 || none.Rejected != 0 {
		t.Errorf("rejected: static %d, none %d; want some and none", static.Rejected, none.Rejected)
	}
}

func TestVirtualClientTimeoutsBoundLatency(t *testing.T) {
	app := TwoTierApp(DefaultTwoTier())
	r := simulate(t, app, "steady", ScenarioOptions{Warmup: 2 * time.Second, Duration: 20 * time.Second}, NoPolicy(), 1)
	checkReport(t, r)
	if r.Timeouts == 0 || r.P999Ms != float64(app.ClientTimeout/time.Millisecond) {
		t.Errorf("Timeouts %d, p99.9 %v ms; want timeouts, counted at the client timeout of %v", r.Timeouts, r.P999Ms, app.ClientTimeout)
	}
	// Answers cannot outnumber what the workers can serve.
	if limit := app.Capacity() * (r.DurationS + 2); float64(r.Admitted) > limit {
		t.Errorf("%d answers in %gs, more than the capacity allows (%.0f)", r.Admitted, r.DurationS, limit)
	}
}

func TestVirtualCapacityDrop(t *testing.T) {
	t.Parallel() // virtual time: the machine's load cannot change what it asserts
	opts := ScenarioOptions{Warmup: 2 * time.Second, Duration: 30 * time.Second}
	none := simulate(t, Boutique(), "capacity-drop", opts, NoPolicy(), 1)
	static := simulate(t, Boutique(), "capacity-drop", opts, StaticPolicy(), 1)
	goodputAt := func(r Report, from, to int) int {
		sum := 0
		for _, s := range r.Seconds {
			if s.T >= from && s.T < to {
				sum += s.Goodput
			}
		}
		return sum
	}
	if before, after := goodputAt(none, 0, 10), goodputAt(none, 20, 30); after > before/2 {
		t.Errorf("without a policy goodput went from %d to %d in 10 s when half of the bottleneck's workers died; want it to collapse", before, after)
	}
	if static.Steady.GoodputRatio < 0.9 {
		t.Errorf("the static oracle keeps a goodput ratio of %.3f after the drop, want >= 0.9: it knows the new capacity", static.Steady.GoodputRatio)
	}
	if static.CapacityRPS >= Boutique().Capacity()*0.8 {
		t.Errorf("mean capacity %.0f req/s, want it to reflect the drop", static.CapacityRPS)
	}
}

// A slowdown at the bottleneck halves what it serves, and the references
// and the oracle follow it: the static oracle admits half as much and keeps
// its goodput ratio, while its answers take longer.
func TestVirtualSlowServiceHalvesCapacity(t *testing.T) {
	t.Parallel() // virtual time
	opts := ScenarioOptions{Warmup: 2 * time.Second, Duration: 30 * time.Second}
	static := simulate(t, Boutique(), "slow-service", opts, StaticPolicy(), 1)
	checkReport(t, static)
	sum := func(from, to int, f func(SecondStats) float64) float64 {
		var v float64
		for _, s := range static.Seconds {
			if s.T >= from && s.T < to {
				v += f(s)
			}
		}
		return v / float64(to-from)
	}
	goodput := func(s SecondStats) float64 { return float64(s.Goodput) }
	capacity := func(s SecondStats) float64 { return s.CapacityRPS }
	p50 := func(s SecondStats) float64 { return s.P50Ms }
	before, during, after := sum(2, 10, goodput), sum(12, 20, goodput), sum(22, 30, goodput)
	if r := during / before; r < 0.45 || r > 0.55 {
		t.Errorf("the oracle's goodput went from %.0f to %.0f req/s under the slowdown (%.2f×), want about half", before, during, r)
	}
	if r := after / before; r < 0.95 || r > 1.05 {
		t.Errorf("the oracle's goodput went from %.0f to %.0f req/s after the slowdown (%.2f×), want it back", before, after, r)
	}
	if r := sum(12, 20, capacity) / sum(2, 10, capacity); math.Abs(r-0.5) > 1e-9 {
		t.Errorf("the references' capacity went %.3f× under the slowdown, want 0.5×", r)
	}
	if r := sum(12, 20, p50) / sum(2, 10, p50); r < 1.3 {
		t.Errorf("median latency went %.2f× under the slowdown, want it longer: the calls take twice as long", r)
	}
	if static.Steady.GoodputRatio < 0.9 {
		t.Errorf("the static oracle keeps a goodput ratio of %.3f, want >= 0.9: it knows the slowed capacity", static.Steady.GoodputRatio)
	}
}

// checkReport checks that every arrival lands in exactly one class.
func checkReport(t *testing.T, r Report) {
	t.Helper()
	var offered, classes int
	for _, s := range r.Seconds {
		if sum := s.Admitted + s.Rejected + s.Timeouts + s.Errors; sum != s.Offered {
			t.Errorf("second %d: classes sum to %d, offered %d", s.T, sum, s.Offered)
		}
		offered += s.Offered
	}
	for _, a := range r.PerAPI {
		classes += a.Offered
	}
	if classes != r.Offered {
		t.Errorf("per-API offered sums to %d, total %d", classes, r.Offered)
	}
}

func TestRecoveryIsWhenP99StaysWithinSLO(t *testing.T) {
	slo := 100 * time.Millisecond
	seconds := func(p99ms ...int) []apiSecond {
		out := make([]apiSecond, len(p99ms))
		for i, v := range p99ms {
			out[i].P99 = time.Duration(v) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name      string
		p99       []apiSecond
		mark, end int
		want      float64 // -1: never
	}{
		{"within from the start", seconds(50, 60, 70, 80), 0, 4, 0},
		{"after two bad seconds", seconds(500, 300, 90, 90, 90), 0, 5, 2},
		{"a relapse resets it", seconds(500, 90, 500, 90, 90, 90), 0, 6, 3},
		{"at the SLO is within", seconds(500, 100), 0, 2, 1},
		{"never", seconds(50, 50, 500), 0, 3, -1},
		{"measured from the mark", seconds(500, 500, 90, 90, 90, 500), 1, 5, 1},
		{"the end bounds the window", seconds(500, 500, 90, 90, 90), 0, 2, -1},
	}
	for _, tt := range tests {
		got := recovery(tt.p99, slo, tt.mark, tt.end)
		if (got == nil) != (tt.want < 0) || (got != nil && *got != tt.want) {
			t.Errorf("%s: recovery = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCompletionHeapOrdersByTimeThenScheduling(t *testing.T) {
	var h completionHeap
	rng := rand.New(rand.NewPCG(1, 2))
	var want []completion
	for i := range 1000 {
		c := completion{at: rng.Int64N(50), req: int32(i)}
		h.push(c)
		want = append(want, c)
	}
	slices.SortStableFunc(want, func(a, b completion) int { return int(a.at - b.at) })
	for i, w := range want {
		if got := h.pop(); got.at != w.at || got.req != w.req {
			t.Fatalf("pop %d = %+v, want %+v", i, got, w)
		}
	}
	if h.len() != 0 {
		t.Errorf("len = %d after popping everything", h.len())
	}
}

func TestRingIsFIFOAcrossGrowth(t *testing.T) {
	var q ring[int]
	next, expect := 0, 0
	for round := range 50 {
		for range round % 7 * 5 {
			q.push(next)
			next++
		}
		for range round % 3 * 4 {
			if q.len() == 0 {
				break
			}
			if got := q.pop(); got != expect {
				t.Fatalf("pop = %d, want %d", got, expect)
			}
			expect++
		}
	}
	for q.len() > 0 {
		if got := q.pop(); got != expect {
			t.Fatalf("pop = %d, want %d", got, expect)
		}
		expect++
	}
	if expect != next {
		t.Errorf("popped %d of %d", expect, next)
	}
}

// BenchmarkVirtualBoutique measures how much faster than real time the
// virtual driver runs boutique at 4× capacity (about 5k offered req/s)
// under latency AIMD: x-realtime is simulated seconds per wall-clock second.
func BenchmarkVirtualBoutique(b *testing.B) {
	app := Boutique()
	s, err := NewScenario("steady", app, ScenarioOptions{Warmup: 5 * time.Second, Duration: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	cfg := SimConfig{App: app, Scenario: s, Policy: quickPolicy(b), Virtual: true, Seed: 1}
	var requests int
	for b.Loop() {
		r, err := Simulate(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		requests = 0
		for _, sec := range r.Seconds {
			requests += sec.Offered
		}
	}
	b.ReportMetric(float64(b.N)*s.Total().Seconds()/b.Elapsed().Seconds(), "x-realtime")
	b.ReportMetric(float64(b.N*requests)/b.Elapsed().Seconds(), "requests/s")
}

func TestVirtualRetriesCountOneUserRequestAndAmplifyLoad(t *testing.T) {
	app := TwoTierApp(DefaultTwoTier())
	opts := ScenarioOptions{Warmup: 2 * time.Second, Duration: 20 * time.Second}
	storm, err := NewScenario("retry-storm", app, opts)
	if err != nil {
		t.Fatal(err)
	}
	plain := storm
	plain.Retries = 0
	run := func(s Scenario) (Report, int) {
		var eng *engine.Engine
		r, err := Simulate(context.Background(), SimConfig{App: app, Scenario: s, Policy: StaticPolicy(), Virtual: true, Seed: 1,
			OnEngine: func(e *engine.Engine) { eng = e }})
		if err != nil {
			t.Fatal(err)
		}
		checkReport(t, r)
		attempts := 0
		for _, cp := range eng.Status().ControlPoints {
			for _, a := range cp.APIs {
				attempts += int(a.Accepted + a.Rejected)
			}
		}
		return r, attempts
	}
	withRetries, attempts := run(storm)
	without, plainAttempts := run(plain)
	if withRetries.Offered != without.Offered {
		t.Errorf("offered %d with retries, %d without: a request and its retries must count once", withRetries.Offered, without.Offered)
	}
	if attempts <= plainAttempts || withRetries.Rejected >= without.Rejected {
		t.Errorf("with retries: %d attempts and %d rejected user requests; without: %d and %d; want more attempts and fewer final rejections",
			attempts, withRetries.Rejected, plainAttempts, without.Rejected)
	}
	if _, err := Simulate(context.Background(), SimConfig{App: app, Scenario: storm, Policy: NoPolicy()}); err == nil || !strings.Contains(err.Error(), "virtual") {
		t.Errorf("a live run with retries: err = %v, want it refused", err)
	}
}

// Closed-loop users wait for each answer: with nothing to refuse them, the
// 128 users of two-tier at 4× (4 × 320 req/s × 100 ms of think time)
// offer what the service answers, not 4×, since each waits in its queue
// (Little's law: 128 users over 100 ms of thinking plus about 300 ms of
// waiting). A refusal is instant, so under the static oracle the same
// users come back at about the rate they would offer if every answer were
// instant, and when the load steps down (surge's last 0.5×), the users
// over the step's count leave.
func TestVirtualClosedLoopUsersWaitForTheirAnswers(t *testing.T) {
	app := TwoTierApp(DefaultTwoTier())
	capacity := app.Capacity()
	opts := ScenarioOptions{Warmup: 5 * time.Second, Duration: 40 * time.Second, Think: 100 * time.Millisecond}
	offered := func(r Report, from, to int) float64 {
		t.Helper()
		var n, seconds float64
		for _, s := range r.Seconds {
			if s.T >= from && s.T < to {
				n += float64(s.Offered)
				seconds++
			}
		}
		if seconds == 0 {
			t.Fatalf("no seconds in [%d, %d)", from, to)
		}
		return n / seconds
	}

	none := simulate(t, app, "steady", opts, NoPolicy(), 1)
	checkReport(t, none)
	if got := offered(none, 10, 40); got < 0.9*capacity || got > 1.05*capacity {
		t.Errorf("no policy: %.0f req/s offered over the steady stretch, want about the %.0f the service answers", got, capacity)
	}
	open := opts
	open.Think = 0
	if got := offered(simulate(t, app, "steady", open, NoPolicy(), 1), 10, 40); got < 3.6*capacity {
		t.Errorf("open loop, no policy: %.0f req/s offered, want about 4 × %.0f", got, capacity)
	}

	static := simulate(t, app, "steady", opts, StaticPolicy(), 1)
	checkReport(t, static)
	if got := offered(static, 10, 40); got < 2.5*capacity {
		t.Errorf("static oracle: %.0f req/s offered, want refused users back at well over 2.5 × %.0f", got, capacity)
	}
	if static.Steady.GoodputPerProportional < 0.9 {
		t.Errorf("static oracle: steady goodput ÷ proportional %.2f, want ≥ 0.9", static.Steady.GoodputPerProportional)
	}

	// surge: 0.5× for 8 s, 4× for 16 s, 0.5× for 16 s. At 0.5× the 16
	// users think 100 ms and wait about 40 ms for each answer: about 115
	// req/s, where 4× had 128 users.
	surge := simulate(t, app, "surge", opts, StaticPolicy(), 1)
	if high, low := offered(surge, 12, 24), offered(surge, 30, 40); high < 2.5*capacity || low < 0.3*capacity || low > 0.5*capacity {
		t.Errorf("surge under the static oracle: %.0f req/s offered at 4× and %.0f back at 0.5×, want over 2.5 × %.0f and about 16 users' 115", high, low, capacity)
	}

	again := simulate(t, app, "surge", opts, StaticPolicy(), 1)
	a, _ := json.Marshal(surge)
	b, _ := json.Marshal(again)
	if !bytes.Equal(a, b) {
		t.Error("two closed-loop runs of one seed differ")
	}
	// Live, each user is a goroutine of the load generator: 4 × 320 req/s
	// × 20 s of thinking is 25,600 users, over its bound.
	crowd := opts
	crowd.Think = 20 * time.Second
	sc, err := NewScenario("steady", app, crowd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Policy: NoPolicy()}); err == nil || !strings.Contains(err.Error(), "25600 closed-loop users, over the live load generator's 20000") {
		t.Errorf("a live run with too many users: err = %v, want it refused", err)
	}
}

// The references of a closed-loop run take what its users would offer
// answered at each API's no-queue latency, not the arrivals a policy let
// them make: during a hang the users wait up to the client timeout, so
// they would offer little whatever the policy does.
func TestClosedLoopReferencesTakeTheUsersDemand(t *testing.T) {
	app := TwoTierApp(DefaultTwoTier())
	sc, err := NewScenario("hung-dependency", app, ScenarioOptions{Warmup: 5 * time.Second, Duration: 30 * time.Second, Think: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var latency time.Duration
	for _, c := range app.APIs[0].Calls {
		latency += c.Time.Mean
	}
	users := float64(sc.Users(2 * app.Capacity())) // 2×: 64 users
	if users != 64 {
		t.Fatalf("%v users at 2 × %.0f req/s and 100 ms, want 64", users, app.Capacity())
	}
	for _, tt := range []struct {
		at   time.Duration
		want float64
	}{
		{2 * time.Second, 16 / (0.1 + latency.Seconds())},               // warm-up, 0.5×
		{10 * time.Second, users / (0.1 + latency.Seconds())},           // before the hang
		{20 * time.Second, users / (0.1 + app.ClientTimeout.Seconds())}, // hung: each waits for the timeout
		{30 * time.Second, users / (0.1 + latency.Seconds())},           // after
	} {
		if got := sc.demandAt(app, tt.at)[0]; math.Abs(got-tt.want) > 1e-9*tt.want {
			t.Errorf("demand at %v = %.2f req/s, want %.2f", tt.at, got, tt.want)
		}
	}
	r, err := Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Policy: StaticPolicy(), Virtual: true, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The optimal reference is bounded by the demand: the stuck users'
	// in the hang (seconds 10 to 20 of the scenario), the app's capacity
	// before it.
	for _, s := range r.Seconds {
		if s.T == 15 && !(s.OptimalRPS < 40) {
			t.Errorf("second 15, in the hang: reference %.0f req/s, want the stuck users' demand, under 40", s.OptimalRPS)
		}
		if s.T == 5 && math.Abs(s.OptimalRPS-app.Capacity()) > 1 {
			t.Errorf("second 5, before the hang: reference %.0f req/s, want the capacity, %.0f", s.OptimalRPS, app.Capacity())
		}
	}
}
