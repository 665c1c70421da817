package engine

import (
	"math"
	"runtime"
	"testing"
)

// recordValues records one signal's values, a tick each, in a history of
// size ticks, and returns it.
func recordValues(size int, values []float64) (*policyHistory, *signalSeries) {
	h := &policyHistory{size: size, duration: newPolicyHistory().duration}
	s := newSignalSeries("x")
	h.series, h.bind = []*signalSeries{s}, []int{0}
	c := &Circuit{signals: make([]float64, 1)}
	for i, v := range values {
		c.signals[0] = v
		h.record(c, int64(i+1), 0)
	}
	return h, s
}

// held returns the values the history holds, oldest first.
func held(h *policyHistory, s *signalSeries) []float64 {
	var out []float64
	for k := 0; k < h.n; k++ {
		out = append(out, s.atSlot((h.next-h.n+k+h.size)%h.size))
	}
	return out
}

func TestSignalSeriesKeepsTheMostCompactExactForm(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		name         string
		size         int
		values       []float64
		narrow, wide bool
	}{
		{"a constant takes no ring", 4, []float64{3, 3, 3, 3, 3, 3}, false, false},
		{"an invalid signal takes no ring", 4, []float64{nan, nan, nan}, false, false},
		{"integers and NaN take a float32 each", 4, []float64{1, 2, nan, 4.5}, true, false},
		{"fractions take a float64 each", 4, []float64{0.1, 0.1, 0.2}, false, true},
		{"a fraction widens the integers before it", 8, []float64{1, 2, 0.3, 4}, false, true},
		{"a fraction that left the window narrows the ring again", 3, []float64{1, 0.3, 2, 3, 4}, true, false},
		{"a change that left the window drops the ring", 3, []float64{0.1, 0.2, 7, 7, 7}, false, false},
		{"the ring fills and wraps", 3, []float64{0.1, 0.2, 0.3, 0.4, 0.5}, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, s := recordValues(c.size, c.values)
			if (s.narrow != nil) != c.narrow || (s.wide != nil) != c.wide {
				t.Fatalf("narrow %v wide %v, want narrow %v wide %v", s.narrow, s.wide, c.narrow, c.wide)
			}
			if n := len(s.narrow) + len(s.wide); n != 0 && n != len(h.timesNs) {
				t.Fatalf("ring of %d values for %d tick times", n, len(h.timesNs))
			}
			want := c.values[max(len(c.values)-c.size, 0):]
			got := held(h, s)
			if len(got) != len(want) {
				t.Fatalf("held %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] && !(math.IsNaN(got[i]) && math.IsNaN(want[i])) {
					t.Fatalf("held %v, want %v", got, want)
				}
			}
		})
	}
}

func TestHistoryRingsGrowWithTheTicks(t *testing.T) {
	h, s := recordValues(1200, []float64{0.1, 0.2, 0.3})
	if cap(h.timesNs) > 64 || cap(s.wide) > 64 {
		t.Fatalf("after 3 ticks: capacity %d times and %d values, want a small start (the window is 1200 ticks)", cap(h.timesNs), cap(s.wide))
	}
	values := make([]float64, 1500)
	for i := range values {
		values[i] = float64(i) / 3
	}
	h, s = recordValues(1200, values)
	if cap(h.timesNs) != 1200 || cap(s.wide) != 1200 {
		t.Fatalf("after a window: capacity %d times and %d values, want exactly 1200", cap(h.timesNs), cap(s.wide))
	}
}

// BenchmarkHistoryMemory reports the heap a policy's history holds per
// signal after a full window at the default 500 ms interval (1200 ticks),
// by the kind of values its 50 signals take (the tick-time ring and the
// policy's own state shared among them), and the time to record the
// window. A float64 ring preallocated for the window holds 8 B per tick:
// 9600 B per signal, from the first tick.
func BenchmarkHistoryMemory(b *testing.B) {
	const signals, interval = 50, 500e6
	for _, kind := range []struct {
		name  string
		value func(tick, signal int) float64
	}{
		{"constant", func(tick, signal int) float64 { return float64(signal) }},
		{"invalid", func(int, int) float64 { return math.NaN() }},
		{"integer", func(tick, signal int) float64 { return float64(tick % 7) }},
		{"fractional", func(tick, signal int) float64 { return float64(tick) / 3 }},
	} {
		b.Run(kind.name, func(b *testing.B) {
			size := historyTicks(interval)
			var heldBytes float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				h := &policyHistory{size: size, duration: newPolicyHistory().duration}
				c := &Circuit{signals: make([]float64, signals)}
				for i := range signals {
					h.series = append(h.series, newSignalSeries("x"))
					h.bind = append(h.bind, i)
				}
				for tick := range size {
					for i := range c.signals {
						c.signals[i] = kind.value(tick, i)
					}
					h.record(c, int64(tick)*interval, 0)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				heldBytes = float64(after.HeapAlloc-before.HeapAlloc) / signals
				runtime.KeepAlive(h)
			}
			b.ReportMetric(heldBytes, "B/signal")
		})
	}
}
