package engine_test

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

// historyPolicy counts ticks (COUNT = 1, 2, 3, ...) and has a signal that is
// invalid until its EMA warms up after two valid samples, and a rate limiter
// fed by COUNT.
const historyPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: hist: bp.#Policy & {
	policy_name: "hist"
	evaluation_interval: "{{INTERVAL}}"
	components: [
		{FirstValid: {in_ports: inputs: ["COUNT", 0], out_ports: output: "BASE"}},
		{Arithmetic: {operator: "add", in_ports: {lhs: "BASE", rhs: 1}, out_ports: output: "COUNT"}},
		{EMA: {ema_window: "{{EMA}}", warmup_window: "{{EMA}}", in_ports: input: "COUNT", out_ports: output: "COUNT_EMA"}},
		{RateLimiter: {selector: {control_point: "ingress", api: "GET /a"}, in_ports: rate_limit: "COUNT"}},
	]
}
`

func historySpecs(t *testing.T, interval, ema string) []engine.Spec {
	return enginetest.Load(t, "hist.cue", strings.NewReplacer("{{INTERVAL}}", interval, "{{EMA}}", ema).Replace(historyPolicy))
}

func seriesOf(t *testing.T, h engine.PolicyHistory, name string) engine.SignalSeries {
	t.Helper()
	for _, s := range h.Signals {
		if s.Signal == name {
			return s
		}
	}
	t.Fatalf("policy %s has no series %s: %+v", h.Policy, name, h.Signals)
	return engine.SignalSeries{}
}

func TestHistoryKeepsEveryTickOfEverySignal(t *testing.T) {
	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Specs: historySpecs(t, "1s", "2s"), Clock: clock.Now})
	for i := 1; i <= 4; i++ {
		clock.Advance(time.Second)
		eng.Tick()
	}
	hs := eng.History(math.MinInt64)
	if len(hs) != 1 || hs[0].Policy != "hist" || hs[0].EvaluationInterval != "1s" {
		t.Fatalf("history %+v", hs)
	}
	h := hs[0]
	if want := []int64{1e9, 2e9, 3e9, 4e9}; len(h.TimesNs) != 4 || h.TimesNs[0] != want[0] || h.TimesNs[3] != want[3] {
		t.Fatalf("tick times %v, want %v", h.TimesNs, want)
	}
	count := seriesOf(t, h, "COUNT")
	if count.Component != "components[1].Arithmetic" || count.Port != "output" {
		t.Fatalf("COUNT is produced by %s.%s", count.Component, count.Port)
	}
	for i, v := range count.Values {
		if float64(v) != float64(i+1) {
			t.Fatalf("COUNT values %v, want 1..4", count.Values)
		}
	}
	ema := seriesOf(t, h, "COUNT_EMA")
	if !math.IsNaN(float64(ema.Values[0])) || math.IsNaN(float64(ema.Values[3])) {
		t.Fatalf("COUNT_EMA %v: want invalid during warm-up, valid after", ema.Values)
	}
	if since := eng.History(2e9)[0]; len(since.TimesNs) != 2 || since.TimesNs[0] != 3e9 || len(seriesOf(t, since, "COUNT").Values) != 2 {
		t.Fatalf("History(2s) = %+v, want the ticks after 2 s only", since)
	}
}

func TestStatsCountInvalidTicksAndReadSetpoints(t *testing.T) {
	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Specs: historySpecs(t, "1s", "3s"), Clock: clock.Now})
	if st := eng.Stats(); len(st) != 1 || st[0].Ticks != 0 || !math.IsNaN(st[0].Signals[0].Value) {
		t.Fatalf("before the first tick: %+v", st)
	}
	for i := 0; i < 5; i++ {
		clock.Advance(time.Second)
		eng.Tick()
	}
	st := eng.Stats()[0]
	if st.Ticks != 5 || st.TickDurations.Count != 5 {
		t.Fatalf("ticks %d, tick durations counted %d; want 5 and 5", st.Ticks, st.TickDurations.Count)
	}
	got := map[string]engine.SignalStats{}
	for _, s := range st.Signals {
		got[s.Signal] = s
	}
	if got["COUNT"].Value != 5 || got["COUNT"].InvalidTicks != 0 {
		t.Fatalf("COUNT %+v, want value 5 and never invalid", got["COUNT"])
	}
	if got["COUNT_EMA"].InvalidTicks != 2 || math.IsNaN(got["COUNT_EMA"].Value) {
		t.Fatalf("COUNT_EMA %+v, want 2 invalid ticks (warm-up of 3 samples) and valid now", got["COUNT_EMA"])
	}
	if len(st.Actuators) != 1 {
		t.Fatalf("actuators %+v", st.Actuators)
	}
	if a := st.Actuators[0]; a.ControlPoint != "ingress" || a.API != "GET /a" || a.Kind != "rate_limiter" || a.Setpoint != 5 {
		t.Fatalf("actuator %+v, want the ingress GET /a rate limiter at 5/s", a)
	}
}

func TestHistorySurvivesReloadAndRestartsOnANewInterval(t *testing.T) {
	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Specs: historySpecs(t, "1s", "2s"), Clock: clock.Now})
	tick := func(n int, every time.Duration) {
		for i := 0; i < n; i++ {
			clock.Advance(every)
			eng.Tick()
		}
	}
	tick(3, time.Second)
	// A changed EMA keeps the other signals' history and the invalid counts.
	if err := eng.Apply(historySpecs(t, "1s", "4s")); err != nil {
		t.Fatal(err)
	}
	tick(1, time.Second)
	h := eng.History(math.MinInt64)[0]
	if len(h.TimesNs) != 4 || len(seriesOf(t, h, "COUNT").Values) != 4 {
		t.Fatalf("after a reload: %d ticks, want the 3 before and the 1 after", len(h.TimesNs))
	}
	var emaInvalid uint64
	for _, s := range eng.Stats()[0].Signals {
		if s.Signal == "COUNT_EMA" {
			emaInvalid = s.InvalidTicks
		}
	}
	if emaInvalid != 2 { // 1 before the reload, 1 in the new EMA's warm-up
		t.Fatalf("COUNT_EMA invalid ticks %d after the reload, want 2 (counted across it)", emaInvalid)
	}
	// A new interval is a new time base: the values restart.
	if err := eng.Apply(historySpecs(t, "500ms", "4s")); err != nil {
		t.Fatal(err)
	}
	tick(2, 500*time.Millisecond)
	if h := eng.History(math.MinInt64)[0]; len(h.TimesNs) != 2 || h.EvaluationInterval != "500ms" {
		t.Fatalf("after an interval change: %d ticks at %s, want 2 at 500ms", len(h.TimesNs), h.EvaluationInterval)
	}
	// A removed policy is forgotten.
	if err := eng.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if len(eng.History(math.MinInt64)) != 0 || len(eng.Stats()) != 0 {
		t.Fatal("a removed policy must have no history")
	}
}

func TestHistoryRingKeepsTheLastWindow(t *testing.T) {
	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Specs: historySpecs(t, "1m", "2m"), Clock: clock.Now})
	ticks := int(engine.HistoryWindow/time.Minute) + 3
	for i := 0; i < ticks; i++ {
		clock.Advance(time.Minute)
		eng.Tick()
	}
	h := eng.History(math.MinInt64)[0]
	count := seriesOf(t, h, "COUNT")
	if len(h.TimesNs) != 10 || count.Values[0] != 4 || count.Values[9] != Float(ticks) {
		t.Fatalf("ring after %d one-minute ticks: times %v COUNT %v, want the last 10", ticks, h.TimesNs, count.Values)
	}
}

type Float = engine.Float

// TestHistoryAcrossChunksAndTheWindowEdge ticks past the 600-tick window of
// a 1s policy, across several storage chunks: every kept value reads back
// exactly, integer-valued (COUNT) and fractional (COUNT_EMA) alike.
func TestHistoryAcrossChunksAndTheWindowEdge(t *testing.T) {
	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Specs: historySpecs(t, "1s", "2s"), Clock: clock.Now})
	const ticks = 1000
	emas := make([]float64, ticks+1)
	for i := 1; i <= ticks; i++ {
		clock.Advance(time.Second)
		eng.Tick()
		v, err := eng.Signal("hist", "COUNT_EMA")
		if err != nil {
			t.Fatal(err)
		}
		emas[i] = v
	}
	h := eng.History(math.MinInt64)[0]
	window := int(engine.HistoryWindow / time.Second)
	if len(h.TimesNs) != window || h.TimesNs[0] != int64(ticks-window+1)*1e9 || h.TimesNs[window-1] != ticks*1e9 {
		t.Fatalf("%d tick times from %d to %d, want the last %d", len(h.TimesNs), h.TimesNs[0], h.TimesNs[len(h.TimesNs)-1], window)
	}
	count, ema := seriesOf(t, h, "COUNT"), seriesOf(t, h, "COUNT_EMA")
	for k := 0; k < window; k++ {
		tick := ticks - window + 1 + k
		if float64(count.Values[k]) != float64(tick) || float64(ema.Values[k]) != emas[tick] {
			t.Fatalf("tick %d: COUNT %v COUNT_EMA %v, want %d and %v", tick, count.Values[k], ema.Values[k], tick, emas[tick])
		}
	}
	if emas[ticks] == math.Trunc(emas[ticks]) {
		t.Fatalf("COUNT_EMA %v is an integer: the test no longer covers fractional values", emas[ticks])
	}
}

// A policy set whose signal history over the whole window would pass
// engine.Caps.HistoryBytes loads, with a warning, and every policy keeps
// the same part of its window within the budget. A running policy whose share a
// reload shrinks keeps its newest ticks.
func TestHistoryOverItsBudgetKeepsAShorterWindow(t *testing.T) {
	saved := engine.Caps
	defer func() { engine.Caps = saved }()
	// hist at 1 s: 600 ticks of 3 signals and the tick's time, 19,200
	// bytes; two such policies take 38,400.
	engine.Caps.HistoryBytes = 30000
	one := historySpecs(t, "1s", "2s")
	two := append(slices.Clone(one), one[0])
	two[1].Name = "hist2"

	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Specs: one, Clock: clock.Now})
	const ticks = 700
	for range ticks {
		clock.Advance(time.Second)
		eng.Tick()
	}
	if h := eng.History(math.MinInt64)[0]; len(h.TimesNs) != 600 {
		t.Fatalf("one policy within the budget keeps %d ticks, want the window's 600", len(h.TimesNs))
	}

	var circuits []*engine.Circuit
	for _, s := range two {
		c, diags := engine.Compile(s)
		if len(diags.Errors()) > 0 {
			t.Fatal(diags)
		}
		circuits = append(circuits, c)
	}
	if w := engine.CheckSet(circuits); len(w.Errors()) != 0 || len(w.Warnings()) != 1 || !strings.Contains(w.Error(), "keeps the last 7m48s;") {
		t.Fatalf("check of two policies over the budget: %v, want one warning that each keeps 7m48s", w)
	}
	if err := eng.Apply(two); err != nil {
		t.Fatalf("two policies over the history budget: %v, want them loaded", err)
	}
	for range 5 {
		clock.Advance(time.Second)
		eng.Tick()
	}
	var held int
	for _, h := range eng.History(math.MinInt64) {
		held += len(h.TimesNs) * (len(h.Signals) + 1) * 8
		// 30,000 / 38,400 of 600 ticks each.
		if len(h.TimesNs) != 468 && h.Policy == "hist" {
			t.Fatalf("%s keeps %d ticks, want 468", h.Policy, len(h.TimesNs))
		}
		last := h.TimesNs[len(h.TimesNs)-1]
		if last != (ticks+5)*1e9 {
			t.Fatalf("%s's newest tick at %d ns, want %d", h.Policy, last, (ticks+5)*int64(1e9))
		}
		count := seriesOf(t, h, "COUNT").Values
		for i := range h.TimesNs {
			// COUNT is the tick's number since the policy started; the
			// kept ticks are the newest, one a second, in order.
			if h.TimesNs[i] != last-int64(len(h.TimesNs)-1-i)*1e9 || (i > 0 && count[i] != count[i-1]+1) {
				t.Fatalf("%s: tick %d at %d ns with COUNT %v after %v: not the newest ticks in order", h.Policy, i, h.TimesNs[i], count[i], count[max(i-1, 0)])
			}
		}
		if h.Policy == "hist" && float64(count[len(count)-1]) != ticks+5 {
			t.Fatalf("hist's last COUNT %v, want %d", count[len(count)-1], ticks+5)
		}
	}
	if held > int(engine.Caps.HistoryBytes) {
		t.Fatalf("the history holds %d bytes at 8 a value, over the budget of %d", held, engine.Caps.HistoryBytes)
	}
}
