package actuators

import (
	"math"
	"testing"
	"time"
)

// TestRecorderAPITails: a cheap API that is a tenth of the answers and
// waits twice its SLO has its tail in WorstAPILatencyMs, where the pooled scaled
// p90 of the window reads the others'; an API with too few answers does
// not count; the counts decay over tailHorizon.
func TestRecorderAPITails(t *testing.T) {
	ms := int64(time.Millisecond)
	// API 1: SLO 40 ms (the recorder's); API 2: 400 ms.
	r := NewRecorderWithAPISLOs(40*time.Millisecond, []time.Duration{0, 0, 400 * time.Millisecond})
	r.Snapshot(0)
	record := func(api int, latencyMs int64, n int) {
		for range n {
			r.ArriveOn(0, 0, true)
			r.DoneAPIOn(0, api, 0, latencyMs*ms, 0, true)
		}
	}
	record(2, 100, 270) // a quarter of its SLO
	record(1, 80, 30)   // twice its SLO
	w := r.Snapshot(int64(time.Second))
	var pooled [2]float64
	qs := []float64{0.5, 0.9}
	w.ScaledQuantilesMs(qs, pooled[:])
	worst := w.WorstAPILatencyMs() // mean, p50, p90, p95, p99
	tail := worst[1:3]
	if pooled[1] > 11 {
		t.Errorf("pooled scaled p90 %.1f ms, want the costly API's 10", pooled[1])
	}
	// API 1's 80 ms is twice its SLO: 80 ms in the recorder's units,
	// within the bins' quarter of an octave.
	for i, got := range tail {
		if got < 80/math.Pow(2, 0.25) || got > 80*math.Pow(2, 0.25) {
			t.Errorf("worst API's q%.2f %.1f ms, want 80 within a quarter octave", qs[i], got)
		}
	}
	if got := worst[0]; got < 80/math.Pow(2, 0.25) || got > 80*math.Pow(2, 0.25) {
		t.Errorf("worst API's mean %.1f ms, want about 80", got)
	}

	// Twenty seconds later with no answers, the weight is gone: no API has
	// enough, and the quantiles are NaN.
	w = r.Snapshot(int64(21 * time.Second))
	worst = w.WorstAPILatencyMs()
	tail = worst[1:3]
	if !math.IsNaN(tail[0]) || !math.IsNaN(tail[1]) {
		t.Errorf("after 20 s without answers: %v, want NaN", tail)
	}

	// Fewer than minTailAnswers: NaN, though the API is slow.
	record(1, 80, minTailAnswers/2)
	w = r.Snapshot(int64(22 * time.Second))
	worst = w.WorstAPILatencyMs()
	tail = worst[1:3]
	if !math.IsNaN(tail[1]) {
		t.Errorf("%d answers: p90 %.1f, want NaN", minTailAnswers/2, tail[1])
	}

	// Without per-API SLOs there are no tails.
	plain := NewRecorder(40 * time.Millisecond)
	plain.Snapshot(0)
	for range 50 {
		plain.ArriveOn(0, 0, true)
		plain.DoneAPIOn(0, 1, 0, 80*ms, 0, true)
	}
	pw := plain.Snapshot(int64(time.Second))
	worst = pw.WorstAPILatencyMs()
	tail = worst[1:3]
	if !math.IsNaN(tail[1]) {
		t.Errorf("plain recorder: tail p90 %.1f, want NaN", tail[1])
	}
}

// TestRecorderAPITailsDecay: half-old counts weigh e^-1 after tailHorizon,
// so an API's tail follows its latency within seconds.
func TestRecorderAPITailsDecay(t *testing.T) {
	ms := int64(time.Millisecond)
	r := NewRecorderWithAPISLOs(100*time.Millisecond, []time.Duration{0, 0, 1000 * time.Millisecond})
	r.Snapshot(0)
	now := int64(0)
	p50 := func(latencyMs int64) float64 {
		for range 40 {
			r.ArriveOn(0, now, true)
			r.DoneAPIOn(0, 1, now, latencyMs*ms, 0, true)
		}
		now += int64(tailHorizon)
		w := r.Snapshot(now)
		return w.WorstAPILatencyMs()[1]
	}
	if got := p50(200); got < 160 || got > 240 {
		t.Fatalf("p50 %.1f ms, want about 200", got)
	}
	// 40 answers at 20 ms after 40 at 200 that weigh e^-1 now: the
	// median is in the new ones.
	if got := p50(20); got > 25 {
		t.Errorf("p50 after the latency fell %.1f ms, want about 20", got)
	}
}

// TestTailBin: bin tailUnitBin starts at the SLO, a quarter octave a bin,
// clamped at both ends.
func TestTailBin(t *testing.T) {
	slo := int64(40 * time.Millisecond)
	for _, c := range []struct {
		ratio float64
		want  int
	}{{1, tailUnitBin}, {1.1, tailUnitBin}, {1.25, tailUnitBin + 1}, {2, tailUnitBin + 4}, {0.5, tailUnitBin - 4}, {0.9, tailUnitBin - 1}, {1e-6, 0}, {1000, tailBins - 1}} {
		if got := tailBin(histogramBucket(int64(c.ratio*float64(slo))), histogramBucket(slo)); got != c.want {
			t.Errorf("%.2f × SLO: bin %d, want %d", c.ratio, got, c.want)
		}
	}
}
