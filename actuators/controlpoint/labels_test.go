package controlpoint

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spillway-dev/spillway/actuators"
)

// flood admits n requests with distinct junk labels, as a gRPC
// UnknownServiceHandler would see from a hostile client.
func flood(t *testing.T, cp *ControlPoint, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		tk, d := cp.Admit(fmt.Sprintf("/junk.Service%d/Method", i))
		if d != Accepted {
			t.Fatalf("junk request %d: %v", i, d)
		}
		tk.Done(true)
	}
}

func TestLabelsPastTheCapAreCountedUnderOverflowNeverInAll(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("grpc")
	if _, listed := cp.APIs()[OverflowAPI]; listed {
		t.Fatal("overflow listed before any request overflowed")
	}
	flood(t, cp, 1100)
	apis := cp.APIs()
	if len(apis) != MaxAPIs+1 {
		t.Fatalf("%d APIs listed, want the cap %d and %s", len(apis), MaxAPIs, OverflowAPI)
	}
	overflow := apis[OverflowAPI]
	if overflow == nil || overflow == cp.API(AllAPIs) || overflow.Label != OverflowAPI {
		t.Fatalf("overflow API %+v, want its own state labelled %s", overflow, OverflowAPI)
	}
	if n := overflow.Count(OutcomePassthrough); n != 1100-MaxAPIs {
		t.Fatalf("overflow counted %d requests, want the %d past the cap", n, 1100-MaxAPIs)
	}
	if n := cp.API(AllAPIs).Count(OutcomePassthrough); n != 1100 {
		t.Fatalf("%s counted %d requests, want each of the 1100 once", AllAPIs, n)
	}
	if cp.API("/junk.Another/Method") != overflow {
		t.Fatal("a new label past the cap must map to the overflow API")
	}
}

func TestADeclaredLimiterAppliesToExactlyItsAPIPastTheCap(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("grpc")
	flood(t, cp, 1100)
	l := &Limiter{Bucket: actuators.NewTokenBucket(0, 1, 0)}
	cart := cp.Declare("/shop.Cart/Add")
	cart.AttachLimiter(l)
	if cart == cp.API(AllAPIs) || cart == cp.API(OverflowAPI) || cart.Label != "/shop.Cart/Add" {
		t.Fatalf("declared API %q: want its own state", cart.Label)
	}
	for i := 0; i < 100; i++ {
		tk, d := cp.Admit("/grpc.health.v1.Health/Check")
		if d != Accepted {
			t.Fatalf("health check %d: %v; the cart's limiter must not apply to it", i, d)
		}
		tk.Done(true)
	}
	if tk, d := cp.Admit("/shop.Cart/Add"); d != Accepted {
		t.Fatalf("first cart request: %v, want Accepted (burst 1)", d)
	} else {
		tk.Done(true)
	}
	if _, d := cp.Admit("/shop.Cart/Add"); d != RateLimited {
		t.Fatalf("second cart request: %v, want RateLimited", d)
	}
	if cart.Count(OutcomeRejected) != 1 || l.Rejected.Load() != 1 {
		t.Fatalf("cart rejected %d, limiter %d; want 1 and 1", cart.Count(OutcomeRejected), l.Rejected.Load())
	}
	overflow := cp.API(OverflowAPI)
	if overflow.Count(OutcomeRejected) != 0 || overflow.Count(OutcomePassthrough) != 1100-MaxAPIs+100 {
		t.Fatalf("overflow: %d rejected, %d passthrough; want 0 and %d",
			overflow.Count(OutcomeRejected), overflow.Count(OutcomePassthrough), 1100-MaxAPIs+100)
	}
}

func TestWhichStateALabelIsCountedUnder(t *testing.T) {
	longest := strings.Repeat("a", MaxLabelLength)
	for _, c := range []struct {
		name, label string
		want        string // the Label of the API it is counted under
	}{
		{"no label is the control point's", "", AllAPIs},
		{"a route is its own", "GET /items/{id}", "GET /items/{id}"},
		{"a label of MaxLabelLength bytes is its own", longest, longest},
		{"one byte longer overflows", longest + "a", OverflowAPI},
		{"an 8 KB label overflows", strings.Repeat("x", 8<<10), OverflowAPI},
		{"invalid UTF-8 overflows", "/svc/\xff\xfe", OverflowAPI},
		{"a request labelled __overflow__ is counted there", OverflowAPI, OverflowAPI},
	} {
		t.Run(c.name, func(t *testing.T) {
			cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
			tk, d := cp.Admit(c.label)
			if d != Accepted {
				t.Fatalf("decision %v", d)
			}
			tk.Done(true)
			got := cp.API(c.label)
			if got.Label != c.want || got.Count(OutcomePassthrough) != 1 {
				t.Fatalf("counted under %q (%d requests), want %q (1)", got.Label, got.Count(OutcomePassthrough), c.want)
			}
			if c.want == OverflowAPI && cp.APIs()[OverflowAPI] != got {
				t.Fatal("the overflow API must be listed once it counted a request")
			}
		})
	}
}

