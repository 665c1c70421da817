package fleet_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/actuators/httpmw"
	"github.com/spillway-dev/spillway/fleet"
	"github.com/spillway-dev/spillway/internal/redistest"
)

// gcraScript is the per-request design of go-redis/redis_rate and
// envoyproxy/ratelimit's successors: one atomic GCRA step in Redis per
// decision. KEYS[1] the limit; ARGV rate (req/s), burst. Returns 1 to admit.
var gcraScript = redis.NewScript(`
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local interval = 1e6 / rate
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1e6 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next = tat + interval
if next - burst * interval > now then return 0 end
redis.call('SET', KEYS[1], next, 'PX', math.ceil((next - now) / 1000) + 1)
return 1
`)

// BenchmarkDecision is the request-path decision of a rate limit at a
// control point (Admit + Done), side by side: a local token bucket, a
// global one in lease mode (the same bucket, its rate set by a Syncer
// syncing with a real Redis meanwhile), and a per-request GCRA in Redis.
// Each reports its p99 latency; the limit is far above the load, so every
// decision is an admission.
func BenchmarkDecision(b *testing.B) {
	srv := redistest.Start(b)
	newPoint := func(l *controlpoint.Limiter) *controlpoint.ControlPoint {
		cp := controlpoint.NewRegistry(func() int64 { return time.Now().UnixNano() }).Get("ingress")
		cp.API("GET /pay").AttachLimiter(l)
		return cp
	}
	decide := func(b *testing.B, cp *controlpoint.ControlPoint) {
		lat := make([]time.Duration, 0, 1<<20)
		b.ReportAllocs()
		for b.Loop() {
			t0 := time.Now()
			tk, d := cp.Admit("GET /pay")
			if d != controlpoint.Accepted {
				b.Fatal("rejected")
			}
			tk.Done(true)
			if len(lat) < cap(lat) {
				lat = append(lat, time.Since(t0))
			}
		}
		reportP99(b, lat)
	}
	b.Run("local", func(b *testing.B) {
		decide(b, newPoint(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(1e12, 1e12, time.Now().UnixNano())}))
	})
	b.Run("global-lease", func(b *testing.B) {
		l := &controlpoint.Limiter{Bucket: actuators.NewTokenBucket(math.NaN(), 1, time.Now().UnixNano())}
		s, err := fleet.New(fleet.Options{Client: redis.UniversalOptions{Addrs: []string{srv.Addr}}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		m := s.Join("bench", "ingress/GET /pay", l.Bucket.SetRateAndBurst, func() uint64 { return l.Allowed.Load() + l.Rejected.Load() })
		m.SetLimit(1e12, 1e12)
		go s.Run(ctx)
		decide(b, newPoint(l))
		if s.Syncs() == 0 && b.N > 1000 {
			b.Error("the Syncer never synced during the benchmark")
		}
	})
	b.Run("redis-gcra", func(b *testing.B) {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer rdb.Close()
		ctx := context.Background()
		lat := make([]time.Duration, 0, 1<<20)
		gcraScript.Load(ctx, rdb)
		rdb.ConfigResetStat(ctx)
		in0, out0 := netBytes(b, rdb)
		calls := 0
		b.ReportAllocs()
		for b.Loop() {
			calls++
			t0 := time.Now()
			ok, err := gcraScript.Run(ctx, rdb, []string{"gcra:pay"}, 1e9, 1e9).Int()
			if err != nil || ok != 1 {
				b.Fatal(ok, err)
			}
			if len(lat) < cap(lat) {
				lat = append(lat, time.Since(t0))
			}
		}
		b.StopTimer()
		reportP99(b, lat)
		reportRedisCost(b, rdb, "cmdstat_evalsha", in0, out0, calls)
	})
}

// netBytes reads Redis's total network input and output, in bytes.
func netBytes(b *testing.B, rdb *redis.Client) (in, out float64) {
	info, err := rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		b.Fatal(err)
	}
	return infoField(info, "total_net_input_bytes"), infoField(info, "total_net_output_bytes")
}

// reportRedisCost reports, per call of command, Redis's CPU time and the
// bytes it received and sent.
func reportRedisCost(b *testing.B, rdb *redis.Client, command string, in0, out0 float64, calls int) {
	stats, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(usecPerCall(stats, command), "redis-us/call")
	if calls > 0 {
		in, out := netBytes(b, rdb)
		b.ReportMetric((in-in0)/float64(calls), "B-in/call")
		b.ReportMetric((out-out0)/float64(calls), "B-out/call")
	}
}

