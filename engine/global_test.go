package engine_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/fleet"
	"github.com/spillway-dev/spillway/internal/redistest"
	"github.com/spillway-dev/spillway/telemetry"
)

// globalSeconds is how long TestGlobalLimitAcrossFourEngines measures;
// docs/distributed.md's 60 s figure is
// go test ./engine/ -run TestGlobalLimitAcrossFourEngines -v -args -global-seconds=60
var globalSeconds = flag.Int("global-seconds", 6, "seconds TestGlobalLimitAcrossFourEngines measures, in 1 s windows")

// globalPolicy limits GET /pay at the control point ingress to 1000
// requests per second across every engine on the same Redis.
const globalPolicy = `
package p

policies: payments: {
	policy_name:         "payments"
	evaluation_interval: "100ms"
	components: [
		{RateLimiter: {selector: {control_point: "ingress", api: "GET /pay"}, scope: "global", key: "payments", in_ports: rate_limit: 1000}},
	]
}
`

func loadGlobalPolicy(t *testing.T) []engine.Spec {
	t.Helper()
	specs, diags := engine.LoadSource("global.cue", []byte(globalPolicy))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	return specs
}

// TestGlobalLimitAcrossFourEngines: four engines in one process share a
// global limit of 1000 req/s through a real Redis; a round-robin client
// offers 4000 req/s, and the fleet admits 1000 ±5 %, each engine about a
// quarter.
func TestGlobalLimitAcrossFourEngines(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("real time: about 8 s")
	}
	srv := redistest.Start(t)
	const instances, limit, offered = 4, 1000.0, 4000.0
	specs := loadGlobalPolicy(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	engines := make([]*engine.Engine, instances)
	points := make([]*controlpoint.ControlPoint, instances)
	for i := range engines {
		eng, err := engine.Start(ctx, engine.Options{Specs: specs, Redis: &fleet.Options{Client: redis.UniversalOptions{Addrs: []string{srv.Addr}}}})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		engines[i], points[i] = eng, eng.ControlPoints().Get("ingress")
	}

	var accepted, sent atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		for n := uint64(0); ctx.Err() == nil; time.Sleep(500 * time.Microsecond) {
			for due := uint64(time.Since(start).Seconds() * offered); n < due; n++ {
				tk, d := points[n%instances].Admit("GET /pay")
				if d == controlpoint.Accepted {
					tk.Done(true)
					accepted.Add(1)
				}
			}
			sent.Store(n)
		}
	}()
	defer wg.Wait()
	defer cancel()

	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	// commands counts the script calls clients sent Redis (every command an
	// engine sends is one); commandstats also counts the commands the
	// scripts run inside Redis, about 10 per call, which are not round
	// trips.
	commands := func() float64 {
		info, err := rdb.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0.0
		for _, line := range strings.Split(info, "\n") {
			name, stats, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
			if ok && (name == "cmdstat_evalsha" || name == "cmdstat_eval") {
				var calls float64
				fmt.Sscan(strings.SplitN(stats, ",", 2)[0], &calls)
				n += calls
			}
		}
		return n
	}
	time.Sleep(1500 * time.Millisecond) // the first ticks and syncs
	c0 := commands()
	a0, s0, t0 := accepted.Load(), sent.Load(), time.Now()
	// Every 1 s window too: the issue's ±10 %.
	worstWindow, prev, prevAt := 0.0, a0, t0
	for range *globalSeconds {
		time.Sleep(time.Second)
		now, at := accepted.Load(), time.Now()
		w := (float64(now-prev)/at.Sub(prevAt).Seconds() - limit) / limit * 100
		if math.Abs(w) > math.Abs(worstWindow) {
			worstWindow = w
		}
		prev, prevAt = now, at
	}
	secs := time.Since(t0).Seconds()
	opsPerInstance := (commands() - c0) / secs / instances
	rps, offeredRPS := float64(accepted.Load()-a0)/secs, float64(sent.Load()-s0)/secs
	over := (rps - limit) / limit * 100
	fmt.Printf("global-limit: instances=%d limit=%.0f admitted_rps=%.1f over_pct=%.2f\n", instances, limit, rps, over)
	t.Logf("offered %.0f req/s over %.1f s; worst 1 s window %+.2f %%", offeredRPS, secs, worstWindow)
	t.Logf("Redis commands: %.1f per second per instance", opsPerInstance)
	if opsPerInstance > 20 {
		t.Errorf("Redis commands: %.1f per second per instance, want at most 20 whatever the request rate", opsPerInstance)
	}
	if math.Abs(worstWindow) > 10 {
		t.Errorf("a 1 s window admitted %+.1f %% of the limit, want within ±10 %%", worstWindow)
	}
	if offeredRPS < 3*limit {
		t.Fatalf("the client offered only %.0f req/s; the test needs at least 3× the limit", offeredRPS)
	}
	if math.Abs(over) > 5 {
		t.Errorf("admitted %.1f req/s, want %.0f ±5 %%", rps, limit)
	}

	// /status shows each engine's share and the fleet it sees.
	for i, eng := range engines {
		st := eng.Status()
		a := st.Policies[0].Actuators[0]
		if a.Global == nil {
			t.Fatalf("engine %d: /status has no global section for %+v", i, a)
		}
		g := a.Global
		b, _ := json.Marshal(g)
		t.Logf("engine %d: %s", i, b)
		if g.Mode != "synced" || g.Live != instances || g.Key != "payments" || g.Limit != limit {
			t.Errorf("engine %d: global status %s, want synced with %d live members of payments at %v", i, b, instances, limit)
		}
		if math.Abs(float64(g.Share)-limit/instances) > 0.1*limit/instances {
			t.Errorf("engine %d: share %.1f, want about %.0f", i, float64(g.Share), limit/instances)
		}
	}
}

