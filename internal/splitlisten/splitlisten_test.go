package splitlisten_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/spillway-dev/spillway/internal/splitlisten"
)

func TestSplitServesGRPCAndHTTP1OnOnePort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h2, h1 := splitlisten.Split(ln)
	rpc := grpc.NewServer()
	healthpb.RegisterHealthServer(rpc, health.NewServer())
	go rpc.Serve(h2)
	defer rpc.Stop()
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "http/1 "+r.URL.Path) })}
	go web.Serve(h1)
	defer web.Close()

	// A short HTTP/1.0 request, shorter than the HTTP/2 preface.
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /a HTTP/1.0\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.HasSuffix(string(raw), "http/1 /a") {
		t.Fatalf("HTTP/1.0 answer %q", raw)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/b")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "http/1 /b" {
		t.Fatalf("HTTP/1.1 answer %q", body)
	}
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health check: %v, %v", hr, err)
	}
}

func TestSplitClosesBothSides(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h2, h1 := splitlisten.Split(ln)
	errc := make(chan error, 2)
	go func() { _, err := h2.Accept(); errc <- err }()
	go func() { _, err := h1.Accept(); errc <- err }()
	h1.Close()
	for range 2 {
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("Accept after Close returned a connection")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Accept did not return after Close")
		}
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the underlying listener still accepts")
	}
}
