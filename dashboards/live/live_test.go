package live_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/dashboards/live"
	"github.com/spillway-dev/spillway/engine"
)

// latencyPolicy meters the average latency at the ingress control point.
const latencyPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: web: bp.#Policy & {
	policy_name: "web"
	evaluation_interval: "500ms"
	components: [
		{FluxMeter: {selector: control_point: "ingress", out_ports: {latency_avg_ms: "LATENCY", incoming_rps: "INCOMING"}}},
		{Arithmetic: {operator: "mul", in_ports: {lhs: "LATENCY", rhs: 1.1}, out_ports: output: "LATENCY_SETPOINT"}},
	]
}
`

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// startWithTraffic runs latencyPolicy for ticks ticks of virtual time with
// ten requests per tick whose latency climbs from 10 ms by 1 ms a tick.
func startWithTraffic(t *testing.T, ticks int) (*engine.Engine, *httptest.Server) {
	t.Helper()
	specs, diags := engine.LoadSource("web.cue", []byte(latencyPolicy))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	clock := &fakeClock{}
	eng, err := engine.Start(t.Context(), engine.Options{Specs: specs, ManualTicks: true, Clock: clock.now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	cp := eng.ControlPoints().Get("ingress")
	for i := 0; i < ticks; i++ {
		for r := 0; r < 10; r++ {
			tk, _ := cp.Admit("")
			clock.advance(time.Duration(10+i) * time.Millisecond)
			tk.Done(true)
		}
		clock.advance(500*time.Millisecond - time.Duration(10*(10+i))*time.Millisecond)
		eng.Tick()
	}
	srv := httptest.NewServer(live.Handler(eng))
	t.Cleanup(srv.Close)
	return eng, srv
}

func getSignals(t *testing.T, url string) (int, live.Signals) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body live.Signals
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, body
}

func TestSignalsAPIServesEveryTickSince(t *testing.T) {
	_, srv := startWithTraffic(t, 6)
	code, all := getSignals(t, srv.URL+"/api/signals")
	if code != 200 || len(all.Policies) != 1 || all.WindowNs != int64(engine.HistoryWindow) {
		t.Fatalf("GET /api/signals: %d %+v", code, all)
	}
	p := all.Policies[0]
	if p.Policy != "web" || len(p.TimesNs) != 6 || len(p.Signals) != 3 || all.NowNs != p.TimesNs[5] {
		t.Fatalf("policy %+v, want 6 ticks of 3 signals ending now", p)
	}
	for _, s := range p.Signals {
		if s.Signal == "LATENCY" && (float64(s.Values[0]) != 10 || float64(s.Values[5]) != 15) {
			t.Fatalf("LATENCY %v, want 10 ms climbing to 15 ms", s.Values)
		}
	}
	_, since := getSignals(t, srv.URL+"/api/signals?since="+strconv.FormatInt(p.TimesNs[3], 10))
	if n := len(since.Policies[0].TimesNs); n != 2 {
		t.Fatalf("?since=the 4th tick returned %d ticks, want the last 2", n)
	}
	if code, _ := getSignals(t, srv.URL+"/api/signals?since=yesterday"); code != 400 {
		t.Fatalf("a bad since got %d, want 400", code)
	}
}

func TestSignalsAPIShowsLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.cue"), []byte(latencyPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Start(t.Context(), engine.Options{Policies: dir, ManualTicks: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if err := os.WriteFile(filepath.Join(dir, "web.cue"), []byte("policies: {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Reload(); err == nil {
		t.Fatal("a broken file must fail to reload")
	}
	srv := httptest.NewServer(live.Handler(eng))
	defer srv.Close()
	_, body := getSignals(t, srv.URL+"/api/signals")
	if len(body.Errors) != 1 || body.Errors[0].Pos.Line != 1 || body.Reload == nil || body.Reload.LoadErrors != 1 || len(body.Policies) != 1 {
		t.Fatalf("after a failed reload: errors %+v reload %+v policies %d; want the error, the count and the old policy running", body.Errors, body.Reload, len(body.Policies))
	}
}

func TestPageIsServedAtTheRootOnly(t *testing.T) {
	_, srv := startWithTraffic(t, 1)
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(b.String(), "/api/signals") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := http.Get(srv.URL + "/nope"); resp.StatusCode != 404 {
		t.Fatalf("GET /nope: %d, want 404", resp.StatusCode)
	}
}

// chromium returns the headless browser, or skips (locally) or fails (in
// CI, CI=true) when it is not installed.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	const msg = "chromium is not installed (apt-get install -y chromium); .ci/run installs it"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// headless runs chromium on url with extra flags and returns its stdout.
func headless(t *testing.T, browser, url string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000"}, extra...)
	cmd := exec.CommandContext(ctx, browser, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", browser, err, stderr.String())
	}
	return stdout.Bytes()
}

// The page, rendered by a real browser, plots the latency signal.
func TestLivePageInHeadlessChromium(t *testing.T) {
	browser := chromium(t)
	_, srv := startWithTraffic(t, 40)
	dom := headless(t, browser, srv.URL+"/", "--dump-dom")
	path := regexp.MustCompile(`<path class="series" data-policy="web" data-signal="LATENCY" data-points="(\d+)" d="(M[^"]*)"`).FindSubmatch(dom)
	if path == nil {
		t.Fatalf("no plotted LATENCY series in the rendered page:\n%s", dom)
	}
	if n, _ := strconv.Atoi(string(path[1])); n != 40 || strings.Count(string(path[2]), "L") != 39 {
		t.Fatalf("LATENCY series has %s points (%q), want one per tick: 40", path[1], path[2])
	}
	if !bytes.Contains(dom, []byte("policies loaded")) || !bytes.Contains(dom, []byte(`data-signal="LATENCY_SETPOINT"`)) {
		t.Fatalf("the page must show the load status and every signal:\n%s", dom)
	}

	shot := filepath.Join(t.TempDir(), "live.png")
	headless(t, browser, srv.URL+"/", "--screenshot="+shot, "--window-size=1280,800", "--hide-scrollbars")
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("the screenshot is not a PNG: % x", png[:min(8, len(png))])
	}
}
