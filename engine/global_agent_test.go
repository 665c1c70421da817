package engine_test

import (
	"context"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/fleet"
	"github.com/spillway-dev/spillway/internal/redistest"
)

// globalAgentPolicy is the TopFull blueprint with one API whose rate, the
// agent's, is the fleet's: scope "global", the default key "agents/GET /pay".
const globalAgentPolicy = `
package p

import "spillway.dev/blueprints/topfull"

policies: agents: topfull.#Policy & {
	config: {
		policy_name:         "agents"
		evaluation_interval: "100ms"
		fallback:            "none"
		agent_timeout:       50
		// A quarter second of the rate in the bucket: a load generator that
		// a busy machine stalls for less loses no tokens.
		burst_seconds: 0.25
		apis: [{name: "GET /pay", control_point: "ingress", scope: "global", lower_bound: 0, upper_bound: 10000}]
	}
}
`

// TestGlobalAgentRateAcrossTwoEngines: two engines run a TopFull policy
// whose API has scope "global", on one real Redis. When both engines'
// agents set 200 req/s, the fleet admits 200 req/s in total, not 200
// each (the shares, logged, are about 100 each; a snapshot of them on a
// busy machine may catch the engines between views, so the admitted total
// is what is asserted). When the agents disagree (300 and 100, equal
// demand), each engine keeps its share of its own agent's rate, and the
// fleet admits their demand-weighted mean, 200.
func TestGlobalAgentRateAcrossTwoEngines(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("real time: about 11 s")
	}
	srv := redistest.Start(t)
	specs, diags := engine.LoadSource("agents.cue", []byte(globalAgentPolicy))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const instances, offered = 2, 800.0
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
	// The agents: each engine's own, setting its rate every 200 ms.
	var rates [instances]atomic.Uint64
	setRates := func(r ...float64) {
		for i := range rates {
			rates[i].Store(math.Float64bits(r[i]))
		}
	}
	setRates(200, 200)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ; ctx.Err() == nil; time.Sleep(200 * time.Millisecond) {
			for i, eng := range engines {
				if _, err := eng.SetAgentRate("GET /pay", math.Float64frombits(rates[i].Load())); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	var accepted, sent atomic.Uint64
	go func() {
		defer wg.Done()
		start := time.Now()
		for n := uint64(0); ctx.Err() == nil; time.Sleep(500 * time.Microsecond) {
			for due := uint64(time.Since(start).Seconds() * offered); n < due; n++ {
				if tk, d := points[n%instances].Admit("GET /pay"); d == controlpoint.Accepted {
					tk.Done(true)
					accepted.Add(1)
				}
			}
			sent.Store(n)
		}
	}()
	defer wg.Wait()
	defer cancel()

	measure := func(phase string, want float64, d time.Duration) {
		t.Helper()
		a0, s0, t0 := accepted.Load(), sent.Load(), time.Now()
		time.Sleep(d)
		secs := time.Since(t0).Seconds()
		rps, offeredRPS := float64(accepted.Load()-a0)/secs, float64(sent.Load()-s0)/secs
		t.Logf("%s: admitted %.1f req/s of %.0f offered (want %.0f ±10 %%)", phase, rps, offeredRPS, want)
		if offeredRPS < 2*want {
			t.Fatalf("%s: the client offered only %.0f req/s; the test needs at least twice the limit", phase, offeredRPS)
		}
		if math.Abs(rps-want) > 0.1*want {
			t.Errorf("%s: the fleet admitted %.1f req/s, want %.0f ±10 %%", phase, rps, want)
		}
	}
	time.Sleep(1500 * time.Millisecond) // the agents' first rates, ticks and syncs
	measure("both agents at 200 req/s", 200, 4*time.Second)
	for i, eng := range engines {
		g := eng.Status().Policies[0].Actuators
		var global *engine.GlobalStatus
		for _, a := range g {
			if a.Global != nil {
				global = a.Global
			}
		}
		if global == nil {
			t.Fatalf("engine %d: /status shows no global limit: %+v", i, g)
		}
		t.Logf("engine %d: key %q limit %.0f share %.1f live %d mode %s", i, global.Key, float64(global.Limit), float64(global.Share), global.Live, global.Mode)
		if global.Key != "agents/GET /pay" || global.Limit != 200 || global.Live != instances || global.Mode != "synced" {
			t.Errorf("engine %d: global %+v, want key agents/GET /pay, limit 200, %d live, synced", i, *global, instances)
		}
		// The bridge tells the agent the rate is the fleet's, and this
		// engine's share of it.
		api, _ := eng.AgentAPI("GET /pay")
		if api.Global == nil || api.Global.Key != "agents/GET /pay" || !(api.Global.Share > 0 && api.Global.Share < 200) {
			t.Errorf("engine %d: AgentAPI.Global %+v, want key agents/GET /pay and a share in (0, 200)", i, api.Global)
		}
	}
	setRates(300, 100)
	time.Sleep(time.Second)
	measure("agents at 300 and 100 req/s", 200, 4*time.Second)
}

// TestAgentGlobalShareIsOfTheLimitJustSet: the share the bridge reports
// with a global agent rate is this engine's part of the rate the same tick
// put in force, not of the previous tick's. With Redis unreachable, a
// lone engine's share is the whole limit.
func TestAgentGlobalShareIsOfTheLimitJustSet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := ln.Addr().String()
	ln.Close()
	specs, diags := engine.LoadSource("agents.cue", []byte(globalAgentPolicy))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, ManualTicks: true,
		Redis: &fleet.Options{Client: redis.UniversalOptions{Addrs: []string{unreachable}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	for _, rate := range []float64{200, 100, 400} {
		if _, err := eng.SetAgentRate("GET /pay", rate); err != nil {
			t.Fatal(err)
		}
		eng.Tick()
		api, _ := eng.AgentAPI("GET /pay")
		if api.LimitInForce != rate || api.Global == nil || api.Global.Share != rate {
			t.Errorf("agent at %.0f: limit in force %v, global %+v; want the share of this tick's limit, %.0f", rate, api.LimitInForce, api.Global, rate)
		}
	}
}
