// Package fleet shares rate limits among the engines of a fleet through
// Redis, without a network round trip on the request path.
//
// Each engine keeps deciding every request with its own lock-free token
// bucket. What the fleet shares is how the global limit is split: every
// sync interval (DefaultSyncInterval) a Syncer sends Redis, in one
// pipelined round trip, one script call per global limit it takes part in.
// The call announces the member with an expiring entry, reports its demand
// (requests offered per second, smoothed over DemandWindowIntervals) and
// returns the number of live members and the fleet's total demand, from
// which the member computes its share (see Share) and sets its bucket.
//
// When Redis is slow or down, nothing waits on it: a sync that does not
// answer within one interval fails, and each member holds the share it
// planned at its last sync that answered (the same fraction of the limit,
// if the policy changes the limit meanwhile), or limit ÷ the live members
// it last saw. The members synced at different moments, each with its own
// demand fresh and the others' as last reported, so their synced shares
// need not add up to the limit: after a stall, a member that reported
// almost nothing and then its backlog let the others plan with the one and
// itself with the other. The share held is planned instead with the least
// demand the member reported within HeldWindowIntervals before its sync
// (or last before them), and every other member whose last sync fell in
// that window planned with one of those demands. The held shares of a
// fleet whose members' last syncs lie within HeldWindowIntervals of each
// other, all with the same live count, therefore add up to at most the
// limit, whatever the order of their syncs. A member count that falls is
// believed only after a member TTL (see membership), so a Redis restart
// that loses every key gives no instance the whole limit.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultSyncInterval is Options.SyncInterval's default.
const DefaultSyncInterval = 100 * time.Millisecond

// MemberTTLIntervals is how many sync intervals a member stays live in
// Redis after its last announcement.
const MemberTTLIntervals = 5

// DemandWindowIntervals is the time constant, in sync intervals, of the
// exponential average of the demand a member reports. One interval holds
// a few dozen requests at a few hundred requests per second, and a process
// that stalls counts none during the stall and its backlog after it; the
// average keeps such noise out of the shares (and out of the share held
// through an outage, see the package doc), and follows a lasting change in
// demand within about a second at the default interval.
const DemandWindowIntervals = 10

// HeldWindowIntervals is how far back, in sync intervals, a member looks
// for the least demand it reported, to plan the share it holds while syncs
// fail (see the package doc): one interval between two syncs, and one more
// for a sync that a busy machine delayed.
const HeldWindowIntervals = 2

// Options says how to reach Redis and how often to reconcile.
type Options struct {
	// Client is the connection, as go-redis's UniversalClient takes it:
	// one address in Addrs for a single Redis; several for Redis Cluster
	// (or one, with IsClusterMode); the Sentinels' addresses with
	// MasterName for a master that Sentinel fails over. Username,
	// Password, DB, TLSConfig and the rest as go-redis offers them. Its
	// timeouts are capped at the sync interval and it never retries within
	// a sync: the next sync is the retry.
	Client redis.UniversalOptions
	// SyncInterval is how often each engine reconciles its shares with
	// Redis. Default DefaultSyncInterval.
	SyncInterval time.Duration
}

// Syncer reconciles the shares of one engine's global limits. Join adds a
// limit; Run syncs until its context ends. Its methods are safe for
// concurrent use; none of them is on the request path.
type Syncer struct {
	clientOptions redis.UniversalOptions
	client        redis.UniversalClient // made by the first sync, replaced after a failed one; guarded by mu
	interval      time.Duration
	ttl           time.Duration
	instance      string
	log           *slog.Logger
	kick          chan struct{}

	mu      sync.Mutex
	members []*Member
	leaving []*Member // left since the last sync: removed from Redis then
	exacts  []*Exact  // open exact-mode deciders, closed when Run ends

	syncs, failures atomic.Uint64
}

