package spillway_test

import (
	"context"
	"log"
	"net/http"

	"github.com/spillway-dev/spillway"
)

// Example protects an HTTP service with the policies in a directory and
// serves the admin endpoints on loopback. examples/protect is the
// README's complete program, with gRPC.
func Example() {
	ctx := context.Background()
	eng, err := spillway.Start(ctx, spillway.Options{Policies: "policies/"})
	if err != nil {
		log.Fatal(err) // every problem, as path:line:col: message
	}
	defer eng.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /checkout", func(w http.ResponseWriter, r *http.Request) {})
	_ = &http.Server{Addr: "127.0.0.1:9464", Handler: eng.Handler()}         // live page, /metrics, /status
	_ = &http.Server{Addr: ":8080", Handler: eng.Middleware("ingress")(mux)} // 429 + Retry-After when shedding
	// Output:
}
