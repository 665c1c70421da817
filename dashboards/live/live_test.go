package live_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/dashboards/live"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
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

// controlledPolicy holds LATENCY to LATENCY_SETPOINT with an AIMD
// controller and limits ingress to 10 requests per second, so the page
// has a setpoint pair to draw and rejections to count. IDLE never changes.
const controlledPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: web: bp.#Policy & {
	policy_name: "web"
	evaluation_interval: "500ms"
	components: [
		{FluxMeter: {selector: control_point: "ingress", out_ports: {latency_avg_ms: "LATENCY", incoming_rps: "INCOMING", accepted_rps: "ACCEPTED"}}},
		{Arithmetic: {operator: "mul", in_ports: {lhs: "LATENCY", rhs: 1.1}, out_ports: output: "LATENCY_SETPOINT"}},
		{Arithmetic: {operator: "mul", in_ports: {lhs: 2, rhs: 3}, out_ports: output: "IDLE"}},
		{AIMDController: {in_ports: {signal: "LATENCY", setpoint: "LATENCY_SETPOINT", incoming: "INCOMING", accepted: "ACCEPTED"}, out_ports: {load_multiplier: "LOAD_MULTIPLIER", rate_limit: "AIMD_RATE_LIMIT"}}},
		{RateLimiter: {selector: control_point: "ingress", in_ports: rate_limit: 10}},
	]
}
`

// trafficTick offers ten requests to ingress whose latency is 10+i ms,
// then ticks the engine at the end of a 500 ms tick.
func trafficTick(eng *engine.Engine, clock *enginetest.Clock, i int) {
	cp := eng.ControlPoints().Get("ingress")
	for r := 0; r < 10; r++ {
		tk, d := cp.Admit("")
		clock.Advance(time.Duration(10+i) * time.Millisecond)
		if d == controlpoint.Accepted {
			tk.Done(true)
		}
	}
	clock.Advance(500*time.Millisecond - time.Duration(10*(10+i))*time.Millisecond)
	eng.Tick()
}

// startWithTraffic runs policy for ticks ticks of virtual time with ten
// requests per tick whose latency climbs from 10 ms by 1 ms a tick.
func startWithTraffic(t *testing.T, policy string, ticks int) (*engine.Engine, *enginetest.Clock, *httptest.Server) {
	t.Helper()
	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "web.cue", policy), Clock: clock.Now})
	for i := 0; i < ticks; i++ {
		trafficTick(eng, clock, i)
	}
	srv := httptest.NewServer(live.Handler(eng))
	t.Cleanup(srv.Close)
	return eng, clock, srv
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
	_, _, srv := startWithTraffic(t, latencyPolicy, 6)
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
	eng := enginetest.Start(t, engine.Options{Policies: dir})
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
	_, _, srv := startWithTraffic(t, latencyPolicy, 1)
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

// The page, rendered by a real browser while the engine keeps ticking (one
// tick per poll), fits its charts to the data, plots the latency with its
// setpoint, the requests accepted and rejected per API, with units on the
// axes, and folds the idle signal.
func TestLivePageInHeadlessChromium(t *testing.T) {
	browser := chromium(t)
	eng, clock, _ := startWithTraffic(t, controlledPolicy, 40)
	var mu sync.Mutex
	ticks := 40
	h := live.Handler(eng)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/signals" {
			mu.Lock()
			trafficTick(eng, clock, ticks)
			ticks++
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	dom := string(headless(t, browser, srv.URL+"/", "--dump-dom"))

	path := regexp.MustCompile(`<path class="series" data-policy="web" data-signal="LATENCY" data-points="(\d+)" d="(M[^"]*)"`).FindStringSubmatch(dom)
	if path == nil {
		t.Fatalf("no plotted LATENCY series in the rendered page:\n%s", dom)
	}
	if n, _ := strconv.Atoi(path[1]); n < 41 || strings.Count(path[2], "L") != n-1 {
		t.Fatalf("LATENCY series has %s points (%q), want one per tick: at least 41", path[1], path[2])
	}
	// The default window starts at the first sample: the first point is
	// at the left edge of the plot, not squeezed to the right.
	if x, _ := strconv.ParseFloat(strings.Fields(strings.TrimPrefix(path[2], "M"))[0], 64); x > 64+0.25*(600-64-8) {
		t.Fatalf("the first LATENCY point is at x=%v: the default window does not fit the data", x)
	}
	latency := figure(t, dom, `data-policy="web" data-signal="LATENCY"`)
	for _, want := range []string{
		`<path class="setpoint" data-policy="web" data-signal="LATENCY_SETPOINT" data-points="`,
		`<text class="unit" `, `>ms</text>`,
	} {
		if !strings.Contains(latency, want) {
			t.Fatalf("the LATENCY chart lacks %s:\n%s", want, latency)
		}
	}
	if m := regexp.MustCompile(`class="setpoint"[^>]*data-points="(\d+)"`).FindStringSubmatch(latency); m == nil || m[1] == "0" {
		t.Fatalf("the setpoint line has no points:\n%s", latency)
	}
	if strings.Contains(dom, `<figure class="chart" data-policy="web" data-signal="LATENCY_SETPOINT"`) {
		t.Fatalf("LATENCY_SETPOINT is drawn on the LATENCY chart, not on its own")
	}

	decisions := figure(t, dom, `decisions" data-control-point="ingress" data-api="*"`)
	for _, series := range []string{"accepted", "rejected"} {
		m := regexp.MustCompile(`<path class="` + series + `"[^>]*data-points="(\d+)" d="M`).FindStringSubmatch(decisions)
		if m == nil {
			t.Fatalf("the requests panel plots no %s rate:\n%s", series, decisions)
		}
	}
	if !strings.Contains(decisions, `<path class="would_reject"`) || !strings.Contains(decisions, `>req/s</text>`) {
		t.Fatalf("the requests panel lacks the would-reject series or its unit:\n%s", decisions)
	}
	if !strings.Contains(figure(t, dom, `data-signal="INCOMING"`), `>req/s</text>`) || !strings.Contains(figure(t, dom, `data-signal="LOAD_MULTIPLIER"`), `>×</text>`) {
		t.Fatalf("rates must be in req/s and the load multiplier a factor")
	}

	idle := regexp.MustCompile(`(?s)<details class="idle" data-policy="web"><summary>[^<]*IDLE.*?</details>`).FindString(dom)
	if idle == "" || !strings.Contains(idle, `data-signal="IDLE"`) {
		t.Fatalf("the idle signal is not folded into a closed <details>:\n%s", dom)
	}
	if !strings.Contains(dom, "policies loaded") {
		t.Fatalf("the page must show the load status:\n%s", dom)
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

// figure is the rendered chart whose opening tag contains attrs.
func figure(t *testing.T, dom, attrs string) string {
	t.Helper()
	i := strings.Index(dom, attrs)
	if i < 0 {
		t.Fatalf("no chart with %s in the rendered page:\n%s", attrs, dom)
	}
	start := strings.LastIndex(dom[:i], "<figure")
	end := strings.Index(dom[i:], "</figure>")
	return dom[start : i+end]
}
