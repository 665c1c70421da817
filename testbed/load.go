package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxInFlight is the client goroutine cap used when LoadConfig.MaxInFlight is 0.
const DefaultMaxInFlight = 20000

// Phase is a stretch of constant offered load.
type Phase struct {
	// Duration is how long the phase lasts; it must be > 0.
	Duration time.Duration
	// Rate is the offered load in req/s; 0 is an idle phase.
	Rate float64
}

// LoadConfig describes one open-loop load run.
type LoadConfig struct {
	// URL is requested with GET by every arrival.
	URL string
	// Phases run back to back; the run offers load for their total duration.
	Phases []Phase
	// SLO is the latency within which a 200 answer counts as goodput.
	SLO time.Duration
	// Timeout is the client timeout per request, covering the whole answer.
	Timeout time.Duration
	// Seed fixes the arrival times, and so the offered count of every second.
	Seed uint64
	// MaxInFlight caps outstanding requests, protecting the load generator
	// itself; an arrival beyond it is not sent and counts as Dropped.
	// 0 means DefaultMaxInFlight.
	MaxInFlight int
}

// Second is what happened to the requests that arrived in one second of a
// run. Every arrival lands in exactly one of Admitted, Rejected, Errors,
// Timeouts and Dropped, so those sum to Offered once the second is final.
type Second struct {
	// T is the second's index: requests whose arrival offset from the start
	// of the run is in [T s, T+1 s). Arrival offsets are the scheduled,
	// seed-determined ones.
	T int
	// Offered counts arrivals.
	Offered int
	// Admitted counts answers other than 429 and 503, including errors
	// answered by the app such as 502 and 504.
	Admitted int
	// Rejected counts 429 and 503 answers: load shed by the app or its middleware.
	Rejected int
	// Goodput counts 200 answers within the SLO; it is a subset of Admitted.
	Goodput int
	// Errors counts requests that got no answer for a reason other than the
	// client timeout, such as a refused connection.
	Errors int
	// Timeouts counts requests that got no full answer within the client timeout.
	Timeouts int
	// Dropped counts arrivals not sent because MaxInFlight requests were outstanding.
	Dropped int
	// P50 and P99 are latency percentiles over Admitted answers and Timeouts
	// (a timeout counts as its time to give up), so that an overloaded app
	// cannot look fast by not answering. Latency runs from the scheduled
	// arrival, so a lagging load generator cannot hide queueing. 0 if there
	// are no such requests.
	P50, P99 time.Duration
}

// Result is the outcome of a run: per-second stats and their totals.
type Result struct {
	// Seconds are final: every request in them has completed.
	Seconds []Second
	// Totals over Seconds, with the same meanings.
	Offered, Admitted, Rejected, Goodput, Errors, Timeouts, Dropped int
	// P50 and P99 are over the whole run, as in Second.
	P50, P99 time.Duration
	// Duration is how long load was offered: the phases' total, or less if
	// the run was canceled. It excludes waiting for outstanding answers.
	Duration time.Duration
}

// GoodputRate is goodput per second of offered load, in req/s.
func (r Result) GoodputRate() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Goodput) / r.Duration.Seconds()
}

// Run offers cfg's load to cfg.URL and returns what happened to it.
//
// Arrivals are open-loop Poisson: their offsets come from a seeded RNG and
// each request runs in its own goroutine with the client timeout, so slow
// answers never delay later arrivals. After the last phase Run waits for
// outstanding requests, at most Timeout, and returns final stats.
//
// onSecond, if not nil, is called once per second T of the run, in order, from
// one goroutine other than the one generating arrivals, so a slow onSecond
// delays later calls but never arrivals; every call returns before Run does.
// The call for second T comes min(SLO, Timeout) after that second ends on
// the wall clock, or as soon as every request of the run has completed,
// whichever is first. It sees the arrivals of T sent by then (normally all
// of them) and the outcomes of those completed by then: Goodput is then
// normally final, since a later answer is beyond the SLO, while Admitted,
// Timeouts and the percentiles may still grow. Result.Seconds is final.
//
// If ctx is done, Run stops offering load, cancels outstanding requests
// (they count as Errors), stops calling onSecond and returns the stats of the
// seconds begun so far with ctx.Err().
func Run(ctx context.Context, cfg LoadConfig, onSecond func(Second)) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	maxInFlight := int64(cfg.MaxInFlight)
	if maxInFlight == 0 {
		maxInFlight = DefaultMaxInFlight
	}
	var total time.Duration
	for _, p := range cfg.Phases {
		total += p.Duration
	}
	tally := newTally(secondsIn(total), cfg.SLO)
	var report func(int)
	if onSecond != nil {
		report = func(t int) { onSecond(tally.snapshot(t)) }
	}
	stream := &loadStream{url: cfg.URL, schedule: newArrivals(cfg.Phases, cfg.Seed), tally: tally}
	span, seconds, err := offerLoad(ctx, []*loadStream{stream}, loadLimits{
		total: total, timeout: cfg.Timeout, reportDelay: min(cfg.SLO, cfg.Timeout), maxInFlight: maxInFlight,
	}, report)
	return tally.result(seconds, span), err
}

