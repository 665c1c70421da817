// Command pacedapp is the Go twin of the stock upstream that
// scripts/stock-upstream-overload protects with `spillway proxy`: it
// answers GET /item.txt at most --rate times per second, in arrival order,
// and queues the rest without bound, which is what nginx's limit_req with
// a large burst and no nodelay does. With --policies it is protected by
// Spillway's embedded middleware at the control point "ingress"; without,
// it is unprotected (to measure its capacity).
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spillway-dev/spillway"
)

// pacer hands out answer times spaced 1/rate apart (a GCRA, as nginx's
// limit_req computes its delays): a request arriving when the queue is
// empty is answered at once, a later one at the previous slot plus the
// interval.
type pacer struct {
	interval time.Duration
	body     []byte

	mu   sync.Mutex
	next time.Time
}

func (p *pacer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	now := time.Now()
	slot := p.next
	if slot.Before(now) {
		slot = now
	}
	p.next = slot.Add(p.interval)
	p.mu.Unlock()
	time.Sleep(slot.Sub(now))
	w.Header().Set("Content-Type", "text/plain")
	w.Write(p.body)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "address to serve on")
	ratePerSec := flag.Float64("rate", 200, "answers per second (the capacity)")
	policies := flag.String("policies", "", "policy directory; empty: no protection")
	flag.Parse()
	if *ratePerSec <= 0 {
		log.Fatalf("pacedapp: --rate must be > 0, got %v", *ratePerSec)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /item.txt", &pacer{
		interval: time.Duration(float64(time.Second) / *ratePerSec),
		body:     []byte(strings.Repeat("x", 2048)),
	})
	var handler http.Handler = mux
	if *policies != "" {
		eng, err := spillway.Start(context.Background(), spillway.Options{Policies: *policies})
		if err != nil {
			log.Fatal(err)
		}
		defer eng.Close()
		handler = eng.HTTP("ingress", mux)
	}
	server := &http.Server{Addr: *listen, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(server.ListenAndServe())
}