// New returns a Syncer. It holds no connection, nor anything to release,
// until the first sync.
func New(opts Options, log *slog.Logger) (*Syncer, error) {
	if len(opts.Client.Addrs) == 0 || slices.Contains(opts.Client.Addrs, "") {
		return nil, errors.New("fleet: no Redis address")
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	// The engine's name in Redis: host, process and a random suffix, so
	// that two Syncers in one process are two instances.
	host, _ := os.Hostname()
	var suffix [4]byte
	rand.Read(suffix[:])
	instance := fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(suffix[:]))
	if log == nil {
		log = slog.Default()
	}
	c := opts.Client
	c.ContextTimeoutEnabled = true
	c.MaxRetries = -1
	c.DialerRetries = 1
	for _, d := range []*time.Duration{&c.DialTimeout, &c.ReadTimeout, &c.WriteTimeout} {
		if *d <= 0 || *d > opts.SyncInterval {
			*d = opts.SyncInterval
		}
	}
	return &Syncer{
		clientOptions: c,
		interval:      opts.SyncInterval,
		ttl:           MemberTTLIntervals * opts.SyncInterval,
		instance:      instance,
		log:           log,
		kick:          make(chan struct{}, 1),
	}, nil
}

// Interval is the sync interval.
func (s *Syncer) Interval() time.Duration { return s.interval }

// Run syncs every interval until ctx ends, then closes the connection.
func (s *Syncer) Run(ctx context.Context) {
	defer func() {
		s.mu.Lock()
		exacts := slices.Clone(s.exacts)
		if s.client != nil {
			s.client.Close()
			s.client = nil
		}
		s.mu.Unlock()
		for _, x := range exacts {
			x.Close()
		}
	}()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.leaveAll()
			return
		case <-t.C:
		case <-s.kick:
		}
		s.SyncOnce(ctx)
	}
}

// connection returns the client, made on first use.
func (s *Syncer) connection() redis.UniversalClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		opts := s.clientOptions
		s.client = redis.NewUniversalClient(&opts)
	}
	return s.client
}

// Kick asks Run for a sync now, as after a reload adds a global limit.
func (s *Syncer) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// leaveAll removes this engine's members from Redis, best effort, so that
// the fleet sees a clean shutdown at once rather than after a member TTL.
func (s *Syncer) leaveAll() {
	s.mu.Lock()
	gone := append(s.leaving, s.members...)
	s.members, s.leaving = nil, nil
	s.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.interval)
	defer cancel()
	pipe := s.connection().Pipeline()
	for _, m := range gone {
		leaveScript.Eval(ctx, pipe, m.keys(), m.id)
	}
	pipe.Exec(ctx)
}

// Join adds this engine to the global limit key as the member name (one
// per bucket: the selector). apply sets the bucket, from the sync loop or
// SetLimit, never concurrently with itself; arrivals returns the bucket's
// cumulative count of requests offered. The member has no limit (apply
// gets NaN) until SetLimit.
func (s *Syncer) Join(key, name string, apply func(ratePerSec, burst float64), arrivals func() uint64) *Member {
	tag := "spillway:{" + key + "}"
	m := &Member{
		s: s, key: key, id: s.instance + "|" + name,
		liveKey: tag + ":live", demandKey: tag + ":demand", totalKey: tag + ":total",
		apply: apply, arrivals: arrivals,
		limit: math.NaN(), burst: math.NaN(), fraction: math.NaN(), heldFraction: math.NaN(),
		demand:       math.NaN(),
		lastArrivals: arrivals(), lastAt: time.Now(),
	}
	s.mu.Lock()
	s.members = append(s.members, m)
	s.mu.Unlock()
	return m
}

// Syncs and Failures count the sync round trips since New, by outcome.
func (s *Syncer) Syncs() uint64    { return s.syncs.Load() }
func (s *Syncer) Failures() uint64 { return s.failures.Load() }

