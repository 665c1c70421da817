package testbed

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// LiveApp is an App running on 127.0.0.1: one HTTP server for the entry
// service and one for every other service that an API calls. Its methods
// are safe for concurrent use.
type LiveApp struct {
	// URL is the entry's base URL, http://127.0.0.1:PORT; API a is served
	// at URL + a.Path().
	URL string

	app     App
	entry   *http.Server
	servers map[string]*http.Server // the other services, by name
	pools   []*pool                 // per service; nil when unbounded
	extras  []*atomic.Int64         // per service: extra time per call (SetDelay), ns
	// apiExtras is per API, then per service: the API's own extra time
	// per call there (SetAPIDelay), ns.
	apiExtras [][]*atomic.Int64
	client    *http.Client // the entry's client for its calls
	closeAll  sync.Once
}

// StartLive starts app's services on 127.0.0.1:0 and returns once they all
// accept connections. wrap, if not nil, wraps each API's handler inside
// the entry's mux, so middleware sees r.Pattern == API.Label(); this is
// where Spillway's middleware goes. seed seeds the service times; arrival
// order on the servers is not deterministic, so it fixes the distribution
// of draws, not which request gets which.
//
// The entry runs an API's calls in order: a call to the entry service is
// local work, any other a GET to that service, bounded by the client
// timeout. It answers 200 when every call succeeded, 504 when a call timed
// out and 502 on any other failure, including the client leaving. A
// service queues a call until one of its workers is free; a call whose
// client gave up leaves the queue. A call that reached a worker is served
// to the end even if its client left, as real work would be.
func StartLive(app App, seed uint64, wrap func(http.Handler) http.Handler) (*LiveApp, error) {
	return StartLiveServices(app, seed, wrap, nil)
}

// StartLiveServices is StartLive, with wrapService, if not nil, wrapping
// each service's handler (but the entry's) by the service's name: where a
// control point in front of the service goes, whose flux meter measures
// the service's overload (the topfull blueprint's services). It wraps the
// whole call, its wait for a worker included.
func StartLiveServices(app App, seed uint64, wrap func(http.Handler) http.Handler, wrapService func(service string, h http.Handler) http.Handler) (*LiveApp, error) {
	if err := app.Validate(); err != nil {
		return nil, fmt.Errorf("testbed: app %s: %w", app.Name, err)
	}
	for _, s := range app.Services {
		if s.Sharing() {
			return nil, fmt.Errorf("testbed: app %s: service %s: discipline %q runs in virtual time only (--virtual): the live services serve in FIFO order", app.Name, s.Name, s.Discipline)
		}
	}
	l := &LiveApp{app: app, servers: map[string]*http.Server{}, client: &http.Client{Transport: newLoopbackTransport()}}
	for _, s := range app.Services {
		var p *pool
		if s.Workers > 0 {
			p = &pool{size: s.Workers}
		}
		l.pools = append(l.pools, p)
	}
	for range app.Services {
		l.extras = append(l.extras, new(atomic.Int64))
	}
	l.apiExtras = make([][]*atomic.Int64, len(app.APIs))
	for i := range app.APIs {
		for range app.Services {
			l.apiExtras[i] = append(l.apiExtras[i], new(atomic.Int64))
		}
	}
	// Every call draws from its own RNG stream of the seed.
	samplers := make([][]*sampler, len(app.APIs))
	for i, api := range app.APIs {
		for j, c := range api.Calls {
			stream := streamLive + uint64(i)<<16 + uint64(j)
			samplers[i] = append(samplers[i], &sampler{dist: c.Time, rng: rand.New(rand.NewPCG(seed, stream))})
		}
	}

	var listeners []net.Listener
	fail := func(err error) (*LiveApp, error) {
		for _, ln := range listeners {
			ln.Close()
		}
		return nil, err
	}
	urls := map[string]string{}
	serve := map[*http.Server]net.Listener{}
	for _, api := range app.APIs {
		for _, c := range api.Calls {
			if c.Service == app.Entry || urls[c.Service] != "" {
				continue
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return fail(fmt.Errorf("testbed: %s listen: %w", c.Service, err))
			}
			listeners = append(listeners, ln)
			urls[c.Service] = "http://" + ln.Addr().String()
			mux := http.NewServeMux()
			k := app.serviceIndex(c.Service)
			h := &serviceHandler{pool: l.pools[k], samplers: samplers, extra: l.extras[k]}
			for i := range app.APIs {
				h.apiExtras = append(h.apiExtras, l.apiExtras[i][k])
			}
			var handler http.Handler = h
			if wrapService != nil {
				handler = wrapService(c.Service, handler)
			}
			mux.Handle("GET /call/{api}/{call}", handler)
			l.servers[c.Service] = newServer(mux)
			serve[l.servers[c.Service]] = ln
		}
	}
	entryListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(fmt.Errorf("testbed: %s listen: %w", app.Entry, err))
	}
	listeners = append(listeners, entryListener)
	l.URL = "http://" + entryListener.Addr().String()
	entryMux := http.NewServeMux()
	for i, api := range app.APIs {
		h := &entryHandler{client: l.client, timeout: app.ClientTimeout}
		for j, c := range api.Calls {
			k := app.serviceIndex(c.Service)
			call := entryCall{sampler: samplers[i][j], extra: l.extras[k], apiExtra: l.apiExtras[i][k]}
			if c.Service == app.Entry {
				call.pool = l.pools[app.serviceIndex(c.Service)]
			} else {
				call.url = urls[c.Service] + "/call/" + strconv.Itoa(i) + "/" + strconv.Itoa(j)
			}
			h.calls = append(h.calls, call)
		}
		var handler http.Handler = h
		if wrap != nil {
			handler = wrap(handler)
		}
		entryMux.Handle(api.Label(), handler)
	}
	l.entry = newServer(entryMux)

	serve[l.entry] = entryListener
	for srv, ln := range serve {
		go srv.Serve(ln)
	}
	return l, nil
}

