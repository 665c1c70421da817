package actuators

import "math"

// Window is what a Recorder counted during one tick, [StartNs, EndNs] in
// monotonic nanoseconds. It is a plain value: reading it needs no
// synchronisation.
type Window struct {
	StartNs, EndNs int64

	Incoming  uint64 // arrivals: Accepted + Rejected
	Accepted  uint64 // arrivals admitted
	Rejected  uint64 // arrivals refused
	Completed uint64 // admitted requests that finished (LatencyCounts.Total())
	Goodput   uint64 // completed OK within the SLO
	Errors    uint64 // completed not OK
	// Abandoned counts the Errors whose client gave up before the answer
	// (Ticket.Abandon), and AbandonedLatencySumNs their latencies (part of
	// LatencySumNs).
	Abandoned             uint64
	AbandonedLatencySumNs uint64
	// OwnLatencySumNs is the part of the answered requests' latencies
	// that was their APIs' own, not shared with the others
	// (Recorder.DoneOwnOn); negative where cheap APIs' answers dominate.
	OwnLatencySumNs int64
	// SharedSqUs is the sum of the squares, in µs², of the answered
	// requests' shared latencies (latency less own, signed; at most
	// 2²² µs an answer), for SharedLatencySemMs.
	SharedSqUs uint64

	InFlight int64 // admitted and not finished at EndNs
	// OldestInFlightNs is the age at EndNs of the oldest request in
	// flight, rounded up by at most 134 ms; 0 when none is.
	OldestInFlightNs int64
	LatencySumNs     uint64          // sum of the latencies of the Completed requests
	LatencyCounts    HistogramCounts // latency histogram of the Completed requests
	// marks, where a Recorder filled the window (marked), has a bit per
	// bucket of LatencyCounts it may have made non-zero, so that a
	// quantile reads a few buckets rather than hundreds.
	marks  histogramMarks
	marked bool

	// Scaled says the recorder had per-API SLOs (NewRecorderWithAPISLOs):
	// ScaledCounts is then the histogram of the answers' latencies, each
	// scaled by the recorder's slo ÷ its API's SLO, and ScaledSumNs their
	// sum. Without, the scaled latencies are the latencies.
	Scaled       bool
	ScaledSumNs  uint64
	ScaledCounts HistogramCounts
	scaledTotal  uint64
	scaledMarks  histogramMarks
	// worstAPI, where Scaled, is WorstAPILatencyMs.
	worstAPI [5]float64
}

// WorstAPILatencyMs returns, where the recorder had per-API SLOs
// (Scaled), the worst API's mean, p50, p90, p95 and p99 over the last
// seconds (a decay of tailHorizon), each as a fraction of that API's own
// SLO times the recorder's slo (the scaled latencies' units), from bins a
// quarter of an octave wide, among the APIs with minTailAnswers of
// weight: the tail of an API too small a part of one tick's answers for
// the pooled quantiles to show it. NaN where no API has the weight, and
// without per-API SLOs.
func (w *Window) WorstAPILatencyMs() [5]float64 {
	if !w.Scaled {
		nan := math.NaN()
		return [5]float64{nan, nan, nan, nan, nan}
	}
	return w.worstAPI
}

// latencyMarks returns the window's marks, or nil where it has none.
func (w *Window) latencyMarks() *histogramMarks {
	if w.marked {
		return &w.marks
	}
	return nil
}

// Seconds returns the window's length in seconds.
func (w *Window) Seconds() float64 { return float64(w.EndNs-w.StartNs) / 1e9 }

// LatencyAvgMs returns the mean latency of the completed requests in
// milliseconds, or NaN when none completed.
func (w *Window) LatencyAvgMs() float64 {
	if w.Completed == 0 {
		return math.NaN()
	}
	return float64(w.LatencySumNs) / float64(w.Completed) / 1e6
}

