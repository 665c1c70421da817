package rlbridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spillway-dev/spillway/engine"
)

// fakeBackend is a Backend over a mutex-guarded map. It stores rates as
// given, without clamping, so tests see exactly what the bridge passed.
type fakeBackend struct {
	mu    sync.Mutex
	apis  map[string]*fakeAPI
	sets  int // successful SetRate calls
	reads int // Metrics calls
}

type fakeAPI struct {
	info    APIInfo
	metrics Metrics
	panics  bool // Metrics and SetRate panic
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{apis: map[string]*fakeAPI{
		"checkout": {
			info:    APIInfo{Name: "checkout", Policy: "shop", Cluster: "front", Priority: 1, SLOMs: 200, SustainableRPS: 900, LowerBound: 10, UpperBound: 5000, RateLimit: 1000, OfferedRPS: 850.5, Mode: "agent"},
			metrics: Metrics{Goodput: 12.345, Latency: 0.5},
		},
		"search": {
			info:    APIInfo{Name: "search", Policy: "shop", Cluster: "back", Priority: 2, SLOMs: 500, SustainableRPS: 300, LowerBound: 1, UpperBound: 3000, RateLimit: 1000, OfferedRPS: 0, Mode: "fallback"},
			metrics: Metrics{Goodput: 0, Latency: 0},
		},
		"boom": {info: APIInfo{Name: "boom"}, panics: true},
		"nan":  {info: APIInfo{Name: "nan"}, metrics: Metrics{Goodput: math.NaN()}},
	}}
}

func (b *fakeBackend) APIs() []APIInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	var infos []APIInfo
	for _, name := range []string{"checkout", "search"} {
		infos = append(infos, b.apis[name].info)
	}
	return infos
}

func (b *fakeBackend) Metrics(api string) (Metrics, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reads++
	a, ok := b.apis[api]
	if !ok {
		return Metrics{}, false
	}
	if a.panics {
		panic("fake backend: " + api)
	}
	return a.metrics, true
}

func (b *fakeBackend) SetRate(api string, ratePerSec float64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.apis[api]
	if !ok {
		return false
	}
	if a.panics {
		panic("fake backend: " + api)
	}
	a.info.RateLimit = ratePerSec
	b.sets++
	return true
}

func (b *fakeBackend) rate(api string) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.apis[api].info.RateLimit
}

func (b *fakeBackend) counts() (sets, reads int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sets, b.reads
}

// fakeStepper is a Stepper that ends after doneAfter ticks.
type fakeStepper struct {
	mu        sync.Mutex
	tick      int
	doneAfter int
	err       error // returned by Step and Reset when set
	resets    int
	seed      *uint64 // the last Reset's seed
}

func (s *fakeStepper) Step(ctx context.Context) (StepResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return StepResult{}, s.err
	}
	if s.tick >= s.doneAfter {
		return StepResult{}, ErrDone
	}
	s.tick++
	return StepResult{
		Tick:  s.tick,
		TimeS: float64(s.tick),
		Done:  s.tick == s.doneAfter,
		APIs:  map[string]StepAPI{"checkout": {Goodput: 10.5, Latency: 12.25, OfferedRPS: 20, RateLimit: 1000, Mode: "agent"}},
	}, nil
}

func (s *fakeStepper) Reset(ctx context.Context, seed *uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.tick = 0
	s.resets++
	s.seed = seed
	return nil
}

