package actuators

import (
	"testing"
	"time"
)

// BenchmarkCumulativeHistogramRecord is what metrics add to each finished
// request: one Record into the API's request-duration histogram. The
// latencies vary in their low bits, as real clock readings do, so that
// parallel recorders spread over the shards.
func BenchmarkCumulativeHistogramRecord(b *testing.B) {
	h, _ := NewCumulativeHistogram(RequestDurationBounds)
	b.Run("serial", func(b *testing.B) {
		ns := int64(20 * time.Millisecond)
		for b.Loop() {
			ns += 7
			h.Record(ns)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			ns := int64(20 * time.Millisecond)
			for pb.Next() {
				ns += 7
				h.Record(ns)
			}
		})
	})
}
