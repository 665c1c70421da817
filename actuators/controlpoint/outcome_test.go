package controlpoint

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators"
)

// counts reads every outcome of an API.
func counts(a *API) map[string]uint64 {
	m := map[string]uint64{}
	for _, o := range Outcomes {
		if n := a.Count(o); n > 0 {
			m[o.String()] = n
		}
	}
	return m
}

func TestEveryRequestHasExactlyOneOutcome(t *testing.T) {
	for _, tc := range []struct {
		name     string
		limiters func(cp *ControlPoint)
		requests int
		want     map[string]uint64 // for both the API and the control point
	}{
		{"no limiter: passthrough", func(cp *ControlPoint) {}, 3, map[string]uint64{"passthrough": 3}},
		{"invalid setpoint (fail-open): passthrough", func(cp *ControlPoint) {
			cp.API("GET /a").AttachLimiter(&Limiter{Bucket: actuators.NewTokenBucket(math.NaN(), 1, 0)})
		}, 3, map[string]uint64{"passthrough": 3}},
		{"a limit in force admits: accepted, then rejects", func(cp *ControlPoint) {
			cp.API("GET /a").AttachLimiter(&Limiter{Bucket: actuators.NewTokenBucket(1, 2, 0)})
		}, 5, map[string]uint64{"accepted": 2, "rejected": 3}},
		{"one limit in force is enough to be accepted", func(cp *ControlPoint) {
			cp.API("GET /a").AttachLimiter(&Limiter{Bucket: actuators.NewTokenBucket(math.NaN(), 1, 0)})
			cp.API(AllAPIs).AttachLimiter(&Limiter{Concurrency: actuators.NewConcurrencyLimiter(100)})
		}, 2, map[string]uint64{"accepted": 2}},
		{"dry run: would_reject instead of rejected", func(cp *ControlPoint) {
			l := &Limiter{Bucket: actuators.NewTokenBucket(1, 1, 0)}
			l.DryRun.Store(true)
			cp.API(AllAPIs).AttachLimiter(l)
		}, 4, map[string]uint64{"accepted": 1, "would_reject": 3}},
		{"a real rejection wins over a dry-run one", func(cp *ControlPoint) {
			dry := &Limiter{Bucket: actuators.NewTokenBucket(0, 1, 0)}
			dry.DryRun.Store(true)
			cp.API("GET /a").AttachLimiter(dry)
			cp.API(AllAPIs).AttachLimiter(&Limiter{Bucket: actuators.NewTokenBucket(0, 1, 0)})
		}, 3, map[string]uint64{"accepted": 1, "rejected": 2}}, // both buckets start with one token
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := NewRegistry(func() int64 { return 0 }).Get("ingress")
			tc.limiters(cp)
			for i := 0; i < tc.requests; i++ {
				if tk, d := cp.Admit("GET /a"); d == Accepted {
					tk.Done(true)
				}
			}
			for _, a := range []*API{cp.API("GET /a"), cp.API(AllAPIs)} {
				got := counts(a)
				if len(got) != len(tc.want) {
					t.Fatalf("API %q outcomes %v, want %v", a.Label, got, tc.want)
				}
				for k, v := range tc.want {
					if got[k] != v {
						t.Fatalf("API %q outcomes %v, want %v", a.Label, got, tc.want)
					}
				}
				acc, rej := a.Counts()
				if acc+rej != uint64(tc.requests) || rej != tc.want["rejected"] {
					t.Fatalf("API %q Counts() = %d admitted, %d rejected; want every request once", a.Label, acc, rej)
				}
			}
		})
	}
}

func TestDurationsAreRecordedOnlyOnceEnabled(t *testing.T) {
	clock := &fakeClock{}
	reg := NewRegistry(clock.now)
	cp := reg.Get("ingress")
	tk, _ := cp.Admit("GET /a")
	tk.Done(true)
	if _, ok := cp.Durations("GET /a"); ok {
		t.Fatal("durations must not be kept before RecordDurations")
	}
	if _, ok := cp.Durations(AllAPIs); ok {
		t.Fatal("durations must not be kept before RecordDurations")
	}
	reg.RecordDurations()
	for _, latency := range []time.Duration{3 * time.Millisecond, 300 * time.Millisecond} {
		tk, _ := cp.Admit("GET /a")
		clock.ns.Add(int64(latency))
		tk.Done(true)
	}
	tk, _ = cp.Admit("GET /new") // an API created after the switch
	tk.Done(true)
	tk, _ = reg.Get("egress").Admit("") // and a control point
	tk.Done(true)

	read := func(cp *ControlPoint, label string) actuators.CumulativeCounts {
		t.Helper()
		c, ok := cp.Durations(label)
		if !ok {
			t.Fatalf("%s %q keeps no durations after RecordDurations", cp.Name, label)
		}
		return c
	}
	a := read(cp, "GET /a")
	if a.Count != 2 || a.SumNs != uint64(303*time.Millisecond) {
		t.Fatalf("GET /a durations: count %d sum %d, want the two requests after the switch", a.Count, a.SumNs)
	}
	tk, _ = cp.Admit("") // an unlabelled request
	clock.ns.Add(int64(time.Second))
	tk.Done(true)
	all := read(cp, AllAPIs)
	if all.Count != 4 || all.SumNs != uint64(1303*time.Millisecond) {
		t.Fatalf("control-point durations: count %d sum %d, want all 4 requests, labelled or not", all.Count, all.SumNs)
	}
	// 0 s (GET /new), 3 ms, 300 ms, 1 s (le is inclusive).
	if want := []uint64{1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0}; !slices.Equal(all.Counts, want) {
		t.Fatalf("control-point buckets %v, want %v", all.Counts, want)
	}
	if n := read(cp, "GET /new").Count; n != 1 {
		t.Fatalf("new API count %d, want 1", n)
	}
	if n := read(reg.Get("egress"), AllAPIs).Count; n != 1 {
		t.Fatalf("new control point count %d, want 1", n)
	}
}

func TestAdmitAndDoneWithDurationsDoNotAllocate(t *testing.T) {
	reg := NewRegistry(func() int64 { return 0 })
	reg.RecordDurations()
	cp := reg.Get("ingress")
	cp.API("GET /a").AttachLimiter(&Limiter{Bucket: actuators.NewTokenBucket(1e12, 1e12, 0)})
	if allocs := testing.AllocsPerRun(1000, func() {
		tk, _ := cp.Admit("GET /a")
		tk.Done(true)
	}); allocs != 0 {
		t.Fatalf("%v allocs per Admit+Done, want 0", allocs)
	}
}
