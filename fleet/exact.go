package fleet

import (
	"context"
	"errors"
	"math"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

// gcraScript is one step of the generic cell rate algorithm: it admits a
// request when the limit's theoretical arrival time (TAT), advanced by one
// emission interval, stays within the burst's tolerance of now, and then
// stores the advanced TAT. Time is the Redis server's, in microseconds, so
// the engines' clocks do not matter; a request refused changes nothing.
//
// KEYS[1] the TAT; ARGV rate (requests/s, > 0), burst (requests, ≥ 1).
// Returns 1 to admit, 0 to refuse.
var gcraScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local emission = 1e6 / rate
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1e6 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local nextTat = tat + emission
if nextTat - now > burst * emission then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', nextTat), 'PX', math.ceil((nextTat - now) / 1000) + 1)
return 1
`)

// Exact decides every request of one global limit in Redis: one GCRA step
// per request (exact across the fleet, one round trip each), waiting at
// most its budget. A request Redis does not answer in time, and every
// request for one sync interval after such a failure, is left unanswered,
// so that the limiter decides it against this engine's lease share
// (fail-static): Redis slow or down costs each request at most one budget,
// and most requests nothing. Decide is safe for concurrent use.
type Exact struct {
	s       *Syncer
	key     []string
	budget  time.Duration
	backoff int64 // ns of the control point's clock to skip Redis after a failure
	options *redis.UniversalOptions

	limitBits, burstBits atomic.Uint64 // float64 bits; NaN limit: none
	client               atomic.Pointer[exactClient]
	downUntil            atomic.Int64 // the control point's clock
	answered, unanswered atomic.Uint64
	lastErr              atomic.Pointer[string]
	closed               atomic.Bool
	closeOnce            sync.Once
}

// exactClient holds an Exact's connection, so that it can be swapped
// atomically.
type exactClient struct{ redis.UniversalClient }

// Exact returns the exact-mode decider of the global limit key, which
// waits at most budget on Redis per request. It has no limit (every
// request admitted) until SetLimit; Close releases its connections.
func (s *Syncer) Exact(key string, budget time.Duration) *Exact {
	opts := s.clientOptions // timeouts capped at the sync interval; the budget is each call's deadline
	x := &Exact{
		s:       s,
		key:     []string{"spillway:{" + key + "}:gcra"},
		budget:  budget,
		backoff: int64(s.interval),
		options: &opts,
	}
	x.limitBits.Store(math.Float64bits(math.NaN()))
	x.burstBits.Store(math.Float64bits(1))
	x.client.Store(&exactClient{redis.NewUniversalClient(x.options)})
	s.mu.Lock()
	s.exacts = append(s.exacts, x)
	s.mu.Unlock()
	return x
}

// SetLimit sets the fleet's limit (requests/s; NaN or +Inf for none) and
// burst (requests; at least 1).
func (x *Exact) SetLimit(limit, burst float64) {
	if !(burst >= 1) {
		burst = 1
	}
	x.burstBits.Store(math.Float64bits(burst))
	x.limitBits.Store(math.Float64bits(limit))
}

// Decide asks Redis for one request, within the budget. It answers
// without Redis when there is no limit (RemoteUnlimited), when the limit
// is 0 (RemoteReject), and while Redis is held down (RemoteUnanswered).
func (x *Exact) Decide(now int64) controlpoint.RemoteVerdict {
	limit := math.Float64frombits(x.limitBits.Load())
	switch {
	case math.IsNaN(limit) || math.IsInf(limit, 1):
		return controlpoint.RemoteUnlimited
	case limit <= 0:
		return controlpoint.RemoteReject
	case now < x.downUntil.Load():
		x.unanswered.Add(1)
		return controlpoint.RemoteUnanswered
	}
	burst := math.Float64frombits(x.burstBits.Load())
	ctx, cancel := context.WithTimeout(context.Background(), x.budget)
	defer cancel()
	client := x.client.Load()
	admit, err := gcraScript.Run(ctx, client, x.key,
		strconv.FormatFloat(limit, 'g', -1, 64), strconv.FormatFloat(burst, 'g', -1, 64)).Int()
	if err != nil {
		x.fail(now, client, err)
		return controlpoint.RemoteUnanswered
	}
	x.answered.Add(1)
	if admit == 1 {
		return controlpoint.RemoteAdmit
	}
	return controlpoint.RemoteReject
}

// fail holds Redis down for one backoff and, once per failure episode
// that is not a timeout, replaces the client, so that the next try dials
// afresh (go-redis's pool, after as many failed dials as its size, dials
// only once a second). A timeout leaves the pool alone: its other
// connections may be answering.
func (x *Exact) fail(now int64, client *exactClient, err error) {
	x.unanswered.Add(1)
	msg := err.Error()
	x.lastErr.Store(&msg)
	until := x.downUntil.Load()
	if now < until || !x.downUntil.CompareAndSwap(until, now+x.backoff) {
		return // another request already held it down
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout() {
		return
	}
	fresh := &exactClient{redis.NewUniversalClient(x.options)}
	if !x.client.CompareAndSwap(client, fresh) {
		fresh.Close()
		return
	}
	client.Close()
	if x.closed.Load() {
		fresh.Close() // Close ran meanwhile and may have closed the old one
	}
}

// Close releases the connections. Decide after Close leaves every request
// unanswered.
func (x *Exact) Close() {
	x.closeOnce.Do(func() {
		x.closed.Store(true)
		x.downUntil.Store(math.MaxInt64)
		x.client.Load().Close()
		x.s.mu.Lock()
		x.s.exacts = slices.DeleteFunc(x.s.exacts, func(y *Exact) bool { return y == x })
		x.s.mu.Unlock()
	})
}

// ExactStatus is an exact-mode limit's record, for /status.
type ExactStatus struct {
	Budget time.Duration
	// Answered counts the requests Redis decided; Unanswered those left
	// to the lease share (a failure, or within a backoff after one).
	Answered, Unanswered uint64
	LastError            string
}

// Status reports the decider's counts and its last error.
func (x *Exact) Status() ExactStatus {
	st := ExactStatus{Budget: x.budget, Answered: x.answered.Load(), Unanswered: x.unanswered.Load()}
	if e := x.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}
