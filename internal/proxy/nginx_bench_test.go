package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/paced"
	"github.com/spillway-dev/spillway/internal/proxy"
)

// nginxCapacity is the stock upstream's capacity, in requests per second.
const nginxCapacity = 200

// startNginx runs Debian's nginx on a loopback port, serving one 2 KiB file
// through limit_req at nginxCapacity requests per second with a burst of a
// million and no nodelay: a server that answers at a fixed rate, in arrival
// order, and queues the rest. It returns the file's URL.
func startNginx(b *testing.B) string {
	b.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if os.Getenv("CI") == "true" {
			b.Fatal("nginx is not installed (apt-get install -y nginx)")
		}
		b.Skip("SKIPPING: nginx is not installed (apt-get update && apt-get install -y nginx)")
	}
	dir, port := itemToServe(b)
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	limit_req_zone $server_port zone=capacity:1m rate=%[2]dr/s;
	server {
		listen 127.0.0.1:%[3]d;
		root %[1]s;
		location / { limit_req zone=capacity burst=1000000; }
	}
}
`, dir, nginxCapacity, port)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	target := fmt.Sprintf("http://127.0.0.1:%d/item.txt", port)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(target); err == nil {
			resp.Body.Close()
			time.Sleep(100 * time.Millisecond) // the probes leave the queue
			return target
		}
	}
	b.Fatal("nginx did not start")
	return ""
}

// BenchmarkProxyStockNginx is scripts/stock-upstream-overload's experiment
// with open-loop Poisson load (testbed.Run) instead of wrk's paced users:
// Debian's nginx at a fixed capacity (startNginx), unprotected (direct),
// behind `spillway proxy` (proxy), and its Go twin (internal/paced) with the
// embedded middleware (embedded), each fresh, with policies/default.cue.
// Each gets 0.5× capacity for a warm-up, then 3× for the overload; it
// reports goodput (200s within 100 ms) over the overload as a fraction of
// the capacity measured closed-loop. About 80 s: run it with -benchtime 1x.
func BenchmarkProxyStockNginx(b *testing.B) {
	const (
		warm     = 5 * time.Second
		overload = 15 * time.Second
		slo      = 100 * time.Millisecond
	)
	run := func(target string, capacity float64) (goodput, rejected float64) {
		return overloadRun(b, target, capacity, warm, overload, slo, 5*time.Second)
	}
	src, err := os.ReadFile("../../policies/default.cue")
	if err != nil {
		b.Fatal(err)
	}
	specs, diags := engine.LoadSource("default.cue", src)
	if len(diags.Errors()) > 0 {
		b.Fatal(diags)
	}
	engineFor := func() *engine.Engine {
		eng, err := engine.Start(context.Background(), engine.Options{Specs: specs, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		return eng
	}
	for b.Loop() {
		capNginx := closedLoopRate(startNginx(b), 64, 3*time.Second)
		twin := httptest.NewServer(paced.New(nginxCapacity))
		capTwin := closedLoopRate(twin.URL+"/item.txt", 64, 3*time.Second)
		twin.Close()

		direct, _ := run(startNginx(b), capNginx)

		eng := engineFor()
		u, _ := url.Parse(startNginx(b))
		h, err := proxy.New(eng, proxy.Options{Upstream: &url.URL{Scheme: "http", Host: u.Host}, Routes: []string{"GET /item.txt"}, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		front := httptest.NewServer(h)
		proxied, proxyRejected := run(front.URL+u.Path, capNginx)
		front.Close()
		eng.Close()

		eng = engineFor()
		mux := http.NewServeMux()
		mux.Handle("GET /item.txt", paced.New(nginxCapacity))
		app := httptest.NewServer(eng.HTTP("ingress", mux))
		embedded, embeddedRejected := run(app.URL+"/item.txt", capTwin)
		app.Close()
		eng.Close()

		b.ReportMetric(capNginx, "capacity-req/s")
		b.ReportMetric(direct, "direct-goodput/capacity")
		b.ReportMetric(proxied, "proxy-goodput/capacity")
		b.ReportMetric(embedded, "embedded-goodput/capacity")
		b.ReportMetric(proxyRejected, "proxy-rejected/s")
		b.ReportMetric(embeddedRejected, "embedded-rejected/s")
	}
}
