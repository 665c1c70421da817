package components

import "time"

func init() {
	Register(Info{Type: "FluxMeter", New: func() Component { return &FluxMeter{} },
		Params: []Param{fluxMeterSLO}})
}

// fluxMeterSLO is FluxMeter's parameter (#FluxMeter); 0 counts every OK
// response as goodput.
var fluxMeterSLO = Param{Name: "slo", Kind: DurationKind, Range: AtLeast(0)}

// FluxMeter emits one tick's measurement of a selector: latency in ms and
// rates per second. The engine feeds it through Observe before each tick.
type FluxMeter struct {
	Select Selector `json:"selector"`
	// SLOBound is the latency within which an OK response counts as goodput
	// (0: every OK response counts).
	SLOBound Duration `json:"slo"`

	reading  FluxReading
	observed bool
}

// Ports: no inputs; the measurements as outputs.
func (f *FluxMeter) Ports() Ports {
	return Ports{Out: []string{
		"latency_avg_ms", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
		"incoming_rps", "accepted_rps", "rejected_rps", "goodput_rps", "in_flight", "completed_rps",
		"oldest_in_flight_ms", "answered_latency_avg_ms", "abandoned_rps", "shared_latency_avg_ms",
		"shared_latency_sem_ms",
	}}
}

// Provision checks slo.
func (f *FluxMeter) Provision(Env) error { return fluxMeterSLO.Check(float64(f.SLOBound)) }

// Selector is the traffic the flux meter reads.
func (f *FluxMeter) Selector() Selector { return f.Select }

// SLO is the goodput latency bound.
func (f *FluxMeter) SLO() time.Duration { return time.Duration(f.SLOBound) }

// Observe stores the reading of the tick about to run.
func (f *FluxMeter) Observe(r FluxReading) { f.reading, f.observed = r, true }

// Execute copies the last reading to the outputs; all invalid before any.
func (f *FluxMeter) Execute(_, out []float64) {
	if !f.observed {
		for i := range out {
			out[i] = Invalid
		}
		return
	}
	r := &f.reading
	out[0], out[1], out[2], out[3], out[4] = r.LatencyAvgMs, r.LatencyP50Ms, r.LatencyP90Ms, r.LatencyP95Ms, r.LatencyP99Ms
	out[5], out[6], out[7], out[8] = r.IncomingRps, r.AcceptedRps, r.RejectedRps, r.GoodputRps
	out[9], out[10], out[11] = r.InFlight, r.CompletedRps, r.OldestInFlightMs
	out[12], out[13], out[14] = r.AnsweredLatencyAvgMs, r.AbandonedRps, r.SharedLatencyAvgMs
	out[15] = r.SharedLatencySemMs
}
