package flowcontrol

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/spillway-dev/spillway/flowcontrol/spillwayv1"
)

// Handler is the JSON-over-HTTP twin of the gRPC service:
//
//	POST /v1/check  CheckRequest  → CheckResponse
//	POST /v1/done   DoneRequest   → DoneResponse
//
// Bodies are the messages in the proto3 JSON mapping (field names as in
// the .proto, e.g. {"control_point": "ingress", "api": "GET /a"}; enums by
// name; durations as "0.25s"). A decision, accepted or rejected, is a 200.
// A body that is not Content-Type application/json gets 415, over
// MaxRequestBytes 413, with an unknown field or a bad value 400, an
// unknown flow 404, too many open flows 503; each error is
// {"error": "..."}.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) {
		req := &spillwayv1.CheckRequest{}
		if !decode(w, r, req) {
			return
		}
		resp, err := s.Check(r.Context(), req)
		reply(w, resp, err)
	})
	mux.HandleFunc("POST /v1/done", func(w http.ResponseWriter, r *http.Request) {
		req := &spillwayv1.DoneRequest{}
		if !decode(w, r, req) {
			return
		}
		resp, err := s.Done(r.Context(), req)
		reply(w, resp, err)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/check" || r.URL.Path == "/v1/done" {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": want POST")
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s: the Check API is POST /v1/check and POST /v1/done", r.Method, r.URL.Path))
	})
	return mux
}

var (
	unmarshal = protojson.UnmarshalOptions{}
	marshal   = protojson.MarshalOptions{UseProtoNames: true}
)

// decode reads r's body into m, or answers the error and returns false.
func decode(w http.ResponseWriter, r *http.Request, m proto.Message) bool {
	ctype := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ctype); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type is %q; want application/json", ctype))
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", MaxRequestBytes))
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return false
	}
	if err := unmarshal.Unmarshal(body, m); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

// reply writes a response message, or the status error as HTTP.
func reply(w http.ResponseWriter, m proto.Message, err error) {
	if err != nil {
		code := http.StatusInternalServerError
		switch status.Code(err) {
		case codes.InvalidArgument:
			code = http.StatusBadRequest
		case codes.NotFound:
			code = http.StatusNotFound
		case codes.ResourceExhausted:
			code = http.StatusServiceUnavailable
		}
		writeError(w, code, status.Convert(err).Message())
		return
	}
	body, err := marshal.Marshal(m)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func writeError(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{reason})
}
