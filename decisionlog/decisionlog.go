// Package decisionlog keeps the latest admission decisions of the proxy,
// the Check API and the Envoy ext_authz server in a bounded ring, with the
// explanation of every rejection, and serves them as JSON (/decisions on
// the admin listener).
package decisionlog

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
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
// rare rejections out. It is safe for concurrent use and takes no lock:
// Add claims a slot with one atomic add and publishes the decision with an
// atomic store (one allocation), so request paths never wait for one
// another or for a /decisions reader. Under a burst that laps a ring while
// a writer is paused between the two steps, that writer's older decision
// can replace a newer one; the log is for reading, not accounting. A nil
// *Log records nothing.
type Log struct {
	seq      atomic.Uint64 // decisions ever added; each entry's order
	accepted ring
	rejected ring
}

type ring struct {
	slots []atomic.Pointer[entry]
	next  atomic.Uint64 // slots ever claimed
}

// entry is a decision with its place in the order of all additions.
type entry struct {
	seq uint64
	d   Decision
}

func (r *ring) add(e *entry) {
	i := r.next.Add(1) - 1
	r.slots[i%uint64(len(r.slots))].Store(e)
}

// New returns a log keeping the latest size acceptances and the latest
// size rejections (DefaultSize each if size ≤ 0).
func New(size int) *Log {
	if size <= 0 {
		size = DefaultSize
	}
	l := &Log{}
	l.accepted.slots = make([]atomic.Pointer[entry], size)
	l.rejected.slots = make([]atomic.Pointer[entry], size)
	return l
}

// MaxFieldBytes bounds every string of a Decision that a request can
// choose, but its API: the control point's name, and each label's name and
// value. Longer ones are cut to it, at a UTF-8 boundary, with "…" added.
const MaxFieldBytes = 256

// Add records d, replacing the oldest of its kind once its ring is full.
// The API is recorded as the control point counts it
// (controlpoint.CountedAs: "*" for none, "__overflow__" for a label too
// long or not UTF-8), and the other strings a request can choose are cut
// to MaxFieldBytes, so that what the log keeps is bounded whatever the
// clients send.
func (l *Log) Add(d Decision) {
	if l == nil {
		return
	}
	d.API = controlpoint.CountedAs(d.API)
	d.ControlPoint = clip(d.ControlPoint)
	if !clipped(d.Labels) { // a copy only where something is cut
		labels := make(map[string]string, len(d.Labels))
		for k, v := range d.Labels {
			labels[clip(k)] = clip(v)
		}
		d.Labels = labels
	}
	e := &entry{seq: l.seq.Add(1), d: d}
	if d.Outcome == Accepted {
		l.accepted.add(e)
	} else {
		l.rejected.add(e)
	}
}

// clipped reports whether every label's name and value is as clip
// leaves it.
func clipped(labels map[string]string) bool {
	for k, v := range labels {
		if clip(k) != k || clip(v) != v {
			return false
		}
	}
	return true
}

// clip cuts s to MaxFieldBytes at a UTF-8 boundary, marking the cut, and
// makes it valid UTF-8.
func clip(s string) string {
	if len(s) <= MaxFieldBytes && utf8.ValidString(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxFieldBytes {
		return s
	}
	cut := MaxFieldBytes - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Filter selects decisions; empty fields match everything.
type Filter struct {
	ControlPoint, API, Outcome string
	// Limit caps how many are returned (newest first); 0 is all kept.
	Limit int
}

// Recent returns the kept decisions that match f, newest first.
func (l *Log) Recent(f Filter) []Decision {
	var kept []*entry
	for _, r := range []*ring{&l.accepted, &l.rejected} {
		for i := range r.slots {
			if e := r.slots[i].Load(); e != nil {
				kept = append(kept, e)
			}
		}
	}
	slices.SortFunc(kept, func(a, b *entry) int { return cmp.Compare(b.seq, a.seq) })
	out := []Decision{}
	for _, e := range kept {
		d := e.d
		if f.ControlPoint != "" && d.ControlPoint != f.ControlPoint ||
			f.API != "" && d.API != f.API ||
			f.Outcome != "" && !outcomeMatches(f.Outcome, d.Outcome) {
			continue
		}
		out = append(out, d)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out
}

// outcomeMatches lets "rejected" stand for both kinds of rejection.
func outcomeMatches(want, got string) bool {
	return want == got || want == "rejected" && got != Accepted
}

// Total is how many decisions were ever added.
func (l *Log) Total() uint64 { return l.seq.Load() }

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