// do sends one request straight to h.
func do(h http.Handler, method, target, body, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// errorReason checks that rec carries a JSON error body of exactly one
// non-empty "error" field, and returns it.
func errorReason(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Error string `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error == "" {
		t.Fatalf("error body %q: want {\"error\": \"<reason>\"} (decode error %v)", rec.Body.String(), err)
	}
	return body.Error
}

func apisBody(t *testing.T) string {
	t.Helper()
	body, err := json.Marshal(map[string][]APIInfo{"apis": newFakeBackend().APIs()})
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func TestHandler(t *testing.T) {
	const token = "s3cret-token"
	seven := uint64(7)
	maxSeed := uint64(math.MaxUint64)
	exactly4KiB := `{"rate_limit": 42}` + strings.Repeat(" ", MaxBodyBytes-len(`{"rate_limit": 42}`))
	over4KiB := exactly4KiB + " "
	bigSeedBody := `{"seed": 1}` + strings.Repeat(" ", MaxBodyBytes)

	type env struct {
		backend *fakeBackend
		stepper *fakeStepper
	}
	tests := []struct {
		name      string
		token     string // the handler's token
		noStepper bool   // serve the real engine: no Stepper
		doneAfter int    // ticks before ErrDone; 0 means 10
		stepErr   error
		method    string
		target    string
		body      string
		auth      string // Authorization header
		wantCode  int
		wantBody  string // exact body, when set
		wantError string // substring of the error reason, for errors
		wantAllow string
		check     func(t *testing.T, e env)
	}{
		// GET /metrics
		{name: "metrics answers exactly goodput and latency, floats kept", method: "GET", target: "/metrics?method=checkout",
			wantCode: 200, wantBody: `{"goodput":12.345,"latency":0.5}`},
		{name: "metrics of an idle API reports latency 0", method: "GET", target: "/metrics?method=search",
			wantCode: 200, wantBody: `{"goodput":0,"latency":0}`},
		{name: "metrics read changes no rate", method: "GET", target: "/metrics?method=checkout", wantCode: 200,
			check: func(t *testing.T, e env) {
				if sets, _ := e.backend.counts(); sets != 0 || e.backend.rate("checkout") != 1000 {
					t.Errorf("after a read: %d sets, rate %v; want 0 sets, rate 1000", sets, e.backend.rate("checkout"))
				}
			}},
		{name: "metrics without method is 400", method: "GET", target: "/metrics", wantCode: 400, wantError: "method"},
		{name: "metrics with an empty method is 400", method: "GET", target: "/metrics?method=", wantCode: 400, wantError: "method"},
		{name: "metrics with method given twice is 400", method: "GET", target: "/metrics?method=checkout&method=search", wantCode: 400, wantError: "2 times"},
		{name: "metrics with a malformed query is 400", method: "GET", target: "/metrics?method=%zz", wantCode: 400, wantError: "malformed query"},
		{name: "metrics of an unknown API is 404", method: "GET", target: "/metrics?method=nope", wantCode: 404, wantError: `unknown API "nope"`},
		{name: "POST /metrics is 405 allowing GET", method: "POST", target: "/metrics?method=checkout", wantCode: 405, wantAllow: "GET"},
		{name: "a panicking backend is 500, not a crash", method: "GET", target: "/metrics?method=boom", wantCode: 500, wantError: "panic"},
		{name: "a NaN from the backend is 500, not invalid JSON", method: "GET", target: "/metrics?method=nan", wantCode: 500, wantError: "NaN"},

		// POST /set_rate: success
		{name: "set_rate stores 123.456 exactly and answers an empty body", method: "POST", target: "/set_rate?method=checkout",
			body: `{"rate_limit": 123.456}`, wantCode: 200, wantBody: "",
			check: func(t *testing.T, e env) {
				if got := e.backend.rate("checkout"); got != 123.456 {
					t.Errorf("rate = %v, want 123.456", got)
				}
			}},
		{name: "set_rate accepts 0", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":0}`, wantCode: 200,
			check: func(t *testing.T, e env) {
				if got := e.backend.rate("checkout"); got != 0 {
					t.Errorf("rate = %v, want 0", got)
				}
			}},
		{name: "set_rate passes -0 as +0", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":-0.0}`, wantCode: 200,
			check: func(t *testing.T, e env) {
				if got := e.backend.rate("checkout"); got != 0 || math.Signbit(got) {
					t.Errorf("rate = %v (signbit %v), want +0", got, math.Signbit(got))
				}
			}},
		{name: "set_rate accepts a large finite rate", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":1e300}`, wantCode: 200},
		{name: "set_rate accepts an exponent and whitespace", method: "POST", target: "/set_rate?method=checkout", body: "\n{ \"rate_limit\" :\t2.5E2 }\n", wantCode: 200,
			check: func(t *testing.T, e env) {
				if got := e.backend.rate("checkout"); got != 250 {
					t.Errorf("rate = %v, want 250", got)
				}
			}},
		{name: "set_rate accepts a body of exactly 4096 bytes", method: "POST", target: "/set_rate?method=checkout", body: exactly4KiB, wantCode: 200},

		// POST /set_rate: errors
		{name: "set_rate without method is 400", method: "POST", target: "/set_rate", body: `{"rate_limit":1}`, wantCode: 400, wantError: "method"},
		{name: "set_rate with an empty method is 400", method: "POST", target: "/set_rate?method=", body: `{"rate_limit":1}`, wantCode: 400, wantError: "method"},
		{name: "set_rate of an unknown API is 404", method: "POST", target: "/set_rate?method=nope", body: `{"rate_limit":1}`, wantCode: 404, wantError: `unknown API "nope"`},
		{name: "GET /set_rate is 405 allowing POST", method: "GET", target: "/set_rate?method=checkout", wantCode: 405, wantAllow: "POST"},
		{name: "set_rate with a body over 4 KiB is 413", method: "POST", target: "/set_rate?method=checkout", body: over4KiB, wantCode: 413, wantError: "4096"},
		{name: "set_rate with an empty body is 400", method: "POST", target: "/set_rate?method=checkout", body: "", wantCode: 400, wantError: "empty body"},
		{name: "set_rate with a blank body is 400", method: "POST", target: "/set_rate?method=checkout", body: " \n", wantCode: 400, wantError: "empty body"},
		{name: "set_rate with a form body is 400", method: "POST", target: "/set_rate?method=checkout", body: "rate_limit=5", wantCode: 400, wantError: "malformed JSON"},
		{name: "set_rate with truncated JSON is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit": 5`, wantCode: 400, wantError: "end of JSON input"},
		{name: "set_rate without rate_limit is 400", method: "POST", target: "/set_rate?method=checkout", body: `{}`, wantCode: 400, wantError: `missing field "rate_limit"`},
		{name: "set_rate with rate_limit null is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":null}`, wantCode: 400, wantError: "rate_limit is null"},
		{name: "set_rate with a bare NaN is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":NaN}`, wantCode: 400, wantError: "malformed JSON"},
		{name: "set_rate with the string NaN is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":"NaN"}`, wantCode: 400, wantError: "rate_limit is a string"},
		{name: "set_rate with Infinity is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":Infinity}`, wantCode: 400, wantError: "malformed JSON"},
		{name: "set_rate with -Infinity is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":-Infinity}`, wantCode: 400, wantError: "malformed JSON"},
		{name: "set_rate with 1e400, which overflows float64, is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":1e400}`, wantCode: 400, wantError: "out of the float64 range"},
		{name: "set_rate with -1e400 is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":-1e400}`, wantCode: 400, wantError: "out of the float64 range"},
		{name: "set_rate with a negative rate is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":-1}`, wantCode: 400, wantError: "want >= 0"},
		{name: "set_rate with a tiny negative rate is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":-1e-300}`, wantCode: 400, wantError: "want >= 0"},
		{name: "set_rate with a numeric string is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":"5"}`, wantCode: 400, wantError: "want a number"},
		{name: "set_rate with a boolean is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":true}`, wantCode: 400, wantError: "rate_limit is a boolean"},
		{name: "set_rate with an array is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":[5]}`, wantCode: 400, wantError: "rate_limit is an array"},
		{name: "set_rate with an object is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":{"value":5}}`, wantCode: 400, wantError: "rate_limit is an object"},
		{name: "set_rate with an unknown field is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":5,"burst":1}`, wantCode: 400, wantError: `unknown field "burst"`},
		{name: "set_rate field names match exactly, not case-insensitively", method: "POST", target: "/set_rate?method=checkout", body: `{"Rate_Limit":5}`, wantCode: 400, wantError: `unknown field "Rate_Limit"`},
		{name: "set_rate with rate_limit twice is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":5,"rate_limit":-1}`, wantCode: 400, wantError: "twice"},
		{name: "set_rate with a second object after the first is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":5}{"rate_limit":6}`, wantCode: 400, wantError: "trailing data"},
		{name: "set_rate with garbage after the object is 400", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":5} x`, wantCode: 400, wantError: "trailing data"},
		{name: "set_rate with a bare number is 400", method: "POST", target: "/set_rate?method=checkout", body: `5`, wantCode: 400, wantError: "want a JSON object"},
		{name: "set_rate with an array body is 400", method: "POST", target: "/set_rate?method=checkout", body: `[{"rate_limit":5}]`, wantCode: 400, wantError: "want a JSON object"},
		{name: "set_rate with a null body is 400", method: "POST", target: "/set_rate?method=checkout", body: `null`, wantCode: 400, wantError: "want a JSON object"},
		{name: "set_rate on a panicking backend is 500", method: "POST", target: "/set_rate?method=boom", body: `{"rate_limit":1}`, wantCode: 500, wantError: "panic"},

		// GET /apis
		{name: "apis lists every API under agent control", method: "GET", target: "/apis", wantCode: 200, wantBody: "<apis>"},
		{name: "POST /apis is 405 allowing GET", method: "POST", target: "/apis", wantCode: 405, wantAllow: "GET"},

		// POST /step
		{name: "step advances one tick", method: "POST", target: "/step", wantCode: 200,
			wantBody: `{"tick":1,"time_s":1,"done":false,"apis":{"checkout":{"goodput":10.5,"latency":12.25,"offered_rps":20,"rate_limit":1000,"mode":"agent","optimal_rps":0}}}`},
		{name: "step after the scenario has ended is 409", method: "POST", target: "/step", doneAfter: -1, wantCode: 409, wantError: "ended"},
		{name: "step failing is 500", method: "POST", target: "/step", stepErr: errors.New("disk on fire"), wantCode: 500, wantError: "disk on fire"},
		{name: "step without a stepper is 404", method: "POST", target: "/step", noStepper: true, wantCode: 404, wantError: "simulator"},
		{name: "GET /step is 405 allowing POST", method: "GET", target: "/step", wantCode: 405, wantAllow: "POST"},

		// POST /reset
		{name: "reset with a seed passes it and answers as /apis", method: "POST", target: "/reset", body: `{"seed": 7}`, wantCode: 200, wantBody: "<apis>",
			check: func(t *testing.T, e env) {
				if e.stepper.resets != 1 || e.stepper.seed == nil || *e.stepper.seed != seven {
					t.Errorf("resets %d, seed %v; want 1 reset with seed 7", e.stepper.resets, e.stepper.seed)
				}
			}},
		{name: "reset accepts the largest uint64 seed", method: "POST", target: "/reset", body: `{"seed":18446744073709551615}`, wantCode: 200,
			check: func(t *testing.T, e env) {
				if e.stepper.seed == nil || *e.stepper.seed != maxSeed {
					t.Errorf("seed %v, want %d", e.stepper.seed, maxSeed)
				}
			}},
		{name: "reset with an empty body lets the simulator choose the seed", method: "POST", target: "/reset", body: "", wantCode: 200, wantBody: "<apis>",
			check: func(t *testing.T, e env) {
				if e.stepper.resets != 1 || e.stepper.seed != nil {
					t.Errorf("resets %d, seed %v; want 1 reset with no seed", e.stepper.resets, e.stepper.seed)
				}
			}},
		{name: "reset with {} has no seed", method: "POST", target: "/reset", body: `{}`, wantCode: 200,
			check: func(t *testing.T, e env) {
				if e.stepper.seed != nil {
					t.Errorf("seed %v, want none", e.stepper.seed)
				}
			}},
		{name: "reset with a null seed has no seed", method: "POST", target: "/reset", body: `{"seed":null}`, wantCode: 200,
			check: func(t *testing.T, e env) {
				if e.stepper.seed != nil {
					t.Errorf("seed %v, want none", e.stepper.seed)
				}
			}},
		{name: "reset with a negative seed is 400", method: "POST", target: "/reset", body: `{"seed":-1}`, wantCode: 400, wantError: "seed is -1"},
		{name: "reset with a fractional seed is 400", method: "POST", target: "/reset", body: `{"seed":1.5}`, wantCode: 400, wantError: "seed is 1.5"},
		{name: "reset with a seed over 2^64-1 is 400", method: "POST", target: "/reset", body: `{"seed":18446744073709551616}`, wantCode: 400, wantError: "seed"},
		{name: "reset with a string seed is 400", method: "POST", target: "/reset", body: `{"seed":"7"}`, wantCode: 400, wantError: "seed"},
		{name: "reset with an unknown field is 400", method: "POST", target: "/reset", body: `{"seed":7,"episodes":3}`, wantCode: 400, wantError: `unknown field "episodes"`},
		{name: "reset with trailing data is 400", method: "POST", target: "/reset", body: `{"seed":7}]`, wantCode: 400, wantError: "trailing data"},
		{name: "reset with a body over 4 KiB is 413", method: "POST", target: "/reset", body: bigSeedBody, wantCode: 413},
		{name: "reset failing is 500", method: "POST", target: "/reset", stepErr: errors.New("no scenario"), wantCode: 500, wantError: "no scenario"},
		{name: "reset without a stepper is 404", method: "POST", target: "/reset", noStepper: true, wantCode: 404, wantError: "simulator"},
		{name: "GET /reset is 405 allowing POST", method: "GET", target: "/reset", wantCode: 405, wantAllow: "POST"},

		// Unknown paths
		{name: "the root is 404", method: "GET", target: "/", wantCode: 404, wantError: "unknown path"},
		{name: "a trailing slash is 404", method: "GET", target: "/metrics/?method=checkout", wantCode: 404, wantError: "unknown path"},
		{name: "paths are case-sensitive", method: "GET", target: "/METRICS?method=checkout", wantCode: 404, wantError: "unknown path"},
		{name: "an unknown path is 404 whatever the verb", method: "DELETE", target: "/nope", wantCode: 404, wantError: "unknown path"},

		// Bearer token
		{name: "a handler without a token accepts requests without Authorization", method: "GET", target: "/apis", wantCode: 200},
		{name: "a handler without a token ignores an Authorization header", method: "GET", target: "/apis", auth: "Bearer whatever", wantCode: 200},
		{name: "a missing token is 401", token: token, method: "GET", target: "/metrics?method=checkout", wantCode: 401, wantError: "token"},
		{name: "a wrong token is 401", token: token, method: "GET", target: "/metrics?method=checkout", auth: "Bearer s3cret-tokeX", wantCode: 401},
		{name: "a token of the wrong length is 401", token: token, method: "GET", target: "/metrics?method=checkout", auth: "Bearer s3cret", wantCode: 401},
		{name: "an empty bearer token is 401", token: token, method: "GET", target: "/metrics?method=checkout", auth: "Bearer ", wantCode: 401},
		{name: "the right token in another scheme is 401", token: token, method: "GET", target: "/metrics?method=checkout", auth: "Basic " + token, wantCode: 401},
		{name: "the bare token without a scheme is 401", token: token, method: "GET", target: "/metrics?method=checkout", auth: token, wantCode: 401},
		{name: "the right token is accepted", token: token, method: "GET", target: "/metrics?method=checkout", auth: "Bearer " + token, wantCode: 200},
		{name: "the scheme is case-insensitive", token: token, method: "GET", target: "/metrics?method=checkout", auth: "bearer " + token, wantCode: 200},
		{name: "set_rate needs the token too", token: token, method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":5}`, wantCode: 401},
		{name: "an unknown path without the token is 401, hiding which paths exist", token: token, method: "GET", target: "/nope", wantCode: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := env{backend: newFakeBackend(), stepper: &fakeStepper{doneAfter: 10, err: tt.stepErr}}
			switch {
			case tt.doneAfter < 0:
				e.stepper.doneAfter = 0
			case tt.doneAfter > 0:
				e.stepper.doneAfter = tt.doneAfter
			}
			var stepper Stepper = e.stepper
			if tt.noStepper {
				stepper = nil
			}
			h := Handler(e.backend, stepper, Options{Token: tt.token})

			rec := do(h, tt.method, tt.target, tt.body, tt.auth)

			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.wantCode, rec.Body)
			}
			if tt.wantCode >= 400 {
				if reason := errorReason(t, rec); !strings.Contains(reason, tt.wantError) {
					t.Errorf("error %q, want it to mention %q", reason, tt.wantError)
				}
				if sets, _ := e.backend.counts(); sets != 0 {
					t.Errorf("a failed request set %d rates, want none", sets)
				}
			}
			wantBody := tt.wantBody
			if wantBody == "<apis>" {
				wantBody = apisBody(t)
			}
			if wantBody != "" || (tt.wantCode == 200 && strings.HasPrefix(tt.target, "/set_rate")) {
				if got := rec.Body.String(); got != wantBody {
					t.Errorf("body %s, want %s", got, wantBody)
				}
			}
			if tt.wantCode == 200 && wantBody != "" {
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", ct)
				}
			}
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
			wantAuthenticate := ""
			if tt.wantCode == 401 {
				wantAuthenticate = "Bearer"
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != wantAuthenticate {
				t.Errorf("WWW-Authenticate = %q, want %q", got, wantAuthenticate)
			}
			if tt.check != nil {
				tt.check(t, e)
			}
		})
	}
}

