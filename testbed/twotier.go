package testbed

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// EntryPattern is the entry mux pattern; handlers behind wrap see it as r.Pattern.
const EntryPattern = "GET /api"

// TwoTierConfig describes the simulated app: a frontend that spends
// FrontendTime per request and then calls a backend, whose Workers serve one
// request each for BackendTime. The frontend has no worker limit, so the
// backend pool is the bottleneck.
type TwoTierConfig struct {
	// FrontendTime is the frontend's own work per request, before the backend call.
	FrontendTime Dist
	// BackendTime is the service time of one backend request on one worker.
	BackendTime Dist
	// Workers is the backend's worker count; requests beyond it wait in FIFO order.
	Workers int
	// Seed seeds the service-time RNG. Arrival order on the servers is not
	// deterministic, so it fixes the distribution of draws, not which request gets which.
	Seed uint64
}

// DefaultTwoTier is the demo app: 8 backend workers at a lognormal 25 ms mean
// (σ = 0.5, p99 ≈ 70 ms) behind 1 ms of frontend work. Capacity is 320 req/s,
// so 3× capacity is 960 req/s, which two cores generate and serve easily
// because service time is spent sleeping, not computing.
func DefaultTwoTier() TwoTierConfig {
	return TwoTierConfig{
		FrontendTime: Dist{Kind: Constant, Mean: time.Millisecond},
		BackendTime:  Dist{Kind: Lognormal, Mean: 25 * time.Millisecond, Sigma: 0.5},
		Workers:      8,
		Seed:         1,
	}
}

// Capacity is the sustainable throughput in req/s:
//
//	Capacity = Workers / BackendTime.Mean (in seconds)
//
// by Little's law on the saturated worker pool. Frontend time does not count:
// the frontend is not worker-bounded. It is +Inf if BackendTime.Mean is 0.
func (c TwoTierConfig) Capacity() float64 {
	if c.BackendTime.Mean <= 0 {
		return math.Inf(1)
	}
	return float64(c.Workers) / c.BackendTime.Mean.Seconds()
}

// validate reports the first invalid field of c, by its path.
func (c TwoTierConfig) validate() error {
	if err := c.FrontendTime.validate(); err != nil {
		return fmt.Errorf("testbed: TwoTierConfig.FrontendTime.%w", err)
	}
	if err := c.BackendTime.validate(); err != nil {
		return fmt.Errorf("testbed: TwoTierConfig.BackendTime.%w", err)
	}
	if c.Workers < 1 {
		return fmt.Errorf("testbed: TwoTierConfig.Workers %d: must be >= 1", c.Workers)
	}
	return nil
}

// TwoTier is a running two-tier app on 127.0.0.1: TwoTierApp(cfg) live.
// Its methods are safe for concurrent use.
type TwoTier struct {
	// URL is the entry URL, http://127.0.0.1:PORT/api.
	URL string

	live    *LiveApp
	backend *http.Server
}

// StartTwoTier starts the backend and the frontend on 127.0.0.1:0 and returns
// once both accept connections. wrap, if not nil, wraps the entry handler
// inside the mux, so middleware sees r.Pattern == EntryPattern; this is where
// Spillway's middleware goes.
//
// The frontend answers 200 when the backend does, 504 when the backend call
// times out (after 2 s) and 502 on any other backend failure. The backend
// queues a request until a worker is free; a request whose context is
// canceled (its client gave up) leaves the queue. A request that reached a
// worker is served to the end even if its client left, as real work would be.
func StartTwoTier(cfg TwoTierConfig, wrap func(http.Handler) http.Handler) (*TwoTier, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	live, err := StartLive(TwoTierApp(cfg), cfg.Seed, wrap)
	if err != nil {
		return nil, err
	}
	return &TwoTier{URL: live.URL + "/api", live: live, backend: live.servers["backend"]}, nil
}

// Close shuts both servers down at once, closing their listeners and
// connections; queued backend requests are canceled. It does not wait for
// requests already on a worker, which end within their service time.
func (t *TwoTier) Close() error { return t.live.Close() }

func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       30 * time.Second,
	}
}

// newLoopbackTransport is sized for thousands of concurrent loopback
// requests: a large idle pool keeps connections reused instead of burning
// ephemeral ports on new ones, and at most 512 connections per host make a
// burst wait for one rather than dial: unbounded, boutique at 4× (5,000
// req/s) dialled 22,000 connections and left 14,000 in TIME_WAIT, and the
// dials, not the app, set every latency (nothing was admitted at all).
func newLoopbackTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1000,
		MaxIdleConnsPerHost: 1000,
		MaxConnsPerHost:     512,
		IdleConnTimeout:     30 * time.Second,
	}
}

// sampler draws from one Dist with an RNG shared by all requests.
type sampler struct {
	dist Dist
	mu   sync.Mutex
	rng  *rand.Rand
}

func (s *sampler) sample() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dist.Sample(s.rng)
}
