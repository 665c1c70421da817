// Command protect is an HTTP and gRPC service protected by Spillway, with
// the live page, /metrics and /status on a loopback admin port.
package main

import (
	"context"
	"log"
	"net"
	"net/http"

	"google.golang.org/grpc"

	"github.com/spillway-dev/spillway"
	"github.com/spillway-dev/spillway/spillwaygrpc"
	"github.com/spillway-dev/spillway/telemetry"
	"github.com/spillway-dev/spillway/telemetry/otlp"
)

func main() {
	ctx := context.Background()
	eng, err := spillway.Start(ctx, spillway.Options{Policies: "policies/", Watch: true,
		MetricReaders: []telemetry.Reader{otlp.FromEnv}}) // OTLP too if OTEL_EXPORTER_OTLP_ENDPOINT is set
	if err != nil {
		log.Fatal(err) // every problem, as path:line:col: message
	}
	defer eng.Close()

	// Operators: outside the limiter, so they answer during an overload, and
	// on loopback, because /status shows the policies.
	go func() { log.Fatal(http.ListenAndServe("127.0.0.1:9464", eng.Handler())) }()

	// gRPC: requests are labelled by their full method name.
	rpc := grpc.NewServer(grpc.ChainUnaryInterceptor(spillwaygrpc.Unary(eng, "ingress")),
		grpc.ChainStreamInterceptor(spillwaygrpc.Stream(eng, "ingress")))
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
