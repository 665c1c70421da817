package testbed

import (
	"math"
	"testing"
	"time"
)

// oneBottleneck is two APIs at one shared service of 10 workers, the cheap
// API costing 1 ms and the expensive one 20 ms.
func oneBottleneck() App {
	ms := func(v float64) Dist { return Dist{Kind: Constant, Mean: time.Duration(v * float64(time.Millisecond))} }
	return App{
		Name: "one-bottleneck", Entry: "frontend", ClientTimeout: time.Second,
		Services: []Service{{Name: "frontend"}, {Name: "db", Workers: 10}},
		APIs: []API{
			{Name: "cheap", SLO: time.Second, Priority: 1, Weight: 1, Calls: []Call{{Service: "db", Time: ms(1)}}},
			{Name: "costly", SLO: time.Second, Priority: 1, Weight: 1, Calls: []Call{{Service: "db", Time: ms(20)}}},
		},
	}
}

func TestOptimalRates(t *testing.T) {
	multi := oneBottleneck()
	multi.Services = append(multi.Services, Service{Name: "cache", Workers: 1})
	multi.APIs[1].Calls = append(multi.APIs[1].Calls, Call{Service: "cache", Time: Dist{Kind: Constant, Mean: 10 * time.Millisecond}})
	weighted := oneBottleneck()
	weighted.APIs[1].PriorityWeight = 40
	twoVisits := oneBottleneck()
	twoVisits.APIs[0].Calls = append(twoVisits.APIs[0].Calls, twoVisits.APIs[0].Calls[0])
	for _, tc := range []struct {
		name  string
		app   App
		rates []float64
		want  []float64
	}{
		// 10 worker-seconds per second: 5000 cheap requests cost 5, leaving
		// 5 for 250 costly ones.
		{"the cheap API is admitted in full first", oneBottleneck(), []float64{5000, 1000}, []float64{5000, 250}},
		{"the cheap API alone can fill the bottleneck", oneBottleneck(), []float64{20000, 1000}, []float64{10000, 0}},
		{"light load is admitted in full", oneBottleneck(), []float64{1000, 100}, []float64{1000, 100}},
		{"an API offered nothing gets nothing", oneBottleneck(), []float64{0, 1000}, []float64{0, 500}},
		{"a repeated call costs twice", twoVisits, []float64{5000, 1000}, []float64{5000, 0}},
		{"a weight above the cost ratio favours the costly API", weighted, []float64{5000, 1000}, []float64{0, 500}},
		// The db could take 250 costly requests after the cheap ones, but
		// the cache (1 worker, 10 ms) lets only 100 through.
		{"a second bottleneck caps the API that crosses it", multi, []float64{5000, 1000}, []float64{5000, 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.app.optimalRates(tc.rates, tc.app.workers())
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.want {
				if math.Abs(got[i]-tc.want[i]) > 1e-6*max(1, tc.want[i]) {
					t.Fatalf("optimal = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestOptimalIsAtLeastProportional(t *testing.T) {
	app := oneBottleneck()
	rates := []float64{5000, 1000}
	prop := app.proportionalRates(rates, app.workers())
	opt, err := app.optimalRates(rates, app.workers())
	if err != nil {
		t.Fatal(err)
	}
	// Proportional: 5000 f·1 ms + 1000 f·20 ms = 10 s, so f = 0.4.
	if math.Abs(prop[0]-2000) > 1e-9 || math.Abs(prop[1]-400) > 1e-9 {
		t.Errorf("proportional = %v, want [2000 400]", prop)
	}
	if got := (opt[0] + opt[1]) / (prop[0] + prop[1]); math.Abs(got-5250.0/2400) > 1e-6 {
		t.Errorf("optimal / proportional = %.3f, want %.3f", got, 5250.0/2400)
	}
}
