package components_test

import (
	"fmt"
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
