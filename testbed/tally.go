package testbed

import (
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// tally accumulates per-second stats of a run. It is safe for concurrent use.
type tally struct {
	mu      sync.Mutex
	seconds []secondTally
	slo     time.Duration
}

type secondTally struct {
	Second
	latencies []time.Duration // of the requests that count toward P50 and P99
}

func newTally(seconds int, slo time.Duration) *tally {
	t := &tally{seconds: make([]secondTally, seconds), slo: slo}
	for i := range t.seconds {
		t.seconds[i].T = i
	}
	return t
}

// arrive counts an arrival in second t, dropped if it was not sent.
func (t *tally) arrive(second int, dropped bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.seconds[second]
	s.Offered++
	if dropped {
		s.Dropped++
	}
}

// complete counts how a request that arrived in second t ended.
func (t *tally) complete(second int, o outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.seconds[second]
	switch {
	case o.timeout:
		s.Timeouts++
		s.latencies = append(s.latencies, o.latency)
	case o.status == 0:
		s.Errors++
	case o.status == http.StatusTooManyRequests || o.status == http.StatusServiceUnavailable:
		s.Rejected++
	default:
		s.Admitted++
		if o.status == http.StatusOK && o.latency <= t.slo {
			s.Goodput++
		}
		s.latencies = append(s.latencies, o.latency)
	}
}

// snapshot is second t's stats so far.
func (t *tally) snapshot(second int) Second {
	s, _ := t.sorted(second)
	return s
}

// sorted is second t's stats so far and a sorted copy of the latencies
// behind its percentiles.
func (t *tally) sorted(second int) (Second, []time.Duration) {
	t.mu.Lock()
	s := t.seconds[second].Second
	latencies := slices.Clone(t.seconds[second].latencies)
	t.mu.Unlock()
	slices.Sort(latencies)
	s.P50, s.P99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
	return s, latencies
}

// result is the first n seconds and their totals, for a run that offered
// load for span. Call it once every request has completed.
func (t *tally) result(n int, span time.Duration) Result {
	r := Result{Seconds: make([]Second, n), Duration: span}
	var all []time.Duration
	for i := range n {
		s := t.snapshot(i)
		r.Seconds[i] = s
		t.mu.Lock()
		all = append(all, t.seconds[i].latencies...)
		t.mu.Unlock()
		r.Offered += s.Offered
		r.Admitted += s.Admitted
		r.Rejected += s.Rejected
		r.Goodput += s.Goodput
		r.Errors += s.Errors
		r.Timeouts += s.Timeouts
		r.Dropped += s.Dropped
	}
	slices.Sort(all)
	r.P50, r.P99 = percentile(all, 0.50), percentile(all, 0.99)
	return r
}

// percentile is the nearest-rank p-quantile of sorted, or 0 if it is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
