package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/decisionlog"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/proxy"
)

var quiet = slog.New(slog.DiscardHandler)

// startEngine runs policy (CUE source; "" for none) with real ticks.
func startEngine(t *testing.T, policy string) *engine.Engine {
	t.Helper()
	var specs []engine.Spec
	if policy != "" {
		var diags engine.Diagnostics
		specs, diags = engine.LoadSource("p.cue", []byte(policy))
		if len(diags) > 0 {
			t.Fatal(diags)
		}
	}
	eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

// startProxy serves a proxy to upstream on loopback and returns its URL.
func startProxy(t *testing.T, eng *engine.Engine, upstream string, routes ...string) string {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	h, err := proxy.New(eng, proxy.Options{Upstream: u, Routes: routes, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestProxyRoutesLabelRequestsByServeMuxPattern(t *testing.T) {
	routes, err := proxy.Routes([]string{"GET /checkout", "/items/{id}", "POST /orders/", "shop.example/"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, target, want string
	}{
		{"GET", "http://x/checkout", "GET /checkout"},
		{"HEAD", "http://x/checkout", "GET /checkout"}, // GET patterns match HEAD, as in ServeMux
		{"POST", "http://x/checkout", ""},              // method not routed: the whole control point
		{"DELETE", "http://x/items/42", "/items/{id}"},
		{"POST", "http://x/orders/7/lines", "POST /orders/"},
		{"GET", "http://shop.example/anything", "shop.example/"},
		{"GET", "http://x/unknown", ""},
		{"POST", "http://x/orders", "POST /orders/"},       // ServeMux's redirect names its pattern
		{"GET", "http://x/a/../checkout", "GET /checkout"}, // so does its path cleaning
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.target, nil)
		if got := routes.Label(r); got != tt.want {
			t.Errorf("%s %s: label %q, want %q", tt.method, tt.target, got, tt.want)
		}
	}
}

func TestProxyRoutesRefuseBadPatterns(t *testing.T) {
	for _, tc := range []struct {
		routes []string
		want   string
	}{
		{[]string{"GET"}, `route "GET"`},
		{[]string{"/a/{x"}, `route "/a/{x"`},
		{[]string{"/a/{x}", "/a/{y}"}, `route "/a/{y}"`}, // conflicts with /a/{x}
		{[]string{"/a", "/a"}, "given twice"},
	} {
		_, err := proxy.Routes(tc.routes)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Routes(%q) = %v, want an error containing %q", tc.routes, err, tc.want)
		}
	}
	eng := startEngine(t, "")
	for _, up := range []string{"", "127.0.0.1:80", "ftp://x/", "/relative"} {
		u, _ := url.Parse(up)
		if _, err := proxy.New(eng, proxy.Options{Upstream: u}); err == nil {
			t.Errorf("New with upstream %q: no error", up)
		}
	}
	u, _ := url.Parse("http://127.0.0.1:1")
	if _, err := proxy.New(eng, proxy.Options{Upstream: u, RejectStatus: 500}); err == nil {
		t.Error("New with RejectStatus 500: no error")
	}
}

func TestProxyForwardsRequestsAndStripsHopByHopHeaders(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		w.Header().Set("X-Seen-Forwarded-For", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-Hop", r.Header.Get("X-Hop"))
		w.Header().Set("X-Seen-Keep", r.Header.Get("X-Keep"))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%s %s", r.Method, body)
	}))
	defer upstream.Close()
	eng := startEngine(t, "")
	front := startProxy(t, eng, upstream.URL+"/base", "POST /orders")

	req, _ := http.NewRequest("POST", front+"/orders?x=1", strings.NewReader("hello"))
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	req.Header.Set("X-Keep", "passes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || string(body) != "POST hello" {
		t.Fatalf("got %d %q, want 201 \"POST hello\"", resp.StatusCode, body)
	}
	for header, want := range map[string]string{
		"X-Seen-Path":          "/base/orders?x=1",
		"X-Seen-Forwarded-For": "127.0.0.1",
		"X-Seen-Hop":           "",
		"X-Seen-Keep":          "passes",
	} {
		if got := resp.Header.Get(header); got != want {
			t.Errorf("%s = %q, want %q", header, got, want)
		}
	}
	accepted, _ := eng.ControlPoints().Get("ingress").API("POST /orders").Counts()
	if accepted != 1 {
		t.Errorf("control point counted %d admitted requests under the route, want 1", accepted)
	}
}

func TestProxyStreamsResponsesAsTheyArrive(t *testing.T) {
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release // the rest waits for the client to have seen the first event
		fmt.Fprint(w, "data: second\n\n")
	}))
	defer upstream.Close()
	defer close(release)
	front := startProxy(t, startEngine(t, ""), upstream.URL)

	resp, err := http.Get(front + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() {
		line, _ := lines.ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if line != "data: first\n" {
			t.Fatalf("first line %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not arrive before the response ended: the proxy buffers streams")
	}
}

func TestProxyPassesWebSocketUpgrades(t *testing.T) {
	// A minimal upgrade: the upstream switches protocols and echoes bytes.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		conn, rw := switchProtocols(t, w)
		if conn == nil {
			return
		}
		defer conn.Close()
		io.Copy(conn, rw) // echo until the client closes
	}))
	defer upstream.Close()
	eng := startEngine(t, "")
	front := startProxy(t, eng, upstream.URL, "GET /ws")

	conn, br, resp := upgrade(t, front)
	defer conn.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	fmt.Fprint(conn, "ping over the upgraded connection\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping over the upgraded connection\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
	accepted, _ := eng.ControlPoints().Get("ingress").API("GET /ws").Counts()
	if accepted != 1 {
		t.Errorf("admitted %d upgrades under GET /ws, want 1", accepted)
	}
}

