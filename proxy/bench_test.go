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

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/proxy"
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
// with keep-alive, from parallel clients: straight to the upstream
// (direct), through httputil.ReverseProxy alone (httputil), and through
// `spillway proxy`'s handler with a route table, a flux meter and a token
// bucket on the route (spillway). Besides ns/op (the inverse of
// throughput) it reports each request's p50 and p99 latency.
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

	specs, diags := engine.LoadSource("bench.cue", []byte(benchPolicy))
	if len(diags) > 0 {
		b.Fatal(diags)
	}
	eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	h, err := proxy.New(eng, proxy.Options{Upstream: u, Routes: []string{"GET /a", "POST /b", "/c/{id}"}, Logger: quiet,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256}})
	if err != nil {
		b.Fatal(err)
	}
	protected := httptest.NewServer(h)
	defer protected.Close()

	for _, target := range []struct{ name, url string }{
		{"direct", upstream.URL},
		{"httputil", plain.URL},
		{"spillway", protected.URL},
	} {
		b.Run(target.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			defer client.CloseIdleConnections()
			var mu sync.Mutex
			var all []time.Duration
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					start := time.Now()
					resp, err := client.Get(target.url + "/a")
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
					mine = append(mine, time.Since(start))
				}
				mu.Lock()
				all = append(all, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			reportPercentiles(b, all)
		})
	}
}

// reportPercentiles adds p50 and p99 of ds, in microseconds, to b's result.
func reportPercentiles(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds())/1e3, "p99-µs")
}