// SetWorkers changes the worker count of a bounded service at once. Calls
// on workers beyond the new count finish, and no new call starts until
// fewer are busy than the new count.
func (l *LiveApp) SetWorkers(service string, workers int) error {
	i := l.app.serviceIndex(service)
	if i < 0 || l.pools[i] == nil {
		return fmt.Errorf("testbed: service %q: no such bounded service", service)
	}
	if workers < 1 {
		return fmt.Errorf("testbed: service %q: workers %d: must be >= 1", service, workers)
	}
	l.pools[i].resize(workers)
	return nil
}

// SetSlowdown makes every later call at a bounded service take factor
// times its sampled time, holding its worker (1 restores it), as
// SlowdownChange does in virtual time: the service's capacity divides by
// factor.
func (l *LiveApp) SetSlowdown(service string, factor float64) error {
	if err := slowdownErr(l.app, service, factor); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	l.pools[l.app.serviceIndex(service)].slow.Store(math.Float64bits(factor))
	return nil
}

// SetDelay makes every later call at an unbounded service take extra
// longer (0 removes it), as DelayChange does in virtual time: a slower
// dependency that holds no worker.
func (l *LiveApp) SetDelay(service string, extra time.Duration) error {
	i := l.app.serviceIndex(service)
	if i < 0 || l.pools[i] != nil || extra < 0 {
		return fmt.Errorf("testbed: service %q extra %v: want an unbounded service and extra >= 0", service, extra)
	}
	l.extras[i].Store(int64(extra))
	return nil
}

// SetAPIDelay is SetDelay for the calls of one API only: a dependency of
// that API alone that answers late.
func (l *LiveApp) SetAPIDelay(api, service string, extra time.Duration) error {
	i, k := l.app.apiIndex(api), l.app.serviceIndex(service)
	if i < 0 || k < 0 || l.pools[k] != nil || extra < 0 || !l.app.calls(api, service) {
		return fmt.Errorf("testbed: API %q service %q extra %v: want an API calling an unbounded service and extra >= 0", api, service, extra)
	}
	l.apiExtras[i][k].Store(int64(extra))
	return nil
}

// Close shuts every server down at once, closing listeners and
// connections; queued calls are canceled. It does not wait for calls
// already on a worker, which end within their service time.
func (l *LiveApp) Close() error {
	var err error
	l.closeAll.Do(func() {
		errs := []error{l.entry.Close()}
		for _, srv := range l.servers {
			errs = append(errs, srv.Close())
		}
		l.client.CloseIdleConnections()
		err = errors.Join(errs...)
	})
	return err
}

// entryHandler serves one API at the entry: its calls, in order.
type entryHandler struct {
	calls   []entryCall
	client  *http.Client
	timeout time.Duration // per call
}

type entryCall struct {
	sampler *sampler
	url     string        // "" for local work
	pool    *pool         // local work's pool; nil when unbounded
	extra   *atomic.Int64 // the service's extra time (SetDelay), ns
	// apiExtra is this API's own extra time there (SetAPIDelay), ns.
	apiExtra *atomic.Int64
}

