package testbed

import (
	"math"
	"slices"
	"time"
)

// Report is the outcome of one run. Its totals (the embedded Stats) and
// PerAPI cover the scenario proper, not its warm-up. All latencies are in
// milliseconds and rates in req/s. Its JSON form is what `spillway sim
// --json` prints.
type Report struct {
	App      string  `json:"app"`
	Scenario string  `json:"scenario"`
	Load     float64 `json:"load"`
	Policy   string  `json:"policy"`
	// Driver is "virtual" or "live".
	Driver    string  `json:"driver"`
	Seed      uint64  `json:"seed"`
	WarmupS   float64 `json:"warmup_s"`
	DurationS float64 `json:"duration_s"`
	// ThinkS is the closed-loop users' mean think time (Scenario.Think);
	// absent for open-loop clients.
	ThinkS float64 `json:"think_s,omitempty"`
	// Burst is how many requests arrive together (Scenario.Burst); absent
	// for one at a time.
	Burst int `json:"burst,omitempty"`
	// AppCapacityRPS is the app's capacity at its nominal mix.
	AppCapacityRPS float64 `json:"app_capacity_rps"`
	Stats
	// PerAPI is keyed by API name; APIs lists the names in App order.
	PerAPI map[string]APIStats `json:"per_api"`
	APIs   []string            `json:"apis"`
	// Seconds is the whole run, warm-up included, over all APIs.
	Seconds []SecondStats `json:"seconds"`
	// Services are the app's bounded services in App order, with how
	// busy their workers were: how near the policy ran the bottleneck to
	// its physical limit. Virtual runs only (the live servers do not
	// count their workers' time).
	Services []ServiceStats `json:"services,omitempty"`
}

// ServiceStats is how busy one bounded service was over the scenario
// proper and over its steady half (Stats.Steady's seconds): utilisation is
// its workers' busy time over the worker time it had (a capacity drop
// counts only the workers left), and queueing the mean wait in its queue
// of the calls that took a worker in the window.
type ServiceStats struct {
	Name              string  `json:"name"`
	Workers           int     `json:"workers"`
	Utilisation       float64 `json:"utilisation"`
	QueueingMs        float64 `json:"queueing_ms"`
	SteadyUtilisation float64 `json:"steady_utilisation"`
	SteadyQueueingMs  float64 `json:"steady_queueing_ms"`
}

// Stats summarise the requests of one API, or of all, over the scenario
// proper. Requests belong to the second in which they arrived.
type Stats struct {
	// Offered = Admitted + Rejected + Errors + Timeouts + Dropped.
	Offered  int `json:"offered"`
	Admitted int `json:"admitted"`
	Rejected int `json:"rejected"`
	// Goodput counts OK answers within the API's SLO.
	Goodput  int `json:"goodput"`
	Errors   int `json:"errors"`
	Timeouts int `json:"timeouts"`
	Dropped  int `json:"dropped"`

	OfferedRPS float64 `json:"offered_rps"`
	GoodputRPS float64 `json:"goodput_rps"`
	// CapacityRPS is the mean capacity share: per second, the offered mix
	// scaled to the largest load the app's bounded services sustain with
	// the workers they have then.
	CapacityRPS float64 `json:"capacity_rps"`
	// GoodputPerCapacity is GoodputRPS / CapacityRPS.
	GoodputPerCapacity float64 `json:"goodput_per_capacity"`
	// ProportionalRPS is the mean proportional reference: per second, the
	// sum over APIs of min(offered, capacity share). OptimalRPS is the mean
	// optimal reference: per second, the LP optimum (summed over APIs) with
	// each API's offered count of that second as its bound; see optimal.go.
	ProportionalRPS float64 `json:"proportional_rps"`
	OptimalRPS      float64 `json:"optimal_rps"`
	// GoodputPerProportional is GoodputRPS / ProportionalRPS, the same
	// figure as GoodputRatio; GoodputPerOptimal is GoodputRPS / OptimalRPS.
	GoodputPerProportional float64 `json:"goodput_per_proportional"`
	GoodputPerOptimal      float64 `json:"goodput_per_optimal"`
	// GoodputRatio is goodput over what was achievable: the sum over
	// seconds of min(offered, capacity share). It equals goodput/capacity
	// under overload and goodput/offered under light load, so 1 is
	// perfect in every scenario.
	GoodputRatio float64 `json:"goodput_ratio"`
	// RejectedRatio is Rejected / Offered.
	RejectedRatio float64 `json:"rejected_ratio"`
	// Percentiles are over admitted answers and timeouts (a timeout counts
	// as the client timeout), never over rejections. 0 with no samples.
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	// RecoveryS is the longest time to recover over the scenario's marks
	// (its start and every later step of note): the seconds from a mark
	// until p99 is within the SLO for good, in every second up to the next
	// mark or the end. For all APIs together it is the slowest API's. null
	// if p99 is still above the SLO in the last second before the next
	// mark or the end.
	RecoveryS *float64 `json:"recovery_s"`
	// RecoveryByStepS is the time to recover after each mark, in order.
	RecoveryByStepS []*float64 `json:"recovery_by_step_s"`
	// Steady is the last half of the scenario proper.
	Steady WindowStats `json:"steady"`
}