// AnsweredLatencyAvgMs returns the mean latency in milliseconds of the
// completed requests that were not abandoned (the answers a client
// waited for), or, when every completed request was abandoned, of all of
// them, as LatencyAvgMs does; NaN when none completed.
func (w *Window) AnsweredLatencyAvgMs() float64 {
	if w.Abandoned == 0 || w.Abandoned >= w.Completed || w.AbandonedLatencySumNs > w.LatencySumNs {
		return w.LatencyAvgMs()
	}
	return float64(w.LatencySumNs-w.AbandonedLatencySumNs) / float64(w.Completed-w.Abandoned) / 1e6
}

// SharedLatencyAvgMs is AnsweredLatencyAvgMs less the latency that was
// the answered requests' APIs' own (OwnLatencySumNs): the latency a queue
// that every API crosses would raise, and one API's slower dependency
// would not.
func (w *Window) SharedLatencyAvgMs() float64 {
	avg := w.AnsweredLatencyAvgMs()
	answered := w.Completed - w.Abandoned
	if w.OwnLatencySumNs == 0 || w.Abandoned >= w.Completed {
		return avg
	}
	return math.Max(0, avg-float64(w.OwnLatencySumNs)/float64(answered)/1e6)
}

// SharedLatencySemMs is the standard error of SharedLatencyAvgMs in
// milliseconds: how far the mean of the window's answers may be from
// their latency's by chance, which a window of fifty answers where APIs'
// latencies spread widely puts at a fifth of the mean or more. NaN with
// fewer than two answers.
func (w *Window) SharedLatencySemMs() float64 {
	if w.Abandoned >= w.Completed || w.Completed-w.Abandoned < 2 || w.AbandonedLatencySumNs > w.LatencySumNs {
		return math.NaN()
	}
	n := float64(w.Completed - w.Abandoned)
	meanUs := (float64(w.LatencySumNs-w.AbandonedLatencySumNs) - float64(w.OwnLatencySumNs)) / n / 1000
	variance := math.Max(0, float64(w.SharedSqUs)/n-meanUs*meanUs) * n / (n - 1)
	return math.Sqrt(variance/n) / 1000
}

// QuantileMs returns the q-quantile (q in [0, 1]) of the completed requests'
// latency in milliseconds, within 1.6 % for latencies from 512 ns to 137 s
// (see Histogram). It returns NaN when none completed or q is outside
// [0, 1].
func (w *Window) QuantileMs(q float64) float64 {
	var ns [1]float64
	w.LatencyCounts.markedQuantilesNs(w.Completed, w.latencyMarks(), []float64{q}, ns[:])
	return ns[0] / 1e6
}

// ScaledLatencyAvgMs is LatencyAvgMs of the latencies scaled to the
// recorder's slo (Scaled), or LatencyAvgMs where the recorder had no
// per-API SLOs.
func (w *Window) ScaledLatencyAvgMs() float64 {
	if !w.Scaled {
		return w.LatencyAvgMs()
	}
	if w.scaledTotal == 0 {
		return math.NaN()
	}
	return float64(w.ScaledSumNs) / float64(w.scaledTotal) / 1e6
}

// ScaledQuantilesMs is QuantilesMs of the latencies scaled to the
// recorder's slo (Scaled), or QuantilesMs where the recorder had no
// per-API SLOs.
func (w *Window) ScaledQuantilesMs(qs, dst []float64) {
	if !w.Scaled {
		w.QuantilesMs(qs, dst)
		return
	}
	w.ScaledCounts.markedQuantilesNs(w.scaledTotal, &w.scaledMarks, qs, dst)
	for i := range qs {
		dst[i] /= 1e6
	}
}

// Rate returns count per second over the window, or NaN when the window is
// empty or inverted.
func (w *Window) Rate(count uint64) float64 {
	seconds := w.Seconds()
	if seconds <= 0 {
		return math.NaN()
	}
	return float64(count) / seconds
}

// QuantilesMs sets dst[i] to the qs[i]-quantile of the completed requests'
// latency in milliseconds, as QuantileMs would, reading the histogram once
// for increasing qs (see HistogramCounts.QuantilesNs). dst must be at least
// as long as qs.
func (w *Window) QuantilesMs(qs, dst []float64) {
	w.LatencyCounts.markedQuantilesNs(w.Completed, w.latencyMarks(), qs, dst)
	for i := range qs {
		dst[i] /= 1e6
	}
}
