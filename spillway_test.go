package spillway_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway"
	"github.com/spillway-dev/spillway/engine"
)

// limitPolicy lets one GET /checkout request in per second at "ingress"
// (burst 1) and meters it.
const limitPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: shop: bp.#Policy & {
	policy_name: "shop"
	evaluation_interval: "1s"
	components: [
		{FluxMeter: {selector: {control_point: "ingress", api: "GET /checkout"}, out_ports: incoming_rps: "INCOMING"}},
		{RateLimiter: {selector: {control_point: "ingress", api: "GET /checkout"}, in_ports: {rate_limit: 1, burst: 1}}},
	]
}
`

// start runs limitPolicy, ticked by hand on clock.
func start(t *testing.T, clock *atomic.Int64) *spillway.Engine {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "shop.cue"), []byte(limitPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := spillway.Start(t.Context(), spillway.Options{Policies: dir,
		Engine: engine.Options{ManualTicks: true, Clock: clock.Load, Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

// get serves one GET of path through h and returns the status and body.
func get(h http.Handler, path string) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestMiddlewareShedsWhatThePolicyRejects(t *testing.T) {
	var clock atomic.Int64
	eng := start(t, &clock)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /checkout", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ordered") })
	protected := eng.Middleware("ingress")(mux)
	clock.Add(int64(time.Second))
	eng.Tick()
	if code, body := get(protected, "/checkout"); code != http.StatusOK || body != "ordered" {
		t.Fatalf("first request: %d %q, want 200 \"ordered\"", code, body)
	}
	if code, _ := get(protected, "/checkout"); code != http.StatusTooManyRequests {
		t.Fatalf("second request in the same second: %d, want 429", code)
	}
	if code, _ := get(eng.HTTP("ingress", mux), "/checkout"); code != http.StatusTooManyRequests {
		t.Fatalf("the same control point through HTTP: %d, want 429", code)
	}
}

func TestHandlerServesTheAdminEndpoints(t *testing.T) {
	var clock atomic.Int64
	eng := start(t, &clock)
	tk, _ := eng.ControlPoints().Get("ingress").Admit("GET /checkout")
	tk.Done(true)
	clock.Add(int64(time.Second))
	eng.Tick()
	admin := eng.Handler()

	code, body := get(admin, "/status")
	var status engine.Status
	if err := json.Unmarshal([]byte(body), &status); code != http.StatusOK || err != nil {
		t.Fatalf("GET /status: %d, %v: %s", code, err, body)
	}
	if len(status.Policies) != 1 || status.Policies[0].Name != "shop" {
		t.Fatalf("GET /status shows %+v, want the policy shop", status.Policies)
	}
	code, body = get(admin, "/metrics")
	if code != http.StatusOK || !strings.Contains(body, `spillway_requests_total{api="GET /checkout",control_point="ingress",decision="accepted"`) {
		t.Fatalf("GET /metrics: %d, without the accepted checkout:\n%s", code, body)
	}
	if code, body = get(admin, "/"); code != http.StatusOK || !strings.Contains(body, "<html") {
		t.Fatalf("GET /: %d, not the live page", code)
	}
	if code, body = get(admin, "/api/signals"); code != http.StatusOK || !strings.Contains(body, `"INCOMING"`) {
		t.Fatalf("GET /api/signals: %d, without the signal INCOMING: %s", code, body)
	}
	if code, _ = get(admin, "/nothing"); code != http.StatusNotFound {
		t.Fatalf("GET /nothing: %d, want 404", code)
	}
}

func TestStartReportsPolicyErrorsWithTheirPosition(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.cue"), []byte("package t\npolicies: x: {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := spillway.Start(t.Context(), spillway.Options{Policies: dir,
		Engine: engine.Options{Logger: slog.New(slog.DiscardHandler)}})
	if err == nil || !strings.Contains(err.Error(), "bad.cue:") {
		t.Fatalf("err = %v, want one naming bad.cue:line:col", err)
	}
}
