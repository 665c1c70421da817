// Command pacedapp is the Go twin of the stock upstream that
// scripts/stock-upstream-overload protects with `spillway proxy`: it
// answers GET /item.txt at most --rate times per second, in arrival order,
// and queues the rest without bound (internal/paced), which is what
// nginx's limit_req with a large burst and no nodelay does. With
// --policies it is protected by Spillway's embedded middleware at the
// control point "ingress"; without, it is unprotected (to measure its
// capacity).
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/spillway-dev/spillway"
	"github.com/spillway-dev/spillway/internal/paced"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "address to serve on")
	ratePerSec := flag.Float64("rate", 200, "answers per second (the capacity)")
	policies := flag.String("policies", "", "policy directory; empty: no protection")
	flag.Parse()
	if *ratePerSec <= 0 {
		log.Fatalf("pacedapp: --rate must be > 0, got %v", *ratePerSec)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /item.txt", paced.New(*ratePerSec))
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
