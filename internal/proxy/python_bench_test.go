package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/proxy"
)

// pythonPolicy is the default protection with this experiment's SLO.
const pythonPolicy = `
package p
import "spillway.dev/blueprints/slo"
policies: "ingress-default": slo.#Policy & {
	config: {
		policy_name: "ingress-default"
		selector: control_point: "ingress"
		slo: "100ms"
	}
}
`

// startPythonHTTPServer runs Debian's `python3 -m http.server` on a
// loopback port, serving one 2 KiB file, and returns the file's URL.
func startPythonHTTPServer(b *testing.B) string {
	b.Helper()
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		b.Skip("no /usr/bin/python3 (apt-get install -y python3)")
	}
	dir, port := itemToServe(b)
	cmd := exec.Command(python, "-m", "http.server", fmt.Sprint(port), "--bind", "127.0.0.1")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	target := fmt.Sprintf("http://127.0.0.1:%d/item.txt", port)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(target); err == nil {
			resp.Body.Close()
			return target
		}
	}
	b.Fatal("python3 -m http.server did not start")
	return ""
}

// closedLoopRate is how many 200s per second the given number of
// clients, each sending one request after another for d, get from target:
// the server's capacity when it is the bottleneck.
func closedLoopRate(target string, clients int, d time.Duration) float64 {
	var done atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				resp, err := http.Get(target)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				// An answer after the end is not counted: with a queue at
				// the server, the last ones would add its depth to d's count.
				if resp.StatusCode == http.StatusOK && time.Now().Before(stop) {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / d.Seconds()
}

// BenchmarkProxyPythonHTTPServer protects a server nobody here wrote,
// Python's http.server (one file, HTTP/1.0, a thread per connection),
// with `spillway proxy` and the default policy: its capacity is measured
// closed-loop, then it gets open-loop Poisson load at 0.5× capacity for a
// warm-up and 3× for the overload, straight and through the proxy, each on
// a fresh server. It reports the goodput (200s within the 100 ms SLO) of
// the overload phase as a fraction of capacity. About a minute: run it
// with -benchtime 1x.
func BenchmarkProxyPythonHTTPServer(b *testing.B) {
	const (
		warm     = 5 * time.Second
		overload = 15 * time.Second
		slo      = 100 * time.Millisecond
	)
	specs, diags := engine.LoadSource("python.cue", []byte(pythonPolicy))
	if len(diags.Errors()) > 0 {
		b.Fatal(diags)
	}
	run := func(capacity float64, viaProxy bool) (goodput, rejected float64) {
		target := startPythonHTTPServer(b)
		if viaProxy {
			eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close()
			u, _ := url.Parse(target)
			h, err := proxy.New(eng, proxy.Options{Upstream: &url.URL{Scheme: "http", Host: u.Host}, Routes: []string{"GET /item.txt"}, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			front := httptest.NewServer(h)
			defer front.Close()
			target = front.URL + u.Path
		}
		return overloadRun(b, target, capacity, warm, overload, slo, 2*time.Second)
	}
	for b.Loop() {
		capacity := closedLoopRate(startPythonHTTPServer(b), 4, 3*time.Second)
		direct, _ := run(capacity, false)
		proxied, rejected := run(capacity, true)
		b.ReportMetric(capacity, "capacity-req/s")
		b.ReportMetric(direct, "direct-goodput/capacity")
		b.ReportMetric(proxied, "proxy-goodput/capacity")
		b.ReportMetric(rejected, "proxy-rejected/s")
	}
}
