// Package rlbridge serves the TopFull agent protocol (DESIGN §5) over HTTP,
// so that a Python PPO agent can read per-API goodput and latency and set
// per-API rate limits on the engine, or step the virtual-time simulator.
//
// The seed protocol is GET /metrics?method=API and POST /set_rate?method=API.
// Spillway adds GET /apis, GET /services (per-service overload, for
// dynamic clusters), and POST /step and POST /reset for the simulator.
// Unlike the seed's Go port, which answers 200 to unknown APIs and sets the
// rate to 0 when the field is missing, every bad request fails loudly with a
// JSON body {"error": "<reason>"}.
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
	"net/url"
	"strconv"
	"strings"

	"github.com/spillway-dev/spillway/internal/access"
)

// MaxBodyBytes is the largest request body the bridge reads, in bytes.
// A larger body is answered with 413.
const MaxBodyBytes = 4096

// Metrics is the seed protocol's answer to GET /metrics.
type Metrics struct {
	Goodput float64 `json:"goodput"` // OK responses within SLO in the last complete tick, per second
	Latency float64 `json:"latency"` // p95 ms of that tick; 0 when idle
}

// APIInfo describes one API under agent control (GET /apis).
type APIInfo struct {
	Name           string  `json:"name"`
	Policy         string  `json:"policy"`
	Cluster        string  `json:"cluster"`
	Priority       int     `json:"priority"`
	SLOMs          float64 `json:"slo_ms"`
	SustainableRPS float64 `json:"sustainable_rps"`
	LowerBound     float64 `json:"lower_bound"` // requests per second
	UpperBound     float64 `json:"upper_bound"` // requests per second
	RateLimit      float64 `json:"rate_limit"`  // the agent's current rate, clamped, per second
	OfferedRPS     float64 `json:"offered_rps"` // arrivals in the last tick, per second
	Mode           string  `json:"mode"`        // "agent" or "fallback": the source of LimitInForce
	// LimitInForce is the rate limit in force, from the agent or the
	// fallback (Mode); null when none is. RateLimit is the agent's rate
	// whatever the mode.
	LimitInForce *float64 `json:"limit_in_force"`
	// Services are the services the API's calls cross, as the policy
	// declares them (none: unknown), for clusters formed from the
	// services overloaded now (GET /services).
	Services []string `json:"services,omitempty"`
	// Tick counts the engine's ticks that measured the API: an agent on
	// the wall clock waits for it to change, then reads and acts at once.
	Tick uint64 `json:"tick"`
	// Global is present when the API's rate is the fleet's (a global
	// RateLimiter): RateLimit and LimitInForce are then the fleet's, and
	// Share this engine's part of LimitInForce, the rate its own
	// measurements (GET /metrics) answer to.
	Global *GlobalInfo `json:"global,omitempty"`
}

// GlobalInfo is the fleet's side of an API whose rate is global.
type GlobalInfo struct {
	Key string `json:"key"`
	// Share is this engine's part of the limit in force, per second; null
	// when no limit is in force.
	Share *float64 `json:"share"`
}

// ServiceInfo is one service's overload signal (GET /services): what
// TopFull forms clusters from. APIs whose calls cross a common overloaded
// service contend, and belong to one cluster.
type ServiceInfo struct {
	Name string `json:"name"`
	// Utilisation is the share of the service's capacity in use over the
	// last tick (busy workers ÷ workers; above 1 when the signal counts
	// queued work too); null when unknown.
	Utilisation *float64 `json:"utilisation"`
	// QueueingMs is the mean time a call waited for the service in the
	// last tick, in milliseconds; null when unknown.
	QueueingMs *float64 `json:"queueing_ms"`
	// Overloaded is the source's verdict: utilisation or queueing at or
	// over its threshold.
	Overloaded bool `json:"overloaded"`
}

// ServiceBackend is a Backend that may also report per-service overload.
// The handler answers GET /services with 404 for a Backend without it.
type ServiceBackend interface {
	Backend
	// Services lists the services with an overload signal, by name; false
	// when the backend has no per-service signal at all (GET /services
	// answers 404), as opposed to none known yet (an empty list).
	Services() ([]ServiceInfo, bool)
}

// Backend is what the bridge serves: the engine, or the simulator's engine.
// The handler calls it from many goroutines at once, so implementations must
// be safe for concurrent use.
type Backend interface {
	// APIs lists the APIs under agent control.
	APIs() []APIInfo
	// Metrics reports the last complete tick of api; false means unknown API.
	// It must not change any state.
	Metrics(api string) (Metrics, bool)
	// SetRate sets the agent's rate for api, in requests per second; false
	// means unknown API. The bridge only passes finite rates >= 0; the
	// backend clamps them to the API's bounds.
	SetRate(api string, ratePerSec float64) bool
}

