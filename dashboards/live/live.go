// Package live serves Spillway's live dashboard: one page, embedded in the
// binary, that plots every signal of every running policy over the last
// ten minutes (engine.HistoryWindow) and shows the policy load status. The
// page polls /api/signals once per tick and draws plain SVG; there is no
// build step and nothing is fetched from elsewhere.
package live

import (
	_ "embed"
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/spillway-dev/spillway/engine"
)

//go:embed index.html
var page []byte

// Handler serves the page at "/" and its data at "/api/signals". Mount it
// on both paths of an admin mux, e.g.
//
//	mux.Handle("GET /{$}", h)
//	mux.Handle("GET /api/signals", h)
func Handler(eng *engine.Engine) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(page)
	})
	mux.HandleFunc("GET /api/signals", func(w http.ResponseWriter, r *http.Request) {
		since := int64(math.MinInt64)
		if s := r.URL.Query().Get("since"); s != "" {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "since must be an integer: engine-clock nanoseconds of the last tick seen (t_ns)"})
				return
			}
			since = v
		}
		writeJSON(w, http.StatusOK, snapshot(eng, since))
	})
	return mux
}

// Signals is the body of GET /api/signals.
type Signals struct {
	// NowNs is the engine clock when the response was made; tick times are
	// on the same clock.
	NowNs int64 `json:"now_ns"`
	// WindowNs is how far back the page plots (engine.HistoryWindow).
	WindowNs int64 `json:"window_ns"`
	// Policies hold each running policy's ticks after ?since.
	Policies []engine.PolicyHistory `json:"policies"`
	// Errors are the problems of the last failed load; the policies shown
	// are the last good set, still running.
	Errors []engine.Diagnostic `json:"errors"`
	// Reload is the policy directory's reload history (absent when the
	// engine runs policies given in code).
	Reload *engine.ReloadStatus `json:"reload,omitempty"`
	// Decisions are the cumulative decision counts per control point and
	// API at NowNs; the page plots their rates between polls.
	Decisions []Decisions `json:"decisions"`
	// Setpoints pair each signal a controller holds to a setpoint with
	// that setpoint, so the page draws them on one chart.
	Setpoints []SetpointPair `json:"setpoints"`
}

// Decisions counts the requests decided at one control point for one API
// label ("*" is every request of the control point), since the engine
// started.
type Decisions struct {
	ControlPoint string `json:"control_point"`
	API          string `json:"api"`
	Accepted     uint64 `json:"accepted"`
	Rejected     uint64 `json:"rejected"`
	// WouldReject counts the requests that dry-run limiters selecting
	// exactly this control point and API admitted but would have
	// rejected.
	WouldReject uint64 `json:"would_reject"`
}

// SetpointPair is a signal and the setpoint it is controlled to, both of
// one policy.
type SetpointPair struct {
	Policy   string `json:"policy"`
	Signal   string `json:"signal"`
	Setpoint string `json:"setpoint"`
}

// setpointPorts are the in-ports that take a setpoint, each with the
// in-port of the same component that takes the signal held to it: the
// AIMD and gradient controllers' (signal, setpoint) and the SLO
// controller's (latency_ms, setpoint_ms). The rule reads the wiring, not
// signal names, so it holds whatever a policy calls its signals.
var setpointPorts = map[string]string{"setpoint": "signal", "setpoint_ms": "latency_ms"}

func snapshot(eng *engine.Engine, since int64) Signals {
	st := eng.Status()
	return Signals{
		NowNs:     eng.Now(),
		WindowNs:  int64(engine.HistoryWindow),
		Policies:  eng.History(since),
		Errors:    append([]engine.Diagnostic{}, st.Errors...),
		Reload:    st.Reload,
		Decisions: decisions(st),
		Setpoints: setpoints(eng),
	}
}

func decisions(st engine.Status) []Decisions {
	wouldReject := map[string]uint64{} // by selector, "control_point/api"
	for _, p := range st.Policies {
		for _, a := range p.Actuators {
			wouldReject[a.Selector] += a.WouldReject
		}
	}
	out := []Decisions{}
	for _, cp := range st.ControlPoints {
		for _, a := range cp.APIs {
			out = append(out, Decisions{ControlPoint: cp.Name, API: a.API, Accepted: a.Accepted, Rejected: a.Rejected,
				WouldReject: wouldReject[cp.Name+"/"+a.API]})
		}
	}
	return out
}

func setpoints(eng *engine.Engine) []SetpointPair {
	out := []SetpointPair{}
	for _, r := range eng.Policies() {
		spec := r.Circuit.Spec
		for _, c := range spec.Components {
			in := map[string]string{}
			for _, b := range c.In {
				if b.Signal != "" {
					in[b.Port] = b.Signal
				}
			}
			for setpointPort, signalPort := range setpointPorts {
				if in[setpointPort] != "" && in[signalPort] != "" {
					out = append(out, SetpointPair{Policy: spec.Name, Signal: in[signalPort], Setpoint: in[setpointPort]})
				}
			}
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
