// Package paced is a service of fixed capacity for benchmarks: it answers
// at most a given number of requests per second, in arrival order, and
// queues the rest without bound. It is the Go twin of nginx's limit_req
// with a burst and no nodelay, the stock upstream the proxy benchmarks
// protect, so that the embedded middleware can be measured on the same app.
package paced

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// Handler answers each request with a 2 KiB text body, at times spaced
// 1/ratePerSec apart (a GCRA, as nginx computes limit_req's delays): a
// request arriving when none waits is answered at once, a later one at the
// previous answer's time plus the interval. It is safe for concurrent use.
type Handler struct {
	interval time.Duration
	body     []byte

	mu   sync.Mutex
	next time.Time // when the next request may be answered
}

// New returns a Handler of ratePerSec answers per second (> 0).
func New(ratePerSec float64) *Handler {
	return &Handler{
		interval: time.Duration(float64(time.Second) / ratePerSec),
		body:     []byte(strings.Repeat("x", 2048)),
	}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	now := time.Now()
	slot := h.next
	if slot.Before(now) {
		slot = now
	}
	h.next = slot.Add(h.interval)
	h.mu.Unlock()
	time.Sleep(slot.Sub(now))
	w.Header().Set("Content-Type", "text/plain")
	w.Write(h.body)
}
