package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// fleetPolicy limits GET /pay to 300 req/s across every proxy.
const fleetPolicy = `package p

policies: pay: {
	policy_name:         "pay"
	evaluation_interval: "100ms"
	components: [
		{RateLimiter: {selector: {control_point: "ingress", api: "GET /pay"}, scope: "global", key: "pay", in_ports: rate_limit: 300}},
	]
}
`

// pollStatus reads an admin's /status every 50 ms until check says it is
// done, for up to limit, and fails the test with check's last description
// of it otherwise.
func pollStatus(t *testing.T, admin string, limit time.Duration, check func(engine.Status) (done bool, seen string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + admin + "/status")
		if err != nil {
			last = err.Error()
			continue
		}
		var st engine.Status
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || len(st.Policies) == 0 {
			last = fmt.Sprintf("no policy yet (%v)", err)
			continue
		}
		var done bool
		if done, last = check(st); done {
			return
		}
	}
	t.Fatalf("%s: /status never reached the expected state; last: %s", admin, last)
}

// waitGlobal polls an admin's /status until its first actuator's global
// section satisfies ok, for up to 10 s.
func waitGlobal(t *testing.T, admin string, ok func(*engine.GlobalStatus) bool) {
	t.Helper()
	pollStatus(t, admin, 10*time.Second, func(st engine.Status) (bool, string) {
		if len(st.Policies[0].Actuators) == 0 || st.Policies[0].Actuators[0].Global == nil {
			return false, "no global actuator yet"
		}
		g := st.Policies[0].Actuators[0].Global
		b, _ := json.Marshal(g)
		return ok(g), string(b)
	})
}
