package fleet_test

import (
	"context"
	"flag"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/fleet"
	"github.com/spillway-dev/spillway/internal/redistest"
)

// redisOutage is how long TestRedisOutageHoldsShares keeps Redis down: the
// issue's 10 s by default (and in CI); shorter for a quick local run with
// go test ./fleet/ -run TestRedisOutageHoldsShares -v -args -redis-outage=3s
var redisOutage = flag.Duration("redis-outage", 10*time.Second, "how long TestRedisOutageHoldsShares keeps Redis down")

// instance is one engine's part of a global limit: a control point whose
// limiter's bucket a Syncer sets, and a count of what it was offered and
// admitted.
type instance struct {
	syncer   *fleet.Syncer
	member   *fleet.Member
	bucket   *actuators.TokenBucket
	point    *controlpoint.ControlPoint
	offered  atomic.Uint64
	admitted atomic.Uint64
	// failed counts decisions that were neither an admission nor a rate
	// limit's refusal: a request error.
	failed atomic.Uint64
}

// startFleet starts n Syncers on one Redis, each with one member of the
// global limit "payments" at limit req/s, its bucket in a limiter at the
// control point "ingress", API "GET /pay". The burst is half a second of
// the limit: under 4× the limit the buckets stay drained, and the depth
// only keeps a load generator that a busy machine stalls from losing
// tokens (an error on the under side that would not be the shares').
func startFleet(t *testing.T, ctx context.Context, addr string, n int, limit float64, clock func() int64) []*instance {
	t.Helper()
	fl := make([]*instance, n)
	for i := range fl {
		l := &controlpoint.Limiter{Bucket: actuators.NewTokenBucket(math.NaN(), 1, clock())}
		in := &instance{bucket: l.Bucket, point: controlpoint.NewRegistry(clock).Get("ingress")}
		in.point.API("GET /pay").AttachLimiter(l)
		s, err := fleet.New(fleet.Options{Client: redis.UniversalOptions{Addrs: []string{addr}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		in.syncer = s
		in.member = s.Join("payments", "ingress/GET /pay", in.bucket.SetRateAndBurst, in.offered.Load)
		in.member.SetLimit(limit, limit*0.5)
		fl[i] = in
	}
	var wg sync.WaitGroup
	for _, in := range fl {
		wg.Add(1)
		go func() { defer wg.Done(); in.syncer.Run(ctx) }()
	}
	t.Cleanup(wg.Wait)
	return fl
}

// progress is the load generator's count at the end of a batch, and when
// (clock ns). A window measured between two of them starts and ends where
// the generator was, not where the test's goroutine woke up: a generator
// that a busy machine stalls across a window's edge moves no admissions
// from one window into the next.
type progress struct {
	admitted, offered uint64
	atNs              int64
}

// offer sends rps requests per second, round robin over the instances,
// until ctx ends, paced by elapsed time so that a slow loop catches up,
// and publishes its progress after every batch. Each request is decided by
// the instance's control point, as the HTTP and gRPC middleware decide it.
func offer(ctx context.Context, fl []*instance, rps float64, clock func() int64, at *atomic.Pointer[progress]) {
	start := clock()
	var sent, admitted uint64
	for ctx.Err() == nil {
		due := uint64(float64(clock()-start) / 1e9 * rps)
		for ; sent < due; sent++ {
			in := fl[sent%uint64(len(fl))]
			in.offered.Add(1)
			switch tk, d := in.point.Admit("GET /pay"); d {
			case controlpoint.Accepted:
				in.admitted.Add(1)
				admitted++
				tk.Done(true)
			case controlpoint.RateLimited:
			default:
				in.failed.Add(1)
			}
		}
		at.Store(&progress{admitted: admitted, offered: sent, atNs: clock()})
		time.Sleep(500 * time.Microsecond)
	}
}

func shares(fl []*instance, now time.Time) (sum float64, modes []string) {
	for _, in := range fl {
		st := in.member.Status(now)
		sum += st.Share
		modes = append(modes, st.Mode)
	}
	return sum, modes
}

// TestRedisOutageHoldsShares runs 4 instances at 4× a global limit of
// 1000 req/s and kills Redis for 10 s (-redis-outage; a restart that
// loses every key). The criterion, asserted whole: zero request
// errors (every decision an admission or a rate limit's refusal, none
// passed through unlimited); admitted within ±15 % of the limit during
// the outage; and, from two sync intervals after Redis returns, within
// ±2 % over the next 5 s. Before the outage: ±5 % over 2 s.
func TestRedisOutageHoldsShares(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("real time: about 18 s")
	}
	srv := redistest.Start(t)
	const n, limit = 4, 1000.0
	start := time.Now()
	clock := func() int64 { return int64(time.Since(start)) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fl := startFleet(t, ctx, srv.Addr, n, limit, clock)
	var at atomic.Pointer[progress]
	at.Store(&progress{})
	go offer(ctx, fl, 4*limit, clock, &at)

	mark := func() progress { return *at.Load() }
	rate := func(from progress) float64 {
		to := mark()
		secs := float64(to.atNs-from.atNs) / 1e9
		if o := float64(to.offered-from.offered) / secs; o < 3*limit {
			t.Errorf("the load generator offered only %.0f req/s; the test needs 4× the limit", o)
		}
		return float64(to.admitted-from.admitted) / secs
	}
	// sleepUntil sleeps until ns on the clock.
	sleepUntil := func(ns int64) { time.Sleep(time.Duration(ns - clock())) }
	check := func(phase string, rps, tolerance float64) {
		t.Helper()
		over := (rps - limit) / limit * 100
		fmt.Printf("global-limit: instances=%d limit=%.0f admitted_rps=%.1f over_pct=%.2f (%s)\n", n, limit, rps, over, phase)
		if math.Abs(over) > tolerance*100 {
			t.Errorf("%s: admitted %.1f req/s, want %.0f ±%.0f %%", phase, rps, limit, tolerance*100)
		}
	}

	time.Sleep(1 * time.Second) // converge
	before := mark()
	time.Sleep(2 * time.Second)
	check("Redis up, 2 s", rate(before), 0.05)

	srv.Stop()
	down := mark()
	time.Sleep(300 * time.Millisecond) // the syncs notice
	held, modes := shares(fl, time.Now())
	t.Logf("during the outage: shares held add up to %.1f, modes %v", held, modes)
	if modes[0] != "fail_static" {
		t.Errorf("during the outage: modes %v, want fail_static", modes)
	}
	sleepUntil(down.atNs + int64(*redisOutage))
	check(fmt.Sprintf("Redis down, %v", *redisOutage), rate(down), 0.15)

	srv.Restart() // empty: every member, demand and script is gone
	interval := fleet.DefaultSyncInterval
	back, backNs := time.Now(), clock()
	sleepUntil(backNs + int64(2*interval))
	after := mark()
	for after.atNs < backNs+int64(2*interval) { // the generator's first batch since
		time.Sleep(time.Millisecond)
		after = mark()
	}
	// Every member synced again, with shares that add up to the limit ±5 %;
	// within the two intervals, plus 100 ms for a 2-CPU machine running
	// other tests under -race.
	var sum float64
	for {
		sum, modes = shares(fl, time.Now())
		synced := math.Abs(sum-limit)/limit <= 0.05
		for _, m := range modes {
			synced = synced && m == "synced"
		}
		if synced {
			break
		}
		if time.Since(back) > 2*interval+100*time.Millisecond {
			t.Fatalf("%v after Redis returned: shares add up to %.1f, modes %v; want %.0f ±5 %%, all synced, within two sync intervals",
				time.Since(back).Round(time.Millisecond), sum, modes, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%v after Redis returned: shares add up to %.1f, modes %v", time.Since(back).Round(time.Millisecond), sum, modes)
	sleepUntil(after.atNs + int64(5*time.Second))
	check("Redis back, 5 s from two sync intervals after its return", rate(after), 0.02)

	cancel()
	var failed, passthrough, offered uint64
	for _, in := range fl {
		failed += in.failed.Load()
		offered += in.offered.Load()
		passthrough += in.point.API("GET /pay").Count(controlpoint.OutcomePassthrough)
	}
	t.Logf("%d requests offered, %d failed, %d passed through unlimited", offered, failed, passthrough)
	if failed != 0 || passthrough != 0 {
		t.Errorf("%d requests failed and %d passed through unlimited; a Redis outage must cost none", failed, passthrough)
	}
}

// TestRestartThatLosesDataLosesNoProtection: after a restart that loses
// every key, the first instance to re-announce sees itself alone, and
// still takes no more than its share.
func TestRestartThatLosesDataLosesNoProtection(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	fl := make([]*instance, 4)
	for i := range fl {
		in := &instance{bucket: actuators.NewTokenBucket(math.NaN(), 1, 0)}
		s, err := fleet.New(fleet.Options{Client: redis.UniversalOptions{Addrs: []string{srv.Addr}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		in.syncer, in.member = s, s.Join("k", "cp/*", in.bucket.SetRateAndBurst, in.offered.Load)
		in.member.SetLimit(1000, 100)
		fl[i] = in
	}
	// No demand: the limit is split evenly, 250 each.
	for round := 0; round < 2; round++ {
		for _, in := range fl {
			if err := in.syncer.SyncOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := fl[0].bucket.Rate(); math.Abs(got-250) > 1 {
		t.Fatalf("before the restart: share %v, want 250", got)
	}
	srv.Stop()
	srv.Restart()
	in := fl[0]
	if err := in.syncer.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	st := in.member.Status(time.Now())
	if st.Live != 1 || st.Planned != 4 {
		t.Errorf("first sync after the restart: live %d planned %d, want 1 and 4", st.Live, st.Planned)
	}
	if got := in.bucket.Rate(); got > 250+1 {
		t.Errorf("first sync after the restart: share %v, want at most 250 (not the whole limit)", got)
	}
	for _, in := range fl {
		in.syncer.SyncOnce(ctx)
	}
}

// TestLeaveTakesItsDemandFromTheTotal: a member that leaves is gone from
// the live count and from the fleet's demand at the next sync of the rest.
func TestLeaveTakesItsDemandFromTheTotal(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	var busy atomic.Uint64
	newMember := func(arrivals func() uint64) (*fleet.Syncer, *fleet.Member) {
		s, err := fleet.New(fleet.Options{Client: redis.UniversalOptions{Addrs: []string{srv.Addr}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := s.Join("k", "cp/*", func(float64, float64) {}, arrivals)
		m.SetLimit(1000, 100)
		return s, m
	}
	quietSyncer, quiet := newMember(func() uint64 { return 0 })
	busySyncer, busyMember := newMember(busy.Load)
	busy.Add(1_000_000)
	for _, s := range []*fleet.Syncer{busySyncer, quietSyncer} {
		if err := s.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st := quiet.Status(time.Now()); st.Live != 2 || st.FleetDemand < 1000 {
		t.Fatalf("both in: live %d, fleet demand %.0f; want 2 and the busy member's demand", st.Live, st.FleetDemand)
	}
	if st := quiet.Status(time.Now()); st.Share > 1 {
		t.Errorf("quiet member beside a busy one over the limit: share %.1f, want about 0", st.Share)
	}
	busyMember.Leave()
	for _, s := range []*fleet.Syncer{busySyncer, quietSyncer} {
		if err := s.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st := quiet.Status(time.Now())
	if st.Live != 1 || st.FleetDemand != 0 {
		t.Errorf("after the busy member left: live %d, fleet demand %v; want 1 and 0", st.Live, st.FleetDemand)
	}
	if st.Planned != 2 || math.Abs(st.Share-500) > 1e-6 {
		t.Errorf("after the busy member left: planned %d, share %.1f; want 2 and 500 until a member TTL has passed", st.Planned, st.Share)
	}
}

// TestSlowRedisNeverHoldsASyncBeyondTheInterval: with Redis frozen
// (SIGSTOP, connections open), a sync fails within the sync interval and
// the share holds; when Redis resumes, the next sync succeeds.
func TestSlowRedisNeverHoldsASyncBeyondTheInterval(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	s, err := fleet.New(fleet.Options{Client: redis.UniversalOptions{Addrs: []string{srv.Addr}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rate atomic.Value
	m := s.Join("slow", "cp/*", func(r, _ float64) { rate.Store(r) }, func() uint64 { return 0 })
	m.SetLimit(1000, 100)
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	for range 3 {
		t0 := time.Now()
		if err := s.SyncOnce(ctx); err == nil {
			t.Fatal("a sync with Redis frozen succeeded")
		}
		if d := time.Since(t0); d > s.Interval()+50*time.Millisecond {
			t.Errorf("a sync with Redis frozen took %v, more than the interval %v", d, s.Interval())
		}
	}
	if st := m.Status(time.Now()); st.Mode != "fail_static" || st.Share != 1000 || rate.Load().(float64) != 1000 {
		t.Errorf("Redis frozen: mode %s share %v bucket %v; want fail_static holding 1000", st.Mode, st.Share, rate.Load())
	}
	srv.Resume()
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatalf("first sync after Redis resumed: %v", err)
	}
	if st := m.Status(time.Now()); st.Mode != "synced" {
		t.Errorf("after Redis resumed: mode %s, want synced", st.Mode)
	}
}
