package engine_test

import (
	"context"
	"log"
	"net/http"

	"github.com/spillway-dev/spillway/engine"
)

// Example protects an HTTP mux with the policies in a directory (package
// spillwaygrpc has the gRPC interceptors); examples/protect is the
// README's complete program.
func Example() {
	ctx := context.Background()
	eng, err := engine.Start(ctx, engine.Options{Policies: "../policies"})
	if err != nil {
		log.Fatal(err) // every problem, as path:line:col: message
	}
	defer eng.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /checkout", func(w http.ResponseWriter, r *http.Request) {})
	_ = &http.Server{Addr: ":8080", Handler: eng.HTTP("ingress", mux)} // 429 + Retry-After when shedding
	// Output:
}
