package main

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/spillway-dev/spillway/internal/access"
)

// adminAccess is who may use the admin API. Without a token the listener
// is on loopback (access.Listen refuses otherwise), and only requests for a
// loopback Host or one of AllowHosts are served, so that a web page cannot
// reach it by rebinding its own name to 127.0.0.1.
type adminAccess struct {
	// Token, when not "", is the bearer token every request must carry.
	Token string
	// AllowHosts are Host names (a port is ignored) served besides the
	// loopback ones when there is no token.
	AllowHosts []string
}

// guard serves h to the requests a allows: first the bearer token (401),
// then, without a token, the Host (403), then no cross-origin browser
// request with an unsafe method (403, http.CrossOriginProtection).
func (a adminAccess) guard(h http.Handler) http.Handler {
	bearer := access.NewBearer(a.Token)
	allowHosts := make([]string, len(a.AllowHosts))
	for i, host := range a.AllowHosts {
		allowHosts[i] = hostName(host)
	}
	crossOrigin := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !bearer.Allows(r) {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeJSON(w, http.StatusUnauthorized, errorBody{"missing or wrong bearer token (the one in --admin-token-file)"})
			return
		}
		if a.Token == "" && !access.IsLoopbackHost(r.Host) && !slices.Contains(allowHosts, hostName(r.Host)) {
			writeJSON(w, http.StatusForbidden, errorBody{fmt.Sprintf("Host %q is not allowed: without a token the admin API serves only loopback names (allow more with --admin-allow-host, or set --admin-token-file)", r.Host)})
			return
		}
		if err := crossOrigin.Check(r); err != nil {
			writeJSON(w, http.StatusForbidden, errorBody{err.Error()})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostName is host ("name", "name:port", "[::1]:port") without its port
// and brackets, in lower case and without a trailing dot.
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// requireJSON answers 415 and returns false unless r's body is declared
// application/json (parameters such as charset allowed). A web page can
// send text/plain cross-origin without asking; it cannot send JSON.
func requireJSON(w http.ResponseWriter, r *http.Request) bool {
	ctype := r.Header.Get("Content-Type")
	if mediaType, _, err := mime.ParseMediaType(ctype); err == nil && mediaType == "application/json" {
		return true
	}
	writeJSON(w, http.StatusUnsupportedMediaType, errorBody{fmt.Sprintf("Content-Type is %q; want application/json", ctype)})
	return false
}
