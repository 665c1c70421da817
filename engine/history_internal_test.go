package engine

import (
	"math"
	"runtime"
	"slices"
	"testing"
)

// historyOf returns a history of size ticks of the named signals, bound
// to the circuit's signals in that order, and the circuit.
func historyOf(size int, names ...string) (*policyHistory, *Circuit) {
	h := &policyHistory{size: size, duration: newPolicyHistory().duration}
	for i, name := range names {
		h.series = append(h.series, signalSeries{bind: i, name: name})
	}
	return h, &Circuit{signals: make([]float64, len(names))}
}

// tick records one tick whose signals take values, at tick·1 s.
func tick(h *policyHistory, c *Circuit, at int64, values ...float64) {
	copy(c.signals, values)
	h.record(c, at*1e9, 0)
}

// column returns series j's values and the tick times held, oldest first.
func column(h *policyHistory, j int) (times []int64, values []float64) {
	for k := range h.n {
		slot := (h.next - h.n + k + h.size) % h.size
		times = append(times, h.timesNs[slot]/1e9)
		values = append(values, h.at(slot, j))
	}
	return times, values
}

func TestHistoryRingsGrowWithTheTicksAndWrap(t *testing.T) {
	h, c := historyOf(1200, "a", "b")
	for i := range 3 {
		tick(h, c, int64(i), float64(i), -float64(i))
	}
	if cap(h.timesNs) > 64 || cap(h.values) > 2*64 {
		t.Fatalf("after 3 ticks: capacity %d times and %d values, want a small start (the window is 1200 ticks)", cap(h.timesNs), cap(h.values))
	}
	for i := 3; i < 1500; i++ {
		tick(h, c, int64(i), float64(i), -float64(i))
	}
	if cap(h.timesNs) != 1200 || cap(h.values) != 2*1200 {
		t.Fatalf("after a window: capacity %d times and %d values, want exactly 1200 ticks", cap(h.timesNs), cap(h.values))
	}
	times, a := column(h, 0)
	_, b := column(h, 1)
	if len(times) != 1200 || times[0] != 300 || times[1199] != 1499 || a[0] != 300 || b[1199] != -1499 {
		t.Fatalf("held ticks %d..%d, a from %v, b to %v: want the newest 1200, 300..1499", times[0], times[len(times)-1], a[0], b[len(b)-1])
	}
}

// A reload moves each signal's values to its new column by name, a new
// signal reads NaN at the ticks before it existed, and a smaller share
// keeps the newest ticks.
func TestHistoryRelayoutKeepsSignalsByName(t *testing.T) {
	h, c := historyOf(8, "a", "b", "c")
	for i := range 10 { // wrapped: ticks 2..9 held
		tick(h, c, int64(i), float64(i), 10+float64(i), 20+float64(i))
	}
	h.series[1].invalid = 7
	h.relayout([]signalSeries{{bind: 0, name: "c", invalid: 3}, {bind: 1, name: "new"}, {bind: 2, name: "a"}}, 5)
	times, cs := column(h, 0)
	_, news := column(h, 1)
	_, as := column(h, 2)
	if !slices.Equal(times, []int64{5, 6, 7, 8, 9}) || !slices.Equal(cs, []float64{25, 26, 27, 28, 29}) || !slices.Equal(as, []float64{5, 6, 7, 8, 9}) {
		t.Fatalf("after the reload: times %v, c %v, a %v; want ticks 5..9 with c 25..29 and a 5..9", times, cs, as)
	}
	for _, v := range news {
		if !math.IsNaN(v) {
			t.Fatalf("a new signal's values before it existed: %v, want NaN", news)
		}
	}
	c.signals = []float64{1, 2, 3}
	h.record(c, 10e9, 0)
	if times, news = column(h, 1); times[4] != 10 || news[4] != 2 || times[0] != 6 {
		t.Fatalf("after a tick: times %v, new %v; want ticks 6..10 and new's first value 2", times, news)
	}
	if h.series[0].invalid != 3 {
		t.Fatalf("c's invalid count %d, want the one it was given", h.series[0].invalid)
	}
}

// BenchmarkHistoryMemory reports the heap a policy's history holds per
// signal after a full window at the default 500 ms interval (1200 ticks)
// of 50 signals (the tick-time ring shared among them), and the time to
// record the window: 8 bytes a value, whatever the values.
func BenchmarkHistoryMemory(b *testing.B) {
	const signals, interval = 50, 500e6
	size := historyTicks(interval)
	var heldBytes float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		names := make([]string, signals)
		h, c := historyOf(size, names...)
		for tick := range size {
			for i := range c.signals {
				c.signals[i] = float64(tick) / 3
			}
			h.record(c, int64(tick)*interval, 0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heldBytes = float64(after.HeapAlloc-before.HeapAlloc) / signals
		runtime.KeepAlive(h)
	}
	b.ReportMetric(heldBytes, "B/signal")
}
