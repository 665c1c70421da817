package proxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/proxy"
	"github.com/spillway-dev/spillway/testbed"
)

// demoPolicy is the demo's: the default protection (the slo blueprint)
// at "ingress" with a 250 ms SLO.
const demoPolicy = `
package demo
import "spillway.dev/blueprints/slo"
policies: demo: slo.#Policy & {
	config: {
		policy_name: "demo"
		selector: control_point: "ingress"
		slo: "250ms"
	}
}
`

// BenchmarkProxyVsEmbedded runs `spillway demo`'s experiment twice on the
// same app (the two-tier testbed service, live on loopback, 3× its
// capacity after a warm-up), protected once by the embedded middleware
// and once by `spillway proxy` in front of the unmodified app, with the
// same policy and arrival seed, and reports each one's goodput over the
// overload phase as a fraction of capacity (for one API, the proportional
// share is the capacity). It takes about a minute: run it with
// -benchtime 1x.
func BenchmarkProxyVsEmbedded(b *testing.B) {
	const (
		warm     = 6 * time.Second
		overload = 20 * time.Second
		slo      = 250 * time.Millisecond
	)
	app := testbed.DefaultTwoTier()
	capacity := app.Capacity()
	specs, diags := engine.LoadSource("demo.cue", []byte(demoPolicy))
	if len(diags.Errors()) > 0 {
		b.Fatal(diags)
	}
	run := func(viaProxy bool) float64 {
		eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		defer eng.Close()
		wrap := func(h http.Handler) http.Handler { return eng.HTTP("ingress", h) }
		if viaProxy {
			wrap = nil
		}
		tt, err := testbed.StartTwoTier(app, wrap)
		if err != nil {
			b.Fatal(err)
		}
		defer tt.Close()
		target := tt.URL
		if viaProxy {
			u, _ := url.Parse(tt.URL)
			h, err := proxy.New(eng, proxy.Options{Upstream: &url.URL{Scheme: u.Scheme, Host: u.Host}, Routes: []string{"GET /api"}, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			front := httptest.NewServer(h)
			defer front.Close()
			target = front.URL + u.Path
		}
		res, err := testbed.Run(context.Background(), testbed.LoadConfig{
			URL:     target,
			Phases:  []testbed.Phase{{Duration: warm, Rate: 0.5 * capacity}, {Duration: overload, Rate: 3 * capacity}},
			SLO:     slo,
			Timeout: 2 * time.Second,
			Seed:    42,
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		var goodput, seconds float64
		for _, s := range res.Seconds {
			if s.T >= int(warm/time.Second) {
				goodput += float64(s.Goodput)
				seconds++
			}
		}
		return goodput / seconds / capacity
	}
	for b.Loop() {
		embedded := run(false)
		proxied := run(true)
		b.ReportMetric(embedded, "embedded-goodput/capacity")
		b.ReportMetric(proxied, "proxy-goodput/capacity")
		b.ReportMetric(proxied-embedded, "proxy-minus-embedded")
	}
}
