//go:build !race

// The virtual driver runs the engine on one goroutine (manual ticks, no
// watcher, no Redis), so the race detector has nothing to check in these
// simulations and makes them about 15× slower. scripts/test runs them,
// at full length, without it.

package testbed

import (
	"testing"
	"time"
)

// DAGOR on boutique's priority mix sheds inside the app's services, the
// least important API most, and keeps more goodput than no policy.
func TestVirtualDagorShedsInsideTheAppByPriority(t *testing.T) {
	opts := ScenarioOptions{Warmup: 5 * time.Second, Duration: 30 * time.Second}
	r := simulate(t, Boutique(), "priority-mix", opts, DagorPolicy(), 1)
	if r.Policy != "dagor" {
		t.Errorf("policy = %q, want dagor", r.Policy)
	}
	low, high := r.PerAPI["home"], r.PerAPI["checkout"] // priorities 4 and 1
	if low.RejectedRatio < 0.5 {
		t.Errorf("home (priority 4) rejected %.2f of its requests at 1.5× its capacity, want most", low.RejectedRatio)
	}
	if high.RejectedRatio >= low.RejectedRatio {
		t.Errorf("checkout (priority 1) rejected %.2f, home (priority 4) %.2f; want the lower priority shed more", high.RejectedRatio, low.RejectedRatio)
	}
	if high.Goodput == 0 {
		t.Errorf("checkout has no goodput")
	}
	none := simulate(t, Boutique(), "priority-mix", opts, NoPolicy(), 1)
	if r.Goodput <= none.Goodput {
		t.Errorf("goodput %d under dagor, %d with no policy; want shedding to help", r.Goodput, none.Goodput)
	}
}
