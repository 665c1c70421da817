package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/telemetry"
)

// The admin server serves the live page, its data and the metrics next to
// /status.
func TestAdminServesLivePageSignalsAndMetrics(t *testing.T) {
	eng := startDemoEngine(t)
	eng.Tick()
	metrics, err := telemetry.New(t.Context(), eng)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdownMetrics(metrics)
	srv := httptest.NewServer(adminServer(eng, metrics, adminAccess{}).Handler)
	defer srv.Close()
	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if code, ctype, body := get("/"); code != 200 || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, "Spillway live") {
		t.Fatalf("GET /: %d %s", code, ctype)
	}
	code, _, body := get("/api/signals")
	var signals struct {
		Policies []struct {
			Policy string `json:"policy"`
		} `json:"policies"`
	}
	if err := json.Unmarshal([]byte(body), &signals); code != 200 || err != nil || len(signals.Policies) != 1 || signals.Policies[0].Policy != "demo" {
		t.Fatalf("GET /api/signals: %d %v %s", code, err, body)
	}
	if code, _, body := get("/metrics"); code != 200 || !strings.Contains(body, `spillway_signal_invalid_total{component="components[0].FluxMeter",policy="demo",port="scaled_latency_p90_ms",signal="LATENCY"} 1`) {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	if code, _, _ := get("/status"); code != 200 {
		t.Fatalf("GET /status: %d", code)
	}
}

func TestDashboardsCommandWritesOneDashboardPerPolicy(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "boards")
	stdout, err := runCLI(t, "dashboards", "--policies", "../../policies", "--out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.json"))
	if len(files) == 0 || strings.Count(stdout, ".json") != len(files) {
		t.Fatalf("wrote %v, printed:\n%s", files, stdout)
	}
	if _, err := os.Stat(filepath.Join(out, "ingress-latency-aimd.json")); err != nil {
		t.Fatal(err)
	}
	stdout, err = runCLI(t, "dashboards", "--policies", filepath.Join(t.TempDir(), "missing"), "--out", out)
	if err == nil || !strings.Contains(stdout, "missing") {
		t.Fatalf("a missing directory: %v\n%s", err, stdout)
	}
}