func (h *entryHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, c := range h.calls {
		if c.url == "" {
			if c.pool != nil {
				start, err := c.pool.acquire(r.Context())
				if err != nil {
					http.Error(w, "client left", http.StatusBadGateway)
					return
				}
				c.pool.hold(start, c.sampler.sample())
				c.pool.release()
			} else {
				time.Sleep(c.sampler.sample())
			}
			// The extra time is a dependency's answer, awaited as a
			// client awaits one: it ends when the request's client leaves.
			if extra := time.Duration(c.extra.Load() + c.apiExtra.Load()); extra > 0 {
				t := time.NewTimer(extra)
				select {
				case <-t.C:
				case <-r.Context().Done():
					t.Stop()
					http.Error(w, "client left", http.StatusBadGateway)
					return
				}
			}
			continue
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
		status, err := h.call(ctx, c.url)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			http.Error(w, "call timeout", http.StatusGatewayTimeout)
			return
		case err != nil:
			http.Error(w, "call error: "+err.Error(), http.StatusBadGateway)
			return
		case status != http.StatusOK:
			http.Error(w, fmt.Sprintf("call status %d", status), http.StatusBadGateway)
			return
		}
	}
	io.WriteString(w, "ok\n")
}

func (h *entryHandler) call(ctx context.Context, url string) (status int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// serviceHandler serves the calls of one service on its worker pool.
type serviceHandler struct {
	pool     *pool         // nil when unbounded
	samplers [][]*sampler  // by API, then call index
	extra    *atomic.Int64 // the service's extra time (SetDelay), ns
	// apiExtras is each API's own extra time here (SetAPIDelay), ns.
	apiExtras []*atomic.Int64
}

func (h *serviceHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	api, err1 := strconv.Atoi(r.PathValue("api"))
	call, err2 := strconv.Atoi(r.PathValue("call"))
	if err1 != nil || err2 != nil || api < 0 || api >= len(h.samplers) || call < 0 || call >= len(h.samplers[api]) {
		http.NotFound(w, r)
		return
	}
	d := h.samplers[api][call].sample() + time.Duration(h.extra.Load()+h.apiExtras[api].Load())
	if h.pool != nil {
		start, err := h.pool.acquire(r.Context())
		if err != nil {
			return // The client left while queued; nobody reads an answer.
		}
		h.pool.hold(start, d)
		h.pool.release()
	} else {
		time.Sleep(d)
	}
	io.WriteString(w, "done\n")
}

// pool is a FIFO pool of workers whose size can change. A waiter whose
// context ends leaves the queue.
//
// A worker is held for the sampled service time from the moment it was
// granted, not from when its goroutine woke: the scheduler's wake-up
// delay and time.Sleep's overshoot (about 0.1 ms each on a busy 2-core
// machine, on calls of 1 to 3 ms) would otherwise lengthen every call and
// take a tenth of a small service's capacity, so the live app could not
// carry the load its model says it can.
type pool struct {
	mu      sync.Mutex
	size    int
	busy    int
	waiters list.List // of *waiter
	// late is the mean by which a hold ends after its deadline, in ns (an
	// EMA): hold sleeps that much less, so that holds end on time on
	// average.
	late atomic.Int64
	// slow is the slowdown factor's float64 bits (SetSlowdown): a hold
	// lasts that many times its sampled time. 0 is 1.
	slow atomic.Uint64
	// now and sleep are time.Now and time.Sleep unless a test sets them.
	now   func() time.Time
	sleep func(time.Duration)
}

func (p *pool) clock() (func() time.Time, func(time.Duration)) {
	if p.now != nil {
		return p.now, p.sleep
	}
	return time.Now, time.Sleep
}

type waiter struct {
	granted chan struct{} // closed when granted
	at      time.Time     // when granted
}

// acquire waits for a worker and returns when it was granted.
func (p *pool) acquire(ctx context.Context) (time.Time, error) {
	p.mu.Lock()
	if p.busy < p.size && p.waiters.Len() == 0 {
		p.busy++
		p.mu.Unlock()
		now, _ := p.clock()
		return now(), nil
	}
	w := &waiter{granted: make(chan struct{})}
	e := p.waiters.PushBack(w)
	p.mu.Unlock()
	select {
	case <-w.granted:
		return w.at, nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	select {
	case <-w.granted: // granted just as ctx ended: hand the worker on
		p.busy--
		p.grantLocked()
	default:
		p.waiters.Remove(e)
	}
	p.mu.Unlock()
	return time.Time{}, ctx.Err()
}

// hold keeps the worker granted at start until start + d, on average
// (see pool).
func (p *pool) hold(start time.Time, d time.Duration) {
	if bits := p.slow.Load(); bits != 0 {
		d = time.Duration(float64(d) * math.Float64frombits(bits))
	}
	now, sleep := p.clock()
	deadline := start.Add(d)
	late := time.Duration(p.late.Load())
	wait := deadline.Sub(now()) - late
	if wait <= 0 {
		return // a hold already due says nothing about the sleep
	}
	sleep(wait)
	// The sleep's overshoot: how late it ended against what it asked for.
	if over := now().Sub(deadline) + late; over >= 0 && over < 10*time.Millisecond {
		p.late.Store(int64(late + (over-late)/16))
	}
}

func (p *pool) release() {
	p.mu.Lock()
	p.busy--
	p.grantLocked()
	p.mu.Unlock()
}

func (p *pool) resize(size int) {
	p.mu.Lock()
	p.size = size
	p.grantLocked()
	p.mu.Unlock()
}

func (p *pool) grantLocked() {
	for p.busy < p.size && p.waiters.Len() > 0 {
		e := p.waiters.Front()
		p.waiters.Remove(e)
		p.busy++
		w := e.Value.(*waiter)
		now, _ := p.clock()
		w.at = now()
		close(w.granted)
	}
}

// runLive is the live driver of Simulate: the app on loopback behind the
// engine's HTTP middleware, and open-loop load per API.
func runLive(ctx context.Context, cfg SimConfig, specs []engine.Spec) (*runTally, error) {
	app, sc := cfg.App, cfg.Scenario
	rt := newRunTally(app, sc)
	// The middleware is there even without a policy, as the control point
	// is in the virtual driver, so that every policy pays the same overhead.
	eng, err := engine.Start(ctx, engine.Options{Specs: specs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	if cfg.OnEngine != nil {
		cfg.OnEngine(eng)
	}
	wrap := func(h http.Handler) http.Handler { return eng.HTTP(ControlPoint, h) }
	// Each service behind a control point of its own name, as a deployment
	// measures its services' overload (the topfull policy's services).
	wrapService := func(service string, h http.Handler) http.Handler { return eng.HTTP(service, h) }
	live, err := StartLiveServices(app, cfg.Seed, wrap, wrapService)
	if err != nil {
		return nil, err
	}
	defer live.Close()

	var streams []*loadStream
	for i, api := range app.APIs {
		streams = append(streams, &loadStream{
			url:      live.URL + api.Path(),
			schedule: newArrivalStream(sc.phases(i), cfg.Seed, streamArrivals+uint64(i)).inBatches(sc.Burst),
			tally:    rt.tallies[i],
		})
	}
	// App changes run on timers from the start of the load.
	var (
		timers    []*time.Timer
		changeMu  sync.Mutex
		changeErr error
	)
	defer func() {
		for _, t := range timers {
			t.Stop()
		}
	}()
	fail := func(err error) {
		changeMu.Lock()
		defer changeMu.Unlock()
		changeErr = errors.Join(changeErr, err)
	}
	if cfg.Policy.Static {
		if err := applyStatic(eng, app, sc, 0, cfg.Policy.Optimal); err != nil {
			return nil, err
		}
		for _, at := range staticChanges(sc)[1:] {
			timers = append(timers, time.AfterFunc(at, func() { fail(applyStatic(eng, app, sc, at, cfg.Policy.Optimal)) }))
		}
	}
	for _, c := range sc.Changes {
		timers = append(timers, time.AfterFunc(c.At, func() { fail(live.SetWorkers(c.Service, max(c.Workers, 1))) }))
	}
	for _, c := range sc.Slowdowns {
		timers = append(timers, time.AfterFunc(c.At, func() { fail(live.SetSlowdown(c.Service, c.Factor)) }))
	}
	for _, d := range sc.Delays {
		timers = append(timers, time.AfterFunc(d.At, func() {
			if d.API != "" {
				fail(live.SetAPIDelay(d.API, d.Service, d.Extra))
				return
			}
			fail(live.SetDelay(d.Service, d.Extra))
		}))
	}
	var report func(int)
	if cfg.OnSecond != nil {
		report = func(t int) { cfg.OnSecond(rt.second(t)) }
	}
	lim := loadLimits{total: sc.Total(), timeout: app.ClientTimeout, reportDelay: app.ClientTimeout, maxInFlight: DefaultMaxInFlight}
	if sc.Think > 0 {
		err = offerUsers(ctx, sc.userStreams(live.URL, app, rt), sc.stepDurations(), cfg.Seed, lim, report)
	} else {
		_, _, err = offerLoad(ctx, streams, lim, report)
	}
	for _, t := range timers {
		t.Stop()
	}
	changeMu.Lock()
	defer changeMu.Unlock()
	return rt, errors.Join(err, changeErr)
}
