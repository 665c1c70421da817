package components_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

// newLatencyTarget builds a LatencyTargetController as engine.Compile does:
// by type name, strict JSON parameters, then Provision.
func newLatencyTarget(t *testing.T, params string, interval time.Duration) (components.Component, error) {
	t.Helper()
	info, ok := components.Lookup("LatencyTargetController")
	if !ok {
		t.Fatal("LatencyTargetController is not registered")
	}
	comp := info.New()
	dec := json.NewDecoder(bytes.NewReader([]byte(params)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(comp); err != nil {
		return nil, err
	}
	return comp, comp.(components.Provisioner).Provision(components.Env{Interval: interval})
}

// latencyTargetTick is one tick: inputs latency_p90_ms, completed_rps,
// overload_seen; expected outputs rate_limit, latency_smoothed_ms.
type latencyTargetTick struct {
	p90Ms, completedRps, overloadSeen float64
	wantRate, wantSmoothedMs          float64
}

// exactParams are chosen so that every step is exact in binary floating
// point: alpha 0.5, dec_factor 2, target 100 ms.
const exactParams = `{"target_latency":"100ms","dec_factor":2,"dec_threshold":0,"inc_factor":4,` +
	`"inc_threshold":-0.125,"inc_weight":-0.5,"min_rate":1,"max_rate":1000,"nreq":100,"timeout":"1s",` +
	`"alpha":0.5,"initial_rate":100}`

func TestLatencyTargetController(t *testing.T) {
	const half = 500 * time.Millisecond
	nan := components.Invalid
	// At 200 req/s a 500 ms tick completes 100 requests: nreq, so every tick
	// closes a round.
	const everyTick = 200
	for _, tc := range []struct {
		name     string
		params   string
		interval time.Duration
		ticks    []latencyTargetTick
	}{
		{
			name: "latency above target divides the rate by dec_factor; at target it holds",
			// smoothed = 0.5·100 + 0.5·300 = 200, err = 1 > dec_threshold 0.
			params: exactParams, interval: half,
			ticks: []latencyTargetTick{
				{300, everyTick, 0, 50, 200},
				{200, everyTick, 0, 25, 200},
				{0, everyTick, 0, 25, 100}, // err = 0 is not above dec_threshold 0
			},
		},
		{
			name:   "latency below target adds |err − inc_weight|·inc_factor",
			params: exactParams, interval: half,
			ticks: []latencyTargetTick{
				{50, everyTick, 0, 101, 75},    // err −0.25: +|−0.25+0.5|·4 = +1
				{25, everyTick, 0, 101, 50},    // err −0.5 = inc_weight: +0
				{0, everyTick, 0, 102, 25},     // err −0.75: +|−0.25|·4 = +1
				{0, everyTick, 0, 103.5, 12.5}, // err −0.875: +|−0.375|·4 = +1.5
			},
		},
		{
			name:   "between inc_threshold and dec_threshold the rate holds",
			params: exactParams, interval: half,
			ticks: []latencyTargetTick{
				{80, everyTick, 0, 100, 90},    // err −0.1 ≥ −0.125
				{100, everyTick, 0, 100, 95},   // err −0.05
				{104, everyTick, 0, 100, 99.5}, // err −0.005
			},
		},
		{
			name:   "overload_seen decreases even below target; invalid overload_seen is no overload",
			params: exactParams, interval: half,
			ticks: []latencyTargetTick{
				{50, everyTick, 1, 50, 75},
				{50, everyTick, 0, 50.5, 62.5},     // err −0.375: +|0.125|·4
				{50, everyTick, nan, 50.75, 56.25}, // err −0.4375: +|0.0625|·4
			},
		},
		{
			name: "nreq closes the round before the timeout",
			// 80 req/s × 0.5 s = 40 requests a tick: the third tick reaches
			// 120 ≥ nreq 100, before the 2 s timeout (4 ticks).
			params:   `{"target_latency":"100ms","dec_factor":2,"alpha":0.5,"initial_rate":100,"nreq":100,"timeout":"2s"}`,
			interval: half,
			ticks: []latencyTargetTick{
				{300, 80, 0, 100, 100},
				{300, 80, 0, 100, 100},
				{300, 80, 0, 50, 200},
				{300, 80, 0, 50, 200},
				{300, 80, 0, 50, 200},
				{300, 80, 0, 25, 250},
			},
		},
		{
			name: "a round's p90 is the request-weighted mean of its ticks' p90s",
			// 20 requests at 100 ms and 80 at 400 ms: (2000 + 32000)/100 = 340,
			// smoothed = 0.5·100 + 0.5·340 = 220.
			params:   exactParams,
			interval: half,
			ticks: []latencyTargetTick{
				{100, 40, 0, 100, 100},
				{400, 160, 0, 50, 220},
			},
		},
		{
			name: "the timeout closes a round with fewer than nreq requests",
			// 20 req/s is 10 requests a tick; timeout 1 s is 2 ticks.
			params: exactParams, interval: half,
			ticks: []latencyTargetTick{
				{300, 20, 0, 100, 100},
				{300, 20, 0, 50, 200},
				{100, 20, 0, 50, 200},
				{100, 20, 0, 25, 150},
			},
		},
		{
			name: "a timeout that is not a multiple of the interval rounds up to whole ticks",
			// 1.2 s at 500 ms is 3 ticks.
			params:   `{"target_latency":"100ms","dec_factor":2,"alpha":0.5,"initial_rate":100,"timeout":"1.2s"}`,
			interval: half,
			ticks: []latencyTargetTick{
				{300, 20, 0, 100, 100},
				{300, 20, 0, 100, 100},
				{300, 20, 0, 50, 200},
			},
		},
		{
			name:     "a timeout shorter than the interval closes a round every tick",
			params:   `{"target_latency":"100ms","dec_factor":2,"alpha":0.5,"initial_rate":100,"timeout":"100ms"}`,
			interval: half,
			ticks: []latencyTargetTick{
				{300, 2, 0, 50, 200},
				{300, 2, 0, 25, 250},
			},
		},
		{
			name:     "decreases stop at min_rate",
			params:   `{"target_latency":"100ms","dec_factor":2,"alpha":0.5,"initial_rate":100,"min_rate":30}`,
			interval: half,
			ticks: []latencyTargetTick{
				{300, everyTick, 0, 50, 200},
				{300, everyTick, 0, 30, 250},
				{300, everyTick, 1, 30, 275},
			},
		},
		{
			name:     "increases stop at max_rate",
			params:   `{"target_latency":"100ms","alpha":0.5,"inc_factor":4,"inc_weight":-0.5,"initial_rate":100,"max_rate":101.5}`,
			interval: half,
			ticks: []latencyTargetTick{
				{50, everyTick, 0, 101, 75},     // +|−0.25+0.5|·4 = +1
				{0, everyTick, 0, 101.5, 37.5},  // +|−0.625+0.5|·4 = +0.5
				{0, everyTick, 0, 101.5, 18.75}, // +1.25, clamped
			},
		},
		{
			name:   "an invalid p90 leaves smoothed and the rate alone; an overload still decreases",
			params: exactParams, interval: half,
			ticks: []latencyTargetTick{
				{nan, everyTick, 0, 100, 100}, // the round closes on nreq, without a latency
				{nan, nan, 0, 100, 100},       // nothing counted
				{nan, nan, 0, 100, 100},       // the timeout closes an empty round
				{300, everyTick, 0, 50, 200},  // the next valid round
				{nan, everyTick, 1, 25, 200},  // overload without a latency: smoothed kept
				{-1, everyTick, 0, 25, 200},   // a negative latency is invalid
				{math.Inf(1), everyTick, 0, 25, 200},
				{200, math.Inf(1), 0, 25, 200}, // an infinite count is invalid: nothing counted
				{200, nan, 0, 25, 200},         // a p90 without a count is not counted; the timeout closes an empty round
			},
		},
		{
			name:   "an idle service neither gains nor loses rate, and starts a fresh round when traffic returns",
			params: exactParams, interval: half,
			ticks: []latencyTargetTick{
				{nan, 0, 0, 100, 100},
				{nan, 0, 0, 100, 100}, // timeout: an empty round changes nothing
				{300, 20, 0, 100, 100},
				{300, 20, 0, 50, 200},
			},
		},
		{
			name: "seed defaults: target only, rate starts at the seed's bucket rate 10",
			// smoothed = 0.7·100 + 0.3·200 = 130, err 0.3: rate 10/1.2.
			// Then two idle ticks (an empty round at the 1 s timeout), then
			// smoothed = 0.7·130 + 0.3·10 = 94, err −0.06 < −0.005:
			// rate + |−0.06 + 0.1|·2 = rate + 0.08.
			params:   `{"target_latency":"100ms"}`,
			interval: half,
			ticks: []latencyTargetTick{
				{nan, 0, 0, 10, 100},
				{200, 400, 0, 8.333333333333334, 130},
				{nan, 0, 0, 8.333333333333334, 130},
				{nan, 0, 0, 8.333333333333334, 130},
				{10, 400, 0, 8.413333333333334, 94},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			comp, err := newLatencyTarget(t, tc.params, tc.interval)
			if err != nil {
				t.Fatal(err)
			}
			out := make([]float64, 2)
			for i, tk := range tc.ticks {
				out[0], out[1] = -1, -1
				comp.Execute([]float64{tk.p90Ms, tk.completedRps, tk.overloadSeen}, out)
				if out[0] != tk.wantRate || out[1] != tk.wantSmoothedMs {
					t.Errorf("tick %d: p90 %v, completed %v/s, overload %v: rate_limit %v, latency_smoothed_ms %v; want %v, %v",
						i+1, tk.p90Ms, tk.completedRps, tk.overloadSeen, out[0], out[1], tk.wantRate, tk.wantSmoothedMs)
				}
			}
		})
	}
}

func TestLatencyTargetControllerPorts(t *testing.T) {
	comp, err := newLatencyTarget(t, `{"target_latency":"100ms"}`, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ports := comp.Ports()
	var in []string
	for _, p := range ports.In {
		in = append(in, p.Name)
		if want := p.Name != "overload_seen"; p.Required != want {
			t.Errorf("port %s: required %v, want %v", p.Name, p.Required, want)
		}
	}
	if got, want := in, []string{"latency_p90_ms", "completed_rps", "overload_seen"}; !slices.Equal(got, want) {
		t.Errorf("inputs %v, want %v", got, want)
	}
	if got, want := ports.Out, []string{"rate_limit", "latency_smoothed_ms"}; !slices.Equal(got, want) {
		t.Errorf("outputs %v, want %v", got, want)
	}
}

// Seed 003's sensible-parameters? predicate, checked again at Provision.
func TestLatencyTargetControllerRejectsInsensibleParameters(t *testing.T) {
	for _, tc := range []struct{ name, params string }{
		{"target_latency is required", `{}`},
		{"target_latency 0", `{"target_latency":"0s"}`},
		{"dec_factor 1", `{"target_latency":"1s","dec_factor":1}`},
		{"dec_threshold negative", `{"target_latency":"1s","dec_threshold":-0.1}`},
		{"inc_factor 0", `{"target_latency":"1s","inc_factor":0}`},
		{"inc_threshold 0", `{"target_latency":"1s","inc_threshold":0}`},
		{"inc_weight positive", `{"target_latency":"1s","inc_weight":0.1}`},
		{"min_rate 0", `{"target_latency":"1s","min_rate":0}`},
		{"max_rate equal to min_rate", `{"target_latency":"1s","min_rate":5,"max_rate":5}`},
		{"max_rate below the default min_rate", `{"target_latency":"1s","max_rate":0.01}`},
		{"alpha negative", `{"target_latency":"1s","alpha":-0.1}`},
		{"alpha above 1", `{"target_latency":"1s","alpha":1.1}`},
		{"nreq not a multiple of 10", `{"target_latency":"1s","nreq":15}`},
		{"nreq 0", `{"target_latency":"1s","nreq":0}`},
		{"nreq not an integer", `{"target_latency":"1s","nreq":10.5}`},
		{"timeout 0", `{"target_latency":"1s","timeout":"0s"}`},
		{"initial_rate above max_rate", `{"target_latency":"1s","max_rate":100,"initial_rate":200}`},
		{"initial_rate below min_rate", `{"target_latency":"1s","min_rate":1,"initial_rate":0.5}`},
		{"unknown parameter", `{"target_latency":"1s","tokens":100}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newLatencyTarget(t, tc.params, time.Second); err == nil {
				t.Errorf("%s: no error", tc.params)
			}
		})
	}
}

// Whatever the inputs, the rate is a number within [min_rate, max_rate]:
// an actuator never sees an invalid setpoint from this controller.
func TestLatencyTargetControllerRateIsAlwaysValidAndBounded(t *testing.T) {
	comp, err := newLatencyTarget(t, `{"target_latency":"50ms","min_rate":2,"max_rate":400,"initial_rate":100}`, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	pick := func(values ...float64) float64 { return values[rng.IntN(len(values))] }
	out := make([]float64, 2)
	for i := range 10000 {
		in := []float64{
			pick(components.Invalid, -5, 0, math.Inf(1), rng.Float64()*200),
			pick(components.Invalid, 0, math.Inf(1), rng.Float64()*2000),
			pick(components.Invalid, 0, 1),
		}
		comp.Execute(in, out)
		if !(out[0] >= 2 && out[0] <= 400) || math.IsNaN(out[1]) || math.IsInf(out[1], 0) {
			t.Fatalf("tick %d: in %v: rate_limit %v, latency_smoothed_ms %v", i+1, in, out[0], out[1])
		}
	}
}
