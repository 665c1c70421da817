package actuators

import (
	"testing"
	"time"
)

// BenchmarkWindowQuantilesOnePass is the second half of
// BenchmarkRecorderSnapshot, with the four quantiles read in one pass.
func BenchmarkWindowQuantilesOnePass(b *testing.B) {
	r := NewRecorder(50 * time.Millisecond)
	for i := int64(0); i < 100; i++ {
		r.Arrive(0, true)
		r.Done(0, 4*ms+i*20_000, true)
	}
	w := r.Snapshot(1)
	qs, p := []float64{0.50, 0.90, 0.95, 0.99}, make([]float64, 4)
	sink := 0.0
	for b.Loop() {
		w.QuantilesMs(qs, p)
		sink += p[0] + p[1] + p[2] + p[3]
	}
	_ = sink
}