// syncScript announces a member, drops the members whose announcement
// expired, and returns the live count and their total demand. It keeps the
// total in a key of its own, adjusted by each member's change, so that a
// call costs the same whatever the fleet's size. Time is the Redis
// server's, so the instances' clocks do not matter. The keys share a hash
// tag: one slot on Redis Cluster, and they expire together.
//
// KEYS[1] live (sorted set: member → expiry, ms), KEYS[2] demand (hash:
// member → requests/s), KEYS[3] total demand; ARGV member, demand, ttl ms.
var syncScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
local demand = tonumber(ARGV[2])
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #dead > 0 then
  for _, d in ipairs(redis.call('HMGET', KEYS[2], unpack(dead))) do
    if d then total = total - tonumber(d) end
  end
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[2], unpack(dead))
end
total = total - tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') + demand
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local live = redis.call('ZCARD', KEYS[1])
if live == 1 or total < 0 then total = demand end
redis.call('SET', KEYS[3], tostring(total), 'PX', 2 * ttl)
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
redis.call('PEXPIRE', KEYS[2], 2 * ttl)
return {live, tostring(total)}
`)

// leaveScript removes a member and its demand from the total. KEYS and
// ARGV[1] as syncScript's.
var leaveScript = redis.NewScript(`
local d = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if d and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('INCRBYFLOAT', KEYS[3], -tonumber(d))
end
return 0
`)

// SyncOnce reconciles every member in one pipelined round trip, bounded
// by the sync interval. On failure each member keeps its share.
func (s *Syncer) SyncOnce(ctx context.Context) error {
	s.mu.Lock()
	members := slices.Clone(s.members)
	leaving := s.leaving
	s.leaving = nil
	s.mu.Unlock()
	if len(members) == 0 && len(leaving) == 0 {
		return nil
	}
	client := s.connection()
	ctx, cancel := context.WithTimeout(ctx, s.interval)
	defer cancel()
	now := time.Now()
	demands := make([]float64, len(members))
	for i, m := range members {
		demands[i] = m.measure(now)
	}
	ttlMs := s.ttl.Milliseconds()
	run := func(eval func(redis.Pipeliner, *Member, float64) *redis.Cmd) ([]*redis.Cmd, error) {
		pipe := client.Pipeline()
		for _, m := range leaving {
			leaveScript.Eval(ctx, pipe, m.keys(), m.id)
		}
		cmds := make([]*redis.Cmd, len(members))
		for i, m := range members {
			cmds[i] = eval(pipe, m, demands[i])
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	args := func(m *Member, demand float64) []any {
		return []any{m.id, strconv.FormatFloat(demand, 'g', 6, 64), ttlMs}
	}
	cmds, err := run(func(p redis.Pipeliner, m *Member, d float64) *redis.Cmd {
		return syncScript.EvalSha(ctx, p, m.keys(), args(m, d)...)
	})
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Redis restarted (or flushed its scripts): send the script itself,
		// which also caches it for the next sync.
		cmds, err = run(func(p redis.Pipeliner, m *Member, d float64) *redis.Cmd {
			return syncScript.Eval(ctx, p, m.keys(), args(m, d)...)
		})
	}
	done := time.Now()
	for i, m := range members {
		live, total, cmdErr := parseSync(cmds[i])
		if cmdErr == nil && err != nil && !errors.Is(err, redis.Nil) {
			cmdErr = err
		}
		if cmdErr != nil {
			m.failed(cmdErr, done)
			continue
		}
		m.synced(live, demands[i], total, done)
	}
	if err != nil {
		// A fresh client for the next sync: go-redis's pool, after as many
		// failed dials as its size, dials again only once a second, and
		// shares must reconverge within two intervals of Redis returning.
		s.mu.Lock()
		if s.client == client {
			s.client = nil // the next sync makes a new one
		}
		s.mu.Unlock()
		client.Close()
		if s.failures.Add(1) == 1 || s.failures.Load()%100 == 0 {
			s.log.Warn("fleet: Redis sync failed; global limits hold their last shares", "error", err, "failures", s.failures.Load())
		}
		return err
	}
	s.syncs.Add(1)
	return nil
}

// parseSync reads the script's reply: {live, "total demand"}.
func parseSync(cmd *redis.Cmd) (live int, total float64, err error) {
	if cmd == nil {
		return 0, 0, errors.New("not sent")
	}
	reply, err := cmd.Slice()
	if err != nil {
		return 0, 0, err
	}
	if len(reply) != 2 {
		return 0, 0, fmt.Errorf("sync script: %d values, want 2", len(reply))
	}
	n, ok := reply[0].(int64)
	str, ok2 := reply[1].(string)
	if !ok || !ok2 {
		return 0, 0, fmt.Errorf("sync script: unexpected reply %v", reply)
	}
	total, err = strconv.ParseFloat(str, 64)
	return int(n), total, err
}

// Member is one bucket's part in a global limit.
type Member struct {
	s                  *Syncer
	key, id            string
	liveKey, demandKey string
	totalKey           string
	apply              func(ratePerSec, burst float64)
	arrivals           func() uint64
	mu                 sync.Mutex
	limit, burst       float64 // the global limit and burst the policy set
	fraction           float64 // share ÷ limit after the last sync; NaN before
	heldFraction       float64 // the fraction held while syncs fail; NaN before the first sync
	live, planned      int     // members seen, and planned with, at the last sync
	members            membership
	demand             float64  // requests/s, averaged: the last one reported; NaN before the first
	fleetDemand        float64  // requests/s, the fleet's total at the last sync
	others             float64  // requests/s, fleetDemand less this member's report; 0 with no limit
	reports            []report // the demands reported within HeldWindowIntervals, and the last before
	lastArrivals       uint64
	lastAt             time.Time
	lastOK, lastFail   time.Time
	lastErr            string
	left               bool
}

// keys are the Redis keys of the member's limit, in the scripts' order.
func (m *Member) keys() []string { return []string{m.liveKey, m.demandKey, m.totalKey} }

// SetLimit sets the global limit and burst (totals for the fleet; NaN
// limit means none) and applies this member's part of them at once.
func (m *Member) SetLimit(limit, burst float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.limit == limit && m.burst == burst || math.IsNaN(m.limit) && math.IsNaN(limit) && m.burst == burst {
		return
	}
	m.limit, m.burst = limit, burst
	m.applyLocked()
}

// Leave stops syncing the member; the next sync removes it from Redis.
func (m *Member) Leave() {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.Index(s.members, m); i >= 0 {
		s.members = slices.Delete(s.members, i, i+1)
		s.leaving = append(s.leaving, m)
	}
	m.mu.Lock()
	m.left = true
	m.mu.Unlock()
}

// report is a demand a member reported (requests/s), and when.
type report struct {
	at     time.Time
	demand float64
}

// measure returns the demand to report at now: the requests offered per
// second since the last sync, averaged over DemandWindowIntervals (the
// first measure is taken as it is), and records it in reports: whether
// the sync answers or not, the demand may have reached Redis.
func (m *Member) measure(now time.Time) float64 {
	n := m.arrivals()
	m.mu.Lock()
	defer m.mu.Unlock()
	dt := now.Sub(m.lastAt).Seconds()
	rate := 0.0
	if dt > 0 {
		rate = float64(n-m.lastArrivals) / dt
	}
	m.lastArrivals, m.lastAt = n, now
	if math.IsNaN(m.demand) {
		m.demand = rate
	} else {
		window := (DemandWindowIntervals * m.s.interval).Seconds()
		m.demand += -math.Expm1(-math.Max(dt, 0)/window) * (rate - m.demand)
	}
	m.reports = append(m.reports, report{now, m.demand})
	start := now.Add(-HeldWindowIntervals * m.s.interval)
	for len(m.reports) > 1 && !m.reports[1].at.After(start) {
		m.reports = m.reports[1:]
	}
	return m.demand
}

// synced takes a sync's answer: the live count and the fleet's demand,
// which includes this member's demand, as measure returned it.
func (m *Member) synced(live int, demand, fleetDemand float64, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.live, m.fleetDemand, m.lastOK = live, fleetDemand, now
	m.planned = m.members.observe(live, now.UnixNano(), int64(m.s.ttl))
	// The share is computed for a unit limit when no limit is set, so that
	// the fraction is ready when one is.
	limit := m.limit
	if !(limit > 0) || math.IsInf(limit, 1) {
		limit = 1
		demand, fleetDemand = 0, 0
	}
	share := Share(limit, demand, fleetDemand, live)
	if m.planned > live {
		// Fewer members than lately: some have not re-announced (Redis lost
		// its data) or have just left. Take no more than before.
		prev := limit / float64(m.planned)
		if !math.IsNaN(m.fraction) {
			prev = math.Max(prev, m.fraction*limit)
		}
		share = math.Min(share, prev)
	}
	m.fraction = share / limit
	m.others = math.Max(fleetDemand-demand, 0)
	m.heldFraction = m.planHeldLocked()
	m.applyLocked()
}

// planHeldLocked returns the fraction to hold if syncs fail: the share
// planned with the least demand this member reported within the held
// window, beside the others' demand at the last sync. Each other member
// whose last sync fell in the window planned with one of those demands,
// none of them less, so the shares held fleet-wide add up to at most the
// limit (see the package doc). Share grows with the member's own demand:
// this is never more than the synced fraction.
func (m *Member) planHeldLocked() float64 {
	least := math.Inf(1)
	for _, r := range m.reports {
		least = math.Min(least, r.demand)
	}
	limit := m.limit
	if !(limit > 0) || math.IsInf(limit, 1) {
		limit, least = 1, 0
	}
	held := Share(limit, least, least+m.others, m.live) / limit
	return math.Min(held, m.fraction)
}

// failed records a sync that did not answer. From the first after one
// that answered, the member holds its held share, planned again with this
// sync's demand too: Redis may have recorded it, and the others planned
// with it, before the answer was lost.
func (m *Member) failed(err error, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	holding := m.holdingLocked()
	m.lastFail, m.lastErr = now, err.Error()
	if !holding && m.holdingLocked() {
		m.heldFraction = math.Min(m.heldFraction, m.planHeldLocked())
		m.applyLocked()
	}
}

// holdingLocked says whether the last sync failed after one answered: the
// member holds heldFraction (mode fail_static).
func (m *Member) holdingLocked() bool {
	return !m.lastOK.IsZero() && m.lastFail.After(m.lastOK)
}

// shareLocked is the rate this member enforces: its fraction of the limit
// (the held one while syncs fail), or before any sync limit ÷ the members
// last seen (itself alone if none).
func (m *Member) shareLocked() float64 {
	switch {
	case math.IsNaN(m.limit) || math.IsInf(m.limit, 1):
		return math.NaN()
	case m.holdingLocked() && !math.IsNaN(m.heldFraction):
		return math.Max(m.limit, 0) * m.heldFraction
	case !math.IsNaN(m.fraction):
		return math.Max(m.limit, 0) * m.fraction
	default:
		return math.Max(m.limit, 0) / float64(max(m.live, 1))
	}
}

func (m *Member) applyLocked() {
	if m.left {
		return
	}
	share := m.shareLocked()
	burst := 1.0
	if !math.IsNaN(share) && m.limit > 0 && !math.IsNaN(m.burst) {
		burst = math.Max(1, m.burst*share/m.limit)
	}
	m.apply(share, burst)
}

// Share is the rate this member enforces now, requests per second: its
// part of the fleet's limit (NaN: no limit).
func (m *Member) Share() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.shareLocked()
}

// Key is the global limit's key.
func (m *Member) Key() string { return m.key }

// Status is a member's view of its global limit, for /status and metrics.
type Status struct {
	Key string
	// Limit and Share are requests per second: the fleet's limit and this
	// engine's part of it (NaN: no limit).
	Limit, Share float64
	// Demand is the requests offered here per second, averaged over
	// DemandWindowIntervals, as last reported (or tried: while syncs fail,
	// it goes on following the requests); FleetDemand the fleet's total at
	// the last sync that answered. Both 0 before any.
	Demand, FleetDemand float64
	// Live is the member count Redis reported last; Planned the count the
	// share was planned with (higher while a fall is not yet believed).
	Live, Planned int
	// Mode is "synced", "fail_static" (the last sync failed: the held share
	// is enforced, see the package doc) or "unsynced" (no sync has answered
	// yet).
	Mode        string
	LastSyncAge time.Duration // since the last sync that answered; 0 if none
	LastError   string
}

// Status reports the member's state at now.
func (m *Member) Status(now time.Time) Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{
		Key: m.key, Limit: m.limit, Share: m.shareLocked(),
		Demand: m.demand, FleetDemand: m.fleetDemand, Live: m.live, Planned: m.planned,
	}
	if math.IsNaN(st.Demand) {
		st.Demand = 0
	}
	switch {
	case m.lastOK.IsZero():
		st.Mode = "unsynced"
	case m.holdingLocked():
		st.Mode = "fail_static"
	default:
		st.Mode = "synced"
	}
	if !m.lastOK.IsZero() {
		st.LastSyncAge = now.Sub(m.lastOK)
	}
	if st.Mode != "synced" {
		st.LastError = strings.TrimSpace(m.lastErr)
	}
	return st
}
