//go:build !race

// The virtual driver runs the engine on one goroutine (manual ticks, no
// watcher, no Redis), so the race detector has nothing to check in these
// simulations and makes them about 15× slower. scripts/test runs them,
// at full length, without it.

package testbed

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"
)

// simulateVirtual runs app through the named scenario under pol in virtual
// time on seed 1; opts, if given, parameterise the scenario.
func simulateVirtual(t *testing.T, app App, scenario string, pol Policy, opts ...ScenarioOptions) Report {
	t.Helper()
	return simulateSeed(t, app, scenario, pol, 1, opts...)
}

// simulateSeed is simulateVirtual on the given seed.
func simulateSeed(t *testing.T, app App, scenario string, pol Policy, seed uint64, opts ...ScenarioOptions) Report {
	t.Helper()
	sc, err := NewScenario(scenario, app, append(opts, ScenarioOptions{})[0])
	if err != nil {
		t.Fatal(err)
	}
	r, err := Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Virtual: true, Seed: seed, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// coldStartKeeps runs the default policy on the app file's cold start at
// each seed, in parallel, and fails each whose goodput keeps less than
// want of proportional over the whole run.
func coldStartKeeps(t *testing.T, file string, seeds []uint64, want float64) {
	app, err := LoadAppFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pol := defaultPolicy(t)
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			if got := simulateSeed(t, app, "cold-start", pol, seed).GoodputRatio; got < want {
				t.Errorf("cold start: %.2f of proportional, want ≥ %.2f", got, want)
			}
		})
	}
}

// firstTenSeconds is r's goodput over its first 10 s as a share of
// proportional (each second's share capped at what was offered).
func firstTenSeconds(r Report) float64 {
	var goodput, share float64
	for _, s := range r.Seconds {
		if s.T >= 0 && s.T < 10 {
			goodput += float64(s.Goodput)
			share += min(s.CapacityRPS, float64(s.Offered))
		}
	}
	return goodput / share
}

// defaultPolicy is policies/default.cue as written.
func defaultPolicy(t *testing.T) Policy {
	return Policy{Name: "default", Templates: loadPolicy(t, "../policies/default.cue")}
}

// steadyP99sWithinSLOs fails t for each API of app whose steady-half p99
// in r is over its SLO.
func steadyP99sWithinSLOs(t *testing.T, app App, r Report) {
	t.Helper()
	steadyP99sWithin(t, app, r, 1)
}

// steadyP99sWithin fails the test for every API whose steady p99 is over
// frac × its SLO.
func steadyP99sWithin(t *testing.T, app App, r Report, frac float64) {
	t.Helper()
	for i, api := range r.APIs {
		if slo := float64(app.APIs[i].SLO / time.Millisecond); r.PerAPI[api].Steady.P99Ms > frac*slo {
			t.Errorf("%s: steady p99 %.0f ms, want ≤ %g × its SLO %v", api, r.PerAPI[api].Steady.P99Ms, frac, app.APIs[i].SLO)
		}
	}
}

// adversarialApp loads apps/adversarial/name.json.
func adversarialApp(t *testing.T, name string) App {
	t.Helper()
	app, err := LoadAppFile("apps/adversarial/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// sloPolicyOf is the default policy with app's SLOs stated
// (DefaultSLOPolicy).
func sloPolicyOf(t *testing.T, app App) Policy {
	t.Helper()
	pol, err := DefaultSLOPolicy(app)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// The default policy's goals (GoalMisses), asserted on a small
// deterministic part of the suite (docs/suite.md has the whole): apps whose
// APIs differ 20× in cost at one bottleneck, cross two bottlenecks, or chain
// through shared services, each in steady overload, a surge and a cold
// start, run as written (one controller for every API), in virtual time,
// without the oracle's relaxations; under open-loop arrivals, and under
// closed-loop users thinking 100 ms and 1 s (Scenario.Think), who come back
// one think time after a refusal and wait in any queue the policy lets
// build.
func TestDefaultPolicyMeetsItsGoals(t *testing.T) {
	templates := loadPolicy(t, "../policies/default.cue")
	for _, appName := range []string{"hetero-cost", "multi-bottleneck", "boutique"} {
		app, err := BuiltinApp(appName)
		if err != nil {
			t.Fatal(err)
		}
		for _, scenario := range []string{"steady", "surge", "cold-start"} {
			for _, think := range []time.Duration{0, 100 * time.Millisecond, time.Second} {
				name := appName + "/" + scenario
				if think > 0 {
					name += "/think-" + think.String()
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					sc, err := NewScenario(scenario, app, ScenarioOptions{Think: think})
					if err != nil {
						t.Fatal(err)
					}
					r, err := Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Virtual: true, Seed: 1,
						Policy: Policy{Name: "default", Templates: templates}})
					if err != nil {
						t.Fatal(err)
					}
					for _, m := range GoalMisses(r, nil) {
						t.Error(m.Detail)
					}
				})
			}
		}
	}
}

// TestGoalMissesCanFail: an unprotected run misses the goals, and the
// oracle's own misses relax the total and mark p99 misses infeasible.
func TestGoalMissesCanFail(t *testing.T) {
	app, err := BuiltinApp("two-tier")
	if err != nil {
		t.Fatal(err)
	}
	run := func(scenario string, pol Policy) Report {
		return simulateVirtual(t, app, scenario, pol, ScenarioOptions{Warmup: 5e9, Duration: 20e9})
	}
	none := run("cold-start", NoPolicy())
	goals := map[string]bool{}
	for _, m := range GoalMisses(none, nil) {
		goals[m.Goal] = true
		if m.Infeasible {
			t.Errorf("%s: infeasible without an oracle", m.Detail)
		}
	}
	for _, g := range []string{GoalSteadyTotal, GoalSteadyPerAPI, GoalSteadyP99, GoalColdStartRate, GoalColdStartP99} {
		if !goals[g] {
			t.Errorf("no protection: goal %q not missed", g)
		}
	}
	// Against itself as the oracle, the total goal is relaxed to 0.95 of
	// what the run keeps (met), and every p99 miss is the app's.
	for _, m := range GoalMisses(none, &none) {
		if m.Goal == GoalSteadyTotal {
			t.Errorf("total goal not relaxed by the oracle: %s", m.Detail)
		}
		if m.Goal == GoalSteadyP99 && !m.Infeasible {
			t.Errorf("p99 miss the oracle shares not marked infeasible: %s", m.Detail)
		}
	}
}

// A dependency that answers later holds no worker: the app serves as much
// as before, only slower. The default reads the first rise as a queue and
// cuts; once three windows in a row show that the cuts have not lowered
// the rtt (or halving the limit has not, for relearn_after), it takes the
// new latency as the baseline and grows the limit back. Without that it
// kept 0.67–0.73 of proportional over these runs, about 0.16 of capacity
// while the dependency was slow; with the halving alone, seconds 21–23
// kept 0.12–0.54 (now seconds 22–29 keep 0.81–1.10). With the SLOs stated
// too: where the first slow window reads as a burst under capacity and
// grows the limit, the queueing windows after it begin their run from the
// limit before it (0.72 of proportional over two-tier's steady half
// otherwise).
func TestDefaultPolicyFollowsASlowerDependency(t *testing.T) {
	templates := loadPolicy(t, "../policies/default.cue")
	for _, appName := range []string{"two-tier", "hetero-cost"} {
		for _, slo := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, SLOs stated %v", appName, slo), func(t *testing.T) {
				t.Parallel()
				app, err := BuiltinApp(appName)
				if err != nil {
					t.Fatal(err)
				}
				pol := Policy{Name: "default", Templates: templates}
				if slo {
					pol = sloPolicyOf(t, app)
				}
				followsASlowerDependency(t, app, simulateVirtual(t, app, "slow-dependency", pol))
			})
		}
	}
}

