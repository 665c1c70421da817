package controlpoint

import (
	"testing"

	"github.com/spillway-dev/spillway/actuators"
)

// BenchmarkAdmit measures one Admit+Done at a control point whose API has a
// flux-meter tap and a token bucket far above the offered load, so every
// request takes the accepted path through a limiter.
func BenchmarkAdmit(b *testing.B) {
	benchAdmit(b, func() *ControlPoint {
		cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
		cp.API("GET /a").AttachTap(actuators.NewRecorder(0))
		cp.API("GET /a").AttachLimiter(&Limiter{Bucket: actuators.NewTokenBucket(1e12, 1e12, 0)})
		return cp
	})
}

// BenchmarkAdmitConcurrency is BenchmarkAdmit through a concurrency
// limiter shared by every API (the default policy's), far above the
// requests in flight.
func BenchmarkAdmitConcurrency(b *testing.B) {
	benchAdmit(b, func() *ControlPoint {
		cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
		cp.API(AllAPIs).AttachTap(actuators.NewRecorder(0))
		cp.API(AllAPIs).AttachLimiter(&Limiter{Concurrency: actuators.NewConcurrencyLimiter(1e6)})
		cp.API("GET /a")
		return cp
	})
}

// benchAdmit runs Admit+Done of "GET /a" serially and in parallel, each on
// a control point from newCP.
func benchAdmit(b *testing.B, newCP func() *ControlPoint) {
	b.Run("serial", func(b *testing.B) {
		cp := newCP()
		b.ReportAllocs()
		for b.Loop() {
			tk, _ := cp.Admit("GET /a")
			tk.Done(true)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		cp := newCP()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				tk, _ := cp.Admit("GET /a")
				tk.Done(true)
			}
		})
	})
}