// The demo serves the admin listener while it runs and prints its URL.
func TestDemoServesTheLivePageWhileItRuns(t *testing.T) {
	t.Parallel()
	plan := defaultDemoPlan()
	plan.Warm, plan.Overload = time.Second, time.Second
	plan.Admin = "127.0.0.1:0"
	out := &syncBuffer{}
	type result struct {
		runs []demoRun
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runs, err := runDemo(t.Context(), out, plan)
		done <- result{runs, err}
	}()
	url := regexp.MustCompile(`live dashboard: (http://127\.0\.0\.1:\d+/) `)
	deadline := time.Now().Add(30 * time.Second)
	var m []string
	for m == nil {
		if m = url.FindStringSubmatch(out.String()); m == nil {
			if time.Now().After(deadline) {
				t.Fatalf("the demo never printed its URL:\n%s", out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	resp, err := http.Get(m[1] + "api/signals")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %sapi/signals while the demo runs: %d", m[1], resp.StatusCode)
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("demo: %v\n%s", res.err, out.String())
	}
	// How much goodput a 1 s overload leaves depends on the machine; that
	// both runs were offered load and the report compares them does not.
	if len(res.runs) != 2 || res.runs[0].Name != "unprotected" || res.runs[1].Name != "spillway" || res.runs[0].Offered == 0 || res.runs[1].Offered == 0 {
		t.Fatalf("runs %+v, want an unprotected and a spillway run, both offered load\n%s", res.runs, out.String())
	}
	report := out.String()
	for _, want := range []string{
		`\nresults over the 1s overload phase`,
		`\n +unprotected +\d+ +\d+ +\d+ +\d+ +\d+% +` + demoP99 + `\n`,
		`\n *spillway +\d+ +\d+ +\d+ +\d+ +\d+% +` + demoP99 + `\n`,
		`\n` + regexp.QuoteMeta(compareGoodput(res.runs[0], res.runs[1], plan.SLO)) + `\n$`,
	} {
		if !regexp.MustCompile(want).MatchString(report) {
			t.Fatalf("the report does not match %s:\n%s", want, report)
		}
	}
}

// demoP99 matches a p99 cell of the demo table: a duration to the
// millisecond, or — where no request completed.
const demoP99 = `(\d+(\.\d+)?m?s|—)`

// Where no request completed, the table shows — instead of 0s, which would
// read as perfect latency, and says why below; otherwise it says nothing.
func TestDemoTableShowsADashWhereNoRequestCompleted(t *testing.T) {
	var out bytes.Buffer
	printDemoTable(&out, []demoRun{
		{Name: "unprotected", Offered: 960, Completed: 0},
		{Name: "spillway", Offered: 960, Admitted: 300, Reject: 660, Goodput: 290, P99: 180400 * time.Microsecond, Completed: 6000},
	}, 320)
	for _, want := range []string{
		`\n +unprotected +960 +0 +0 +0 +0% +—\n`,
		`\n +spillway +960 +300 +660 +290 +91% +180ms\n`,
		`\np99 —: no request completed .*collapsed\n$`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Fatalf("the table does not match %s:\n%s", want, out.String())
		}
	}
	out.Reset()
	printDemoTable(&out, []demoRun{{Name: "spillway", Offered: 960, P99: time.Second, Completed: 1}}, 320)
	if strings.Contains(out.String(), "—") || strings.Count(out.String(), "\n") != 2 {
		t.Fatalf("a table where every run completed requests needs no note:\n%s", out.String())
	}
}

// The demo's last line compares the runs even when the unprotected one had
// no goodput at all.
func TestCompareGoodput(t *testing.T) {
	slo := 250 * time.Millisecond
	unprotected := demoRun{Name: "unprotected", Goodput: 40}
	protected := demoRun{Name: "latency-aimd", Goodput: 98}
	if got, want := compareGoodput(unprotected, protected, slo), "latency-aimd goodput is 2.5× the unprotected goodput"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	unprotected.Goodput = 0
	if got, want := compareGoodput(unprotected, protected, slo), "latency-aimd goodput is 98 req/s; the unprotected run had none within the 250ms SLO"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// adminCall sends one request to the admin server at url and returns the
// status, the body and the response headers. host, when not "", replaces
// the Host header; header is added as given.
func adminCall(t *testing.T, url, method, path, host, body string, header map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// What a web page can make a browser send to the admin API on loopback is
// refused, and changes nothing; the same request from a loopback client
// (curl, the live page itself) is served.
func TestAdminRefusesBrowserRequestsFromOtherSites(t *testing.T) {
	eng := startDemoEngine(t)
	srv := httptest.NewServer(adminServer(eng, nil, adminAccess{AllowHosts: []string{"Spillway.Internal"}}).Handler)
	defer srv.Close()
	const post, path, enable = "POST", "/policies/demo/config", `{"dry_run": true}`
	jsonBody := map[string]string{"Content-Type": "application/json"}
	with := func(k, v string) map[string]string {
		return map[string]string{"Content-Type": "application/json", k: v}
	}
	tests := []struct {
		name, method, host, body string
		header                   map[string]string
		wantCode                 int
		wantError                string
	}{
		{name: "a cross-origin text/plain form post", method: post, body: enable,
			header:   map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"},
			wantCode: 403, wantError: "cross-origin"},
		{name: "a cross-site fetch with JSON", method: post, body: enable, header: with("Sec-Fetch-Site", "cross-site"), wantCode: 403, wantError: "Sec-Fetch-Site"},
		{name: "a same-site fetch from another port", method: post, body: enable, header: with("Sec-Fetch-Site", "same-site"), wantCode: 403, wantError: "Sec-Fetch-Site"},
		{name: "a cross-origin DELETE", method: "DELETE", header: map[string]string{"Origin": "http://evil.example"}, wantCode: 403, wantError: "cross-origin"},
		{name: "a text/plain body without Origin", method: post, body: enable, header: map[string]string{"Content-Type": "text/plain"}, wantCode: 415, wantError: "application/json"},
		{name: "a body without Content-Type", method: post, body: enable, wantCode: 415, wantError: "application/json"},
		{name: "a rebound name as Host", method: "GET", host: "evil.example", wantCode: 403, wantError: `Host \"evil.example\" is not allowed`},
		{name: "a rebound name as Host with a port", method: post, host: "evil.example:9464", body: enable, header: jsonBody, wantCode: 403, wantError: "--admin-allow-host"},
		{name: "a name that only contains localhost", method: "GET", host: "attacker.localhost.example", wantCode: 403, wantError: "not allowed"},
		{name: "a key given twice", method: post, body: `{"dry_run": true, "dry_run": false}`, header: jsonBody, wantCode: 400, wantError: `key \"dry_run\" given twice`},
		{name: "a variable given twice", method: post, body: `{"variables": {"SETPOINT": 1, "SETPOINT": 2}}`, header: jsonBody, wantCode: 400, wantError: `given twice in variables`},
		// Served:
		{name: "a GET from another site is served (safe method)", method: "GET", header: map[string]string{"Sec-Fetch-Site": "cross-site"}, wantCode: 200},
		{name: "localhost with a port", method: "GET", host: "localhost:9464", wantCode: 200},
		{name: "[::1] with a port", method: "GET", host: "[::1]:9464", wantCode: 200},
		{name: "an allowed host, case-insensitive", method: "GET", host: "spillway.internal:9464", wantCode: 200},
		{name: "a same-origin page posting JSON", method: post, body: `{"variables": {}}`, header: with("Origin", srv.URL), wantCode: 200},
		{name: "JSON with a charset", method: post, body: `{}`, header: map[string]string{"Content-Type": "application/json; charset=utf-8", "Sec-Fetch-Site": "same-origin"}, wantCode: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := "/status"
			if tt.method != "GET" {
				target = path
			}
			code, body, _ := adminCall(t, srv.URL, tt.method, target, tt.host, tt.body, tt.header)
			if code != tt.wantCode || !strings.Contains(body, tt.wantError) {
				t.Fatalf("%d %s; want %d containing %q", code, body, tt.wantCode, tt.wantError)
			}
			if code >= 400 {
				var answer map[string]string
				if err := json.Unmarshal([]byte(body), &answer); err != nil || answer["error"] == "" {
					t.Fatalf("%d with body %q, want {\"error\": \"<reason>\"}", code, body)
				}
			}
			if eng.Status().Policies[0].DryRun {
				t.Fatal("dry_run was turned on")
			}
		})
	}
}

// A body over engine.MaxDynamicConfigSize is 413, after reading little more
// than the cap of a 100 MB body.
func TestAdminRefusesAHugeBodyWith413(t *testing.T) {
	eng := startDemoEngine(t)
	h := adminServer(eng, nil, adminAccess{}).Handler
	body := &countingReader{r: io.MultiReader(strings.NewReader(`{"dry_run": true}`), io.LimitReader(spaces{}, 100<<20))}
	req := httptest.NewRequest("POST", "/policies/demo/config", body)
	req.Host = "127.0.0.1:9464"
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "larger than") {
		t.Fatalf("%d %s; want 413", rec.Code, rec.Body)
	}
	if body.n > 2*engine.MaxDynamicConfigSize {
		t.Fatalf("read %d bytes of the body, want about %d", body.n, engine.MaxDynamicConfigSize)
	}
	if eng.Status().Policies[0].DryRun {
		t.Fatal("dry_run was turned on")
	}
}

// spaces is an endless reader of spaces.
type spaces struct{}

func (spaces) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// With a token, every endpoint requires it, whatever the Host.
func TestAdminWithATokenRequiresItEverywhere(t *testing.T) {
	eng := startDemoEngine(t)
	srv := httptest.NewServer(adminServer(eng, nil, adminAccess{Token: "s3cret"}).Handler)
	defer srv.Close()
	for _, path := range []string{"/", "/api/signals", "/status", "/policies/demo/config", "/nope"} {
		for _, auth := range []string{"", "Bearer wrong", "Basic s3cret"} {
			code, body, header := adminCall(t, srv.URL, "GET", path, "", "", map[string]string{"Authorization": auth})
			if code != 401 || header.Get("WWW-Authenticate") != "Bearer" || !strings.Contains(body, "bearer token") {
				t.Errorf("GET %s with %q: %d %q %s; want 401 with WWW-Authenticate: Bearer", path, auth, code, header.Get("WWW-Authenticate"), body)
			}
		}
	}
	bearer := map[string]string{"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
	if code, body, _ := adminCall(t, srv.URL, "GET", "/status", "spillway.example.com", "", bearer); code != 200 {
		t.Fatalf("GET /status with the token and any Host: %d %s", code, body)
	}
	if code, body, _ := adminCall(t, srv.URL, "POST", "/policies/demo/config", "", `{"dry_run": true}`, map[string]string{"Content-Type": "application/json"}); code != 401 || eng.Status().Policies[0].DryRun {
		t.Fatalf("POST without the token: %d %s; want 401 and no change", code, body)
	}
	if code, body, _ := adminCall(t, srv.URL, "POST", "/policies/demo/config", "", `{"dry_run": true}`, bearer); code != 200 || !eng.Status().Policies[0].DryRun {
		t.Fatalf("POST with the token: %d %s; want 200 and dry_run on", code, body)
	}
}

// spillway run refuses, before it starts anything, to serve the admin API
// beyond loopback without a token, or with an empty token file.
func TestRunRefusesAnAdminBeyondLoopbackWithoutAToken(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args      []string
		wantError string
	}{
		{[]string{"--admin", "0.0.0.0:0"}, "refusing to listen on 0.0.0.0:0 without a token"},
		{[]string{"--admin", ":0"}, "--admin-token-file"},
		{[]string{"--admin", "[::]:0"}, "--admin-token-file"},
		{[]string{"--admin", "0.0.0.0:0", "--admin-token-file", empty}, "is empty"},
		{[]string{"--admin", "127.0.0.1:0", "--admin-token-file", filepath.Join(t.TempDir(), "missing")}, "no such file"},
	} {
		// Were it to start, the run would end with the context, without an error.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"run", "--policies", "../../policies", "--agent-addr", ""}, tt.args...))
		err := root.ExecuteContext(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tt.wantError) {
			t.Errorf("run %v: %v\n%s; want an error containing %q", tt.args, err, out.String(), tt.wantError)
		}
	}
}
