package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/spillway-dev/spillway/internal/proxy"
	"github.com/spillway-dev/spillway/internal/testpki"
)

func TestProxyVerifiesAnHTTPSUpstreamAgainstItsCA(t *testing.T) {
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls upstream "+r.URL.Path+" "+r.Header.Get("X-Forwarded-Proto"))
	}))
	t.Cleanup(upstream.Close)
	u, _ := url.Parse(upstream.URL)
	eng := startEngine(t, "")
	serve := func(roots *x509.CertPool) *httptest.Server {
		h, err := proxy.New(eng, proxy.Options{Upstream: u, UpstreamRootCAs: roots, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		// The proxy's own listener over TLS, HTTP/2 offered by ALPN, as
		// `spillway proxy --tls-cert` serves it.
		front := httptest.NewUnstartedServer(h)
		front.EnableHTTP2 = true
		front.StartTLS()
		t.Cleanup(front.Close)
		return front
	}
	roots := x509.NewCertPool()
	roots.AddCert(upstream.Certificate())
	front := serve(roots)
	client := front.Client()
	resp, err := client.Get(front.URL + "/a")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "tls upstream /a https" {
		t.Fatalf("through the proxy to an https upstream: %d %q", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("client to proxy over %s, want HTTP/2 (negotiated by TLS)", resp.Proto)
	}

	// Against the system's roots, the test CA is unknown: a bad gateway.
	untrusting := serve(nil)
	resp, err = untrusting.Client().Get(untrusting.URL + "/a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("an upstream certificate no root vouches for: %d, want 502", resp.StatusCode)
	}
}

func TestProxyRefusesUpstreamCAsItCannotUse(t *testing.T) {
	eng := startEngine(t, "")
	plain, _ := url.Parse("http://127.0.0.1:1")
	if _, err := proxy.New(eng, proxy.Options{Upstream: plain, UpstreamRootCAs: x509.NewCertPool()}); err == nil || !strings.Contains(err.Error(), "not https") {
		t.Errorf("CAs for an http upstream: %v", err)
	}
	secure, _ := url.Parse("https://127.0.0.1:1")
	if _, err := proxy.New(eng, proxy.Options{Upstream: secure, UpstreamRootCAs: x509.NewCertPool(), Transport: http.DefaultTransport}); err == nil || !strings.Contains(err.Error(), "Transport of your own") {
		t.Errorf("CAs with a custom transport: %v", err)
	}
}

func TestProxyGRPCOverTLSOnBothSides(t *testing.T) {
	pki := testpki.New(t, "127.0.0.1", "localhost")
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pki.Cert}})))
	testpb.RegisterTestServiceServer(up, echoService{})
	go up.Serve(upLn)
	t.Cleanup(up.Stop)

	p, err := proxy.NewGRPC(startEngine(t, ""), proxy.GRPCOptions{
		Upstream:    upLn.Addr().String(),
		UpstreamTLS: &tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12},
		ServerTLS:   &tls.Config{Certificates: []tls.Certificate{pki.Cert}, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Server.Serve(ln)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pki.Pool})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := testpb.NewTestServiceClient(conn).UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("sealed")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.GetPayload().GetBody()); got != "sealed for " {
		t.Errorf("reply %q through TLS both ways", got)
	}
}
