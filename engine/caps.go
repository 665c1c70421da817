package engine

import "time"

// PolicyCaps bound what a policy set may ask of the engine, so that a small
// file cannot make the host allocate gigabytes or tick for seconds. A
// policy over a cap is a load error at its position; the running set stays.
type PolicyCaps struct {
	// ComponentsPerPolicy caps one policy's components. Default 2000.
	ComponentsPerPolicy int
	// SignalsPerPolicy caps one policy's signals. Default 8000.
	SignalsPerPolicy int
	// HistoryBytes bounds the signal history of all policies together (8
	// bytes per signal per tick kept, the most a value takes): where the
	// whole HistoryWindow would take more, every policy keeps the same
	// part of its own (the latest ticks, at least one), and the load
	// warns. Default 32 MiB.
	HistoryBytes int64
	// MinEvaluationInterval is the shortest evaluation_interval. Default
	// 10 ms, the tick loop's resolution.
	MinEvaluationInterval time.Duration
	// MaxEvaluationInterval is the longest evaluation_interval. Default 1
	// h: a policy that looks at its service less often than that cannot
	// protect it, and the scheduler's sums of intervals stay far from
	// overflowing time.Duration.
	MaxEvaluationInterval time.Duration

	// The caps below bound the whole set, all files together; the policy
	// that crosses one, in file order, is the error. The defaults are
	// twice the largest set the project measures (issue #15: 1,000
	// policies of 50 components and 50 signals each, BenchmarkHistoryOf1000WidePolicies),
	// four times for signals.

	// PoliciesPerSet caps the policies of the set; a directory may hold
	// as many policy files, each evaluated on its own. Default 2000.
	PoliciesPerSet int
	// ComponentsPerSet caps the components of all policies. Default
	// 100,000.
	ComponentsPerSet int
	// SignalsPerSet caps the signals of all policies. Default 200,000.
	SignalsPerSet int
	// EvaluationsPerSecond caps the tick loop's work: the sum over the
	// policies of components ÷ evaluation_interval. Default 1,000,000 a
	// second, ten times issue #15's set (50,000 components at 500 ms),
	// a few percent of one core.
	EvaluationsPerSecond int
	// APILabelsPerControlPoint caps the distinct API labels that the
	// policies select at one control point, all policies together
	// (flux-meter and limiter selectors, flux-meter api_slos). Each is
	// tracked on its own for as long as the engine runs, and exported as
	// about 16 metric series. Default 1024, as many as requests may
	// create (controlpoint.MaxAPIs); the shipped policies select a few.
	APILabelsPerControlPoint int
	// APILabelsPerSet caps the same labels over all control points
	// together (a label selected at two control points counts twice).
	// Default 4096: four control points at their cap, about 65,000
	// metric series.
	APILabelsPerSet int
}

// DefaultCaps are the caps used when Caps leaves a field zero.
var DefaultCaps = PolicyCaps{
	ComponentsPerPolicy:      2000,
	SignalsPerPolicy:         8000,
	HistoryBytes:             32 << 20,
	MinEvaluationInterval:    10 * time.Millisecond,
	MaxEvaluationInterval:    time.Hour,
	PoliciesPerSet:           2000,
	ComponentsPerSet:         100_000,
	SignalsPerSet:            200_000,
	EvaluationsPerSecond:     1_000_000,
	APILabelsPerControlPoint: 1024,
	APILabelsPerSet:          4096,
}

// Caps is the engine's caps for every compile in this process. Set it
// before loading.
var Caps = DefaultCaps

func (c PolicyCaps) withDefaults() PolicyCaps {
	defaultTo := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defaultTo(&c.ComponentsPerPolicy, DefaultCaps.ComponentsPerPolicy)
	defaultTo(&c.SignalsPerPolicy, DefaultCaps.SignalsPerPolicy)
	defaultTo(&c.PoliciesPerSet, DefaultCaps.PoliciesPerSet)
	defaultTo(&c.ComponentsPerSet, DefaultCaps.ComponentsPerSet)
	defaultTo(&c.SignalsPerSet, DefaultCaps.SignalsPerSet)
	defaultTo(&c.EvaluationsPerSecond, DefaultCaps.EvaluationsPerSecond)
	defaultTo(&c.APILabelsPerControlPoint, DefaultCaps.APILabelsPerControlPoint)
	defaultTo(&c.APILabelsPerSet, DefaultCaps.APILabelsPerSet)
	if c.HistoryBytes <= 0 {
		c.HistoryBytes = DefaultCaps.HistoryBytes
	}
	if c.MinEvaluationInterval <= 0 {
		c.MinEvaluationInterval = DefaultCaps.MinEvaluationInterval
	}
	if c.MaxEvaluationInterval <= 0 {
		c.MaxEvaluationInterval = DefaultCaps.MaxEvaluationInterval
	}
	return c
}