// followsASlowerDependency checks a slow-dependency run: 0.9 of
// proportional over the scenario, no second of the slow third from its
// fourth on under 0.5 (the onset's cuts drain nothing, and the baseline
// follows within three seconds), and the extra time in the p50 of the slow
// third. Within two seconds held on seed 1 only while the limit kept
// room it had not used, and neither then nor since on seeds 2 and 3:
// how soon the relearn comes depends on where the run of cuts began
// (docs/simulator.md, "A limit gives back room it does not use").
func followsASlowerDependency(t *testing.T, app App, r Report) {
	t.Helper()
	if r.GoodputRatio < 0.9 {
		t.Errorf("goodput %.2f of proportional over the scenario, want ≥ 0.9", r.GoodputRatio)
	}
	for _, s := range r.Seconds {
		if s.T >= 23 && s.T < 40 && s.GoodputRatio < 0.5 {
			t.Errorf("second %d, %d s after the dependency slowed: %.2f of proportional, want ≥ 0.5", s.T, s.T-20, s.GoodputRatio)
		}
	}
	// The dependency was slow: even the fastest half of the answers took
	// the extra time in the middle third.
	extra := app.slowDependencyExtra()
	p50 := math.NaN()
	for _, s := range r.Seconds {
		if s.T == 30 {
			p50 = s.P50Ms
		}
	}
	if !(p50 >= float64(extra/time.Millisecond)) {
		t.Errorf("p50 %.1f ms in the slow third, want ≥ the extra %v", p50, extra)
	}
}

// A dependency of two-tier's one API answers an SLO late for the middle
// third of slow-api (holding no worker), and the default relearns that
// latency as its baseline, on a lease, and grows the limit to fill it.
// When the dependency is fast again, that limit lets in a queue that
// fills the freed latency, so the rtt stays near the leased baseline and,
// as the lease decays, follows it down. The lease now also ends on a
// window faster than 0.8 of the baseline the relearn took by two standard
// errors, which the cuts of that queue soon show: a still-slow dependency
// never answers faster. Before, seconds 41–49 kept 0.30–0.81 of
// proportional (0.57 over 41–50) and the steady half 0.50; now the lease
// ends at 43 s, and the steady half keeps 0.60 (the oracle 0.62).
func TestDefaultPolicyEndsTheLeaseWhenTheDependencyRecovers(t *testing.T) {
	app, err := BuiltinApp("two-tier")
	if err != nil {
		t.Fatal(err)
	}
	r := simulateVirtual(t, app, "slow-api", defaultPolicy(t))
	var sum float64
	for _, s := range r.Seconds {
		if s.T < 41 || s.T > 50 {
			continue
		}
		sum += s.GoodputRatio
		if s.T >= 45 && s.GoodputRatio < 0.9 {
			t.Errorf("second %d after the dependency recovered at 40: %.2f of proportional, want ≥ 0.9", s.T, s.GoodputRatio)
		}
	}
	if sum/10 < 0.8 {
		t.Errorf("seconds 41–50: %.2f of proportional on average, want ≥ 0.8", sum/10)
	}
}

// random-32 mixes SLOs of 60 and 400 ms; its slow APIs' p90 without a
// queue is about 110 ms, so `slo: "60ms"`, the tightest SLO as the README
// advises, sets a p90 setpoint of 30 ms that no admission can meet. The
// setpoint cut the limit to 1 (0.04 of proportional); now, once the
// baseline is learned, it cuts only a queue, and not below the service's
// own latency.
func TestDefaultSLOHoldsWhereTheSetpointIsUnderTheOwnLatency(t *testing.T) {
	app, err := BuiltinApp("random:32")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := defaultSLOPolicy(app, false)
	if err != nil {
		t.Fatal(err)
	}
	if r := simulateVirtual(t, app, "steady", pol); r.GoodputRatio < 0.8 {
		t.Errorf("goodput %.2f of proportional with slo = the tightest SLO, want ≥ 0.8", r.GoodputRatio)
	}
}

// boutique's mix shifts to checkout, its costliest API: at the old limit
// the costlier mix queues, the cuts drain that queue, and what stays (45
// against 17 ms) is the mix's own latency, at a limit an eighth of where
// the cuts began. The default takes it as the baseline once it has not
// fallen for another relearn_after; without that it held 3 requests in
// flight for the whole shift (0.87 of proportional in the steady half,
// checkout at 0.59 of its share).
func TestDefaultPolicyFollowsACostlierMix(t *testing.T) {
	app, err := BuiltinApp("boutique")
	if err != nil {
		t.Fatal(err)
	}
	if r := simulateVirtual(t, app, "mix-shift", defaultPolicy(t)); r.Steady.GoodputRatio < 0.93 {
		t.Errorf("steady-half goodput %.2f of proportional, want ≥ 0.93", r.Steady.GoodputRatio)
	}
}

// random-53 in priority-mix: one API of 3 ms (SLO 40 ms) and two of
// 50–60 ms, each offered at 1.5× its capacity alone, so that the cheap one
// makes 97 % of the requests where it made a third in the warm-up. The
// shared latency's reference is the warm-up's mix; a queue of a part of
// it is several times the cheap API's latency, so the cheap mix's queue
// counts scaled by how much cheaper it is. Before, the reference of a
// minute-old limiter followed the new mix within seconds, the controller
// allowed a queue over it that put the cheap API's answers past their
// SLO, and the default kept 0.18 of proportional in the steady half
// (0.55 after a 20-minute warm-up). The same after 65 s and after 20 min.
func TestDefaultPolicyKeepsACheaperMix(t *testing.T) {
	app := RandomAppOf(53)
	for _, warmup := range []time.Duration{DefaultWarmup, 20 * time.Minute} {
		r := simulateVirtual(t, app, "priority-mix", defaultPolicy(t), ScenarioOptions{Warmup: warmup})
		if r.Steady.GoodputPerProportional < 0.9 {
			t.Errorf("warm-up %v: steady-half goodput %.2f of proportional, want ≥ 0.9", warmup, r.Steady.GoodputPerProportional)
		}
		for i, api := range app.APIs {
			if st := r.PerAPI[r.APIs[i]]; st.Steady.P99Ms > float64(api.SLO/time.Millisecond) {
				t.Errorf("warm-up %v: %s steady p99 %.0f ms over its SLO %v", warmup, r.APIs[i], st.Steady.P99Ms, api.SLO)
			}
		}
	}
}

// apps/adversarial/repeat-visits.json: feed calls a six-worker database
// three times, report once, and search and home not at all. Feed's
// latency shows three times the database's queue, report's once; with
// report's excess the median of the four, report reads as the shared
// queue and feed as twice that of its own. A test that halved feed alone
// left the queue report makes, and judged feed a slower dependency: its
// latency beyond the shared queue was left out of the limit's, the limit
// grew, and feed kept 0.52 of its share at a p99 of 581 ms against its
// 120 ms SLO. Report must be tested with it.
func TestDefaultPolicyHoldsAQueueSeenThreeTimes(t *testing.T) {
	app := adversarialApp(t, "repeat-visits")
	r := simulateVirtual(t, app, "steady", defaultPolicy(t))
	if r.Steady.GoodputPerProportional < 0.9 {
		t.Errorf("steady-half goodput %.2f of proportional, want ≥ 0.9", r.Steady.GoodputPerProportional)
	}
	for i, api := range r.APIs {
		st := r.PerAPI[api]
		if st.Steady.GoodputPerProportional < 0.8 {
			t.Errorf("%s: steady-half goodput %.2f of its share, want ≥ 0.8", api, st.Steady.GoodputPerProportional)
		}
		if slo := float64(app.APIs[i].SLO / time.Millisecond); st.Steady.P99Ms > 2*slo {
			t.Errorf("%s: steady p99 %.0f ms, want ≤ twice its SLO %v", api, st.Steady.P99Ms, app.APIs[i].SLO)
		}
	}
}

