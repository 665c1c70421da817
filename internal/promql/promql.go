// Package promql runs the PromQL queries of a policy's PromQL components
// against Prometheus's HTTP API, off the tick path: a Poller queries every
// interval and keeps the last answer for the tick to read.
package promql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// MaxResponseBytes bounds a query's response body. A query whose answer
// the component accepts (one number) needs well under a kilobyte; a query
// that returns a large vector is refused without reading all of it.
const MaxResponseBytes = 256 << 10

// maxErrorBytes bounds an error message kept for /status and the log
// (Prometheus may put a whole response body in one).
const maxErrorBytes = 256

// Client queries one Prometheus server. It is safe for concurrent use.
type Client struct {
	api     v1.API
	address string
}

// NewClient returns a client of the Prometheus server at address, a
// base URL such as http://127.0.0.1:9090 (a path prefix, as behind a
// reverse proxy, is kept).
func NewClient(address string) (*Client, error) {
	u, err := url.Parse(address)
	if err != nil {
		return nil, fmt.Errorf("prometheus address %q: %w", address, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus address %q: want an http:// or https:// URL with a host, such as http://127.0.0.1:9090", address)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("prometheus address %q: want a base URL, without a query or fragment", address)
	}
	c, err := api.NewClient(api.Config{Address: address, RoundTripper: boundedTransport{api.DefaultRoundTripper}})
	if err != nil {
		return nil, fmt.Errorf("prometheus address %q: %w", address, err)
	}
	return &Client{api: v1.NewAPI(c), address: address}, nil
}

// Address is the server's base URL.
func (c *Client) Address() string { return c.address }

// Query evaluates query as an instant query within timeout and returns its
// one number. It accepts a scalar, or an instant vector of exactly one
// series; anything else is an error: an empty vector (nothing matched, or
// the series is not scraped yet), several series (aggregate them, with
// sum() or max()), a range vector or a string, and NaN or ±Inf. Prometheus
// is told the timeout too, so that it stops evaluating when the caller
// stops waiting.
func (c *Client) Query(ctx context.Context, query string, timeout time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The zero time asks Prometheus to evaluate at its own now.
	value, _, _, err := c.api.Query(ctx, query, time.Time{}, v1.WithTimeout(timeout))
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return math.NaN(), fmt.Errorf("no answer within the timeout %s", timeout)
		}
		return math.NaN(), err
	}
	var v float64
	switch r := value.(type) {
	case *model.Scalar:
		v = float64(r.Value)
	case model.Vector:
		switch len(r) {
		case 0:
			return math.NaN(), errors.New("empty result: no series matched")
		case 1:
			v = float64(r[0].Value)
		default:
			return math.NaN(), fmt.Errorf("%d series; the query must return one (aggregate it, e.g. with sum() or max())", len(r))
		}
	default:
		return math.NaN(), fmt.Errorf("a %s result; the query must return a scalar or one series", value.Type())
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return math.NaN(), fmt.Errorf("the result is %v", v)
	}
	return v, nil
}

// boundedTransport refuses a response body longer than MaxResponseBytes.
type boundedTransport struct{ next http.RoundTripper }

func (t boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &boundedBody{body: resp.Body, left: MaxResponseBytes}
	return resp, nil
}

// errTooLarge is a response body over MaxResponseBytes.
var errTooLarge = fmt.Errorf("response body over %d bytes", MaxResponseBytes)

type boundedBody struct {
	body io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := b.body.Read(one[:]); n > 0 {
			return 0, errTooLarge
		}
		return b.body.Read(p[:0])
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.body.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.body.Close() }

// Answer is the last result of a Poller.
type Answer struct {
	// Value is the query's number, or NaN when the last query failed.
	Value float64
	// AtNs is when the answer came, on the poller's clock; before any, when
	// the poller was made.
	AtNs int64
	// Err is why the last query failed, nil when it did not.
	Err error
	// Failures counts failed queries since the poller started.
	Failures uint64
}

// Poller runs one query every interval and keeps the last answer.
type Poller struct {
	client *Client
	query  string
	every  time.Duration
	budget time.Duration
	clock  func() int64
	last   atomic.Pointer[Answer]
	// OnChange, when set, is told of every failure and of every return to
	// success (for the log); it runs on the poller's goroutine.
	OnChange func(prev, next *Answer)
}

// NewPoller returns a poller of query against c, every interval with a
// budget of timeout per query; clock stamps the answers (monotonic ns).
func NewPoller(c *Client, query string, interval, timeout time.Duration, clock func() int64) *Poller {
	p := &Poller{client: c, query: query, every: interval, budget: timeout, clock: clock}
	p.last.Store(&Answer{Value: math.NaN(), AtNs: clock()})
	return p
}

// Last returns the last answer. It never blocks.
func (p *Poller) Last() *Answer { return p.last.Load() }

// Run queries at once, then every interval, until ctx ends. A query that
// is late delays the next one, never overlaps it.
func (p *Poller) Run(ctx context.Context) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		p.PollOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PollOnce runs the query once and records its answer; a query cut short
// because ctx ended records nothing.
func (p *Poller) PollOnce(ctx context.Context) {
	v, err := p.client.Query(ctx, p.query, p.budget)
	if ctx.Err() != nil {
		return
	}
	prev := p.last.Load()
	next := &Answer{Value: v, AtNs: p.clock(), Failures: prev.Failures}
	if err != nil {
		msg := err.Error()
		if len(msg) > maxErrorBytes {
			msg = strings.ToValidUTF8(msg[:maxErrorBytes], "") + "…"
		}
		next.Value, next.Err = math.NaN(), errors.New(msg)
		next.Failures++
	}
	p.last.Store(next)
	if p.OnChange != nil && (next.Err != nil || prev.Err != nil) {
		p.OnChange(prev, next)
	}
}
