package components_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestRateLimiter(t *testing.T) {
	nan := components.Invalid
	comp := mustProvisionComponent(t, "RateLimiter", `{"selector":{"control_point":"ingress"}}`, time.Second)
	sink, ok := comp.(components.Sink)
	if !ok {
		t.Fatalf("RateLimiter %T is not a Sink", comp)
	}
	if sink.Kind() != components.RateSink {
		t.Errorf("Kind() = %v, want RateSink", sink.Kind())
	}
	if got := sink.Selector().Normalized(); got != (components.Selector{ControlPoint: "ingress", API: "*"}) {
		t.Errorf("Selector() = %+v", got)
	}
	checkSetpoints(t, "before the first tick", sink, nan, nan) // no limit
	for i, tc := range []struct {
		rateLimit, burst float64
		wantRate         float64
		wantBurst        float64
	}{
		{100, 20, 100, 20},
		{250.5, nan, 250.5, nan}, // invalid burst: the default
		{-5, 10, 0, 10},          // a negative rate is 0
		{nan, 10, nan, 10},       // invalid rate: no limit
		{0, nan, 0, nan},
	} {
		sink.Execute([]float64{tc.rateLimit, tc.burst}, nil)
		checkSetpoints(t, fmt.Sprintf("tick %d", i+1), sink, tc.wantRate, tc.wantBurst)
	}
}

func TestConcurrencyLimiter(t *testing.T) {
	nan := components.Invalid
	comp := mustProvisionComponent(t, "ConcurrencyLimiter", `{"selector":{"control_point":"ingress","api":"/x"}}`, time.Second)
	sink, ok := comp.(components.Sink)
	if !ok {
		t.Fatalf("ConcurrencyLimiter %T is not a Sink", comp)
	}
	if sink.Kind() != components.ConcurrencySink {
		t.Errorf("Kind() = %v, want ConcurrencySink", sink.Kind())
	}
	if got := sink.Selector(); got != (components.Selector{ControlPoint: "ingress", API: "/x"}) {
		t.Errorf("Selector() = %+v", got)
	}
	checkSetpoints(t, "before the first tick", sink, nan, nan)
	for i, tc := range []struct{ limit, want float64 }{
		{32, 32},
		{-1, 0},
		{nan, nan},
		{7.5, 7.5},
	} {
		sink.Execute([]float64{tc.limit}, nil)
		checkSetpoints(t, fmt.Sprintf("tick %d", i+1), sink, tc.want, nan)
	}
}

func checkSetpoints(t *testing.T, when string, sink components.Sink, wantValue, wantBurst float64) {
	t.Helper()
	value, burst := sink.Setpoint()
	if !sameSignal(value, wantValue) || !sameSignal(burst, wantBurst) {
		t.Errorf("%s: Setpoint() = %v, %v; want %v, %v", when, value, burst, wantValue, wantBurst)
	}
}

func TestRateLimiterScope(t *testing.T) {
	globalKey := func(c components.Component) string {
		return c.(interface{ GlobalKey() string }).GlobalKey()
	}
	for _, tc := range []struct {
		name, params, wantKey, wantErr string
	}{
		{"no scope is local", `{"selector":{"control_point":"a"}}`, "", ""},
		{"explicit local", `{"selector":{"control_point":"a"},"scope":"local"}`, "", ""},
		{"global with a key", `{"selector":{"control_point":"a"},"scope":"global","key":"payments"}`, "payments", ""},
		{"global without a key", `{"selector":{"control_point":"a"},"scope":"global"}`, "", "a global rate limit needs a key"},
		{"a key without global", `{"selector":{"control_point":"a"},"key":"payments"}`, "", "only a global rate limit has a key"},
		{"braces in the key", `{"selector":{"control_point":"a"},"scope":"global","key":"{x}"}`, "", "without braces"},
		{"unknown scope", `{"selector":{"control_point":"a"},"scope":"fleet"}`, "", `scope: "fleet"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			comp, err := provisionComponent("RateLimiter", tc.params, time.Second)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := globalKey(comp); got != tc.wantKey {
				t.Errorf("GlobalKey() = %q, want %q", got, tc.wantKey)
			}
		})
	}
}
