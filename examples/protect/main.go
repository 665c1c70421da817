// Command protect is an HTTP and gRPC service protected by Spillway, with
// the live page, /metrics and /status on a loopback admin port.
package main

import (
	"context"
	"encoding/json"
	"log"
	"net"
	"net/http"

	"google.golang.org/grpc"

	"github.com/spillway-dev/spillway/dashboards/live"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/telemetry"
)

func main() {
	ctx := context.Background()
	eng, err := engine.Start(ctx, engine.Options{Policies: "policies/", Watch: true})
	if err != nil {
		log.Fatal(err) // every problem, as path:line:col: message
	}
	defer eng.Close()

	// Operators: outside the limiter, so they answer during an overload, and
	// on loopback, because /status shows the policies.
	metrics, err := telemetry.New(ctx, eng) // OTLP too if OTEL_EXPORTER_OTLP_ENDPOINT is set
	if err != nil {
		log.Fatal(err)
	}
	admin := http.NewServeMux()
	page := live.Handler(eng)
	admin.Handle("GET /{$}", page)
	admin.Handle("GET /api/signals", page)
	admin.Handle("GET /metrics", metrics.Handler())
	admin.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(eng.Status())
	})
	go func() { log.Fatal(http.ListenAndServe("127.0.0.1:9464", admin)) }()

	// gRPC: requests are labelled by their full method name.
	rpc := grpc.NewServer(grpc.ChainUnaryInterceptor(eng.UnaryInterceptor("ingress")),
		grpc.ChainStreamInterceptor(eng.StreamInterceptor("ingress")))
	lis, err := net.Listen("tcp", ":9090")
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(rpc.Serve(lis)) }()

	// HTTP: requests are labelled by their ServeMux pattern, and get a 429
	// with Retry-After when the policy sheds them.
	api := http.NewServeMux()
	api.HandleFunc("GET /checkout", checkout)
	log.Fatal(http.ListenAndServe(":8080", eng.HTTP("ingress", api)))
}

func checkout(w http.ResponseWriter, r *http.Request) {
	w.Write([]byte("ordered\n"))
}