func TestStepAnswers409OnceTheScenarioHasEndedUntilReset(t *testing.T) {
	stepper := &fakeStepper{doneAfter: 2}
	h := Handler(newFakeBackend(), stepper, Options{})
	var codes []int
	var done []bool
	for range 3 {
		rec := do(h, "POST", "/step", "", "")
		codes = append(codes, rec.Code)
		var res StepResult
		_ = json.Unmarshal(rec.Body.Bytes(), &res)
		done = append(done, res.Done)
	}
	if want := []int{200, 200, 409}; !slices.Equal(codes, want) {
		t.Fatalf("codes %v, want %v", codes, want)
	}
	if want := []bool{false, true, false}; !slices.Equal(done, want) {
		t.Errorf("done %v, want %v", done, want)
	}
	if rec := do(h, "POST", "/reset", "", ""); rec.Code != 200 {
		t.Fatalf("reset: %d %s", rec.Code, rec.Body)
	}
	if rec := do(h, "POST", "/step", "", ""); rec.Code != 200 {
		t.Errorf("step after reset: %d %s, want 200", rec.Code, rec.Body)
	}
}

// noAPIs is a Backend with nothing under agent control, as the engine is
// when no policy uses the RL actuator.
type noAPIs struct{}

func (noAPIs) APIs() []APIInfo                { return nil }
func (noAPIs) Metrics(string) (Metrics, bool) { return Metrics{}, false }
func (noAPIs) SetRate(string, float64) bool   { return false }

