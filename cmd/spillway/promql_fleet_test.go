//go:build !race

package main

// Like the fleet of processes (fleet_processes_test.go), this runs in real
// time against spillway processes built without the race detector, so it
// runs without -race too (scripts/test).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/promtest"
)

// promqlFleetPolicy reads two fleet-wide signals from Prometheus: the
// request rate of GET /pay summed over every instance, and the fleet's p95
// latency of the admitted requests. While the p95 is over 60 ms, each
// instance limits GET /pay to 20 req/s.
const promqlFleetPolicy = `package p

policies: fleet: {
	policy_name:         "fleet"
	evaluation_interval: "100ms"
	components: [
		{PromQL: {query: "sum(rate(spillway_requests_total{job=\"spillway\",api=\"GET /pay\"}[1s]))", interval: "200ms", out_ports: output: "FLEET_RPS"}},
		{PromQL: {query: "1000 * histogram_quantile(0.95, sum by (le) (rate(spillway_request_duration_seconds_bucket{job=\"spillway\",api=\"GET /pay\"}[1s])))", interval: "200ms", out_ports: output: "FLEET_P95_MS"}},
		{Decider: {operator: "gt", in_ports: {lhs: "FLEET_P95_MS", rhs: 60}, out_ports: output: "SLOW"}},
		{Switcher: {in_ports: {on_signal: 20, off_signal: 1000000, switch: "SLOW"}, out_ports: output: "LIMIT"}},
		{RateLimiter: {selector: {control_point: "ingress", api: "GET /pay"}, in_ports: rate_limit: "LIMIT"}},
	]
}
`

