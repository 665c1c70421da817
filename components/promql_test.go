package components_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestPromQLProvision(t *testing.T) {
	for _, tc := range []struct {
		name, params      string
		interval, timeout time.Duration
	}{
		{"defaults", `{"query":"up"}`, 10 * time.Second, 2 * time.Second},
		{"a short interval shortens the default timeout", `{"query":"up","interval":"500ms"}`, 500 * time.Millisecond, 500 * time.Millisecond},
		{"both set", `{"query":" sum(up) ","interval":"1s","timeout":"300ms"}`, time.Second, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustProvisionComponent(t, "PromQL", tc.params, time.Second).(*components.PromQL)
			q := p.Query()
			if q.Interval != tc.interval || q.Timeout != tc.timeout || q.PromQL != strings.TrimSpace(q.PromQL) {
				t.Errorf("query %+v, want interval %s timeout %s, trimmed", q, tc.interval, tc.timeout)
			}
			if p.MaxAge() != 2*tc.interval {
				t.Errorf("MaxAge %s, want 2 intervals", p.MaxAge())
			}
		})
	}
	for _, tc := range []struct{ name, params, want string }{
		{"no query", `{}`, "query: must not be empty"},
		{"blank query", `{"query":"  "}`, "query: must not be empty"},
		{"huge query", `{"query":"` + strings.Repeat("x", 4097) + `"}`, "over the maximum of 4096"},
		{"interval too short", `{"query":"up","interval":"50ms"}`, "shorter than the minimum 100ms"},
		{"timeout over the interval", `{"query":"up","interval":"1s","timeout":"2s"}`, "at most the interval"},
		{"negative timeout", `{"query":"up","timeout":"-1s"}`, "must be > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provisionComponent("PromQL", tc.params, time.Second)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestPromQLTicks: the output is the last answer while it is at most two
// intervals old and a finite number; invalid otherwise.
func TestPromQLTicks(t *testing.T) {
	comp := mustProvisionComponent(t, "PromQL", `{"query":"sum(rate(x[1m]))","interval":"1s"}`, 500*time.Millisecond)
	p := comp.(*components.PromQL)
	nan := components.Invalid
	for i, tk := range []struct {
		name  string
		value float64
		age   time.Duration
		want  float64
	}{
		{"before any answer", nan, 0, nan},
		{"a fresh answer", 42, 10 * time.Millisecond, 42},
		{"one interval old", 42, time.Second, 42},
		{"exactly two intervals old", 42, 2 * time.Second, 42},
		{"older than two intervals: stale", 42, 2*time.Second + 1, nan},
		{"a failed query", nan, 0, nan},
		{"a new answer", 0, 0, 0},
		{"negative values pass", -3.5, 0, -3.5},
		{"+Inf is invalid", math.Inf(1), 0, nan},
		{"-Inf is invalid", math.Inf(-1), 0, nan},
	} {
		p.ObserveQuery(tk.value, tk.age)
		out := []float64{-12345}
		p.Execute(nil, out)
		if !(out[0] == tk.want || math.IsNaN(out[0]) && math.IsNaN(tk.want)) {
			t.Errorf("tick %d (%s): output %v, want %v", i+1, tk.name, out[0], tk.want)
		}
	}
}

func TestPromQLBeforeObserveIsInvalid(t *testing.T) {
	comp := mustProvisionComponent(t, "PromQL", `{"query":"up"}`, time.Second)
	runTickTable(t, comp, []tickIO{{nil, []float64{components.Invalid}}})
}