// StepResult is the answer to POST /step.
type StepResult struct {
	Tick  int                `json:"tick"`
	TimeS float64            `json:"time_s"` // virtual time at the end of the tick, seconds
	Done  bool               `json:"done"`
	APIs  map[string]StepAPI `json:"apis"`
	// Services is GET /services at the new tick, so that an agent in lock
	// step reads the overloaded services in the same answer.
	Services []ServiceInfo `json:"services,omitempty"`
}

// StepAPI is one API's state after a simulator tick.
type StepAPI struct {
	Goodput    float64 `json:"goodput"`     // per second, as in Metrics
	Latency    float64 `json:"latency"`     // p95 ms, as in Metrics
	OfferedRPS float64 `json:"offered_rps"` // arrivals in the tick, per second
	RateLimit  float64 `json:"rate_limit"`  // per second, clamped
	Mode       string  `json:"mode"`        // "agent" or "fallback"
	// OptimalRPS is the simulator's goodput-optimal admission of the API
	// at the tick's offered loads (the LP of the testbed's optimal
	// reference): what a trainer may scale its reward by. A real engine
	// has no such figure.
	OptimalRPS float64 `json:"optimal_rps"`
}

// Stepper is implemented by the virtual-time simulator only. Like Backend,
// it must be safe for concurrent use: the handler does not serialize calls.
type Stepper interface {
	// Step advances virtual time by one tick. It returns ErrDone once the
	// scenario has ended.
	Step(ctx context.Context) (StepResult, error)
	// Reset starts a new episode with a new randomized app; a nil seed
	// lets the simulator choose one.
	Reset(ctx context.Context, seed *uint64) error
}

// ErrDone is returned by Stepper.Step once the scenario has ended; the
// bridge answers 409 until the next reset.
var ErrDone = errors.New("rlbridge: the simulation has ended")

// Options configures Handler.
type Options struct {
	// Token is the bearer token every request must carry in
	// "Authorization: Bearer <token>"; "" means none is required.
	Token string
	// OnRequest, when set, is called once per request to a known endpoint
	// ("metrics", "set_rate", "apis", "services", "step", "reset") with the status
	// answered, after the response has been written. It is called
	// concurrently from the server's goroutines.
	OnRequest func(endpoint string, code int)
}

// Handler serves the protocol on b. stepper may be nil (the real engine):
// then /step and /reset answer 404. The handler is safe for concurrent use
// when b and stepper are; a panic in either is answered with 500.
func Handler(b Backend, stepper Stepper, opts Options) http.Handler {
	return &handler{backend: b, stepper: stepper, bearer: access.NewBearer(opts.Token), onRequest: opts.OnRequest}
}

// handler is the http.Handler returned by Handler. Its fields are set once
// and only read afterwards.
type handler struct {
	backend   Backend
	stepper   Stepper
	bearer    *access.Bearer // nil when no token is required
	onRequest func(endpoint string, code int)
}

// route is one known endpoint.
type route struct {
	endpoint  string // the name passed to Options.OnRequest
	method    string // the only verb accepted
	simulator bool   // served only when a Stepper is present
	serve     func(*handler, http.ResponseWriter, *http.Request)
}