// WindowStats are the headline figures of part of a run.
type WindowStats struct {
	FromS         float64 `json:"from_s"` // from the start of the scenario proper
	ToS           float64 `json:"to_s"`
	GoodputRatio  float64 `json:"goodput_ratio"`
	GoodputRPS    float64 `json:"goodput_rps"`
	RejectedRatio float64 `json:"rejected_ratio"`
	P99Ms         float64 `json:"p99_ms"`
	// The references and ratios of Stats, over the window.
	ProportionalRPS        float64 `json:"proportional_rps"`
	OptimalRPS             float64 `json:"optimal_rps"`
	GoodputPerProportional float64 `json:"goodput_per_proportional"`
	GoodputPerOptimal      float64 `json:"goodput_per_optimal"`
}

// APIStats are the Stats of one API with its definition.
type APIStats struct {
	Stats
	SLOMs            float64 `json:"slo_ms"`
	Priority         int     `json:"priority"`
	CapacityAloneRPS float64 `json:"capacity_alone_rps"`
}

// SecondStats is one second of a run over all APIs.
type SecondStats struct {
	// T is in seconds from the start of the scenario proper: negative
	// during the warm-up.
	T        int `json:"t"`
	Offered  int `json:"offered"`
	Admitted int `json:"admitted"`
	Rejected int `json:"rejected"`
	Goodput  int `json:"goodput"`
	Timeouts int `json:"timeouts"`
	// Errors counts requests that got no answer for another reason than
	// the client timeout, and arrivals the live load generator dropped.
	Errors int `json:"errors"`
	// CapacityRPS is the sum of the APIs' capacity shares in this second.
	CapacityRPS float64 `json:"capacity_rps"`
	// OptimalRPS is the LP optimum with this second's offered counts.
	OptimalRPS float64 `json:"optimal_rps"`
	// GoodputRatio is goodput over min(offered, capacity share), summed
	// over APIs; 0 if nothing was offered.
	GoodputRatio float64 `json:"goodput_ratio"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	// MaxAPIP99OverSLO is the largest per-API p99 / SLO ratio: above 1,
	// some API missed its SLO at the 99th percentile.
	MaxAPIP99OverSLO float64 `json:"max_api_p99_over_slo"`
}

// runTally is what a driver hands to the report: one tally per API.
type runTally struct {
	app      App
	scenario Scenario
	tallies  []*tally
	refs     []*references // per second, computed when first needed
	// services holds, for each whole second T of the run, the bounded
	// services' totals at its end (T+1 s), in App order; nil where the
	// driver does not measure them (live).
	services [][]serviceTotals
}

// references are one second's per-API capacity shares, at the offered
// rates and the workers of that second, and the LP optimum with what each
// API was offered in that second (arrivals, not rates) as its bound. So
// both references are capped by the same offered counts, and the optimum
// is never below the proportional reference, Σᵢ min(offeredᵢ, shareᵢ).
type references struct {
	shares  []float64
	offered []float64 // the counts the optimum was solved for
	optimal []float64
}

// referencesAt is second t's references, the optimum for the given
// offered counts. Should the LP fail, which a feasible, bounded program
// with a slack basis does not, the optimum falls back to the proportional
// reference, a lower bound of it.
func (rt *runTally) referencesAt(t int, offered []float64) *references {
	if rt.refs == nil {
		rt.refs = make([]*references, secondsIn(rt.scenario.Total()))
	}
	at := time.Duration(t) * time.Second
	workers := rt.scenario.workersAt(rt.app, at)
	ref := rt.refs[t]
	if ref == nil {
		ref = &references{shares: rt.app.capacityShares(rt.scenario.ratesAt(at), workers)}
		rt.refs[t] = ref
	}
	if !slices.Equal(ref.offered, offered) {
		// The live driver reports a second before its counts are final.
		ref.offered = slices.Clone(offered)
		var err error
		if ref.optimal, err = rt.app.optimalRates(offered, workers); err != nil {
			ref.optimal = make([]float64, len(offered))
			for i := range offered {
				ref.optimal[i] = math.Min(offered[i], ref.shares[i])
			}
		}
	}
	return ref
}

// secondOf is second t of every API, with the references.
func (rt *runTally) secondOf(t int) []apiSecond {
	out := make([]apiSecond, len(rt.app.APIs))
	offered := make([]float64, len(out))
	for i := range out {
		s, lat := rt.tallies[i].sorted(t)
		out[i] = apiSecond{Second: s, latencies: lat}
		offered[i] = float64(s.Offered)
	}
	if rt.scenario.Think > 0 {
		// Closed-loop users offer what the policy lets them; the
		// references take what they would offer answered at each API's
		// no-queue latency (demandAt).
		offered = rt.scenario.demandAt(rt.app, time.Duration(t)*time.Second)
	}
	ref := rt.referencesAt(t, offered)
	for i := range out {
		out[i].share = ref.shares[i]
		out[i].achievable = math.Min(offered[i], ref.shares[i])
		out[i].optimal = ref.optimal[i]
	}
	return out
}

func newRunTally(app App, s Scenario) *runTally {
	rt := &runTally{app: app, scenario: s, tallies: make([]*tally, len(app.APIs))}
	for i, api := range app.APIs {
		rt.tallies[i] = newTally(secondsIn(s.Total()), api.SLO)
	}
	return rt
}

// apiSecond is one API's second, with its sorted latencies and capacity.
type apiSecond struct {
	Second
	latencies  []time.Duration
	share      float64 // capacity share in req/s
	achievable float64 // min(offered, share·1 s): the proportional reference
	optimal    float64 // the LP optimum bounded by offered: the optimal reference
}

// second is second t of the run over all APIs.
func (rt *runTally) second(t int) SecondStats {
	out := SecondStats{T: t - int(rt.scenario.Warmup/time.Second)}
	var all []time.Duration
	var achievable float64
	seconds := rt.secondOf(t)
	for i, api := range rt.app.APIs {
		s := seconds[i]
		out.Offered += s.Offered
		out.Admitted += s.Admitted
		out.Rejected += s.Rejected
		out.Goodput += s.Goodput
		out.Timeouts += s.Timeouts
		out.Errors += s.Errors + s.Dropped
		out.CapacityRPS += s.share
		out.OptimalRPS += s.optimal
		achievable += s.achievable
		all = append(all, s.latencies...)
		out.MaxAPIP99OverSLO = math.Max(out.MaxAPIP99OverSLO, float64(s.P99)/float64(api.SLO))
	}
	slices.Sort(all)
	out.P50Ms, out.P99Ms = ms(percentile(all, 0.50)), ms(percentile(all, 0.99))
	out.GoodputRatio = ratio(float64(out.Goodput), achievable)
	return out
}

// report builds the Report of a finished run.
func (rt *runTally) report(policy, driver string, seed uint64) Report {
	app, sc := rt.app, rt.scenario
	r := Report{
		App: app.Name, Scenario: sc.Name, Load: sc.Load, Policy: policy, Driver: driver, Seed: seed,
		WarmupS: sc.Warmup.Seconds(), DurationS: sc.Duration.Seconds(), ThinkS: sc.Think.Seconds(), Burst: sc.Burst, AppCapacityRPS: app.Capacity(),
		PerAPI: map[string]APIStats{},
	}
	n := secondsIn(sc.Total())
	from := int(sc.Warmup / time.Second)
	steadyFrom := from + (n-from)/2
	perAPI := make([][]apiSecond, len(app.APIs))
	for i := range app.APIs {
		perAPI[i] = make([]apiSecond, n)
	}
	for t := range n {
		for i, s := range rt.secondOf(t) {
			perAPI[i][t] = s
		}
	}
	marks := make([]int, len(sc.Marks))
	for i, m := range sc.Marks {
		marks[i] = int(m / time.Second)
	}
	all := make([]int, len(app.APIs))
	for i, api := range app.APIs {
		all[i] = i
		st := APIStats{
			Stats:            rt.stats(perAPI, []int{i}, from, n, steadyFrom, marks),
			SLOMs:            ms(api.SLO),
			Priority:         api.Priority,
			CapacityAloneRPS: finite(app.CapacityAlone(i)),
		}
		r.PerAPI[api.Name] = st
		r.APIs = append(r.APIs, api.Name)
	}
	r.Stats = rt.stats(perAPI, all, from, n, steadyFrom, marks)
	for t := range n {
		r.Seconds = append(r.Seconds, rt.second(t))
	}
	r.Services = rt.serviceStats(from, steadyFrom, n)
	return r
}

// serviceStats is each bounded service's ServiceStats over the seconds
// [from, to) and [steadyFrom, to), or nil without service totals for
// every second.
func (rt *runTally) serviceStats(from, steadyFrom, to int) []ServiceStats {
	if len(rt.services) < to {
		return nil
	}
	// at is the totals at the start of second t: zero at the first.
	at := func(t, i int) serviceTotals {
		if t == 0 {
			return serviceTotals{}
		}
		return rt.services[t-1][i]
	}
	window := func(a, b, i int) (utilisation, queueingMs float64) {
		x, y := at(a, i), at(b, i)
		utilisation = ratio(float64(y.busyNs-x.busyNs), float64(y.capacityNs-x.capacityNs))
		queueingMs = ratio(float64(y.waitNs-x.waitNs), float64(y.started-x.started)) / 1e6
		return utilisation, queueingMs
	}
	var out []ServiceStats
	for _, svc := range rt.app.Services {
		if svc.Workers <= 0 {
			continue
		}
		i := len(out)
		st := ServiceStats{Name: svc.Name, Workers: svc.Workers}
		st.Utilisation, st.QueueingMs = window(from, to, i)
		st.SteadyUtilisation, st.SteadyQueueingMs = window(steadyFrom, to, i)
		out = append(out, st)
	}
	return out
}

// stats aggregates the seconds [from, to) of the given APIs.
func (rt *runTally) stats(perAPI [][]apiSecond, apis []int, from, to, steadyFrom int, marks []int) Stats {
	var st Stats
	var lat []time.Duration
	var achievable, optimal, capacity float64
	for _, i := range apis {
		for t := from; t < to; t++ {
			s := perAPI[i][t]
			optimal += s.optimal
			st.Offered += s.Offered
			st.Admitted += s.Admitted
			st.Rejected += s.Rejected
			st.Goodput += s.Goodput
			st.Errors += s.Errors
			st.Timeouts += s.Timeouts
			st.Dropped += s.Dropped
			achievable += s.achievable
			capacity += s.share
			lat = append(lat, s.latencies...)
		}
	}
	seconds := float64(to - from)
	st.OfferedRPS = float64(st.Offered) / seconds
	st.GoodputRPS = float64(st.Goodput) / seconds
	st.CapacityRPS = capacity / seconds
	st.GoodputPerCapacity = ratio(st.GoodputRPS, st.CapacityRPS)
	st.GoodputRatio = ratio(float64(st.Goodput), achievable)
	st.ProportionalRPS, st.OptimalRPS = achievable/seconds, optimal/seconds
	st.GoodputPerProportional, st.GoodputPerOptimal = st.GoodputRatio, ratio(float64(st.Goodput), optimal)
	st.RejectedRatio = ratio(float64(st.Rejected), float64(st.Offered))
	slices.Sort(lat)
	st.P50Ms, st.P99Ms, st.P999Ms = ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)), ms(percentile(lat, 0.999))
	st.Steady = rt.window(perAPI, apis, steadyFrom, to)

	// Recovery: per mark, the slowest API's.
	worst := 0.0
	recovered := true
	for m, mark := range marks {
		end := to
		if m+1 < len(marks) {
			end = marks[m+1]
		}
		var markWorst *float64
		for _, i := range apis {
			rec := recovery(perAPI[i], rt.app.APIs[i].SLO, mark, end)
			if rec == nil {
				markWorst = nil
				break
			}
			if markWorst == nil || *rec > *markWorst {
				markWorst = rec
			}
		}
		st.RecoveryByStepS = append(st.RecoveryByStepS, markWorst)
		if markWorst == nil {
			recovered = false
		} else {
			worst = math.Max(worst, *markWorst)
		}
	}
	if recovered {
		st.RecoveryS = &worst
	}
	return st
}

// window is the headline figures of seconds [from, to) of the given APIs.
func (rt *runTally) window(perAPI [][]apiSecond, apis []int, from, to int) WindowStats {
	w := WindowStats{FromS: float64(from) - rt.scenario.Warmup.Seconds(), ToS: float64(to) - rt.scenario.Warmup.Seconds()}
	var goodput, offered, rejected int
	var achievable, optimal float64
	var lat []time.Duration
	for _, i := range apis {
		for t := from; t < to; t++ {
			s := perAPI[i][t]
			optimal += s.optimal
			goodput += s.Goodput
			offered += s.Offered
			rejected += s.Rejected
			achievable += s.achievable
			lat = append(lat, s.latencies...)
		}
	}
	slices.Sort(lat)
	w.GoodputRatio = ratio(float64(goodput), achievable)
	w.GoodputRPS = float64(goodput) / float64(max(to-from, 1))
	seconds := float64(max(to-from, 1))
	w.ProportionalRPS, w.OptimalRPS = achievable/seconds, optimal/seconds
	w.GoodputPerProportional, w.GoodputPerOptimal = w.GoodputRatio, ratio(float64(goodput), optimal)
	w.RejectedRatio = ratio(float64(rejected), float64(offered))
	w.P99Ms = ms(percentile(lat, 0.99))
	return w
}

// recovery is the seconds from mark until the p99 of seconds is within slo
// for good, that is in every second up to end; or nil if the last second
// before end is not.
func recovery(seconds []apiSecond, slo time.Duration, mark, end int) *float64 {
	t := end
	for t > mark && seconds[t-1].P99 <= slo {
		t--
	}
	if t == end {
		return nil
	}
	v := float64(t - mark)
	return &v
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ratio is a/b, or 0 when b is 0, so that reports stay valid JSON.
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// finite maps +Inf to 0 for JSON.
func finite(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0
	}
	return v
}
