package rlbridge

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/access"
)

func TestServeRefusesNonLoopbackWithoutAToken(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:8082", "example.com:8082"} {
		t.Run(addr, func(t *testing.T) {
			readyCalled := false
			err := Serve(context.Background(), addr, Handler(newFakeBackend(), nil, Options{}), "", func(net.Addr) { readyCalled = true })
			if err == nil || !strings.Contains(err.Error(), "refusing to listen on "+addr+" without a token") {
				t.Fatalf("Serve(%q) without a token = %v, want a refusal", addr, err)
			}
			if readyCalled {
				t.Error("ready was called: Serve listened before refusing")
			}
		})
	}
}

// serveInBackground runs Serve and returns the bound address and a channel
// that yields Serve's result.
func serveInBackground(t *testing.T, ctx context.Context, addr, token string) (net.Addr, <-chan error) {
	t.Helper()
	h := Handler(newFakeBackend(), nil, Options{Token: token})
	bound := make(chan net.Addr, 1)
	result := make(chan error, 1)
	go func() { result <- Serve(ctx, addr, h, token, func(a net.Addr) { bound <- a }) }()
	select {
	case a := <-bound:
		return a, result
	case err := <-result:
		t.Fatalf("Serve(%q) = %v before it was ready", addr, err)
	case <-time.After(5 * time.Second):
		t.Fatalf("Serve(%q) was not ready after 5 s", addr)
	}
	return nil, nil
}

func TestServeOnLoopbackWithoutATokenAndStopsWhenCtxIsDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, result := serveInBackground(t, ctx, "127.0.0.1:0", "")
	if !access.IsLoopback(addr.String()) {
		t.Fatalf("bound %s, want loopback", addr)
	}

	resp, err := http.Get("http://" + addr.String() + "/metrics?method=checkout")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"goodput":12.345,"latency":0.5}` {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10 s of cancel")
	}
	if conn, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after shutdown", addr)
	}
}

func TestServeBeyondLoopbackWithATokenRequiresIt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, result := serveInBackground(t, ctx, "0.0.0.0:0", "tok")
	_, port, _ := net.SplitHostPort(addr.String())
	url := "http://127.0.0.1:" + port + "/apis"

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with the token: %d, want 200", resp.StatusCode)
	}

	cancel()
	if err := <-result; err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
}

func TestServeReportsAListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Serve(context.Background(), ln.Addr().String(), Handler(newFakeBackend(), nil, Options{}), "", nil)
	if err == nil || !strings.HasPrefix(err.Error(), "rlbridge: ") {
		t.Fatalf("Serve on a taken port = %v, want an rlbridge error", err)
	}
}

func TestNewServerSetsEveryTimeoutAndTheHeaderLimit(t *testing.T) {
	h := Handler(newFakeBackend(), nil, Options{})
	srv := newServer(h)
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout,
		"ReadTimeout":       srv.ReadTimeout,
		"WriteTimeout":      srv.WriteTimeout,
		"IdleTimeout":       srv.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("%s = %v, want > 0", name, d)
		}
	}
	if srv.ReadHeaderTimeout > srv.ReadTimeout {
		t.Errorf("ReadHeaderTimeout %v > ReadTimeout %v", srv.ReadHeaderTimeout, srv.ReadTimeout)
	}
	if srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes >= http.DefaultMaxHeaderBytes {
		t.Errorf("MaxHeaderBytes = %d, want set below the default %d", srv.MaxHeaderBytes, http.DefaultMaxHeaderBytes)
	}
	if srv.Handler != h {
		t.Error("the server does not serve the handler given")
	}
}

// A web page the operator visits can send requests to the bridge on
// 127.0.0.1: a cross-site text/plain POST needs no preflight. Serve refuses
// it, and, without a token, a Host that is not a loopback name (DNS
// rebinding); the agent's own requests, which carry neither, pass.
func TestServeRefusesWhatABrowserPageCouldSend(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, result := serveInBackground(t, ctx, "127.0.0.1:0", "")
	base := "http://" + addr.String()
	do := func(method, path, body string, header map[string]string, host string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	crossSite := map[string]string{"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site", "Origin": "http://attacker.example"}
	if code, body := do("POST", "/set_rate?method=checkout", `{"rate_limit":0}`, crossSite, ""); code != http.StatusForbidden || !strings.Contains(body, "cross-origin") {
		t.Errorf("a cross-site POST of a rate: %d %s, want 403 naming the cross-origin request", code, body)
	}
	if code, body := do("GET", "/apis", "", nil, "attacker.example"); code != http.StatusForbidden || !strings.Contains(body, `Host \"attacker.example\" is not allowed`) {
		t.Errorf("a foreign Host: %d %s, want 403 naming it", code, body)
	}
	if code, body := do("POST", "/set_rate?method=checkout", `{"rate_limit":5}`, map[string]string{"Content-Type": "application/json"}, "localhost:1"); code != http.StatusOK {
		t.Errorf("the agent's POST: %d %s, want 200", code, body)
	}
	cancel()
	if err := <-result; err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
}