// TestPromQLFleetSignal runs a real Prometheus scraping three `spillway
// proxy` processes, and a policy on each that reads fleet-wide signals
// through PromQL components. Every instance must see the fleet's request
// rate (three times its own), and when the upstream slows down, the
// fleet's p95 must cross its threshold and every instance shed. The
// scraped series must carry Prometheus's job and instance labels.
func TestPromQLFleetSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs in real time: about 20 s")
	}
	promtest.Binary(t) // skip (loudly) or fail before building anything
	dir := t.TempDir()
	bin := spillwayBinary(t)
	policies := filepath.Join(dir, "policies")
	os.Mkdir(policies, 0o755)
	os.WriteFile(filepath.Join(policies, "fleet.cue"), []byte(promqlFleetPolicy), 0o644)
	var delayMs atomic.Int64
	delayMs.Store(1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(delayMs.Load()) * time.Millisecond)
		io.WriteString(w, "paid\n")
	}))
	defer upstream.Close()

	const instances, offered = 3, 300.0
	listens, admins := make([]string, instances), make([]string, instances)
	for i := range instances {
		listens[i], admins[i] = freeAddr(t), freeAddr(t)
	}
	prom := promtest.Start(t, 200*time.Millisecond, admins...)
	for i := range instances {
		cmd := exec.Command(bin, "proxy", "--listen", listens[i], "--upstream", upstream.URL, "--route", "GET /pay",
			"--policies", policies, "--admin", admins[i], "--agent-addr", "", "--prometheus", prom)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
	}

	for i := range instances {
		waitFor(t, "http://"+admins[i]+"/status")
		waitFor(t, "http://"+listens[i]+"/")
	}

	// A round-robin client at 300 req/s: 100 per instance.
	load, stop := startFleetLoad(listens, offered)
	defer stop()
	admitted, rejected, failed := &load.admitted, &load.rejected, &load.failed

	// Every instance sees the fleet's rate, not its own (100 req/s), and
	// the fleet is fast: no instance limits.
	// A fast fleet is not limited: some second with every instance fast
	// rejects nothing. The threshold (60 ms) is far above the 1 ms upstream:
	// under a race-instrumented test run on two cores the fast fleet's p95
	// reached 25 ms, the threshold this test had before. A busy machine can
	// still stall the upstream past it for a moment, which the policy
	// rightly reads as a slow fleet; such a second is measured again, up
	// to three times.
	var fastRejected, fastSent uint64
	for attempt := 1; attempt <= 3; attempt++ {
		for i := range instances {
			s := waitSignals(t, admins[i], func(s map[string]engine.Float) bool {
				rps := float64(s["FLEET_RPS"])
				return math.Abs(rps-offered) < 0.1*offered && s["SLOW"] == 0
			})
			fmt.Printf("promql-fleet: instance=%d phase=fast fleet_rps=%.1f fleet_p95_ms=%.2f slow=%v\n", i, s["FLEET_RPS"], s["FLEET_P95_MS"], s["SLOW"])
		}
		a0, r0 := admitted.Load(), rejected.Load()
		time.Sleep(time.Second)
		fastRejected = rejected.Load() - r0
		fastSent = admitted.Load() - a0 + fastRejected
		if fastRejected == 0 {
			break
		}
		fmt.Printf("promql-fleet: fast second %d: %d of %d requests rejected; measuring again\n", attempt, fastRejected, fastSent)
	}
	if fastRejected != 0 {
		t.Errorf("fast fleet: %d of %d requests rejected in each of three seconds, want none", fastRejected, fastSent)
	}

	// Prometheus labels every series with the job and the instance it
	// scraped: one series per instance, each an admin address.
	checkJobAndInstance(t, prom, admins)

	// The upstream slows down: the fleet's p95 crosses 60 ms, and every
	// instance limits GET /pay to 20 req/s.
	delayMs.Store(100)
	slowAt := time.Now()
	for i := range instances {
		s := waitSignals(t, admins[i], func(s map[string]engine.Float) bool { return s["SLOW"] == 1 && s["LIMIT"] == 20 })
		fmt.Printf("promql-fleet: instance=%d phase=slow fleet_rps=%.1f fleet_p95_ms=%.2f slow=%v after=%s\n",
			i, s["FLEET_RPS"], s["FLEET_P95_MS"], s["SLOW"], time.Since(slowAt).Round(10*time.Millisecond))
	}
	a0, r0 := admitted.Load(), rejected.Load()
	t0 := time.Now()
	time.Sleep(2 * time.Second)
	secs := time.Since(t0).Seconds()
	rps := float64(admitted.Load()-a0) / secs
	shed := float64(rejected.Load()-r0) / secs
	fmt.Printf("promql-fleet: phase=shedding admitted_rps=%.1f rejected_rps=%.1f (limit 3×20)\n", rps, shed)
	if math.Abs(rps-60) > 0.25*60 {
		t.Errorf("shedding: admitted %.1f req/s, want 60 ±25 %% (3 instances × 20)", rps)
	}
	if shed < 150 {
		t.Errorf("shedding: rejected %.1f req/s, want most of the 240 over the limit", shed)
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("%d requests failed (neither 200 nor 429)", n)
	}
}

// waitSignals polls an admin's /status until the fleet policy's signals
// satisfy ok, for up to 15 s, and returns them.
func waitSignals(t *testing.T, admin string, ok func(map[string]engine.Float) bool) map[string]engine.Float {
	t.Helper()
	var signals map[string]engine.Float
	pollStatus(t, admin, 15*time.Second, func(st engine.Status) (bool, string) {
		signals = st.Policies[0].Signals
		b, _ := json.Marshal(struct {
			Signals map[string]engine.Float
			Queries []engine.QueryStatus
		}{signals, st.Policies[0].Queries})
		return ok(signals), string(b)
	})
	return signals
}

// checkJobAndInstance asks Prometheus for the request counters of GET /pay
// and checks that they carry job "spillway" and, together, every instance.
func checkJobAndInstance(t *testing.T, prom string, admins []string) {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: prom})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	value, _, _, err := v1.NewAPI(c).Query(ctx, `count by (job, instance) (spillway_requests_total{api="GET /pay"})`, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var instances []string
	for _, s := range value.(model.Vector) {
		if job := string(s.Metric["job"]); job != "spillway" {
			t.Errorf("series %v: job %q, want spillway", s.Metric, job)
		}
		instances = append(instances, string(s.Metric["instance"]))
	}
	slices.Sort(instances)
	want := slices.Sorted(slices.Values(admins))
	if !slices.Equal(instances, want) {
		t.Errorf("instances %v, want the scraped admins %v", instances, want)
	}
}
