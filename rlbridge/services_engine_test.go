package rlbridge

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

// servicesPolicy is the topfull blueprint with two APIs that list their
// services, and db's overload measured live at a control point "db" in
// front of it (2 workers).
const servicesPolicy = `
package policies
import "spillway.dev/blueprints/topfull"
policies: "tf": topfull.#Policy & {
	config: {
		policy_name: "tf"
		fallback: "none"
		apis: [
			{name: "GET /browse", control_point: "ingress", services: ["frontend", "db"]},
			{name: "GET /search", control_point: "ingress", services: ["frontend", "index"]},
		]
		services: [{name: "db", control_point: "db", workers: 2}]
	}
}
`

// TestServicesFromAFluxMeterPerService wires a service's overload the way
// a live deployment does (a flux meter at the service's own control point)
// and reads it through the bridge, with each API's services.
func TestServicesFromAFluxMeterPerService(t *testing.T) {
	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "tf.cue", servicesPolicy), Clock: clock.Now})
	h := Handler(ForEngine(eng), nil, Options{})
	get := func(path string, v any) {
		t.Helper()
		rec := do(h, "GET", path, "", "")
		if rec.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatal(err)
		}
	}
	var services struct {
		Services []ServiceInfo `json:"services"`
	}
	// An engine without ServiceOverload components has no signals: 404.
	plain := enginetest.Start(t, engine.Options{Specs: enginetest.Load(t, "plain.cue", strings.Replace(servicesPolicy,
		`services: [{name: "db", control_point: "db", workers: 2}]`, "", 1))})
	if rec := do(Handler(ForEngine(plain), nil, Options{}), "GET", "/services", "", ""); rec.Code != 404 {
		t.Errorf("GET /services without signals: %d %s, want 404", rec.Code, rec.Body)
	}
	get("/services", &services)
	if len(services.Services) != 0 {
		t.Errorf("services before any tick: %+v, want none", services.Services)
	}

	// Six calls reach db in the tick; two finish, four are in flight on
	// its two workers: utilisation 2, and the two queued calls wait
	// 2 ÷ (2 completions/s) = 1 s by Little's law.
	cp := eng.ControlPoints().Get("db")
	var held []controlpoint.Ticket
	for i := range 6 {
		clock.Advance(10 * time.Millisecond)
		tk, d := cp.Admit("GET /db")
		if d != controlpoint.Accepted {
			t.Fatalf("call %d: %v", i, d)
		}
		held = append(held, tk)
	}
	held[0].Done(true)
	held[1].Done(true)
	clock.AdvanceTo(time.Second)
	eng.Tick()

	get("/services", &services)
	if len(services.Services) != 1 {
		t.Fatalf("services %+v, want db's", services.Services)
	}
	db := services.Services[0]
	if db.Name != "db" || !db.Overloaded || db.Utilisation == nil || *db.Utilisation != 2 ||
		db.QueueingMs == nil || math.Abs(*db.QueueingMs-1000) > 1e-6 {
		t.Errorf("db = %+v (utilisation %v, queueing %v ms); want overloaded at 2 and 1000 ms", db, deref(db.Utilisation), deref(db.QueueingMs))
	}

	// The calls finish and none come: idle, not overloaded, queueing
	// unknown (no completion to divide by) and so null.
	for _, tk := range held[2:] {
		tk.Done(true)
	}
	clock.AdvanceTo(2 * time.Second)
	eng.Tick()
	clock.AdvanceTo(3 * time.Second)
	eng.Tick()
	get("/services", &services)
	if db := services.Services[0]; db.Overloaded || db.Utilisation == nil || *db.Utilisation != 0 || db.QueueingMs != nil {
		t.Errorf("idle db = %+v (utilisation %v, queueing %v); want not overloaded, 0 and null", db, deref(db.Utilisation), deref(db.QueueingMs))
	}

	var apis struct {
		APIs []APIInfo `json:"apis"`
	}
	get("/apis", &apis)
	want := map[string][]string{"GET /browse": {"frontend", "db"}, "GET /search": {"frontend", "index"}}
	for _, a := range apis.APIs {
		if got := a.Services; len(got) != 2 || got[0] != want[a.Name][0] || got[1] != want[a.Name][1] {
			t.Errorf("%s: services %v, want %v", a.Name, got, want[a.Name])
		}
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestTwoSignalsForOneServiceAreRefused(t *testing.T) {
	src := `
package policies
import "spillway.dev/blueprints/topfull"
policies: "a": topfull.#Policy & {config: {policy_name: "a", apis: [{name: "GET /a", control_point: "ingress"}], services: [{name: "db", control_point: "db", workers: 2}]}}
policies: "b": topfull.#Policy & {config: {policy_name: "b", apis: [{name: "GET /b", control_point: "ingress"}], services: [{name: "db", control_point: "db2", workers: 4}]}}
`
	_, err := engine.Start(t.Context(), engine.Options{Specs: enginetest.Load(t, "two.cue", src), ManualTicks: true})
	if err == nil {
		t.Fatal("two overload signals for service db started")
	}
	if !strings.Contains(err.Error(), `service "db" already has an overload signal`) {
		t.Errorf("error %v, want it to name the service twice signalled", err)
	}
}
