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
	{"casgcra", func() func() bool {
		base := time.Now()
		g := newCASGCRA(benchRatePerSec, benchBurst)
		return func() bool { return g.allow(int64(time.Since(base))) }
	}},
}

// casGCRA is the floor Allow is held to (within 1.1×): the plainest
// lock-free GCRA, one atomic "empty at" time in nanoseconds advanced by
// CAS, with no reconfiguration, no sub-nanosecond resolution and no
// overflow guards.
type casGCRA struct {
	emptyNs  atomic.Int64 // when the bucket is (or was) empty
	costNs   int64        // per token
	windowNs int64        // burst·costNs: from empty to full
}

func newCASGCRA(ratePerSec, burst float64) *casGCRA {
	cost := max(int64(1e9/ratePerSec), 1)
	return &casGCRA{costNs: cost, windowNs: int64(burst) * cost}
}

func (g *casGCRA) allow(nowNs int64) bool {
	for {
		empty := g.emptyNs.Load()
		next := max(empty, nowNs-g.windowNs) + g.costNs
		if next > nowNs {
			return false
		}
		if g.emptyNs.CompareAndSwap(empty, next) {
			return true
		}
	}
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