// loadStream is one stream of arrivals of a run: a URL with its own
// schedule and tally. A multi-API run has one per API.
type loadStream struct {
	url      string
	schedule *arrivals
	tally    *tally
	next     time.Duration // offset of the stream's next arrival
	more     bool          // whether next is valid
}

// loadLimits are the parameters of offerLoad shared by every stream.
type loadLimits struct {
	total       time.Duration // how long load is offered
	timeout     time.Duration // client timeout per request
	reportDelay time.Duration // see Run's onSecond
	maxInFlight int64
}

// offerLoad sends the arrivals of every stream, merged in time order, each
// request in its own goroutine; see Run for the timing and cancellation
// semantics, which are the same with report in place of onSecond. It
// returns how long load was offered and how many seconds were begun.
func offerLoad(ctx context.Context, streams []*loadStream, lim loadLimits, report func(int)) (time.Duration, int, error) {
	client, start, drain := startRun(ctx, lim, report)
	defer drain()

	var (
		requests sync.WaitGroup
		inFlight atomic.Int64
		runErr   error
		span     = lim.total
		seconds  = secondsIn(lim.total)
		latest   = -1 // second of the latest arrival sent
	)
	for _, s := range streams {
		s.next, s.more = s.schedule.next()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var stream *loadStream
		for _, s := range streams {
			if s.more && (stream == nil || s.next < stream.next) {
				stream = s
			}
		}
		if stream == nil {
			break
		}
		offset := stream.next
		stream.next, stream.more = stream.schedule.next()
		arrival := start.Add(offset)
		if wait := time.Until(arrival); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if err := ctx.Err(); err != nil {
			runErr = err
			span = min(time.Since(start), lim.total)
			seconds = max(secondsIn(span), latest+1)
			break
		}
		second := int(offset / time.Second)
		latest = second
		tally := stream.tally
		if inFlight.Load() >= lim.maxInFlight {
			tally.arrive(second, true)
			continue
		}
		tally.arrive(second, false)
		inFlight.Add(1)
		url := stream.url
		requests.Go(func() {
			defer inFlight.Add(-1)
			tally.complete(second, send(ctx, client, url, lim.timeout, arrival))
		})
	}
	if runErr == nil {
		// Idle time at the end of the last phase is part of the run.
		if wait := time.Until(start.Add(lim.total)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				runErr = ctx.Err()
			}
		}
	}
	requests.Wait()
	return span, seconds, runErr
}

// startRun starts a run's clock and its reporter (reportSeconds) and
// returns the run's HTTP client. Call drain once every request has
// ended: the reporter then reports the seconds left, and drain returns
// once it has, and closes the client's idle connections.
func startRun(ctx context.Context, lim loadLimits, report func(int)) (client *http.Client, start time.Time, drain func()) {
	transport := newLoopbackTransport()
	client = &http.Client{Transport: transport}
	start = time.Now()
	drained := make(chan struct{})
	reporterDone := make(chan struct{})
	go func() {
		defer close(reporterDone)
		if report != nil {
			reportSeconds(ctx, start, lim.total, lim.reportDelay, drained, report)
		}
	}()
	return client, start, func() {
		close(drained)
		<-reporterDone
		transport.CloseIdleConnections()
	}
}