// TestGlobalLimitNeedsRedis: a global limit on an engine without Redis is
// a load error at its position, never a local limit in disguise.
func TestGlobalLimitNeedsRedis(t *testing.T) {
	_, err := engine.Start(context.Background(), engine.Options{Specs: loadGlobalPolicy(t), ManualTicks: true})
	if err == nil || !strings.Contains(err.Error(), "global.cue:") || !strings.Contains(err.Error(), `global rate limit "payments" needs Redis`) {
		t.Fatalf("err = %v, want a positioned error naming the key and Redis", err)
	}
}

// TestLocalPoliciesNeverTouchRedis: with Options.Redis pointing at nothing,
// an engine whose policies are all local starts, limits, and never syncs.
func TestLocalPoliciesNeverTouchRedis(t *testing.T) {
	specs, diags := engine.LoadSource("local.cue", []byte(strings.Replace(globalPolicy, `scope: "global", key: "payments", `, "", 1)))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, ManualTicks: true,
		Redis: &fleet.Options{Client: redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	eng.Tick()
	if a := eng.Status().Policies[0].Actuators[0]; a.Global != nil || a.Setpoint != 1000 {
		t.Errorf("local limit: %+v, want setpoint 1000 and no global section", a)
	}
}

// TestGlobalLimitMetricsShowFailStatic: /metrics shows the fleet's limit,
// the engine's share, the live members, and fail-static while Redis is
// down.
func TestGlobalLimitMetricsShowFailStatic(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng, err := engine.Start(ctx, engine.Options{Specs: loadGlobalPolicy(t), Redis: &fleet.Options{Client: redis.UniversalOptions{Addrs: []string{srv.Addr}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	metrics, err := telemetry.New(ctx, eng)
	if err != nil {
		t.Fatal(err)
	}
	defer metrics.Shutdown(context.Background())
	scrape := func() string {
		rec := httptest.NewRecorder()
		metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	const labels = `{api="GET /pay",control_point="ingress",key="payments",policy="payments"}`
	waitFor := func(want ...string) {
		t.Helper()
		var body string
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			body = scrape()
			missing := false
			for _, w := range want {
				missing = missing || !strings.Contains(body, w)
			}
			if !missing {
				return
			}
		}
		t.Fatalf("/metrics never showed %q; last scrape's spillway_global lines:\n%s", want, grepLines(body, "spillway_global"))
	}
	waitFor("spillway_global_rate_limit"+labels+" 1000",
		"spillway_global_live_members"+labels+" 1",
		"spillway_global_fail_static"+labels+" 0")
	srv.Stop()
	waitFor("spillway_global_fail_static" + labels + " 1")
	srv.Restart()
	waitFor("spillway_global_fail_static" + labels + " 0")
}

func grepLines(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestReloadKeepsOrLeavesTheGlobalLimit: a reload that keeps a global
// limiter keeps its place in the fleet; one that removes it leaves, and
// the other engines see one member fewer at their next sync.
func TestReloadKeepsOrLeavesTheGlobalLimit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	specs := loadGlobalPolicy(t)
	start := func() *engine.Engine {
		eng, err := engine.Start(ctx, engine.Options{Specs: specs, Redis: &fleet.Options{Client: redis.UniversalOptions{Addrs: []string{srv.Addr}}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(eng.Close)
		return eng
	}
	a, b := start(), start()
	global := func(e *engine.Engine) *engine.GlobalStatus {
		ps := e.Status().Policies
		if len(ps) == 0 || len(ps[0].Actuators) == 0 {
			return nil
		}
		return ps[0].Actuators[0].Global
	}
	waitLive := func(e *engine.Engine, want int, within time.Duration) {
		t.Helper()
		var g *engine.GlobalStatus
		for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if g = global(e); g != nil && g.Mode == "synced" && g.Live == want {
				return
			}
		}
		t.Fatalf("live members did not reach %d within %v: %+v", want, within, g)
	}
	waitLive(a, 2, 3*time.Second)
	waitLive(b, 2, 3*time.Second)
	if err := b.Apply(specs); err != nil { // unchanged: the member stays
		t.Fatal(err)
	}
	time.Sleep(3 * fleet.DefaultSyncInterval)
	if g := global(a); g.Live != 2 {
		t.Errorf("after a reload that kept the limit: A sees %d live members, want 2", g.Live)
	}
	if err := b.Apply(nil); err != nil { // the policy is gone: B leaves
		t.Fatal(err)
	}
	// Sooner than B's entry would expire (a member TTL): B said goodbye.
	waitLive(a, 1, fleet.MemberTTLIntervals*fleet.DefaultSyncInterval*3/5)
}
