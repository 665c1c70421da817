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
}

// DefaultCaps are the caps used when Caps leaves a field zero.
var DefaultCaps = PolicyCaps{ComponentsPerPolicy: 2000, SignalsPerPolicy: 8000, HistoryBytes: 32 << 20, MinEvaluationInterval: 10 * time.Millisecond}

// Caps is the engine's caps for every compile in this process. Set it
// before loading.
var Caps = DefaultCaps

func (c PolicyCaps) withDefaults() PolicyCaps {
	if c.ComponentsPerPolicy <= 0 {
		c.ComponentsPerPolicy = DefaultCaps.ComponentsPerPolicy
	}
	if c.SignalsPerPolicy <= 0 {
		c.SignalsPerPolicy = DefaultCaps.SignalsPerPolicy
	}
	if c.HistoryBytes <= 0 {
		c.HistoryBytes = DefaultCaps.HistoryBytes
	}
	if c.MinEvaluationInterval <= 0 {
		c.MinEvaluationInterval = DefaultCaps.MinEvaluationInterval
	}
	return c
}
