package testbed

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// streamRandomApp is the RNG stream of RandomAppOf, apart from a run's.
const streamRandomApp = 4 << 32

// RandomAppOf is the random app of a seed, "random:SEED" on the command
// line: an app drawn so that no policy can be tuned to the suite. It has
// 2–6 APIs and 1–4 bounded services of 2–16 workers behind an unbounded
// frontend. Each API is a chain of 1–4 calls to bounded services, drawn
// with repetition, each with a mean service time log-uniform over
// 0.5–50 ms and a lognormal spread σ in [0.2, 0.8]. Its traffic weight is
// uniform in [0.1, 1], its priority in 1–3, and its SLO is 4× its chain's
// mean latency plus 20 ms, rounded up to 10 ms, so it is met on an idle app
// and missed under queueing. The same seed gives the same app.
func RandomAppOf(seed uint64) App {
	rng := rand.New(rand.NewPCG(seed, streamRandomApp))
	between := func(lo, hi int) int { return lo + rng.IntN(hi-lo+1) }
	app := App{
		Name:          fmt.Sprintf("random-%d", seed),
		Entry:         "frontend",
		ClientTimeout: 2 * time.Second,
		Services:      []Service{{Name: "frontend"}},
	}
	bounded := between(1, 4)
	for s := range bounded {
		app.Services = append(app.Services, Service{Name: fmt.Sprintf("svc%d", s+1), Workers: between(2, 16)})
	}
	sigma := 0.2 + 0.6*rng.Float64()
	const minMs, maxMs = 0.5, 50.0
	for i := range between(2, 6) {
		api := API{Name: fmt.Sprintf("api%d", i+1), Priority: between(1, 3), Weight: 0.1 + 0.9*rng.Float64()}
		api.Calls = []Call{{Service: "frontend", Time: Dist{Kind: Constant, Mean: time.Millisecond}}}
		chain := time.Millisecond
		for range between(1, 4) {
			ms := minMs * math.Pow(maxMs/minMs, rng.Float64())
			mean := time.Duration(ms * float64(time.Millisecond)).Round(10 * time.Microsecond)
			api.Calls = append(api.Calls, Call{
				Service: app.Services[1+rng.IntN(bounded)].Name,
				Time:    Dist{Kind: Lognormal, Mean: mean, Sigma: sigma},
			})
			chain += mean
		}
		slo := 4*chain + 20*time.Millisecond
		api.SLO = (slo + 10*time.Millisecond - 1).Truncate(10 * time.Millisecond)
		app.APIs = append(app.APIs, api)
	}
	return app
}