// apps/adversarial/one-api-hangs.json: browse (80 %) and pay (20 %) share
// an 8-worker database; in hung-dependency, pay's calls hang past the
// client timeout for the middle third. Browse could be served as before,
// and the default must let it: its share of the limit is guaranteed by the
// time its slots held answers, and the hung requests' latency, which no
// client waited for, is not read as a queue. Before, the default kept 0 to
// 130 req/s of browse's 256 at 0.8×, less than no protection at all.
// The first 4 s of the hang are its clients' timeout (2 s) and the
// bulkhead's one-second measure of what was answered; from then on every
// second must keep 0.8 of browse's share, and their mean 0.95 of it.
func TestDefaultPolicyIsolatesAHungDependency(t *testing.T) {
	app := adversarialApp(t, "one-api-hangs")
	for _, tc := range []struct {
		load  float64
		share float64 // browse's goodput ratio: what it could keep while pay hangs
	}{
		{0.8, 0.8}, // browse's 80 % of what is offered
		{2, 1},     // browse alone can fill the database
	} {
		t.Run(fmt.Sprint(tc.load), func(t *testing.T) {
			t.Parallel()
			r := simulateVirtual(t, app, "hung-dependency", defaultPolicy(t), ScenarioOptions{Load: tc.load})
			var sum float64
			var n int
			for _, s := range r.Seconds {
				if s.T >= 24 && s.T < 40 { // the hang is 20–40 s
					sum += s.GoodputRatio
					n++
					if s.GoodputRatio < 0.8*tc.share {
						t.Errorf("second %d of the hang: goodput ratio %.2f, want ≥ %.2f", s.T, s.GoodputRatio, 0.8*tc.share)
					}
				}
			}
			if n == 0 || sum/float64(n) < 0.95*tc.share {
				t.Errorf("goodput ratio %.2f per second while pay hangs (%d seconds from the fourth), want ≥ %.2f", sum/float64(max(n, 1)), n, 0.95*tc.share)
			}
		})
	}
}

// deep-chain and many-servers have one API: in hung-dependency every
// request hangs for the middle third, and what matters is the recovery.
//
// deep-chain: the relearn takes the 2 s of the abandoned requests as the
// service's own latency, on a lease. The first window once the dependency
// is back still holds slow answers; the lease ended there with that
// window's rtt as the baseline, three times the settled one, which read
// the queue the limit then let in as the service's latency: no goodput for
// the last third. The lease now ends at the settled baseline.
//
// many-servers (512 workers, 500 ms): the hang cut the limit to about 10,
// and it grew back by √limit a window of one 450 ms rtt: 0.01 to 0.14 of
// proportional a second for the rest of the run. A run cut to an eighth
// of where it began now doubles back towards half of that start, and a
// window in which nothing finished (the hang) no longer ends the run.
func TestDefaultPolicyRecoversAfterAHang(t *testing.T) {
	for _, tc := range []struct {
		app  string
		from int
		want float64
	}{
		{"deep-chain", 43, 0.7},
		{"many-servers", 44, 0.8},
	} {
		t.Run(tc.app, func(t *testing.T) {
			t.Parallel()
			app := adversarialApp(t, tc.app)
			r := simulateVirtual(t, app, "hung-dependency", defaultPolicy(t))
			var sum float64
			var n int
			for _, s := range r.Seconds {
				if s.T >= tc.from && s.T < 60 { // the hang is 20–40 s
					sum += s.GoodputRatio
					n++
				}
			}
			if n == 0 || sum/float64(n) < tc.want {
				t.Errorf("goodput ratio %.2f per second after the hang (%d seconds), want ≥ %.2f", sum/float64(max(n, 1)), n, tc.want)
			}
		})
	}
}

// many-servers answers in 500 ms, five ticks: a controller that decides
// every tick grows the limit past the 512 workers before the queue shows,
// then cuts every tick while that queue drains, down to a third of the
// capacity (0.78 of the share in the steady half, before windows lasted
// one round trip). Deciding once per baseline rtt keeps ≥ 0.95 with p99
// within a tenth of the SLO: the default knows no SLO, and the queue its
// tolerance allows over a 480 ms baseline (1.5×) puts the p99 of this
// app, whose SLO is twice its service time, at 0.98–1.03 of it,
// whichever of the first windows the baseline learned from.
func TestDefaultPolicyDecidesOncePerRoundTrip(t *testing.T) {
	app := adversarialApp(t, "many-servers")
	r := simulateVirtual(t, app, "steady", defaultPolicy(t))
	api := r.PerAPI["thumbnail"]
	if got := r.Steady.GoodputRatio; got < 0.95 {
		t.Errorf("steady goodput %.2f of proportional, want ≥ 0.95", got)
	}
	if api.Steady.P99Ms > 1.1*api.SLOMs {
		t.Errorf("steady p99 %.0f ms, over 1.1 × the %.0f ms SLO", api.Steady.P99Ms, api.SLOMs)
	}
}

// random-91: api1 (a costly chain) and api2 (one 6 ms call, a 50 ms SLO)
// share a 9-worker service; in hung-dependency api1's calls hang at the
// entry for the middle third, holding no worker. Its requests, each
// holding a slot until its client gives up, once filled the room api2
// left in the limit: the limit kept binding, the controller kept growing
// it, and when the dependency came back the thousands let in reached the
// service at once (api2's steady p99 455 ms). An unanswered API now gets
// at most a quarter of the limit. The bound is 1.25 × the SLO, not the
// SLO: the limit still grows unused to 70 during the hang (about 20 in
// flight), and since a test's cap goes by doubling, a run of cuts from
// it lasts until relearn_after and the relearn restores it (58 ms at
// second 48; 49 ms before, where a window broke the run by chance;
// docs/simulator.md, "A test's cap goes the way slow start comes").
func TestDefaultPolicyLetsNoHerdInDuringAHang(t *testing.T) {
	app, err := BuiltinApp("random:91")
	if err != nil {
		t.Fatal(err)
	}
	r := simulateVirtual(t, app, "hung-dependency", defaultPolicy(t))
	if st := r.PerAPI["api2"]; st.Steady.P99Ms > 1.25*st.SLOMs {
		t.Errorf("api2's steady p99 %.0f ms, want within 1.25 × its %.0f ms SLO", st.Steady.P99Ms, st.SLOMs)
	}
}

// TestDefaultPolicyHoldsANoisyMix: random-61 is one 7-worker service, five
// APIs of 2–4 ms and one of 64 ms whose latency spreads widely (σ 0.74).
// The controller's first baseline, the lowest of ten means of fifty such
// answers, read the mix's latency far low, every window without a queue
// then read as one, and the cuts held the limit at 1.5–2: 0.42 of
// proportional in capacity-drop's steady half on seed 1, 0.69 on average
// over seeds 1–6. Windows that noisy now put the first baseline at their
// lowest mean plus their typical standard error.
func TestDefaultPolicyHoldsANoisyMix(t *testing.T) {
	app, err := BuiltinApp("random:61")
	if err != nil {
		t.Fatal(err)
	}
	steadyOverSeeds(t, app, "capacity-drop", 6, 0.65, 0.8, "")
}

