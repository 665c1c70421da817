package engine_test

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

// scaledSpecs is n copies of the one policy in specs, each named
// "p<i>" and reading and limiting its own control point "cp<i>": a process
// that protects n services, or n routes, with the same policy.
func scaledSpecs(tb testing.TB, specs []engine.Spec, n int) []engine.Spec {
	tb.Helper()
	if len(specs) != 1 {
		tb.Fatalf("%d policies, want 1", len(specs))
	}
	encoded, err := json.Marshal(specs[0])
	if err != nil {
		tb.Fatal(err)
	}
	name := specs[0].Name
	out := make([]engine.Spec, n)
	for i := range out {
		s := strings.ReplaceAll(string(encoded), fmt.Sprintf("%q", name), fmt.Sprintf(`"p%d"`, i))
		s = strings.ReplaceAll(s, `"control_point":"ingress"`, fmt.Sprintf(`"control_point":"cp%d"`, i))
		if err := json.Unmarshal([]byte(s), &out[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// wideComponents is a policy body of 50 components: a flux meter, 47
// arithmetic and EMA stages over its readings (each signal a fraction
// that changes every tick, the widest form the history keeps), a
// constant, and a rate limiter on the control point "ingress".
func wideComponents() string {
	var b strings.Builder
	b.WriteString(`{FluxMeter: {selector: {control_point: "ingress"}, out_ports: {latency_avg_ms: "S0", incoming_rps: "IN"}}},` + "\n")
	for i := 1; i <= 47; i++ {
		if i%2 == 1 {
			fmt.Fprintf(&b, "{EMA: {ema_window: \"5s\", warmup_window: \"1s\", in_ports: input: \"S%d\", out_ports: output: \"S%d\"}},\n", i-1, i)
		} else {
			fmt.Fprintf(&b, "{Arithmetic: {operator: \"add\", in_ports: {lhs: \"S%d\", rhs: \"IN\"}, out_ports: output: \"S%d\"}},\n", i-1, i)
		}
	}
	b.WriteString(`{Variable: {value: 1e9, out_ports: output: "RATE"}},` + "\n")
	b.WriteString(`{RateLimiter: {selector: {control_point: "ingress"}, in_ports: {rate_limit: "RATE"}}},` + "\n")
	return b.String()
}

// scaleEngine starts an engine on a virtual clock running n copies of the
// policy in src, and returns it, the clock and a function that serves
// each control point four to six requests of two to six milliseconds, a
// different mix each round, so that every tick reads flux meters that saw
// traffic and the signals computed from them change.
func scaleEngine(tb testing.TB, src string, n int) (*engine.Engine, *enginetest.Clock, func()) {
	tb.Helper()
	clock := &enginetest.Clock{}
	eng := enginetest.Start(tb, engine.Options{Specs: scaledSpecs(tb, enginetest.Load(tb, "p.cue", src), n), Clock: clock.Now})
	if got := len(eng.Policies()); got != n {
		tb.Fatalf("%d policies running, want %d", got, n)
	}
	cps := eng.ControlPoints()
	round := 0
	traffic := func() {
		round++
		for i := range n {
			cp := cps.Get(fmt.Sprintf("cp%d", i))
			for k := range 4 + round%3 {
				t, _ := cp.Admit("GET /a")
				t.DoneAfter(true, time.Duration(2+(k+round)%5)*time.Millisecond+time.Duration(i)*time.Microsecond)
			}
		}
	}
	return eng, clock, traffic
}

func policySource(tb testing.TB, file string) string {
	tb.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	return string(src)
}

// BenchmarkTick1000Policies is one tick of 1,000 latency-aimd policies,
// each on its own control point, whose flux meters saw four requests since
// the last tick: the tick loop's work for a process that protects a
// thousand routes. Reported per tick of all of them.
func BenchmarkTick1000Policies(b *testing.B) {
	eng, clock, traffic := scaleEngine(b, policySource(b, "../policies/latency-aimd.cue"), 1000)
	for range 20 { // past the first ticks' setup
		traffic()
		clock.Advance(500 * time.Millisecond)
		eng.Tick()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		traffic()
		clock.Advance(500 * time.Millisecond)
		b.StartTimer()
		eng.Tick()
	}
}

// BenchmarkHistoryOf1000WidePolicies ticks 1,000 policies of 50
// components through a full history window (10 minutes at 500 ms), every
// signal a fraction that changes each tick, and reports the heap they
// hold then: heap-MB (after two collections, less the heap before the
// engine started).
func BenchmarkHistoryOf1000WidePolicies(b *testing.B) {
	const n = 1000
	ticks := int(engine.HistoryWindow / (500 * time.Millisecond))
	for b.Loop() {
		before := heapInUse()
		eng, clock, traffic := scaleEngine(b, enginetest.Policy("wide", "500ms", wideComponents()), n)
		for range ticks + 10 {
			traffic()
			clock.Advance(500 * time.Millisecond)
			eng.Tick()
		}
		after := heapInUse()
		runtime.KeepAlive(eng)
		b.ReportMetric(float64(after-before)/(1<<20), "heap-MB")
		eng.Close()
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
