package engine

import (
	"math"
	"strings"
	"testing"
)

func mustLoad(t *testing.T, src string) []Spec {
	t.Helper()
	specs, diags := LoadSource("test.cue", []byte(src))
	if len(diags) > 0 {
		t.Fatalf("load: %v", diags)
	}
	return specs
}

// A loop: COUNT = COUNT(previous tick) + 1. The back-edge reads the last
// tick, and the first tick reads it as invalid.
const counterPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: counter: bp.#Policy & {
	policy_name: "counter"
	components: [
		{FirstValid: {in_ports: inputs: ["COUNT", 0], out_ports: output: "BASE"}},
		{Arithmetic: {operator: "add", in_ports: {lhs: "BASE", rhs: 1}, out_ports: output: "COUNT"}},
	]
}
`

func TestLoopBackEdgeReadsThePreviousTick(t *testing.T) {
	c, diags := Compile(mustLoad(t, counterPolicy)[0])
	if diags != nil {
		t.Fatal(diags)
	}
	if len(c.Delayed) != 1 || c.Delayed[0].Signal != "COUNT" {
		t.Fatalf("delayed edges %v, want COUNT only", c.Delayed)
	}
	for tick := 1; tick <= 4; tick++ {
		c.Tick()
		if v, _ := c.Signal("COUNT"); v != float64(tick) {
			t.Fatalf("tick %d: COUNT = %v, want %d", tick, v, tick)
		}
	}
}

// Components declared out of order still run producers first.
const outOfOrderPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: order: bp.#Policy & {
	policy_name: "order"
	components: [
		{Arithmetic: {operator: "mul", in_ports: {lhs: "X", rhs: 2}, out_ports: output: "Y"}},
		{Variable: {value: 21, out_ports: output: "X"}},
	]
}
`

func TestForwardEdgesAreEvaluatedInTopologicalOrder(t *testing.T) {
	c, diags := Compile(mustLoad(t, outOfOrderPolicy)[0])
	if diags != nil {
		t.Fatal(diags)
	}
	if len(c.Delayed) != 0 {
		t.Fatalf("no loop, but delayed edges %v", c.Delayed)
	}
	c.Tick()
	if v, _ := c.Signal("Y"); v != 42 {
		t.Fatalf("Y = %v on the first tick, want 42", v)
	}
}

const nanPolicy = `
package t
import bp "spillway.dev/blueprints"
policies: nan: bp.#Policy & {
	policy_name: "nan"
	components: [
		{Variable: {value: 0, out_ports: output: "ZERO"}},
		{Arithmetic: {operator: "div", in_ports: {lhs: 1, rhs: "ZERO"}, out_ports: output: "INF"}},
		{Arithmetic: {operator: "add", in_ports: {lhs: "INF", rhs: 1}, out_ports: output: "SUM"}},
		{RateLimiter: {selector: control_point: "x", in_ports: rate_limit: "SUM"}},
	]
}
`

func TestInvalidPropagatesThroughTheCircuit(t *testing.T) {
	c, diags := Compile(mustLoad(t, nanPolicy)[0])
	if diags != nil {
		t.Fatal(diags)
	}
	c.Tick()
	for _, s := range []string{"INF", "SUM"} {
		if v, _ := c.Signal(s); !math.IsNaN(v) {
			t.Fatalf("%s = %v, want invalid", s, v)
		}
	}
}

func TestCompileReportsEveryProblemWithItsPath(t *testing.T) {
	src := `
package t
import bp "spillway.dev/blueprints"
policies: bad: bp.#Policy & {
	policy_name: "bad"
	components: [
		{Nope: {}},
		{Arithmetic: {operator: "add", in_ports: {lhs: "A", rhs: "B"}, out_ports: output: "C"}},
	]
}
`
	_, diags := Compile(mustLoad(t, src)[0])
	text := diags.Error()
	for _, want := range []string{
		`test.cue:7:4: policies.bad.components[0].Nope: unknown component type "Nope"`,
		`policies.bad.components[1].Arithmetic.in_ports.lhs: signal "A" has no producer`,
		`policies.bad.components[1].Arithmetic.in_ports.rhs: signal "B" has no producer`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, text)
		}
	}
}

func TestLoadSourceRejectsOversizeAndRecoversPanics(t *testing.T) {
	t.Parallel()
	big := make([]byte, MaxPolicyFileSize+1)
	for i := range big {
		big[i] = ' '
	}
	if _, d := LoadSource("big.cue", big); len(d) != 1 || !strings.Contains(d[0].Message, "larger than") {
		t.Fatalf("oversize file: %v", d)
	}
	if _, d := LoadSource("none.cue", []byte("package x\na: 1\n")); len(d) != 1 || !strings.Contains(d[0].Message, "no policies") {
		t.Fatalf("file without policies: %v", d)
	}
}

func TestApplyIsAllOrNothing(t *testing.T) {
	good := mustLoad(t, counterPolicy)
	eng, err := Start(t.Context(), Options{Specs: good, ManualTicks: true, Clock: func() int64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	bad := mustLoad(t, `
package t
import bp "spillway.dev/blueprints"
policies: broken: bp.#Policy & {
	policy_name: "broken"
	components: [{Arithmetic: {operator: "add", in_ports: {lhs: "MISSING", rhs: 1}}}]
}
`)
	if err := eng.Apply(append(good, bad...)); err == nil {
		t.Fatal("Apply accepted a set with a broken policy")
	}
	if ps := eng.Policies(); len(ps) != 1 || ps[0].Circuit.Spec.Name != "counter" {
		t.Fatal("a failed Apply changed the running set")
	}
	if len(eng.LastErrors()) == 0 || len(eng.Status().Errors) == 0 {
		t.Fatal("the failed Apply's errors are not visible in status")
	}
	eng.Tick()
	if v, _ := eng.Signal("counter", "COUNT"); v != 1 {
		t.Fatalf("the previous policy must keep running: COUNT = %v", v)
	}
}