func TestDeclare(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
	all, overflow := cp.API(AllAPIs), cp.API(OverflowAPI)
	if cp.Declare(AllAPIs) != all || cp.Declare("") != all {
		t.Fatal("declaring * must return the control-point-wide state")
	}
	if cp.Declare(OverflowAPI) != overflow {
		t.Fatal("declaring __overflow__ must return the overflow state")
	}
	if cp.Declare(strings.Repeat("x", MaxLabelLength+1)) != overflow || cp.Declare("\xff") != overflow {
		t.Fatal("declaring a label no request could carry on its own must return the overflow state")
	}
	seen := cp.API("GET /a")
	if cp.Declare("GET /a") != seen {
		t.Fatal("declaring a label requests created must return its state")
	}
	flood(t, cp, MaxAPIs)
	declared := cp.Declare("GET /late")
	if declared == overflow || cp.API("GET /late") != declared {
		t.Fatal("a label declared past the cap must get its own state, and requests must find it")
	}
}

func TestOverflowDurationsAddUpUnderAll(t *testing.T) {
	clock := &fakeClock{}
	reg := NewRegistry(clock.now)
	reg.RecordDurations()
	cp := reg.Get("ingress")
	tk, _ := cp.Admit(strings.Repeat("x", 8<<10))
	clock.ns.Add(3e6)
	tk.Done(true)
	if c, ok := cp.Durations(OverflowAPI); !ok || c.Count != 1 {
		t.Fatalf("overflow durations: %d, %v; want 1 request", c.Count, ok)
	}
	if c, _ := cp.Durations(AllAPIs); c.Count != 1 {
		t.Fatalf("control-point durations: %d, want the overflowed request", c.Count)
	}
}

func TestAdmitPastTheCapDoesNotAllocate(t *testing.T) {
	cp := NewRegistry(func() int64 { return 0 }).Get("grpc")
	flood(t, cp, MaxAPIs+1)
	if allocs := testing.AllocsPerRun(1000, func() {
		tk, _ := cp.Admit("/junk.Past/TheCap")
		tk.Done(true)
	}); allocs != 0 {
		t.Fatalf("%v allocs per Admit+Done of an overflowing label, want 0", allocs)
	}
}

// The labels requests create are bounded across a registry's control
// points too: a caller that names control points (the Check API creates
// up to 64) fills MaxRequestLabels in all, and past it each control point
// counts new labels under its own overflow once it has created its own
// first OwnRequestLabels, which no other control point can take; labels
// already tracked and declared ones keep their own state.
func TestRequestLabelsAreBoundedAcrossControlPoints(t *testing.T) {
	reg := NewRegistry(func() int64 { return 0 })
	const points = 8 // 8 × 1,024 would be twice the bound
	total := 0
	for i := range points {
		cp := reg.Get(fmt.Sprintf("check-%d", i))
		flood(t, cp, MaxAPIs)
		own := len(cp.APIs())
		if _, ok := cp.APIs()[OverflowAPI]; ok {
			own--
		}
		total += own
	}
	// Four fill the bound; each of the other four has its own 64.
	if want := MaxRequestLabels + (points-MaxRequestLabels/MaxAPIs)*OwnRequestLabels; total != want {
		t.Fatalf("%d labels tracked in all, want %d", total, want)
	}
	last := reg.Get(fmt.Sprintf("check-%d", points-1))
	if a := last.API("/junk.ServiceX/Method"); a.Label != OverflowAPI {
		t.Errorf("a new label past the bound is counted under %q, want %s", a.Label, OverflowAPI)
	}
	first := reg.Get("check-0")
	if a := first.API("/junk.Service1/Method"); a.Label != "/junk.Service1/Method" {
		t.Errorf("a label tracked before the bound is counted under %q, want its own", a.Label)
	}
	if a := last.Declare("GET /declared"); a.Label != "GET /declared" {
		t.Errorf("a declared label past the bound is %q, want its own state", a.Label)
	}
	// A control point whose labels are the server's routes, first hit
	// after the others filled the bound.
	if a := reg.Get("ingress").API("GET /checkout"); a.Label != "GET /checkout" {
		t.Errorf("a route at a fresh control point is counted under %q, want its own", a.Label)
	}
}
