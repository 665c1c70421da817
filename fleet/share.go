package fleet

import "math"

// Share returns one member's share of a global limit, in requests per
// second, from its own demand, the fleet's total demand (its own included)
// and the number of live members, as reported by the last sync.
//
// When the fleet asks for no more than the limit, every member gets its
// demand plus an equal part of the headroom; when it asks for more, the
// limit is split in proportion to demand. Either way the shares of a fleet
// that saw the same totals add up to exactly the limit. With no demand
// anywhere the split is even (limit ÷ live). A limit that is invalid (NaN:
// no limit) or infinite is returned as is.
func Share(limit, demand, totalDemand float64, live int) float64 {
	if math.IsNaN(limit) || math.IsInf(limit, 1) {
		return limit
	}
	limit = math.Max(limit, 0)
	live = max(live, 1)
	demand = math.Max(demand, 0)
	totalDemand = math.Max(totalDemand, demand)
	if totalDemand <= limit {
		return demand + (limit-totalDemand)/float64(live)
	}
	return limit * demand / totalDemand
}

// membership holds the largest live count seen within a window, so that a
// member count that falls (an instance left, or Redis lost its data and the
// instances have not all announced themselves again) is believed only once
// it has stayed low for a whole member TTL. Real departures are seen one
// TTL later; a Redis restart never lets the first instance to re-announce
// take the whole limit.
type membership struct {
	peak      int
	peakUntil int64 // ns
}

// observe records a live count at nowNs and returns the count to plan with.
func (m *membership) observe(live int, nowNs, windowNs int64) int {
	if live >= m.peak || nowNs >= m.peakUntil {
		m.peak, m.peakUntil = live, nowNs+windowNs
	}
	return m.peak
}
