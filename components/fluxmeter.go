package components

import (
	"errors"
	"fmt"
	"time"
)

func init() {
	Register(Info{Type: "FluxMeter", New: func() Component { return &FluxMeter{} },
		Params: []Param{fluxMeterSLO, fluxMeterAPISLOs}})
}

// fluxMeterAPISLOs is FluxMeter's per-API SLOs (#FluxMeter).
var fluxMeterAPISLOs = Param{Name: "api_slos", Kind: DurationMap}

// maxAPISLOs bounds api_slos: each entry declares an API at the control
// point, which bounds its APIs anyway (controlpoint.MaxAPIs).
const maxAPISLOs = 1000

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
	// APISLOs, for a flux meter of several APIs, is the SLO of some of
	// them by label; the others have slo. Goodput then counts each answer
	// within its own API's SLO, and the scaled_latency ports read each
	// answer's latency × slo ÷ its API's SLO: over a fraction of slo there
	// is over that fraction of its own SLO, whichever API it is. The
	// worst_api_latency ports read, in the same units, the worst API's
	// own mean and percentiles over the last seconds.
	APISLOs map[string]Duration `json:"api_slos"`

	reading  FluxReading
	observed bool
}

// Ports: no inputs; the measurements as outputs.
func (f *FluxMeter) Ports() Ports {
	return Ports{Out: []string{
		"latency_avg_ms", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
		"incoming_rps", "accepted_rps", "rejected_rps", "goodput_rps", "in_flight", "completed_rps",
		"oldest_in_flight_ms", "answered_latency_avg_ms", "abandoned_rps", "shared_latency_avg_ms",
		"shared_latency_sem_ms", "scaled_latency_avg_ms", "scaled_latency_p50_ms", "scaled_latency_p90_ms",
		"scaled_latency_p95_ms", "scaled_latency_p99_ms", "full_rps",
		"worst_api_latency_avg_ms", "worst_api_latency_p50_ms", "worst_api_latency_p90_ms",
		"worst_api_latency_p95_ms", "worst_api_latency_p99_ms",
	}}
}

// Provision checks slo and api_slos.
func (f *FluxMeter) Provision(Env) error {
	if err := fluxMeterSLO.Check(float64(f.SLOBound)); err != nil {
		return err
	}
	if len(f.APISLOs) == 0 {
		return nil
	}
	if f.SLOBound <= 0 {
		return errors.New("api_slos needs slo: the SLO of the other APIs, to which each answer's latency is scaled")
	}
	if len(f.APISLOs) > maxAPISLOs {
		return fmt.Errorf("api_slos: %d APIs, at most %d", len(f.APISLOs), maxAPISLOs)
	}
	for api, d := range f.APISLOs {
		if d <= 0 {
			return fmt.Errorf("api_slos[%q] %v: must be > 0s", api, time.Duration(d))
		}
	}
	return nil
}

// APISLOsByLabel is api_slos as durations; nil without.
func (f *FluxMeter) APISLOsByLabel() map[string]time.Duration {
	if len(f.APISLOs) == 0 {
		return nil
	}
	m := make(map[string]time.Duration, len(f.APISLOs))
	for api, d := range f.APISLOs {
		m[api] = time.Duration(d)
	}
	return m
}

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
	out[16], out[17], out[18], out[19], out[20] = r.ScaledLatencyAvgMs, r.ScaledLatencyP50Ms, r.ScaledLatencyP90Ms, r.ScaledLatencyP95Ms, r.ScaledLatencyP99Ms
	out[21] = r.FullRps
	out[22], out[23], out[24], out[25], out[26] = r.WorstAPILatencyAvgMs, r.WorstAPILatencyP50Ms, r.WorstAPILatencyP90Ms, r.WorstAPILatencyP95Ms, r.WorstAPILatencyP99Ms
}