// steadyOverSeeds runs app through scenario under the default policy on
// seeds 1 to seeds and checks the steady half's goodput ÷ proportional:
// at least each on every seed and mean on average. note, if not empty,
// is added to a failure (what was measured when the floors were set).
func steadyOverSeeds(t *testing.T, app App, scenario string, seeds int, each, mean float64, note string) {
	t.Helper()
	if note != "" {
		note = " (measured: " + note + ")"
	}
	var sum float64
	for seed := 1; seed <= seeds; seed++ {
		sc, err := NewScenario(scenario, app, ScenarioOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := Simulate(context.Background(), SimConfig{App: app, Scenario: sc, Virtual: true, Seed: uint64(seed), Policy: defaultPolicy(t)})
		if err != nil {
			t.Fatal(err)
		}
		got := r.Steady.GoodputPerProportional
		if got < each {
			t.Errorf("seed %d: steady goodput %.2f of proportional, want at least %.2f%s", seed, got, each, note)
		}
		sum += got
	}
	if m := sum / float64(seeds); m < mean {
		t.Errorf("steady goodput %.2f of proportional on average over seeds 1–%d, want at least %.2f%s", m, seeds, mean, note)
	}
}

// A service that starts at ten times its capacity: until a policy's first
// tick its actuators have no setpoint and fail open, so a first tick an
// interval after the load let 1,400 requests into random-52 (capacity
// 1,400/s) in its first 100 ms. The baseline then learned that second of
// queue (126 ms against 7.5 ms without one), and its decay lost the race
// to slow start: a standing queue twice the SLO, every answer late, no
// goodput for the whole minute (boutique: 0.19 of proportional). A new
// policy now ticks as it loads. Each run keeps its goals: the steady
// total, the first 10 s and the p99 from second 3.
func TestDefaultPolicyColdStartAtTenTimesCapacity(t *testing.T) {
	for _, name := range []string{"boutique", "random:52", "random:47"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			app, err := BuiltinApp(name)
			if err != nil {
				t.Fatal(err)
			}
			r := simulateVirtual(t, app, "cold-start", defaultPolicy(t), ScenarioOptions{Load: 10})
			for _, m := range GoalMisses(r, nil) {
				if m.Goal != GoalSteadyPerAPI && m.Goal != GoalSteadyP99 {
					t.Error(m.Detail)
				}
			}
		})
	}
}

// Apps whose many cheap requests share one pool with a few costly ones
// (apps/adversarial: cheap-majority, 95 % at 1 ms and 5 % at 300 ms;
// slo-spread, 90 % at 3 ms with a 20 ms SLO; cost-100x, 2 ms and 101 ms)
// keep their steady goodput over seeds 1–5. What they keep depends on the
// baseline the controller learns in its first seconds, while the APIs'
// baselines settle one after another, and on how the shared latency
// weighs a queue against the cheap requests' latency (docs/simulator.md,
// "A slow start ahead of its answers, and a first mix that settles
// piecemeal", and "The first mix settles as one, and a queue is judged by
// the requests it delays"): before both, cheap-majority kept 0.59 on seed
// 5 (its costly API settled 3.5 s after the cheap one, and the shared
// latency read the cheap API's 1 ms meanwhile), and counting answers raw
// until their API settles, alone, took slo-spread from 0.87 to 0.5 (the
// static oracle's figure). Each is a floor a change to either must keep.
// The steady half, at load 4.
func TestDefaultPolicyKeepsMixesOfCheapAndCostly(t *testing.T) {
	for _, tc := range []struct {
		app         string
		each, mean  float64 // the floors: every seed, and their mean
		lastMeasure string
	}{
		{"cheap-majority", 0.82, 0.88, "0.87, 0.95, 0.94, 0.92, 0.96"},
		{"slo-spread", 0.7, 0.78, "0.83, 0.85, 0.86, 0.79, 0.86"},
		{"cost-100x", 0.9, 0.95, "0.99, 1.00, 1.00, 0.97, 0.97"},
	} {
		t.Run(tc.app, func(t *testing.T) {
			t.Parallel()
			app := adversarialApp(t, tc.app)
			steadyOverSeeds(t, app, "steady", 5, tc.each, tc.mean, tc.lastMeasure)
		})
	}
}

// random-11 starts at three times its capacity on services that turn over
// about 22 requests at a time. Slow start doubled each one-tick window on
// an rtt that had not yet seen the requests the doubling before let in:
// 24 to 768 in six ticks, 656 in flight, answers 1.8 s late; the first
// 10 s kept 0.67 of proportional and second 3 had a p99 7.6 × the SLO.
// Slow start now holds while more is in flight than the window's answers
// account for and their rtt has begun to rise.
func TestDefaultPolicyColdStartHoldsAheadOfItsAnswers(t *testing.T) {
	app, err := BuiltinApp("random:11")
	if err != nil {
		t.Fatal(err)
	}
	r := simulateVirtual(t, app, "cold-start", defaultPolicy(t))
	for _, m := range GoalMisses(r, nil) {
		if m.Goal == GoalColdStartRate || m.Goal == GoalColdStartP99 || m.Goal == GoalSteadyTotal {
			t.Error(m.Detail)
		}
	}
}

// random-12's api4 crosses a bottleneck of its own (svc4) and, at 4×,
// queues there. A test that halved its requests in flight drained the
// queue while the other APIs' excess stayed, but the cap was lifted at
// the test's end: api4's requests flooded the shared limit again, and
// the cut that followed took every API's rate, every 13 s (the surge's
// p99 back within the SLO after 17 s; the steady half 0.41 of optimal).
// The cap now stays as api4's own limit, and the others keep the rest.
func TestDefaultPolicyCapsAnAPIsOwnQueue(t *testing.T) {
	app, err := BuiltinApp("random:12")
	if err != nil {
		t.Fatal(err)
	}
	for _, scenario := range []string{"steady", "surge"} {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			r := simulateVirtual(t, app, scenario, defaultPolicy(t))
			for _, m := range GoalMisses(r, nil) {
				t.Error(m.Detail)
			}
			if got := r.Steady.GoodputPerOptimal; got < 0.9 {
				t.Errorf("steady half: %.2f of optimal, want ≥ 0.9", got)
			}
		})
	}
}

// apps/adversarial/deep-chain.json: eight services in a chain, a
// 4-worker bottleneck in the middle and an unbounded 150 ms call at the
// end, so the latency without a queue (161 ms) is mostly time no queue
// adds to. The tolerance of 1.5 × that baseline let 80 ms of queue stand
// at the bottleneck with about 200 requests in flight: p99 408 ms
// against the 300 ms SLO and 0.78–0.79 of proportional in the steady
// half of steady, ramp and priority-mix (static 0.95). With many in flight,
// the queue the tolerance lets stand is counted in requests
// (components.queueAllowance): 0.91–0.92 of proportional.
func TestDefaultPolicyKeepsAQueueShortBehindASlowCall(t *testing.T) {
	app := adversarialApp(t, "deep-chain")
	for _, scenario := range []string{"steady", "ramp", "priority-mix"} {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			r := simulateVirtual(t, app, scenario, defaultPolicy(t))
			if got := r.Steady.GoodputPerProportional; got < 0.9 {
				t.Errorf("steady half: %.2f of proportional, want ≥ 0.9", got)
			}
		})
	}
}

// A service slower than a tick climbs from the initial limit once per
// turnover of its requests, not once per window: on the old slow start
// many-servers (500 ms, 512 workers) and deep-chain (about 170 ms) kept
// 0.01 and 0.09 of proportional in the first 10 s of a cold start.
func TestDefaultPolicyClimbsQuicklyOnASlowService(t *testing.T) {
	for _, c := range []struct {
		file string
		want float64
	}{{"many-servers", 0.2}, {"deep-chain", 0.35}} {
		t.Run(c.file, func(t *testing.T) {
			t.Parallel()
			app := adversarialApp(t, c.file)
			r := simulateVirtual(t, app, "cold-start", defaultPolicy(t))
			var goodput, share float64
			for _, s := range r.Seconds {
				if s.T >= 0 && s.T < 10 {
					goodput += float64(s.Goodput)
					share += s.CapacityRPS
				}
			}
			if got := goodput / share; got < c.want {
				t.Errorf("first 10 s: %.2f of proportional, want ≥ %.2f", got, c.want)
			}
		})
	}
}

