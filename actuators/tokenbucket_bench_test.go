package actuators

import (
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// The anchor is golang.org/x/time/rate, which reads time.Now() inside
// Allow. For a fair comparison the spillway side reads the real monotonic
// clock on every call too. The rate is high enough (1e9/s) that nearly every
// call is admitted, so both sides measure their admit path; the admitted/op
// metric shows the fraction.
const (
	benchRatePerSec = 1e9
	benchBurst      = 1000
)

// benchLimiters builds a fresh limiter of each kind, reduced to its Allow
// call reading the current time.
var benchLimiters = []struct {
	name string
	new  func() (allow func() bool)
}{
	{"spillway", func() func() bool {
		base := time.Now()
		b := NewTokenBucket(benchRatePerSec, benchBurst, 0)
		return func() bool { return b.Allow(int64(time.Since(base))) }
	}},
	{"xtimerate", func() func() bool {
		return rate.NewLimiter(benchRatePerSec, benchBurst).Allow
	}},
}

func BenchmarkAllow(b *testing.B) {
	for _, limiter := range benchLimiters {
		b.Run(limiter.name, func(b *testing.B) {
			allow := limiter.new()
			admitted := 0
			b.ReportAllocs()
			for b.Loop() {
				if allow() {
					admitted++
				}
			}
			b.ReportMetric(float64(admitted)/float64(b.N), "admitted/op")
		})
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	for _, limiter := range benchLimiters {
		b.Run(limiter.name, func(b *testing.B) {
			allow := limiter.new()
			var admitted atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				local := int64(0)
				for pb.Next() {
					if allow() {
						local++
					}
				}
				admitted.Add(local)
			})
			b.ReportMetric(float64(admitted.Load())/float64(b.N), "admitted/op")
		})
	}
}

// BenchmarkSharedWordFloor is the reference for BenchmarkAllowParallel: the
// cost of reading the monotonic clock alone, and of reading it plus one
// atomic add on a word shared by all goroutines. No limiter that writes one
// shared word per admission can beat "clock+add".
func BenchmarkSharedWordFloor(b *testing.B) {
	b.Run("clock", func(b *testing.B) {
		base := time.Now()
		var sink atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			sum := int64(0)
			for pb.Next() {
				sum += int64(time.Since(base))
			}
			sink.Add(sum)
		})
	})
	b.Run("clock+add", func(b *testing.B) {
		base := time.Now()
		var shared atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				shared.Add(int64(time.Since(base)))
			}
		})
	})
}