var routes = map[string]route{
	"/metrics":  {endpoint: "metrics", method: http.MethodGet, serve: (*handler).serveMetrics},
	"/set_rate": {endpoint: "set_rate", method: http.MethodPost, serve: (*handler).serveSetRate},
	"/apis":     {endpoint: "apis", method: http.MethodGet, serve: (*handler).serveAPIs},
	"/services": {endpoint: "services", method: http.MethodGet, serve: (*handler).serveServices},
	"/step":     {endpoint: "step", method: http.MethodPost, simulator: true, serve: (*handler).serveStep},
	"/reset":    {endpoint: "reset", method: http.MethodPost, simulator: true, serve: (*handler).serveReset},
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, known := routes[r.URL.Path]
	rec := &statusRecorder{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler { // net/http's way to abort a response; keep it
				panic(p)
			}
			if !rec.wroteHeader {
				writeError(rec, http.StatusInternalServerError, fmt.Sprintf("internal error: panic: %v", p))
			}
		}
		if known && h.onRequest != nil {
			h.onRequest(rt.endpoint, rec.status())
		}
	}()

	// Bound the body here, with the server's own writer, so that net/http
	// also closes the connection after an oversized body.
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)

	// Authenticate before routing, so that an unauthenticated client
	// learns nothing about which paths exist.
	if !h.bearer.Allows(r) {
		rec.Header().Set("WWW-Authenticate", "Bearer")
		writeError(rec, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	switch {
	case !known:
		writeError(rec, http.StatusNotFound, fmt.Sprintf("unknown path %q", r.URL.Path))
	case rt.simulator && h.stepper == nil:
		writeError(rec, http.StatusNotFound, fmt.Sprintf("%s is served only by the virtual-time simulator (spillway sim --serve --virtual)", r.URL.Path))
	case r.Method != rt.method:
		rec.Header().Set("Allow", rt.method)
		writeError(rec, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s is not allowed; use %s", r.Method, r.URL.Path, rt.method))
	default:
		rt.serve(h, rec, r)
	}
}

// serveMetrics answers GET /metrics?method=API with exactly
// {"goodput": f64, "latency": f64}. It never changes state.
func (h *handler) serveMetrics(w http.ResponseWriter, r *http.Request) {
	api, ok := apiParam(w, r)
	if !ok {
		return
	}
	m, found := h.backend.Metrics(api)
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown API %q", api))
		return
	}
	writeJSON(w, m)
}

// serveSetRate answers POST /set_rate?method=API {"rate_limit": f64} with
// 200 and an empty body, as the seed agent expects.
func (h *handler) serveSetRate(w http.ResponseWriter, r *http.Request) {
	api, ok := apiParam(w, r)
	if !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	ratePerSec, err := parseSetRate(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !h.backend.SetRate(api, ratePerSec) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown API %q", api))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// serveAPIs answers GET /apis with {"apis": [...]}.
func (h *handler) serveAPIs(w http.ResponseWriter, _ *http.Request) {
	h.writeAPIs(w)
}

func (h *handler) writeAPIs(w http.ResponseWriter) {
	apis := h.backend.APIs()
	if apis == nil {
		apis = []APIInfo{} // "[]", not "null", for the agent
	}
	writeJSON(w, struct {
		APIs []APIInfo `json:"apis"`
	}{apis})
}

// serveServices answers GET /services with {"services": [...]}, or 404
// when the backend has no per-service signals. It never changes state.
func (h *handler) serveServices(w http.ResponseWriter, _ *http.Request) {
	var services []ServiceInfo
	sb, ok := h.backend.(ServiceBackend)
	if ok {
		services, ok = sb.Services()
	}
	if !ok {
		writeError(w, http.StatusNotFound, "this backend reports no per-service overload (a policy reports it with ServiceOverload components: the topfull blueprint's config.services)")
		return
	}
	if services == nil {
		services = []ServiceInfo{}
	}
	writeJSON(w, struct {
		Services []ServiceInfo `json:"services"`
	}{services})
}

// serveStep answers POST /step with the StepResult of one simulator tick,
// or 409 once the scenario has ended. The request body is ignored.
func (h *handler) serveStep(w http.ResponseWriter, r *http.Request) {
	res, err := h.stepper.Step(r.Context())
	switch {
	case errors.Is(err, ErrDone):
		writeError(w, http.StatusConflict, "the simulation has ended; POST /reset to start a new episode")
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "step: "+err.Error())
		return
	}
	writeJSON(w, res)
}

// serveReset answers POST /reset with an optional {"seed": uint64} body: it
// starts a new episode and answers as GET /apis does.
func (h *handler) serveReset(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	seed, err := parseReset(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := h.stepper.Reset(r.Context(), seed); err != nil {
		writeError(w, http.StatusInternalServerError, "reset: "+err.Error())
		return
	}
	h.writeAPIs(w)
}

// apiParam returns the single, non-empty "method" query parameter (the
// seed's name for the API), or answers 400 and returns false.
func apiParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed query string: "+err.Error())
		return "", false
	}
	values := query["method"]
	switch {
	case len(values) == 0 || values[0] == "":
		writeError(w, http.StatusBadRequest, "missing query parameter method (the API name)")
		return "", false
	case len(values) > 1:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("query parameter method given %d times; want one API name", len(values)))
		return "", false
	}
	return values[0], true
}

// readBody reads the request body, which ServeHTTP bounds to MaxBodyBytes,
// or answers 413 (or 400 on a read error) and returns false.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", MaxBodyBytes))
		} else {
			writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		}
		return nil, false
	}
	return body, true
}