// When a dependency that hung for a third of the run answers again, the
// requests it held are still in flight until the client's timeout lets
// them go. The limit in force keeps room for them, so that new requests
// are served at once: with the limit cut to where the lease began,
// two-tier served 192 and 33 req/s in the two seconds after the hang
// (of about 320). How much room the hung requests leave depends on where
// the windows fall when the dependency answers again, so the test runs
// eight seeds: each of the two seconds keeps 0.6 of what the service can
// serve, and their mean 0.9 (measured: 0.71–1.13, mean 0.96; before the
// limit gave back the room it did not use, 0.54–1.12, mean 0.92; since
// the first window closes on a turnover, 0.62–1.13, mean 0.93: at seed 2
// the hang left the limit at 43, not 51, and the room its requests hold
// after it with it).
func TestDefaultPolicyServesAtOnceAfterAHang(t *testing.T) {
	app, err := BuiltinApp("two-tier")
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	var n int
	for seed := uint64(1); seed <= 8; seed++ {
		r := simulateSeed(t, app, "hung-dependency", defaultPolicy(t), seed)
		for _, s := range r.Seconds {
			if s.T != 40 && s.T != 41 {
				continue
			}
			share := float64(s.Goodput) / s.CapacityRPS
			if share < 0.6 {
				t.Errorf("seed %d, second %d after the hang: goodput %d req/s, want ≥ 0.6 × the %.0f it can serve", seed, s.T-40, s.Goodput, s.CapacityRPS)
			}
			sum += share
			n++
		}
	}
	if n != 16 {
		t.Fatalf("%d seconds after the hang over eight seeds, want 16", n)
	}
	if m := sum / float64(n); m < 0.9 {
		t.Errorf("the two seconds after the hang keep %.2f of what the service can serve on average over eight seeds, want ≥ 0.9", m)
	}
}

// tiny-capacity (one worker of 200 ms) starts with its initial limit
// queued: the baseline learns 2 to 2.7 service times, and the drain probe
// measures at one request in flight. It measures ten baselines over the
// tolerance at most, so that two workers, whose second idles while it
// runs, pay no more than that. At seeds 7 and 16 the answers were slow
// enough that fewer than ten came within it: a probe that needed ten
// kept the queued baseline, and the cold start 0.55 and 0.69 of
// proportional. Five answers under the baseline over the tolerance are
// taken.
func TestDefaultPolicyDrainProbeTakesAFewAnswersFarUnderTheBaseline(t *testing.T) {
	coldStartKeeps(t, "apps/adversarial/tiny-capacity.json", []uint64{7, 16}, 0.75)
}

// Two workers of 600 ms (testbed/apps/heldout/two-slow-workers.json) at
// three times their capacity from the first second. Slow start doubled
// from 6 to 12 on a stretch whose answers rose from 737 to 1,290 ms but
// whose mean, with the first two answered at 737 and 669 ms (requests
// admitted before the doubling), stayed under the tolerance: 13 in
// flight, answers past the 3 s SLO for 20 s, and the cold start kept
// 0.83 and 0.86 of proportional at seeds 1 and 3. The stretch after a
// doubling is now judged on the answers after those of the requests in
// flight when it doubled, and a rise there within the tolerance ends
// slow start at the limit in force.
func TestDefaultPolicySlowStartJudgesWhatTheDoublingLetIn(t *testing.T) {
	coldStartKeeps(t, "apps/heldout/two-slow-workers.json", []uint64{1, 3}, 0.9)
}

// random-40 starts at 1.5× its capacity. The answers after the doubling
// from 3 to 6 read 101 ms against a threshold of 99: a real rise of a
// quarter, but the rtt at the limit in force and within the tolerance.
// Undoing the doubling ended slow start at 3, from where the windows
// climb by √limit, and the first 10 s kept 0.56 of proportional. Slow
// start now ends at 6 there.
func TestDefaultPolicySlowStartEndsWhereAFreshRiseIsWithinTheTolerance(t *testing.T) {
	app, err := BuiltinApp("random:40")
	if err != nil {
		t.Fatal(err)
	}
	r := simulateVirtual(t, app, "cold-start", defaultPolicy(t), ScenarioOptions{Load: 1.5})
	if got := firstTenSeconds(r); got < 0.7 {
		t.Errorf("first 10 s: %.2f of proportional, want ≥ 0.7", got)
	}
}

// random-3914's cold start (seed 1): its APIs' latencies differ tenfold
// at services of five and seven workers, and at 6 in flight a probe
// stretch of 13 answers read 95 ms against a bound of 79, noise that no
// queue at those services can make. The probe undid its doubling and
// ended slow start at 3, from where the windows climbed by √limit: 0.46
// of proportional in the first 10 s. A rise is now one by two standard
// errors of the answers it is read from.
func TestDefaultPolicySlowStartSeesThroughAMixsNoise(t *testing.T) {
	app, err := BuiltinApp("random:3914")
	if err != nil {
		t.Fatal(err)
	}
	r := simulateVirtual(t, app, "cold-start", defaultPolicy(t))
	if got := firstTenSeconds(r); got < 0.6 {
		t.Errorf("first 10 s: %.2f of proportional, want ≥ 0.6", got)
	}
}

// The same cold starts with the apps' SLOs stated (default-slo): the p90
// that the mixes of random-3914 and random-3918 show at 3 in flight, with
// no queue, is over the setpoint, half the tightest SLO. Before the
// baseline was learned, latency over the setpoint cut whatever the
// baseline, and the initial limit held for the baseline's ten windows, 8
// s: 0.23 and 0.28 of proportional in the first 10 s (0.62 and 0.76
// without the SLOs). The setpoint is now judged against the latency the
// windows show without a queue from their first sample on.
func TestDefaultSLOSlowStartsPastASetpointUnderTheOwnLatency(t *testing.T) {
	for _, name := range []string{"random:3914", "random:3918"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			app, err := BuiltinApp(name)
			if err != nil {
				t.Fatal(err)
			}
			r := simulateVirtual(t, app, "cold-start", sloPolicyOf(t, app))
			if got := firstTenSeconds(r); got < 0.6 {
				t.Errorf("first 10 s: %.2f of proportional, want ≥ 0.6", got)
			}
		})
	}
}

// random-1028 held a standing queue before its dependency slowed: every
// window read as queueing, and the √limit of each cut gave the limit back,
// so the run of queueing windows never ended. It had begun where a noisy
// window dipped the limit to 8.9; when the dependency slowed, the cuts
// took the limit from 10.5 to 6.8, never under earlyFraction (5.7) of
// 8.9 nor half of it, and nothing relearned: 20 s at 0.6 of
// proportional, 0.86 over the steady half. A run whose limit is back
// where it began now starts over from the limit in force.
func TestDefaultPolicyRelearnsASlowerDependencyAfterAHeldQueue(t *testing.T) {
	app, err := BuiltinApp("random:1028")
	if err != nil {
		t.Fatal(err)
	}
	if got := simulateVirtual(t, app, "slow-dependency", defaultPolicy(t)).Steady.GoodputRatio; got < 0.93 {
		t.Errorf("steady half: %.2f of proportional, want ≥ 0.93", got)
	}
}

// slo-spread's APIs have SLOs from 20 ms to 5 s. With `slo` alone, the
// tightest, the p90 of every answer is held to half of 20 ms: the costly
// APIs' own latency reads as an overload from the first tick, and the
// surge kept 0.37 of proportional (batch 0.35 of its share). With each
// API's own SLO in api_slos each answer counts against its own SLO.
func TestDefaultSLOHoldsEachAPIToItsOwnSLO(t *testing.T) {
	app := adversarialApp(t, "slo-spread")
	if got := simulateVirtual(t, app, "surge", sloPolicyOf(t, app)).Steady.GoodputRatio; got < 0.85 {
		t.Errorf("steady half %.2f of proportional, want ≥ 0.85", got)
	}
}

