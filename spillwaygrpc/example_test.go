package spillwaygrpc_test

import (
	"context"
	"log"

	"google.golang.org/grpc"

	"github.com/spillway-dev/spillway"
	"github.com/spillway-dev/spillway/spillwaygrpc"
)

// Example protects a gRPC server with the policies in a directory.
func Example() {
	eng, err := spillway.Start(context.Background(), spillway.Options{Policies: "../policies"})
	if err != nil {
		log.Fatal(err) // every problem, as path:line:col: message
	}
	defer eng.Close()
	_ = grpc.NewServer(grpc.ChainUnaryInterceptor(spillwaygrpc.Unary(eng, "ingress")),
		grpc.ChainStreamInterceptor(spillwaygrpc.Stream(eng, "ingress")))
	// Output:
}
