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
}

func snapshot(eng *engine.Engine, since int64) Signals {
	st := eng.Status()
	return Signals{
		NowNs:    eng.Now(),
		WindowNs: int64(engine.HistoryWindow),
		Policies: eng.History(since),
		Errors:   append([]engine.Diagnostic{}, st.Errors...),
		Reload:   st.Reload,
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