// random-1020's bottleneck needs about 6 requests in flight to stay busy.
// With its SLOs stated, the setpoint's cuts took the limit to what its
// target allowed and no more, and the limit sawed from 8 to 3: 0.86 of
// proportional over the steady half. The setpoint's cut now leaves the
// queueing cut's √base of headroom.
func TestDefaultSLOLeavesTheBottleneckBusy(t *testing.T) {
	app, err := BuiltinApp("random:1020")
	if err != nil {
		t.Fatal(err)
	}
	if got := simulateVirtual(t, app, "steady", sloPolicyOf(t, app)).Steady.GoodputRatio; got < 0.93 {
		t.Errorf("steady half %.2f of proportional, want ≥ 0.93", got)
	}
}

// random:11 under a surge: api1 and api2 cross a 15-worker service that
// the busier api3 and api4 do not. A test capped api1, api2 (whose queue
// beyond the shared one was too small to test it too) took the slots the
// cap freed at the same service, the queue stayed, and the test judged it
// api1's slower dependency. Its latency then left the limit's signal, the
// limit grew from 60 to 177, and api2's steady p99 reached 551 ms (SLO
// 230), api1's 240 ms (SLO 210). A test whose freed slots went to the
// APIs that showed a queue beyond the shared one proves no slower
// dependency (Separate), and every API's steady p99 is within its SLO.
func TestDefaultPolicyTestIsNotFooledByBackfill(t *testing.T) {
	app := RandomAppOf(11)
	r := simulateVirtual(t, app, "surge", defaultPolicy(t))
	steadyP99sWithinSLOs(t, app, r)
}

// random:2429 under a hung dependency: api1's calls hang for the middle
// third, and api2 queues at a bottleneck of its own, under a cap of its
// own. With api1 unanswered, no other API was measured, and after the
// shared excess's hold the cap went: api2's requests in flight went from
// 3 to 29 and its answers took 300 ms (SLO 150), and it kept 0.63 of its
// share over the steady half. An own queue's cap outlasts the others'
// silence (Separate).
func TestDefaultPolicyKeepsAnOwnQueuesCapWhileAnotherAPIHangs(t *testing.T) {
	app := RandomAppOf(2429)
	r := simulateVirtual(t, app, "hung-dependency", defaultPolicy(t))
	if got := r.PerAPI["api2"].Steady.GoodputPerProportional; got < 0.8 {
		t.Errorf("api2: steady-half goodput %.2f of its share, want ≥ 0.8", got)
	}
}

// random:2608 under slow-api: api1, the only API to cross a 10-worker
// service and held there under a cap of its own, waits 330 ms longer on a
// dependency of its own for the middle third. The cuts of its cap left
// that time, and it went to the shared limit, whose controller read its
// slower answers as everyone's queue: 33 slots cut to 4 for 15 s, and the
// other three APIs kept 0.03 of their goodput, 0.53–0.69 of their shares
// over the steady half. The cap learns the dependency's time (Separate).
// Over seeds 1–8 each keeps 0.75–0.96 (one episode on seed 1, where the
// limit grew from 92 to 260 in a second on api1's held requests), 0.89
// on average.
func TestDefaultPolicyKeepsTheOthersThroughAnOwnQueuesSlowerDependency(t *testing.T) {
	app := RandomAppOf(2608)
	var sum float64
	for seed := uint64(1); seed <= 8; seed++ {
		r := simulateSeed(t, app, "slow-api", defaultPolicy(t), seed)
		for _, api := range []string{"api2", "api3", "api4"} {
			got := r.PerAPI[api].Steady.GoodputPerProportional
			if got < 0.7 {
				t.Errorf("seed %d, %s: steady-half goodput %.2f of its share, want ≥ 0.7", seed, api, got)
			}
			sum += got
		}
	}
	if m := sum / 24; m < 0.85 {
		t.Errorf("steady-half goodput %.2f of their shares on average over eight seeds, want ≥ 0.85", m)
	}
}

// random:2710's surge under the default with its SLOs stated: api3's
// own bottleneck queued 80 deep under a cap of its own, and four cuts in a
// row had not drained it. Its excess stayed, and no other API queued;
// taken for a dependency's time, that queue was held, and api3's p99 went
// to 7 × its SLO. Its answers a second had kept the saturated
// bottleneck's rate: a queue, not a slower dependency (Separate).
func TestDefaultSLOPolicyTakesNoDeepQueueForADependencysTime(t *testing.T) {
	app := RandomAppOf(2710)
	r := simulateVirtual(t, app, "surge", sloPolicyOf(t, app))
	if got, slo := r.PerAPI["api3"].Steady.P99Ms, app.APIs[2].SLO; got > 3*float64(slo.Milliseconds()) {
		t.Errorf("api3: steady p99 %.0f ms, want within 3 × its SLO %v", got, slo)
	}
}

// random:3's slow dependency adds 10 ms to every request, holding no
// worker, for 20 s of the steady half. The relearned baseline took the
// queue the limit lets stand from 11 ms to 18: api2, whose SLO is 40
// ms, answered at a p99 of 43 ms over the steady half, 1.1–1.5 × its SLO
// second by second while the dependency was slow. Its queue is the
// bottleneck's, which needs no more of one than before (queueThreshold).
func TestDefaultPolicyKeepsItsQueueThroughASlowerDependency(t *testing.T) {
	app := RandomAppOf(3)
	r := simulateVirtual(t, app, "slow-dependency", defaultPolicy(t))
	for _, api := range app.APIs {
		if got, slo := r.PerAPI[api.Name].Steady.P99Ms, api.SLO; got > float64(slo.Milliseconds()) {
			t.Errorf("%s: steady p99 %.0f ms, want within its SLO %v", api.Name, got, slo)
		}
	}
	if got := r.Steady.GoodputPerProportional; got < 0.95 {
		t.Errorf("steady-half goodput %.2f of proportional, want ≥ 0.95", got)
	}
}

// random:3 under capacity-drop with its SLOs stated: api2's p90, held
// to half of its 40 ms SLO, passed that setpoint just where the queue
// the limit let in passed the baseline's tolerance. The setpoint's cut of
// a few per cent, with its √limit of headroom, grew the limit, and it
// stood in for the queueing cut: api2's steady p99 was 49 ms, where the
// default without the SLO keeps 35 (SLOConcurrencyController).
func TestDefaultSLOPolicyCutsAQueueAtLeastAsTheDefaultDoes(t *testing.T) {
	app := RandomAppOf(3)
	r := simulateVirtual(t, app, "capacity-drop", sloPolicyOf(t, app))
	for _, api := range app.APIs {
		if got, slo := r.PerAPI[api.Name].Steady.P99Ms, api.SLO; got > float64(slo.Milliseconds()) {
			t.Errorf("%s: steady p99 %.0f ms, want within its SLO %v", api.Name, got, slo)
		}
	}
}

// hetero-cost's slow dependency: the relearned baseline is the lowest of
// windows whose mix of a cheap and a twenty-times costlier API spreads
// their means by several ms, so the decaying lease reads the typical
// window over it as a queue, and the cuts take the throughput with the
// limit. A lease that the cuts' fallen throughput renews (relearnEarly,
// throughputFell) keeps it: 0.92 of proportional over the steady half
// where only a halving renewed it, 0.96 with the renewal.
func TestDefaultPolicyRenewsALeaseWhoseCutsCostThroughput(t *testing.T) {
	r := simulateVirtual(t, HeteroCost(), "slow-dependency", defaultPolicy(t))
	if got := r.Steady.GoodputPerProportional; got < 0.94 {
		t.Errorf("steady-half goodput %.2f of proportional, want ≥ 0.94", got)
	}
}

