package rlbridge

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// serviceBackend is fakeBackend with per-service overload.
type serviceBackend struct {
	*fakeBackend
	services []ServiceInfo
}

func (b serviceBackend) Services() ([]ServiceInfo, bool) { return b.services, b.services != nil }

func ptr(v float64) *float64 { return &v }

func TestServicesReportsEachServiceOverload(t *testing.T) {
	b := serviceBackend{newFakeBackend(), []ServiceInfo{
		{Name: "db", Utilisation: ptr(0.97), QueueingMs: ptr(31.5), Overloaded: true},
		{Name: "index", Utilisation: ptr(0.4), QueueingMs: ptr(0), Overloaded: false},
		{Name: "cache"}, // a signal that is not valid yet
	}}
	rec := do(Handler(b, nil, Options{}), "GET", "/services", "", "")
	want := `{"services":[` +
		`{"name":"db","utilisation":0.97,"queueing_ms":31.5,"overloaded":true},` +
		`{"name":"index","utilisation":0.4,"queueing_ms":0,"overloaded":false},` +
		`{"name":"cache","utilisation":null,"queueing_ms":null,"overloaded":false}]}`
	if rec.Code != 200 || rec.Body.String() != want {
		t.Errorf("GET /services: %d %s\nwant 200 %s", rec.Code, rec.Body, want)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestServicesOfABackendWithoutSignals(t *testing.T) {
	// A backend without per-service signals says so: the agent's dynamic
	// clusters cannot run on it, and it must know why.
	rec := do(Handler(newFakeBackend(), nil, Options{}), "GET", "/services", "", "")
	if rec.Code != 404 || !strings.Contains(errorReason(t, rec), "no per-service overload") {
		t.Errorf("GET /services: %d %s, want 404 naming the missing signals", rec.Code, rec.Body)
	}
	// Nor does one that has none (ok false): the engine without a
	// ServiceOverload component.
	rec = do(Handler(serviceBackend{newFakeBackend(), nil}, nil, Options{}), "GET", "/services", "", "")
	if rec.Code != 404 || !strings.Contains(errorReason(t, rec), "ServiceOverload") {
		t.Errorf("GET /services: %d %s, want 404 naming ServiceOverload", rec.Code, rec.Body)
	}
	// No service known yet is an empty list, not null.
	rec = do(Handler(serviceBackend{newFakeBackend(), []ServiceInfo{}}, nil, Options{}), "GET", "/services", "", "")
	if rec.Code != 200 || rec.Body.String() != `{"services":[]}` {
		t.Errorf("GET /services: %d %s, want 200 {\"services\":[]}", rec.Code, rec.Body)
	}
}

func TestServicesRefusesOtherVerbsAndAuthenticates(t *testing.T) {
	b := serviceBackend{newFakeBackend(), []ServiceInfo{}}
	if rec := do(Handler(b, nil, Options{}), "POST", "/services", "{}", ""); rec.Code != 405 || rec.Header().Get("Allow") != "GET" {
		t.Errorf("POST /services: %d (Allow %q), want 405 with Allow GET", rec.Code, rec.Header().Get("Allow"))
	}
	h := Handler(b, nil, Options{Token: "s3cret"})
	if rec := do(h, "GET", "/services", "", ""); rec.Code != 401 {
		t.Errorf("GET /services without the token: %d, want 401", rec.Code)
	}
	if rec := do(h, "GET", "/services", "", "Bearer s3cret"); rec.Code != 200 {
		t.Errorf("GET /services with the token: %d, want 200", rec.Code)
	}
}

func TestServicesWithAnInvalidNumberIsA500NotAPanic(t *testing.T) {
	b := serviceBackend{newFakeBackend(), []ServiceInfo{{Name: "db", Utilisation: ptr(math.NaN())}}}
	rec := do(Handler(b, nil, Options{}), "GET", "/services", "", "")
	if rec.Code != 500 || !strings.Contains(errorReason(t, rec), "encoding") {
		t.Errorf("GET /services with NaN: %d %s, want 500", rec.Code, rec.Body)
	}
}

func TestAPIsCarryTheirServicesOnlyWhenDeclared(t *testing.T) {
	// The seed agent reads /apis loosely; a new field must not change the
	// answer of an API that declares no services.
	b := newFakeBackend()
	b.apis["checkout"].info.Services = []string{"frontend", "cart"}
	rec := do(Handler(b, nil, Options{}), "GET", "/apis", "", "")
	var body struct {
		APIs []map[string]any `json:"apis"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if got := body.APIs[0]["services"]; len(got.([]any)) != 2 || got.([]any)[1] != "cart" {
		t.Errorf("checkout services = %v, want [frontend cart]", got)
	}
	if _, has := body.APIs[1]["services"]; has {
		t.Errorf("search, with no services declared, has a services field: %v", body.APIs[1])
	}
}