func TestAPIsOfAnEmptyBackendIsAnEmptyList(t *testing.T) {
	rec := do(Handler(noAPIs{}, nil, Options{}), "GET", "/apis", "", "")
	if rec.Code != 200 || rec.Body.String() != `{"apis":[]}` {
		t.Errorf("GET /apis: %d %s, want 200 {\"apis\":[]}", rec.Code, rec.Body)
	}
}

func TestMetricsReadsNeverChangeState(t *testing.T) {
	b := newFakeBackend()
	h := Handler(b, nil, Options{})
	first := do(h, "GET", "/metrics?method=checkout", "", "").Body.String()
	for range 5 {
		if got := do(h, "GET", "/metrics?method=checkout", "", "").Body.String(); got != first {
			t.Fatalf("read %s after %s", got, first)
		}
	}
	if sets, reads := b.counts(); sets != 0 || reads != 6 {
		t.Errorf("%d sets and %d reads, want 0 and 6", sets, reads)
	}
	if got := b.rate("checkout"); got != 1000 {
		t.Errorf("rate %v after reads, want 1000", got)
	}
}

func TestOnRequestIsCalledOncePerRequestToAKnownEndpoint(t *testing.T) {
	type call struct {
		endpoint string
		code     int
	}
	tests := []struct {
		name      string
		token     string
		noStepper bool
		method    string
		target    string
		body      string
		want      []call
	}{
		{name: "metrics 200", method: "GET", target: "/metrics?method=checkout", want: []call{{"metrics", 200}}},
		{name: "metrics 404", method: "GET", target: "/metrics?method=nope", want: []call{{"metrics", 404}}},
		{name: "set_rate 200", method: "POST", target: "/set_rate?method=checkout", body: `{"rate_limit":1}`, want: []call{{"set_rate", 200}}},
		{name: "set_rate 400", method: "POST", target: "/set_rate?method=checkout", body: `{}`, want: []call{{"set_rate", 400}}},
		{name: "set_rate 413", method: "POST", target: "/set_rate?method=checkout", body: strings.Repeat(" ", MaxBodyBytes+1), want: []call{{"set_rate", 413}}},
		{name: "apis 405", method: "POST", target: "/apis", want: []call{{"apis", 405}}},
		{name: "step 200", method: "POST", target: "/step", want: []call{{"step", 200}}},
		{name: "step 404 without a stepper", noStepper: true, method: "POST", target: "/step", want: []call{{"step", 404}}},
		{name: "reset 200", method: "POST", target: "/reset", want: []call{{"reset", 200}}},
		{name: "a panic is counted as 500", method: "GET", target: "/metrics?method=boom", want: []call{{"metrics", 500}}},
		{name: "a 401 is counted", token: "t", method: "GET", target: "/apis", want: []call{{"apis", 401}}},
		{name: "an unknown path is not counted", method: "GET", target: "/nope"},
		{name: "an unknown path without the token is not counted", token: "t", method: "GET", target: "/nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []call
			var stepper Stepper = &fakeStepper{doneAfter: 10}
			if tt.noStepper {
				stepper = nil
			}
			h := Handler(newFakeBackend(), stepper, Options{Token: tt.token, OnRequest: func(endpoint string, code int) {
				calls = append(calls, call{endpoint, code})
			}})
			do(h, tt.method, tt.target, tt.body, "")
			if !reflect.DeepEqual(calls, tt.want) {
				t.Errorf("calls %v, want %v", calls, tt.want)
			}
		})
	}
}

