// Command mwload serves the same handler bare and behind Spillway's
// middleware, for scripts/mw-throughput to load both in turn: over HTTP
// (a ServeMux route, loaded with wrk) and over gRPC (the health service's
// Check, loaded by this command's own client).
//
//	mwload serve --http-bare ADDR --http-protected ADDR --grpc-bare ADDR --grpc-protected ADDR
//	mwload grpc-load --addr ADDR --connections 16 --duration 5s
//
// The protected servers have what a policy attaches to the route or the
// method: a flux meter and a token bucket far above the load (1e12/s), so
// that every request takes the admit path and none is rejected. The
// control point reads the real monotonic clock.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/actuators/grpcmw"
	"github.com/spillway-dev/spillway/actuators/httpmw"
)

// checkMethod is the gRPC method the load calls.
const checkMethod = "/grpc.health.v1.Health/Check"

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: mwload serve|grpc-load [flags]")
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "grpc-load":
		grpcLoad(os.Args[2:])
	default:
		log.Fatalf("mwload: unknown command %q (want serve or grpc-load)", os.Args[1])
	}
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	httpBare := fs.String("http-bare", "127.0.0.1:8401", "address of the bare HTTP server")
	httpProtected := fs.String("http-protected", "127.0.0.1:8402", "address of the protected HTTP server")
	grpcBare := fs.String("grpc-bare", "127.0.0.1:8403", "address of the bare gRPC server")
	grpcProtected := fs.String("grpc-protected", "127.0.0.1:8404", "address of the protected gRPC server")
	fs.Parse(args)

	base := time.Now()
	registry := controlpoint.NewRegistry(func() int64 { return int64(time.Since(base)) })
	protect := func(cp *controlpoint.ControlPoint, label string) {
		api := cp.Declare(label)
		api.AttachTap(actuators.NewRecorder(0))
		api.AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(1e12, 1e12, 0)})
	}

	body := []byte("ok\n")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /a", func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	httpCP := registry.Get("http")
	protect(httpCP, "GET /a")

	grpcCP := registry.Get("grpc")
	protect(grpcCP, checkMethod)
	healthy := health.NewServer()
	bare := grpc.NewServer()
	healthpb.RegisterHealthServer(bare, healthy)
	protected := grpc.NewServer(grpc.ChainUnaryInterceptor(grpcmw.Unary(grpcCP)))
	healthpb.RegisterHealthServer(protected, healthy)

	errs := make(chan error, 4)
	go func() { errs <- http.ListenAndServe(*httpBare, mux) }()
	go func() { errs <- http.ListenAndServe(*httpProtected, httpmw.Wrap(httpCP, mux, httpmw.Options{})) }()
	for _, s := range []struct {
		addr   string
		server *grpc.Server
	}{{*grpcBare, bare}, {*grpcProtected, protected}} {
		lis, err := net.Listen("tcp", s.addr)
		if err != nil {
			log.Fatal(err)
		}
		go func() { errs <- s.server.Serve(lis) }()
	}
	log.Fatal(<-errs)
}

// grpcLoad calls Check back to back on each of n connections for the
// duration, and prints the calls completed per second and in all.
func grpcLoad(args []string) {
	fs := flag.NewFlagSet("grpc-load", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8403", "server address")
	connections := fs.Int("connections", 16, "connections, one caller each")
	duration := fs.Duration("duration", 5*time.Second, "how long to load")
	fs.Parse(args)
	if *connections < 1 || *duration <= 0 {
		log.Fatal("mwload grpc-load: --connections must be ≥ 1 and --duration > 0")
	}

	clients := make([]healthpb.HealthClient, *connections)
	for i := range clients {
		conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatal(err)
		}
		defer conn.Close()
		clients[i] = healthpb.NewHealthClient(conn)
		if _, err := clients[i].Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			log.Fatalf("mwload grpc-load: %v", err) // and the connection is up before the clock starts
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var calls, failures atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for _, client := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &healthpb.HealthCheckRequest{}
			for ctx.Err() == nil {
				_, err := client.Check(ctx, req)
				switch {
				case err == nil:
					calls.Add(1)
				case ctx.Err() == nil && status.Code(err) != codes.DeadlineExceeded:
					// (The server may see the deadline pass a moment before
					// the client's context does.)
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failures.Load() > 0 {
		log.Fatalf("mwload grpc-load: %d calls failed, the first with: %v", failures.Load(), firstFailure.Load())
	}
	fmt.Printf("%.0f calls/s, %d calls\n", float64(calls.Load())/elapsed.Seconds(), calls.Load())
}