// apps/adversarial/deep-chain.json under slow-api: its one API's calls
// take 300 ms more, over a settled baseline of 160, for the middle
// third. Its lease is too slow for the lease probe to check, and held at
// the leased latency (queueThreshold) the limit it allowed filled the
// freed time with a queue once the dependency was fast again: every
// answer over the SLO for the rest of the run, 0 of proportional over
// the steady half. The decay's cuts drain it (0.62).
func TestDefaultPolicyEndsALeaseTheProbeCannotCheck(t *testing.T) {
	app := adversarialApp(t, "deep-chain")
	r := simulateVirtual(t, app, "slow-api", defaultPolicy(t))
	if got := r.Steady.GoodputPerProportional; got < 0.5 {
		t.Errorf("steady-half goodput %.2f of proportional, want ≥ 0.5", got)
	}
}

// random:2803 under slow-api with its SLOs stated: one API's dependency
// slows by its SLO, so windows differ by how many of its answers they
// hold. One that held few read under 0.8 of the leased baseline, ended
// the lease, and the limit fell to its floor for the rest of the slow
// third: 0.65 of proportional over the steady half (the static oracle
// keeps 0.80). A lease ends on a fast window only by two of its standard
// errors (SLOConcurrencyController).
func TestDefaultSLOPolicyKeepsALeaseThroughANoisyWindow(t *testing.T) {
	app := RandomAppOf(2803)
	r := simulateVirtual(t, app, "slow-api", sloPolicyOf(t, app))
	if got := r.Steady.GoodputPerProportional; got < 0.76 {
		t.Errorf("steady-half goodput %.2f of proportional, want ≥ 0.76", got)
	}
}

// cheap-minority: lookup (2.8 ms, SLO 40 ms) is a tenth of the requests
// and visits twice a 7-worker pool where page and export (SLOs 120 and
// 330 ms) spend 22 to 39 ms. The limit's standing queue, about the
// tolerance over a baseline the costly APIs set, put 14 ms of waiting in
// each visit, and lookup's steady p99 at 53 ms; the pooled p90 of the
// scaled latencies is the costly APIs' and read under the setpoint. With
// the SLOs stated, the worst API's own p99 over the last seconds
// (worst_api_latency_p99_ms) shrinks the allowance until lookup's is
// within its SLO, and the pool stays busy.
func TestDefaultSLOSizesTheQueueByTheCheapMinority(t *testing.T) {
	app := adversarialApp(t, "cheap-minority")
	r := simulateVirtual(t, app, "steady", sloPolicyOf(t, app))
	if got := r.Steady.GoodputRatio; got < 0.93 {
		t.Errorf("steady half %.2f of proportional, want ≥ 0.93", got)
	}
	steadyP99sWithinSLOs(t, app, r)
}

// hetero-cost at 0.8 of its capacity after a retry storm: its database
// stalls now and then on a clump of costly reports, and a cut at each
// clump refused lookups the database had room for, which the clients'
// retries brought back past lookup's SLO (steady p99 1.37 × at seed 1).
// With the SLO stated, a queue the service drains on its own within the
// setpoint is let through (SLOConcurrencyController), and every API's
// steady p99 is within its SLO.
func TestDefaultSLOLetsBurstsUnderCapacityThroughARetryStorm(t *testing.T) {
	app, err := BuiltinApp("hetero-cost")
	if err != nil {
		t.Fatal(err)
	}
	pol := sloPolicyOf(t, app)
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			r := simulateSeed(t, app, "retry-storm", pol, seed)
			if got := r.Steady.GoodputRatio; got < 0.95 {
				t.Errorf("steady half %.2f of proportional, want ≥ 0.95", got)
			}
			steadyP99sWithinSLOs(t, app, r)
		})
	}
}

// apps/adversarial/repeat-visits.json's slow dependency: a group test
// found feed's and report's queue at the database they share, and their
// caps are cut together. As the dependency came back, the joint cuts
// halved feed's own cap while the growth went to report, which was short
// of more slots; the excess stayed (report's requests held the database),
// and the check for cuts in a row that drain nothing handed feed to the
// shared limit: its steady p99 went to 206 ms against its 120 ms SLO.
// A test's members count their cuts in a row in the room of the group.
func TestDefaultPolicyKeepsAGroupsQueueWhileItsSplitMoves(t *testing.T) {
	app := adversarialApp(t, "repeat-visits")
	r := simulateVirtual(t, app, "slow-dependency", defaultPolicy(t))
	steadyP99sWithinSLOs(t, app, r)
}

// repeat-visits' surge (seed 1): feed and report queue at db, which only
// they cross, and report also crosses search, where home's and search's
// excesses of 5.5 ms fell by 2.9 ms when the group test halved report's
// requests in flight. Judged by that fall as a share of their excess
// (half), the verdict was the shared limit's after every test, and the
// limit's queue stood in db: the steady half kept 1.00 of proportional
// with feed's p99 at 0.9 of its SLO. An outside API now blocks a group's
// verdict only where it also fell by a third of the least member's fall
// in milliseconds (report's 15 ms): the group keeps its caps.
func TestDefaultPolicyKeepsAGroupWhoseMemberCrossesAnotherService(t *testing.T) {
	app := adversarialApp(t, "repeat-visits")
	r := simulateVirtual(t, app, "surge", defaultPolicy(t))
	if got := r.Steady.GoodputRatio; got < 1.3 {
		t.Errorf("steady half %.2f of proportional, want ≥ 1.3 (the group's caps)", got)
	}
	steadyP99sWithin(t, app, r, 0.8)
}

// random:3615's retry storm: api3 (2 ms, a 30 ms SLO) and api4 (62 ms, of
// which 35 at the same 10-worker service) share that service's queue.
// At seed 2 a test of api3 alone drained it by 2 ms of api3's 3.6, and
// api4's excess fell by 3.9 ms with it; but its excess at its highest,
// 6.8 ms, was a ninth of api4's baseline, and only an API whose excess
// reached a quarter of its baseline counted, so the queue read as
// api3's own: api3 was capped alone, api4 took the
// room, and api3 kept 0.53 of its share (p99 872 ms). A queue is paid in
// the same milliseconds by every request in it (ownFall). At seed 1 the
// two queue there as a group, and api3, judged against its 2 ms
// baseline, cut both caps at every millisecond of queue: api4's p99 went
// to 559 ms against 270 (each member judges the queue against the
// geometric mean of its baseline and the group's).
func TestDefaultPolicySharesAQueueOfACheapAndACostlyAPI(t *testing.T) {
	app := RandomAppOf(3615)
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			r := simulateSeed(t, app, "retry-storm", defaultPolicy(t), seed)
			if got := r.Steady.GoodputRatio; got < 0.95 {
				t.Errorf("steady half %.2f of proportional, want ≥ 0.95", got)
			}
			for _, api := range r.APIs {
				if got := r.PerAPI[api].Steady.GoodputPerProportional; got < 0.8 {
					t.Errorf("%s: steady half %.2f of its share, want ≥ 0.8", api, got)
				}
			}
		})
	}
}

// TestDefaultPolicyEndsOverlappingTestsTogether: random-3807's svc1 has
// two workers, and only api2 (three visits) and api3 (one) cross it. Their
// tests began 0.6 s apart; each one's excess fell by half or more under
// its cap, but a test that another overlapped was no verdict, both went
// to the shared limit, which the others' answers kept from seeing the
// queue, and svc1 stayed full with 22 ms of queue: api2's p99 192 ms
// against its 150 ms SLO. Tests that overlap end together, and the two
// keep their caps as a group.
func TestDefaultPolicyEndsOverlappingTestsTogether(t *testing.T) {
	t.Parallel()
	app := RandomAppOf(3807)
	r := simulateSeed(t, app, "steady", defaultPolicy(t), 1)
	steadyP99sWithinSLOs(t, app, r)
	found := false
	for _, s := range r.Services {
		if s.Name == "svc1" {
			found = true
			if s.SteadyQueueingMs > 15 {
				t.Errorf("svc1: %.1f ms of queue over the steady half, want the group's cap to hold it under 15", s.SteadyQueueingMs)
			}
		}
	}
	if !found {
		t.Errorf("no svc1 in the report's services %+v", r.Services)
	}
}

