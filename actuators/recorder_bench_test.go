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