// parseSetRate decodes a set_rate body, {"rate_limit": <number>}, strictly:
// the body must be one JSON object with exactly that field, a finite number
// >= 0, and nothing after it. The result is finite and >= 0 (never -0).
func parseSetRate(body []byte) (float64, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return 0, errors.New(`empty body; want {"rate_limit": <number>}`)
	}
	fields, err := decodeObject(body, "rate_limit")
	if err != nil {
		return 0, err
	}
	raw, ok := fields["rate_limit"]
	if !ok {
		return 0, errors.New(`missing field "rate_limit"`)
	}
	ratePerSec, err := parseNumber("rate_limit", raw)
	if err != nil {
		return 0, err
	}
	// Checked on the decoded float, whatever the decoder above let through.
	switch {
	case math.IsNaN(ratePerSec):
		return 0, errors.New("rate_limit is NaN")
	case math.IsInf(ratePerSec, 0):
		return 0, fmt.Errorf("rate_limit is %v; want a finite number", ratePerSec)
	case ratePerSec < 0:
		return 0, fmt.Errorf("rate_limit is %v; want >= 0", ratePerSec)
	case ratePerSec == 0:
		return 0, nil // turns -0 into 0
	}
	return ratePerSec, nil
}

// parseReset decodes a reset body: empty, {} or {"seed": <uint64 or null>}.
// A nil seed lets the simulator choose.
func parseReset(body []byte) (*uint64, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	fields, err := decodeObject(body, "seed")
	if err != nil {
		return nil, err
	}
	raw, ok := fields["seed"]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	seed, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("seed is %s; want an integer in [0, 2^64)", truncate(raw))
	}
	return &seed, nil
}

// decodeObject decodes body as exactly one JSON object whose keys are all in
// allowed, returning each value undecoded. Keys match exactly (encoding/json
// would match struct fields case-insensitively); a repeated key, an unknown
// key, or any data after the object is an error.
func decodeObject(body []byte, allowed ...string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(dec, err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("body is %s; want a JSON object", describeToken(tok))
	}
	fields := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(dec, err)
		}
		key, _ := tok.(string) // inside an object the decoder yields only string keys
		known := false
		for _, name := range allowed {
			known = known || key == name
		}
		if !known {
			return nil, fmt.Errorf("unknown field %q; want only %s", key, quoteAll(allowed))
		}
		if _, dup := fields[key]; dup {
			return nil, fmt.Errorf("field %q given twice", key)
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, syntaxError(dec, err)
		}
		fields[key] = value
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, syntaxError(dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON object at byte %d", dec.InputOffset())
	}
	return fields, nil
}

// parseNumber parses raw, a JSON value, as a float64. A value out of the
// float64 range, such as 1e400, is an error, not ±Inf.
func parseNumber(field string, raw json.RawMessage) (float64, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, fmt.Errorf("%s is %s; want a number", field, describeRaw(raw))
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%s %s is out of the float64 range", field, truncate(raw))
	}
	if err != nil {
		return 0, fmt.Errorf("%s %s is not a number", field, truncate(raw))
	}
	return f, nil
}

// syntaxError turns a decoder error into a reason with a byte offset.
func syntaxError(dec *json.Decoder, err error) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("unexpected end of JSON input")
	}
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return fmt.Errorf("malformed JSON at byte %d: %v", syntax.Offset, err)
	}
	return fmt.Errorf("malformed JSON at byte %d: %v", dec.InputOffset(), err)
}

// describeToken names the kind of a top-level JSON token.
func describeToken(tok json.Token) string {
	switch tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	}
	if tok == json.Delim('[') {
		return "an array"
	}
	return fmt.Sprintf("%v", tok)
}

// describeRaw names the kind of a raw JSON value.
func describeRaw(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return truncate(raw)
}

// truncate shortens raw for an error message.
func truncate(raw json.RawMessage) string {
	const max = 32
	if len(raw) > max {
		return string(raw[:max]) + "..."
	}
	return string(raw)
}

func quoteAll(names []string) string {
	quoted := make([]string, len(names))
	for i, name := range names {
		quoted[i] = strconv.Quote(name)
	}
	return strings.Join(quoted, ", ")
}

// writeJSON answers 200 with v as JSON, or 500 when v cannot be encoded
// (a NaN or Inf from the backend, say).
func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // the client has gone; nothing to do
}

// writeError answers code with {"error": reason}.
func writeError(w http.ResponseWriter, code int, reason string) {
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{reason}) // a struct of one string always encodes
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// statusRecorder remembers the status written, for Options.OnRequest and
// for the panic handler.
type statusRecorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.code, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if !s.wroteHeader {
		s.code, s.wroteHeader = http.StatusOK, true
	}
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// status is the status sent, 200 when the handler wrote nothing.
func (s *statusRecorder) status() int {
	if !s.wroteHeader {
		return http.StatusOK
	}
	return s.code
}
