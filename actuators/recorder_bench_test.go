package actuators

import (
	"testing"
	"time"
)

// BenchmarkRecorderArriveDone measures one admitted request's bookkeeping:
// Arrive(true) and Done with a latency and an OK outcome.
func BenchmarkRecorderArriveDone(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		r := NewRecorder(50 * time.Millisecond)
		b.ReportAllocs()
		latencyNs := int64(0)
		for b.Loop() {
			latencyNs = (latencyNs + 7_919_000) % (100 * ms)
			r.Arrive(0, true)
			r.Done(0, latencyNs, true)
		}
	})
	// Two APIs with SLOs of their own: the scaled histogram and the
	// per-API tails too (DoneAPIOn).
	b.Run("api-slos", func(b *testing.B) {
		r := NewRecorderWithAPISLOs(50*time.Millisecond, []time.Duration{0, 0, 200 * time.Millisecond})
		b.ReportAllocs()
		latencyNs, api := int64(0), 1
		for b.Loop() {
			latencyNs = (latencyNs + 7_919_000) % (100 * ms)
			api = 3 - api
			r.Arrive(0, true)
			r.DoneAPIOn(0, api, 0, latencyNs, 0, true)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		r := NewRecorder(50 * time.Millisecond)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			latencyNs := int64(0)
			for pb.Next() {
				latencyNs = (latencyNs + 7_919_000) % (100 * ms)
				r.Arrive(0, true)
				r.Done(0, latencyNs, true)
			}
		})
	})
}

// BenchmarkRecorderSnapshot measures what a tick costs a flux meter: the
// Snapshot of a recorder that counted 100 requests since the last one,
// with latencies of 4 to 6 ms (a few dozen histogram buckets), and the
// four latency quantiles a flux-meter reading takes from the window.
func BenchmarkRecorderSnapshot(b *testing.B) {
	r := NewRecorder(50 * time.Millisecond)
	record := func() {
		for i := int64(0); i < 100; i++ {
			r.Arrive(0, true)
			r.Done(0, 4*ms+i*20_000, true)
		}
	}
	b.Run("snapshot", func(b *testing.B) {
		now := int64(0)
		for b.Loop() {
			b.StopTimer()
			record()
			b.StartTimer()
			now += 500 * ms
			r.Snapshot(now)
		}
	})
	record()
	w := r.Snapshot(1)
	b.Run("quantiles", func(b *testing.B) {
		sink := 0.0
		for b.Loop() {
			sink += w.QuantileMs(0.50) + w.QuantileMs(0.90) + w.QuantileMs(0.95) + w.QuantileMs(0.99)
		}
		_ = sink
	})
}
