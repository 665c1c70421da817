// Package decisionlog keeps the latest admission decisions of the proxy,
// the Check API and the Envoy ext_authz server in a bounded ring, with the
// explanation of every rejection, and serves them as JSON (/decisions on
// the admin listener).
package decisionlog

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultSize is the number of decisions a Log keeps unless told otherwise.
const DefaultSize = 1024

// Decision is one admission decision.
type Decision struct {
	Time         time.Time `json:"time"`
	Source       string    `json:"source"` // "proxy", "check" or "ext_authz"
	ControlPoint string    `json:"control_point"`
	API          string    `json:"api"`
	// Outcome is "accepted", "rate_limited" or "concurrency_limited".
	Outcome string `json:"outcome"`
	// Explanation names the policy, the component and the signal values
	// that set the refusing limit; rejections only.
	Explanation string            `json:"explanation,omitempty"`
	RetryAfter  string            `json:"retry_after,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// Outcomes of a Decision.
const (
	Accepted           = "accepted"
	RateLimited        = "rate_limited"
	ConcurrencyLimited = "concurrency_limited"
)

// Log keeps the latest decisions in two rings, one of acceptances and one
// of rejections, so that a stream of admitted requests does not push the
// rare rejections out. It is safe for concurrent use; Add takes a mutex
// for a struct copy. A nil *Log records nothing.
type Log struct {
	mu       sync.Mutex
	accepted ring
	rejected ring
	total    uint64 // decisions ever added
}

type ring struct {
	entries []Decision
	next    int    // where the next decision goes
	added   uint64 // decisions ever added to this ring
}

func (r *ring) add(d Decision) {
	r.entries[r.next] = d
	r.next = (r.next + 1) % len(r.entries)
	r.added++
}

// newestFirst returns the i-th newest decision kept, and whether there is
// one.
func (r *ring) newestFirst(i int) (Decision, bool) {
	n := len(r.entries)
	if i >= n || uint64(i) >= r.added {
		return Decision{}, false
	}
	return r.entries[(r.next-1-i+2*n)%n], true
}

// New returns a log keeping the latest size acceptances and the latest
// size rejections (DefaultSize each if size ≤ 0).
func New(size int) *Log {
	if size <= 0 {
		size = DefaultSize
	}
	return &Log{accepted: ring{entries: make([]Decision, size)}, rejected: ring{entries: make([]Decision, size)}}
}

// Add records d, replacing the oldest of its kind once its ring is full.
func (l *Log) Add(d Decision) {
	if l == nil {
		return
	}
	l.mu.Lock()
	if d.Outcome == Accepted {
		l.accepted.add(d)
	} else {
		l.rejected.add(d)
	}
	l.total++
	l.mu.Unlock()
}

// Filter selects decisions; empty fields match everything.
type Filter struct {
	ControlPoint, API, Outcome string
	// Limit caps how many are returned (newest first); 0 is all kept.
	Limit int
}

// Recent returns the kept decisions that match f, newest first.
func (l *Log) Recent(f Filter) []Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []Decision{}
	for i, j := 0, 0; ; {
		a, okA := l.accepted.newestFirst(i)
		r, okR := l.rejected.newestFirst(j)
		var d Decision
		switch {
		case okA && (!okR || !r.Time.After(a.Time)):
			d = a
			i++
		case okR:
			d = r
			j++
		default:
			return out
		}
		if f.ControlPoint != "" && d.ControlPoint != f.ControlPoint ||
			f.API != "" && d.API != f.API ||
			f.Outcome != "" && !outcomeMatches(f.Outcome, d.Outcome) {
			continue
		}
		out = append(out, d)
		if f.Limit > 0 && len(out) == f.Limit {
			return out
		}
	}
}

// outcomeMatches lets "rejected" stand for both kinds of rejection.
func outcomeMatches(want, got string) bool {
	return want == got || want == "rejected" && got != Accepted
}

// Total is how many decisions were ever added.
func (l *Log) Total() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Handler serves GET /decisions?api=&outcome=&control_point=&limit=: the
// matching decisions, newest first, as {"total": n, "decisions": [...]},
// where total counts every decision ever added.
// outcome is accepted, rejected, rate_limited or concurrency_limited; an
// unknown filter value or parameter is a 400 naming it.
func (l *Log) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f := Filter{ControlPoint: q.Get("control_point"), API: q.Get("api"), Outcome: q.Get("outcome")}
		for key := range q {
			switch key {
			case "control_point", "api", "outcome", "limit":
			default:
				badRequest(w, fmt.Sprintf("unknown parameter %q (want api, outcome, control_point, limit)", key))
				return
			}
		}
		switch f.Outcome {
		case "", Accepted, "rejected", RateLimited, ConcurrencyLimited:
		default:
			badRequest(w, fmt.Sprintf("outcome %q: want accepted, rejected, rate_limited or concurrency_limited", f.Outcome))
			return
		}
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				badRequest(w, fmt.Sprintf("limit %q: want a whole number ≥ 0", s))
				return
			}
			f.Limit = n
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Total     uint64     `json:"total"`
			Decisions []Decision `json:"decisions"`
		}{l.Total(), l.Recent(f)})
	})
}

func badRequest(w http.ResponseWriter, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{reason})
}
