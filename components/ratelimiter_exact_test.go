package components_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestRateLimiterModes(t *testing.T) {
	for _, tc := range []struct {
		name, params string
		budget       time.Duration
		err          string
	}{
		{"local has no mode", `{"selector":{"control_point":"a"}}`, 0, ""},
		{"global defaults to lease", `{"selector":{"control_point":"a"},"scope":"global","key":"k"}`, 0, ""},
		{"explicit lease", `{"selector":{"control_point":"a"},"scope":"global","key":"k","mode":"lease"}`, 0, ""},
		{"exact with the default budget", `{"selector":{"control_point":"a"},"scope":"global","key":"k","mode":"exact"}`, components.DefaultExactBudget, ""},
		{"exact with a budget", `{"selector":{"control_point":"a"},"scope":"global","key":"k","mode":"exact","budget":"20ms"}`, 20 * time.Millisecond, ""},
		{"a mode on a local limit", `{"selector":{"control_point":"a"},"mode":"exact"}`, 0, "only a global rate limit has a mode"},
		{"an unknown mode", `{"selector":{"control_point":"a"},"scope":"global","key":"k","mode":"strict"}`, 0, `mode: "strict": must be "lease" or "exact"`},
		{"a budget in lease mode", `{"selector":{"control_point":"a"},"scope":"global","key":"k","budget":"5ms"}`, 0, `budget: only mode "exact" waits on Redis`},
		{"a budget too long", `{"selector":{"control_point":"a"},"scope":"global","key":"k","mode":"exact","budget":"2s"}`, 0, "at most 1s"},
		{"a negative budget", `{"selector":{"control_point":"a"},"scope":"global","key":"k","mode":"exact","budget":"-1ms"}`, 0, "must be > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			comp, err := provisionComponent("RateLimiter", tc.params, time.Second)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := comp.(*components.RateLimiter).ExactBudget(); got != tc.budget {
				t.Errorf("ExactBudget %s, want %s", got, tc.budget)
			}
		})
	}
}