// TestHandlerOverTheWire runs the handler behind a real server, with
// concurrent agents, so that -race sees the handler's shared state.
func TestHandlerOverTheWire(t *testing.T) {
	const token = "wire-token"
	b := newFakeBackend()
	srv := httptest.NewServer(Handler(b, &fakeStepper{doneAfter: 1 << 20}, Options{Token: token, OnRequest: func(string, int) {}}))
	defer srv.Close()

	send := func(method, target, body string) (int, string, error) {
		req, err := http.NewRequest(method, srv.URL+target, strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got), err
	}

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for agent := range 8 {
		wg.Go(func() {
			for i := range 20 {
				rate := fmt.Sprintf(`{"rate_limit": %d.5}`, agent*100+i)
				for _, r := range []struct{ method, target, body string }{
					{"GET", "/metrics?method=checkout", ""},
					{"POST", "/set_rate?method=search", rate},
					{"GET", "/apis", ""},
					{"POST", "/step", ""},
				} {
					code, body, err := send(r.method, r.target, r.body)
					if err != nil || code != 200 {
						errs <- fmt.Errorf("%s %s: %d %s %v", r.method, r.target, code, body, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	code, body, err := send("POST", "/set_rate?method=checkout", `{"rate_limit":1}`+strings.Repeat(" ", 8*MaxBodyBytes))
	if err != nil || code != 413 {
		t.Errorf("oversized body over the wire: %d %s %v, want 413", code, body, err)
	}
}

// FuzzSetRate checks that no body makes set_rate panic or answer anything
// but 200, 400 or 413, and that a 200 hands the backend a finite rate >= 0.
func FuzzSetRate(f *testing.F) {
	for _, body := range []string{
		`{"rate_limit": 123.456}`,
		`{"rate_limit":0}`,
		`{"rate_limit":-0}`,
		`{"rate_limit":NaN}`,
		`{"rate_limit":"NaN"}`,
		`{"rate_limit":Infinity}`,
		`{"rate_limit":1e400}`,
		`{"rate_limit":-1e-400}`,
		`{"rate_limit":-1}`,
		`{"rate_limit":null}`,
		`{"rate_limit":{"rate_limit":{"rate_limit":[[[1]]]}}}`,
		`{"rate_limit":5,"burst":1}`,
		`{"RATE_LIMIT":5}`,
		`{"rate_limit":5}{}`,
		`{"rate_limit":5,"rate_limit":6}`,
		`{"rate_limit":` + strings.Repeat("9", 5000) + `}`,
		strings.Repeat("[", 4096),
		`{}`,
		``,
		`null`,
		"\xff\xfe",
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b := newFakeBackend()
		h := Handler(b, nil, Options{})
		req := httptest.NewRequest("POST", "/set_rate?method=checkout", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		switch rec.Code {
		case 200:
			sets, _ := b.counts()
			rate := b.rate("checkout")
			if sets != 1 || math.IsNaN(rate) || math.IsInf(rate, 0) || rate < 0 || math.Signbit(rate) {
				t.Fatalf("200 for %q, but the backend got %d sets, rate %v", body, sets, rate)
			}
			if rec.Body.Len() != 0 {
				t.Fatalf("200 with body %q, want empty", rec.Body)
			}
			if !json.Valid(body) || len(body) > MaxBodyBytes {
				t.Fatalf("200 for %q, which is not valid JSON within %d bytes", body, MaxBodyBytes)
			}
		case 400, 413:
			if sets, _ := b.counts(); sets != 0 {
				t.Fatalf("%d for %q, but the backend got %d sets", rec.Code, body, sets)
			}
			if (rec.Code == 413) != (len(body) > MaxBodyBytes) {
				t.Fatalf("%d for a %d-byte body; 413 is for bodies over %d bytes", rec.Code, len(body), MaxBodyBytes)
			}
			var answer map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || len(answer) != 1 || answer["error"] == "" {
				t.Fatalf("%d with body %q, want {\"error\": \"<reason>\"}", rec.Code, rec.Body)
			}
		default:
			t.Fatalf("status %d for %q; want 200, 400 or 413", rec.Code, body)
		}
	})
}

// FuzzReset checks that no body makes /reset panic or answer anything but
// 200, 400 or 413; that a 200 resets exactly once with the seed the JSON
// names (none for an empty body, {} or a null seed); and that a refusal
// does not reset.
func FuzzReset(f *testing.F) {
	for _, body := range []string{
		``,
		`   `,
		`{}`,
		`{"seed":7}`,
		`{"seed":null}`,
		`{"seed":0}`,
		`{"seed":18446744073709551615}`,
		`{"seed":18446744073709551616}`,
		`{"seed":-1}`,
		`{"seed":-0}`,
		`{"seed":1.5}`,
		`{"seed":1e3}`,
		`{"seed":"7"}`,
		`{"seed":7,"seed":8}`,
		`{"SEED":7}`,
		`{"se\u0065d":7}`,
		`{"seed":7,"episodes":3}`,
		`{"seed":7}]`,
		`{"seed":7}{}`,
		`[]`,
		`null`,
		`{"seed":` + strings.Repeat("9", 5000) + `}`,
		strings.Repeat("{", 4096),
		"\xff\xfe",
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		stepper := &fakeStepper{doneAfter: 1}
		h := Handler(newFakeBackend(), stepper, Options{})
		req := httptest.NewRequest("POST", "/reset", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		switch rec.Code {
		case 200:
			if stepper.resets != 1 {
				t.Fatalf("200 for %q, but %d resets", body, stepper.resets)
			}
			if len(body) > MaxBodyBytes {
				t.Fatalf("200 for a %d-byte body, over the %d-byte limit", len(body), MaxBodyBytes)
			}
			if len(bytes.TrimSpace(body)) == 0 {
				if stepper.seed != nil {
					t.Fatalf("an empty body gave seed %d, want none", *stepper.seed)
				}
				return
			}
			var want struct {
				Seed *uint64 `json:"seed"`
			}
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatalf("200 for %q, which encoding/json refuses: %v", body, err)
			}
			if (want.Seed == nil) != (stepper.seed == nil) || (want.Seed != nil && *want.Seed != *stepper.seed) {
				t.Fatalf("200 for %q: reset with seed %v, but the body names %v", body, stepper.seed, want.Seed)
			}
		case 400, 413:
			if stepper.resets != 0 {
				t.Fatalf("%d for %q, but %d resets", rec.Code, body, stepper.resets)
			}
			if (rec.Code == 413) != (len(body) > MaxBodyBytes) {
				t.Fatalf("%d for a %d-byte body; 413 is for bodies over %d bytes", rec.Code, len(body), MaxBodyBytes)
			}
			var answer map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || len(answer) != 1 || answer["error"] == "" {
				t.Fatalf("%d with body %q, want {\"error\": \"<reason>\"}", rec.Code, rec.Body)
			}
		default:
			t.Fatalf("status %d for %q; want 200, 400 or 413", rec.Code, body)
		}
	})
}

// TestInfoOfAGlobalRate: an API whose rate is the fleet's carries its key
// and this engine's share in /apis; a local one carries no global part, and
// a share with no limit in force is null.
func TestInfoOfAGlobalRate(t *testing.T) {
	local := Info(engine.AgentAPI{Name: "GET /a", LimitInForce: 100})
	if local.Global != nil {
		t.Errorf("local API: global %+v, want none", local.Global)
	}
	b, _ := json.Marshal(local)
	if strings.Contains(string(b), `"global"`) {
		t.Errorf("local API's JSON %s has a global part", b)
	}
	g := Info(engine.AgentAPI{Name: "GET /a", LimitInForce: 200, Global: &engine.AgentGlobal{Key: "fleet/GET /a", Share: 50}})
	b, _ = json.Marshal(g.Global)
	if string(b) != `{"key":"fleet/GET /a","share":50}` {
		t.Errorf("global API: %s", b)
	}
	none := Info(engine.AgentAPI{Name: "GET /a", LimitInForce: math.NaN(), Global: &engine.AgentGlobal{Key: "k", Share: math.NaN()}})
	b, _ = json.Marshal(none.Global)
	if string(b) != `{"key":"k","share":null}` {
		t.Errorf("global API with no limit in force: %s", b)
	}
}