func infoField(info, name string) float64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return math.NaN()
}

func reportP99(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkSyncScript is one member's sync with a fleet of n members on the
// same key: the round trip, and the Redis CPU time per call as Redis
// counts it (INFO commandstats), the figure docs/distributed.md scales.
func BenchmarkSyncScript(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	ctx := context.Background()
	for _, n := range []int{4, 100} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			rdb.FlushAll(ctx) // the members of an earlier run
			syncers := make([]*fleet.Syncer, n)
			for i := range syncers {
				s, err := fleet.New(fleet.Options{Client: redis.UniversalOptions{Addrs: []string{srv.Addr}}}, nil)
				if err != nil {
					b.Fatal(err)
				}
				s.Join(fmt.Sprintf("bench%d", n), "cp/*", func(float64, float64) {}, func() uint64 { return 0 })
				if err := s.SyncOnce(ctx); err != nil {
					b.Fatal(err)
				}
				syncers[i] = s
			}
			rdb.ConfigResetStat(ctx)
			in0, out0 := netBytes(b, rdb)
			calls := 0
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if err := syncers[i%n].SyncOnce(ctx); err != nil {
					b.Fatal(err)
				}
				calls++
			}
			b.StopTimer()
			reportRedisCost(b, rdb, "cmdstat_evalsha", in0, out0, calls)
			var mem int64
			for _, k := range []string{"live", "demand"} {
				mem += rdb.MemoryUsage(ctx, fmt.Sprintf("spillway:{bench%d}:%s", n, k)).Val()
			}
			b.ReportMetric(float64(mem), "key-bytes")
		})
	}
}

// usecPerCall reads usec_per_call of a command from INFO commandstats.
func usecPerCall(info, command string) float64 {
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, command+":") {
			continue
		}
		for _, field := range strings.Split(strings.TrimSpace(strings.TrimPrefix(line, command+":")), ",") {
			if v, ok := strings.CutPrefix(field, "usec_per_call="); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
	}
	return math.NaN()
}

// BenchmarkProtectedHandler is a whole protected HTTP handler (a ServeMux
// route behind Spillway's middleware, served in process to a fresh
// request each time), run in parallel: with a local limit, with a global
// one in lease mode, and with the per-request Redis GCRA in a middleware
// of its own, redis_rate's design. ns/op is the inverse of throughput.
func BenchmarkProtectedHandler(b *testing.B) {
	srv := redistest.Start(b)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pay", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("paid\n")) })
	serve := func(b *testing.B, h http.Handler) {
		b.ReportAllocs()
		var mu sync.Mutex
		var all []time.Duration
		b.RunParallel(func(pb *testing.PB) {
			lat := make([]time.Duration, 0, 1<<16)
			for pb.Next() {
				t0 := time.Now()
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest("GET", "/pay", nil))
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
				if len(lat) < cap(lat) {
					lat = append(lat, time.Since(t0))
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
		reportP99(b, all)
	}
	protect := func(l *controlpoint.Limiter) http.Handler {
		cp := controlpoint.NewRegistry(func() int64 { return time.Now().UnixNano() }).Get("ingress")
		cp.Declare("GET /pay").AttachLimiter(l)
		return httpmw.Wrap(cp, mux, httpmw.Options{})
	}
	b.Run("local", func(b *testing.B) {
		serve(b, protect(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(1e12, 1e12, time.Now().UnixNano())}))
	})
	b.Run("global-lease", func(b *testing.B) {
		l := &controlpoint.Limiter{Bucket: actuators.NewTokenBucket(math.NaN(), 1, time.Now().UnixNano())}
		s, err := fleet.New(fleet.Options{Client: redis.UniversalOptions{Addrs: []string{srv.Addr}}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s.Join("handler", "ingress/GET /pay", l.Bucket.SetRateAndBurst, func() uint64 { return l.Allowed.Load() + l.Rejected.Load() }).SetLimit(1e12, 1e12)
		go s.Run(ctx)
		serve(b, protect(l))
	})
	b.Run("redis-gcra", func(b *testing.B) {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer rdb.Close()
		serve(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ok, err := gcraScript.Run(r.Context(), rdb, []string{"gcra:handler"}, 1e9, 1e9).Int()
			if err != nil || ok != 1 {
				http.Error(w, "rate limited", http.StatusTooManyRequests)
				return
			}
			mux.ServeHTTP(w, r)
		}))
	})
}
