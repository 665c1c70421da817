package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/decisionlog"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/proxy"
)

// benchPolicy meters GET /a and limits it far above what a benchmark can
// offer, so every request takes the admit path through a flux meter and a
// token bucket, as a protected request does.
const benchPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: bench: bp.#Policy & {
	policy_name: "bench"
	evaluation_interval: "1s"
	components: [
		{FluxMeter: {selector: {control_point: "ingress", api: "GET /a"}, out_ports: latency_p90_ms: "LATENCY_P90"}},
		{RateLimiter: {selector: {control_point: "ingress", api: "GET /a"}, in_ports: {rate_limit: 1e12, burst: 1e12}}},
	]
}
`

// BenchmarkProxyOverhead measures one small GET over loopback HTTP/1.1
// with keep-alive, from as many parallel clients as GOMAXPROCS: straight to
// the upstream (direct), through httputil.ReverseProxy alone (httputil, and
// httputil-pooled with a BufferPool as the proxy has), and through `spillway proxy`'s handler with a route table, a flux meter
// and a token bucket on the route, and the decision log (spillway). Each
// iteration sends one request to each of the four, in turn, starting with
// the next one each time, so that all see the same machine: on a shared machine, running them one after the other measures
// the neighbours as much as the proxies. Run it with -count 8 or more and
// read the medians (benchstat). For each it reports the mean, p50
// and p99 latency in microseconds; with a fixed number of clients,
// throughput is the inverse of the mean, so spillway/httputil-throughput is
// httputil's mean over spillway's.
func BenchmarkProxyOverhead(b *testing.B) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)

	plain := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
	})
	defer plain.Close()
	// The anchor with a BufferPool, as the proxy has one.
	pooled := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		Transport:  &http.Transport{MaxIdleConnsPerHost: 256},
		BufferPool: &benchBuffers{},
	})
	defer pooled.Close()

	specs, diags := engine.LoadSource("bench.cue", []byte(benchPolicy))
	if len(diags) > 0 {
		b.Fatal(diags)
	}
	eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	// As `spillway proxy` runs it: every decision logged for /decisions.
	h, err := proxy.New(eng, proxy.Options{Upstream: u, Routes: []string{"GET /a", "POST /b", "/c/{id}"}, Logger: quiet,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Decisions: decisionlog.New(0)})
	if err != nil {
		b.Fatal(err)
	}
	protected := httptest.NewServer(h)
	defer protected.Close()

	targets := []string{upstream.URL + "/a", plain.URL + "/a", pooled.URL + "/a", protected.URL + "/a"}
	names := []string{"direct", "httputil", "httputil-pooled", "spillway"}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	all := make([][]time.Duration, len(targets))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([][]time.Duration, len(targets))
		for first := 0; pb.Next(); first++ {
			for k := range targets {
				i := (first + k) % len(targets)
				target := targets[i]
				start := time.Now()
				resp, err := client.Get(target)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("%s: status %d", names[i], resp.StatusCode)
					return
				}
				mine[i] = append(mine[i], time.Since(start))
			}
		}
		mu.Lock()
		for i := range all {
			all[i] = append(all[i], mine[i]...)
		}
		mu.Unlock()
	})
	b.StopTimer()
	means := make([]float64, len(targets))
	for i, ds := range all {
		if len(ds) == 0 {
			return
		}
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		means[i] = float64(sum.Nanoseconds()) / float64(len(ds)) / 1e3
		slices.Sort(ds)
		b.ReportMetric(means[i], names[i]+"-mean-µs")
		b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/1e3, names[i]+"-p50-µs")
		b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds())/1e3, names[i]+"-p99-µs")
	}
	b.ReportMetric(means[1]/means[3], "spillway/httputil-throughput")
	b.ReportMetric(means[2]/means[3], "spillway/httputil-pooled-throughput")
}

// BenchmarkProxyHandler calls the handlers directly, one request at a time
// (no client connection, the upstream still over loopback): what
// `spillway proxy`'s handler costs beyond httputil.ReverseProxy's, in time
// and allocations, against the anchor both without a BufferPool (as
// httputil's zero value is) and with one (as the proxy has).
func BenchmarkProxyHandler(b *testing.B) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)
	plain := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
	}
	specs, diags := engine.LoadSource("bench.cue", []byte(benchPolicy))
	if len(diags) > 0 {
		b.Fatal(diags)
	}
	eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	protected, err := proxy.New(eng, proxy.Options{Upstream: u, Routes: []string{"GET /a", "POST /b", "/c/{id}"}, Logger: quiet,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Decisions: decisionlog.New(0)})
	if err != nil {
		b.Fatal(err)
	}
	// The anchor as a careful user would write it: with a BufferPool, as
	// the proxy has, so that the comparison is of Spillway's own work.
	pooled := &httputil.ReverseProxy{Rewrite: plain.Rewrite, Transport: plain.Transport, BufferPool: &benchBuffers{}}
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"httputil", plain}, {"httputil-pooled", pooled}, {"spillway", protected}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				// A new request each time, so the route lookup is not skipped.
				r := httptest.NewRequest("GET", "http://front/a", nil)
				w := httptest.NewRecorder()
				tc.h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

// benchBuffers is a plain sync.Pool of ReverseProxy's 32 KiB copy buffers.
type benchBuffers struct{ pool sync.Pool }

func (p *benchBuffers) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (p *benchBuffers) Put(b []byte) { p.pool.Put(&b) }