// secondsIn is the number of whole or partial seconds in d.
func secondsIn(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

// reportSeconds calls report for each second of a run lasting total; see Run.
func reportSeconds(ctx context.Context, start time.Time, total, delay time.Duration, drained <-chan struct{}, report func(int)) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for t := range secondsIn(total) {
		secondEnd := min(time.Duration(t+1)*time.Second, total)
		timer.Reset(time.Until(start.Add(secondEnd + delay)))
		select {
		case <-timer.C:
		case <-drained:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil {
			return
		}
		report(t)
	}
}

// outcome is how one sent request ended.
type outcome struct {
	status  int // HTTP status, 0 if there was no answer
	timeout bool
	latency time.Duration // from the scheduled arrival
}

func send(ctx context.Context, client *http.Client, url string, timeout time.Duration, arrival time.Time) outcome {
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	status, err := get(reqCtx, client, url)
	o := outcome{status: status, latency: time.Since(arrival)}
	if err != nil {
		o.status = 0
		// The client timeout expired, not the run's own ctx.
		o.timeout = ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || reqCtx.Err() != nil)
	}
	return o
}

// get requests url and reads the whole answer.
func get(ctx context.Context, client *http.Client, url string) (status int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// validate reports the first invalid field of c, by its path.
func (c LoadConfig) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("testbed: LoadConfig.URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("testbed: LoadConfig.URL %q: must be an absolute http or https URL", c.URL)
	}
	if len(c.Phases) == 0 {
		return errors.New("testbed: LoadConfig.Phases: must have at least one phase")
	}
	for i, p := range c.Phases {
		if p.Duration <= 0 {
			return fmt.Errorf("testbed: LoadConfig.Phases[%d].Duration %v: must be > 0", i, p.Duration)
		}
		if p.Rate < 0 || math.IsNaN(p.Rate) || math.IsInf(p.Rate, 0) {
			return fmt.Errorf("testbed: LoadConfig.Phases[%d].Rate %v: must be finite and >= 0", i, p.Rate)
		}
	}
	if c.SLO <= 0 {
		return fmt.Errorf("testbed: LoadConfig.SLO %v: must be > 0", c.SLO)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("testbed: LoadConfig.Timeout %v: must be > 0", c.Timeout)
	}
	if c.MaxInFlight < 0 {
		return fmt.Errorf("testbed: LoadConfig.MaxInFlight %d: must be >= 0", c.MaxInFlight)
	}
	return nil
}

// userStream is one API's closed-loop users in a live run: Users[j] of them
// during Scenario step j (Scenario.Think).
type userStream struct {
	url   string
	users []int           // per step
	think []time.Duration // the users' mean think time, per step
	tally *tally
}

// MaxLiveUsers bounds the closed-loop users of a live run, across APIs and
// steps: each is a goroutine of the load generator.
const MaxLiveUsers = DefaultMaxInFlight

// offerUsers runs closed-loop users (Scenario.Think) against every
// stream's URL: user k of a stream is active while the current step has
// more than k users; an active user sends a request, waits for its end,
// thinks for an exponential time of the step's mean and sends again. An
// inactive user keeps thinking, so a user that joins at a step up sends
// after a think time, as in the virtual driver. No think time runs past
// the end of the run, so the users end with it. Requests are counted in
// the second they are sent; reports and cancellation are as offerLoad's.
func offerUsers(ctx context.Context, streams []*userStream, steps []time.Duration, seed uint64, lim loadLimits, report func(int)) error {
	client, start, drain := startRun(ctx, lim, report)
	defer drain()
	// stepAt is the step at an offset from the start, or -1 past the last.
	stepAt := func(at time.Duration) int {
		var end time.Duration
		for j, d := range steps {
			end += d
			if at < end {
				return j
			}
		}
		return -1
	}
	var users sync.WaitGroup
	for i, s := range streams {
		for k := range slices.Max(s.users) {
			rng := rand.New(rand.NewPCG(seed, streamThink+uint64(i)<<24+uint64(k)))
			users.Go(func() {
				timer := time.NewTimer(time.Hour)
				defer timer.Stop()
				for {
					at := time.Since(start)
					j := stepAt(at)
					if j < 0 {
						return
					}
					wait := time.Duration(rng.ExpFloat64() * float64(s.think[j]))
					if s.think[j] == 0 { // no users in this step: wait for the next
						wait = time.Second
					}
					timer.Reset(min(wait, lim.total-at))
					select {
					case <-timer.C:
					case <-ctx.Done():
						return
					}
					if at = time.Since(start); at >= lim.total {
						return
					}
					if j = stepAt(at); j < 0 || k >= s.users[j] {
						continue
					}
					second := int(at / time.Second)
					s.tally.arrive(second, false)
					s.tally.complete(second, send(ctx, client, s.url, lim.timeout, start.Add(at)))
				}
			})
		}
	}
	users.Wait()
	return ctx.Err()
}