// TestDefaultPolicyReadsAGroupsQueueAsOne: random-3626's api1 and api2
// share svc1 (two workers) as a group, and api2 also crosses svc3 with
// api3, outside the group. Each member cutting on its own excess, api2's
// (with svc3's queue in it) was over its tolerance at every tick: its cap
// sat at one slot, 0.14 of its share, while api1 grew to 1.32 of its own.
// The group reads its queue as one, and both keep their shares.
func TestDefaultPolicyReadsAGroupsQueueAsOne(t *testing.T) {
	t.Parallel()
	app := RandomAppOf(3626)
	r := simulateSeed(t, app, "steady", defaultPolicy(t), 1)
	for _, api := range r.APIs {
		if got := r.PerAPI[api].Steady.GoodputPerProportional; got < 0.8 {
			t.Errorf("%s: steady half %.2f of its share, want ≥ 0.8", api, got)
		}
	}
	if got := r.Steady.GoodputRatio; got < 1.5 {
		t.Errorf("steady half %.2f of proportional, want ≥ 1.5 (api3, which does not cross svc1, is free of the group's caps)", got)
	}
}

// random-4063's costliest API (api1, two thirds of the bottleneck's work,
// σ 0.73) learned its own-latency baseline from its first answers at 0.7
// of its mean, and showed 15–20 ms over it at half load. A test at half
// load saw that excess fall by 9 ms from its highest, under three of its
// standard errors, and read it as a queue of its own: api1 stayed under a
// cap of its own while the others filled the bottleneck, 0.60 of its
// share in the steady scenario, 0.35 in the ramp. An own queue's fall
// must now also pass three standard errors.
func TestDefaultPolicyKeepsASpreadAPIOutOfAnOwnQueueOfNoise(t *testing.T) {
	app, err := BuiltinApp("random:4063")
	if err != nil {
		t.Fatal(err)
	}
	for _, scenario := range []string{"steady", "ramp"} {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			r := simulateVirtual(t, app, scenario, defaultPolicy(t))
			if got := r.PerAPI["api1"].Steady.GoodputPerProportional; got < 0.8 {
				t.Errorf("api1: steady half %.2f of its share, want ≥ 0.8", got)
			}
		})
	}
}

// cheap-minority's cold start: lookup, a tenth of the answers, has too few
// for a mean until the limit's doublings have filled the pool, and learned
// its baseline in that queue (34.4 ms; 4.0 after a warm-up), which hid its
// queue for the rest of the run: 0.40–0.43 of its share at seeds 1 and 3.
// From its answers before the queue it learns about 4.4 ms.
func TestDefaultPolicyLearnsACheapMinorityBaselineBeforeTheColdStartsQueue(t *testing.T) {
	app := adversarialApp(t, "cheap-minority")
	for _, seed := range []uint64{1, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			r := simulateSeed(t, app, "cold-start", defaultPolicy(t), seed)
			if got := r.PerAPI["lookup"].Steady.GoodputPerProportional; got < 0.55 {
				t.Errorf("lookup: steady half %.2f of its share, want ≥ 0.55", got)
			}
		})
	}
}

// TestDefaultPolicyCorrectsATooLowFirstBaseline: random-11's api2 (52 ms
// without a queue, its times spread widely) learned 36.6 ms from its first
// ten answers; a baseline too low never rose, its own latency read as a
// queue of its own, and under closed-loop users its cap held it to 0.53 of
// its share in slow-dependency while svc1 ran at 0.78. Until its partition
// settles, its calm answers raise the baseline.
func TestDefaultPolicyCorrectsATooLowFirstBaseline(t *testing.T) {
	t.Parallel()
	app := RandomAppOf(11)
	r := simulateVirtual(t, app, "slow-dependency", defaultPolicy(t), ScenarioOptions{Think: 100 * time.Millisecond})
	if got := r.PerAPI["api2"].Steady.GoodputPerProportional; got < 0.8 {
		t.Errorf("api2: steady goodput %.2f of its share, want ≥ 0.8", got)
	}
}

// TestDefaultPolicyTestsAnOwnQueueOnceItsAnswersCatchUp: random-4218's
// api1 (60 ms, the only API of note at a service of 4 workers) held 23
// requests at the surge's onset while its answers accounted for 7. A test
// begun then halved it to 11, still a queue deeper than the one its
// lagging answers showed: its latency rose under the cap, the verdict
// read a slower dependency, its latency left the shared limit's signal,
// and the limit let its queue grow to the client timeout (21 s to
// recover, every API refused for a second). Tested once its answers catch
// up with what it holds, the queue is its own, under a cap of its own.
func TestDefaultPolicyTestsAnOwnQueueOnceItsAnswersCatchUp(t *testing.T) {
	t.Parallel()
	r := simulateVirtual(t, RandomAppOf(4218), "surge", defaultPolicy(t), ScenarioOptions{})
	if r.RecoveryS == nil || *r.RecoveryS > 3 {
		t.Errorf("surge: p99 back within the SLO after %s, want ≤ 3 s", fmtRecoveryS(r.RecoveryS))
	}
	if got := r.PerAPI["api1"].GoodputPerProportional; got < 0.9 {
		t.Errorf("api1: %.2f of its share over the scenario, want ≥ 0.9", got)
	}
}

// random-4796's slow API: api1's dependency slows by its SLO (400 ms) and
// it is separated as a slower dependency; it and api2 cross svc4. A test
// of api2, whose latency rose with svc4's queue, halved api2's requests
// in flight, and api1 took the slots that freed: 67 more in flight over
// the test, its answers 43 ms beyond the excess its own test had found.
// The queue stayed, api2 read a slower dependency, its waits left the
// shared limit's signal, svc4's queue grew to 150 ms, and a group test
// later capped api2 at 0.31 of its share. A slower dependency's requests
// now count among those that may fill a tested queue back, its queue
// being its latency beyond what its test found (ownBackfill).
func TestDefaultPolicyCountsASlowerDependencyAmongTheBackfill(t *testing.T) {
	app := RandomAppOf(4796)
	r := simulateVirtual(t, app, "slow-api", defaultPolicy(t))
	if got := r.PerAPI["api2"].Steady.GoodputRatio; got < 0.7 {
		t.Errorf("api2: steady half %.2f of its share, want ≥ 0.7", got)
	}
}

// hetero-cost with its database's queries sharing its eight workers (2 ms
// lookups, 40 ms reports): past the workers every query slows by the same
// factor, so report's excess is twenty times lookup's in milliseconds.
// Read so, a test of report found a slower dependency at steady (its
// latency left the shared signal: p99 309 ms against its 300 ms SLO), and
// on the ramp a cap of its own whose cuts did not lower its excess learned
// that excess as a dependency's time (0.27 of its share). As a share of
// each API's baseline the cheap one's slowdown explains it (Separate,
// sharingSlack).
func TestDefaultPolicyKeepsTheCostlyAPIAtASharingDatabase(t *testing.T) {
	app := WithSharing(HeteroCost())
	steady := simulateVirtual(t, app, "steady", defaultPolicy(t))
	if got := steady.PerAPI["report"].Steady.P99Ms; got > 300 {
		t.Errorf("steady: report's steady p99 %.0f ms, want within its 300 ms SLO", got)
	}
	ramp := simulateVirtual(t, app, "ramp", defaultPolicy(t))
	for _, r := range []Report{steady, ramp} {
		for _, api := range []string{"lookup", "report"} {
			if got := r.PerAPI[api].Steady.GoodputPerProportional; got < 0.7 {
				t.Errorf("%s: %s's steady goodput %.2f of its share, want ≥ 0.7", r.Scenario, api, got)
			}
		}
	}
}
