package flowcontrol_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spillway-dev/spillway/flowcontrol"
)

// FuzzJSONTwin sends arbitrary bodies to both endpoints: every answer is a
// decision or a 4xx/503 with a reason, never a 500 or a panic.
func FuzzJSONTwin(f *testing.F) {
	for _, seed := range []string{
		`{"control_point": "svc", "api": "GET /a"}`,
		`{"control_point": "svc", "api": "GET /b", "labels": {"k": "v"}}`,
		`{"flow_id": "1", "outcome": "OUTCOME_OK"}`,
		`{"flow_id": "18446744073709551615", "outcome": 2}`,
		`{"control_point": "", "labels": {"": ""}}`,
		`{"controlPoint": "svc"}`,
		`[]`, `null`, `{"flow_id": -1}`, "\xff",
	} {
		f.Add("/v1/check", seed)
		f.Add("/v1/done", seed)
	}
	eng := newEngine(f)
	h := newServer(f, eng, flowcontrol.Options{MaxOpenFlows: 64}).Handler()
	f.Fuzz(func(t *testing.T, path, body string) {
		if path != "/v1/check" && path != "/v1/done" {
			path = "/v1/check"
		}
		r := httptest.NewRequest("POST", path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable:
		default:
			t.Fatalf("POST %s %q: %d %s", path, body, w.Code, w.Body)
		}
		if w.Code != http.StatusOK && !strings.Contains(w.Body.String(), `"error"`) {
			t.Fatalf("POST %s %q: %d without a reason: %s", path, body, w.Code, w.Body)
		}
	})
}