func TestProxyUnreachableUpstreamIsABadGateway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	front := startProxy(t, startEngine(t, ""), dead)
	resp, err := http.Get(front + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
}

// slowService is an upstream with a fixed number of workers, each taking
// serviceTime per request; requests beyond them queue without bound, as an
// unprotected thread-pool server does.
func slowService(workers int, serviceTime time.Duration) *httptest.Server {
	slots := make(chan struct{}, workers)
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
		case <-r.Context().Done(): // the proxy gave up: leave the queue
			return
		}
		time.Sleep(serviceTime)
		<-slots
		io.WriteString(w, "ok\n")
	}))
}

// load offers ratePerSec requests per second to url for warmup+d, open
// loop, and returns the answers to the requests sent during d by status,
// and how many of them were 200s within slo.
func load(t *testing.T, target string, ratePerSec int, warmup, d, slo time.Duration) (byStatus map[int]int, good int, reasons []string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	byStatus = map[int]int{}
	var goodCount atomic.Int64
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(ratePerSec)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	measureFrom := time.Now().Add(warmup)
	deadline := measureFrom.Add(d)
	for time.Now().Before(deadline) {
		<-ticker.C
		counted := time.Now().After(measureFrom)
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp, err := client.Get(target)
			status := 0
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = resp.StatusCode
				if status == http.StatusTooManyRequests {
					mu.Lock()
					reasons = append(reasons, resp.Header.Get(proxy.ReasonHeader))
					mu.Unlock()
				}
				if counted && status == http.StatusOK && time.Since(start) <= slo {
					goodCount.Add(1)
				}
			}
			if !counted {
				return
			}
			mu.Lock()
			byStatus[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return byStatus, int(goodCount.Load()), reasons
}

// proxyPolicy is the shipped default protection (the slo blueprint) at the
// proxy's control point, with the test's SLO.
const proxyPolicy = `
package p
import "spillway.dev/blueprints/slo"
policies: "ingress-default": slo.#Policy & {
	config: {
		policy_name: "ingress-default"
		selector: control_point: "ingress"
		slo: "200ms"
	}
}
`

// staticPolicy holds the proxy's requests to 3 in flight, from a Variable
// through an Arithmetic so that rejections have a producer to name.
const staticPolicy = `
package p
import bp "spillway.dev/blueprints"
policies: "ingress-default": bp.#Policy & {
	policy_name: "ingress-default"
	evaluation_interval: "100ms"
	components: [
		{Variable: {value: 2, out_ports: output: "WORKERS"}},
		{Arithmetic: {operator: "add", in_ports: {lhs: "WORKERS", rhs: 1}, out_ports: output: "LIMIT"}},
		{ConcurrencyLimiter: {selector: control_point: "ingress", in_ports: limit: "LIMIT"}},
	]
}
`

// TestProxyOverloadShedsAndKeepsGoodput overloads a slow upstream at 3×
// its capacity through the proxy, once without a policy and once with the
// default one, and asserts that the protected run sheds with 429s and keeps
// its goodput (200s within the SLO) near capacity where the unprotected
// run's collapses as the upstream's queue grows. The first seconds of load
// are not counted: the default policy measures the service's baseline
// latency first (blueprints/slo). Every rejection explains itself, in the
// header and in the decision log.
func TestProxyOverloadShedsAndKeepsGoodput(t *testing.T) {
	const (
		duration = 2 * time.Second
		slo      = 200 * time.Millisecond
	)
	workers, serviceTime, offered, warmup := 4, 20*time.Millisecond, 600, 3*time.Second // capacity 200 requests/s
	policy := proxyPolicy
	if raceEnabled {
		// The race detector makes each request several times costlier, and
		// the default policy's learning slower than the test is long: the
		// race run checks the proxy's mechanics under a static limit.
		// A static limit needs no warm-up, and without a policy the queue
		// holds an SLO's worth of work (10 requests) within a tenth of a
		// second (100 req/s over capacity): one second of warm-up is enough.
		workers, serviceTime, offered, warmup = 2, 40*time.Millisecond, 150, time.Second // capacity 50 requests/s
		policy = staticPolicy
	}
	capacity := float64(workers) * float64(time.Second/serviceTime)
	log := decisionlog.New(100000)
	run := func(policy string) (map[int]int, float64, []string) {
		upstream := slowService(workers, serviceTime)
		defer upstream.Close()
		u, _ := url.Parse(upstream.URL)
		h, err := proxy.New(startEngine(t, policy), proxy.Options{Upstream: u, Routes: []string{"GET /work"}, Logger: quiet, ExplainHeader: true, Decisions: log})
		if err != nil {
			t.Fatal(err)
		}
		front := httptest.NewServer(h)
		byStatus, good, reasons := load(t, front.URL+"/work", offered, warmup, duration, slo)
		// Drop the unprotected run's queue rather than wait it out.
		upstream.CloseClientConnections()
		front.Close()
		return byStatus, float64(good) / duration.Seconds() / capacity, reasons
	}
	bare, bareGoodput, _ := run("")
	protected, goodput, reasons := run(policy)
	t.Logf("capacity %.0f/s, offered %d/s, counted after %s for %s: without a policy %v, goodput %.2f of capacity; with the default policy %v, goodput %.2f",
		capacity, offered, warmup, duration, bare, bareGoodput, protected, goodput)
	if protected[http.StatusTooManyRequests] == 0 {
		t.Errorf("no 429 under 3× overload: %v", protected)
	}
	if goodput < 0.7 {
		t.Errorf("goodput through the protected proxy is %.2f of capacity, want ≥ 0.7", goodput)
	}
	if goodput < bareGoodput+0.2 {
		t.Errorf("goodput %.2f protected vs %.2f unprotected: the policy did not help", goodput, bareGoodput)
	}

	// "ingress-default: components[N].ConcurrencyLimiter limit=L (in flight F)
	// from components[M].SLOConcurrencyController (LATENCY=…, …)".
	explained := regexp.MustCompile(`^ingress-default: components\[\d+\]\.ConcurrencyLimiter limit=[0-9.]+ \(in flight \d+\) from components\[\d+\]\.\w+ \((\w+=([0-9.]+|invalid)(, )?)+\)$`)
	for _, r := range reasons {
		if !explained.MatchString(r) {
			t.Fatalf("rejection reason %q does not name the component and its signal values", r)
		}
	}
	if len(reasons) == 0 {
		t.Fatal("no rejection reasons")
	}
	t.Logf("e.g. %s", reasons[len(reasons)/2])
	rejected := log.Recent(decisionlog.Filter{Outcome: "rejected"})
	if len(rejected) < len(reasons) {
		t.Errorf("decision log holds %d rejections, the clients saw %d", len(rejected), len(reasons))
	}
	for _, d := range rejected {
		if d.Source != "proxy" || d.API != "GET /work" || d.Outcome != decisionlog.ConcurrencyLimited || !explained.MatchString(d.Explanation) {
			t.Fatalf("decision %+v", d)
		}
	}
}

// The connection preface of HTTP/2 with prior knowledge reaches a handler
// as a request "PRI *"; the proxy answers 505 with the reason instead of
// forwarding it as HTTP/1.1, with or without a decision log.
func TestProxyRefusesTheH2CPreface(t *testing.T) {
	var reached atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)
	eng := startEngine(t, "")
	for _, opts := range []proxy.Options{{Upstream: u, Logger: quiet}, {Upstream: u, Logger: quiet, Decisions: decisionlog.New(4)}} {
		h, err := proxy.New(eng, opts)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		srv.Close()
		if resp.StatusCode != http.StatusHTTPVersionNotSupported || !strings.Contains(string(body), "h2c") {
			t.Errorf("decisions %v: %d %q, want 505 naming h2c", opts.Decisions != nil, resp.StatusCode, body)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the upstream saw %d requests, want none", n)
	}
}

// oneSlotPolicy lets one request at a time through the proxy's control
// point.
const oneSlotPolicy = `
package p
import bp "spillway.dev/blueprints"
policies: one: bp.#Policy & {
	policy_name: "one"
	evaluation_interval: "100ms"
	components: [
		{ConcurrencyLimiter: {selector: {control_point: "ingress"}, in_ports: limit: 1}},
	]
}
`

// Through the proxy, an open server-sent-events stream and an open
// WebSocket hold no concurrency slot once they have answered (the first
// flushed event; the upgrade): with one slot, a plain request still gets
// through while both stay open. A request still being answered does hold
// it, which shows the limit is in force.
func TestProxyOpenStreamsHoldNoSlot(t *testing.T) {
	release, slow := make(chan struct{}), make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release
		case "/ws":
			if conn, _ := switchProtocols(t, w); conn != nil {
				defer conn.Close()
				<-release
			}
		case "/slow":
			<-slow
		}
	}))
	defer upstream.Close()
	defer close(release)
	front := startProxy(t, startEngine(t, oneSlotPolicy), upstream.URL)
	get := func(path string) int {
		t.Helper()
		resp, err := http.Get(front + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// A request being answered holds the slot: once the limit is in
	// force, a request made beside one is refused. (Those admitted before
	// the policy's first tick hold no slot, hence a new one each time.)
	var slows sync.WaitGroup
	refused := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !refused; time.Sleep(20 * time.Millisecond) {
		started := make(chan struct{})
		slows.Go(func() {
			req, _ := http.NewRequest("GET", front+"/slow", nil)
			resp, err := http.DefaultTransport.RoundTrip(req)
			close(started)
			if err == nil {
				resp.Body.Close()
			}
		})
		select {
		case <-started: // refused at once: the slot is taken
		case <-time.After(50 * time.Millisecond): // admitted, held
		}
		refused = get("/cheap") == http.StatusTooManyRequests
	}
	if !refused {
		t.Fatal("no request was refused while another held the one slot: the limit is not in force")
	}
	close(slow)
	slows.Wait()
	// The proxy gives a slot back once its handler returns, which may be
	// just after the client has read the answer, and a stream's at its
	// first flush, which may be just after the client has read what it
	// flushed: wait for the slot to be free.
	slotFree := func(after string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); get("/cheap") != http.StatusOK; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the one slot still taken 5 s after %s", after)
			}
		}
	}
	slotFree("the slow requests were answered")

	events, err := http.Get(front + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer events.Body.Close()
	if line, err := bufio.NewReader(events.Body).ReadString('\n'); err != nil || line != "data: first\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	slotFree("the event stream's first event, the stream still open")
	conn, _, resp := upgrade(t, front)
	defer conn.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: status %d, want 101", resp.StatusCode)
	}
	slotFree("the upgrade, with a stream and a socket open")
}

// switchProtocols is an upstream's side of a minimal WebSocket upgrade:
// it hijacks w's connection and answers 101. On failure it reports to t
// and returns nil.
func switchProtocols(t *testing.T, w http.ResponseWriter) (net.Conn, *bufio.ReadWriter) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Error(err)
		return nil, nil
	}
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	rw.Flush()
	return conn, rw
}

// upgrade is a client's side: it asks front for a WebSocket on /ws and
// returns the connection (5 s deadline), its reader and the answer.
func upgrade(t *testing.T, front string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(front, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return conn, br, resp
}
