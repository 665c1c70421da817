package engine

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/fleet"
)

// HistoryWindow is how far back the engine keeps every signal of every
// policy, tick by tick, for History (the live page). A policy keeps at most
// MaxHistoryTicks ticks, so an evaluation interval under 50 ms keeps less
// than the window.
const HistoryWindow = 10 * time.Minute

// MaxHistoryTicks caps the ticks kept per policy (memory: 8 bytes per
// signal per tick).
const MaxHistoryTicks = 12000

// TickDurationBounds are the bucket upper bounds of the per-policy tick
// duration histogram (spillway_tick_duration_seconds). A tick takes
// microseconds for the blueprints' circuits.
var TickDurationBounds = []time.Duration{
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond,
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, time.Second,
}

// policyHistory is what the engine remembers of one policy's ticks: a ring
// of tick times, each signal's values at those ticks, the count of invalid
// values per signal, and tick durations. It belongs to the policy name and
// survives reloads, so the counters stay monotonic while the policy's
// circuit changes.
//
// The values are kept a row per tick, every signal's value at that tick
// side by side (values[slot*len(series)+j] is series j's at the tick in
// slot), so that recording a tick writes one contiguous row: a tick of a
// thousand policies, each signal in a ring of its own, spent a third of
// its time on the cache misses of those scattered writes. The rings grow
// with the ticks recorded, up to size, rather than being allocated for
// the whole window up front.
type policyHistory struct {
	mu       sync.Mutex
	interval time.Duration
	size     int       // ticks kept: sharedTicks(interval, the set's share)
	timesNs  []int64   // ring of tick times (engine clock), grown up to size
	values   []float64 // ring of rows, a row per slot of timesNs
	next, n  int       // next slot to write; ticks held
	series   []signalSeries
	ticks    uint64
	duration *actuators.CumulativeHistogram
}

// signalSeries is one signal the history keeps: its column in the rows.
type signalSeries struct {
	bind                  int // the signal's index in the circuit
	invalid               uint64
	name, component, port string
}

func newPolicyHistory() *policyHistory {
	d, err := actuators.NewCumulativeHistogram(TickDurationBounds)
	if err != nil {
		panic(err) // TickDurationBounds is a constant list
	}
	return &policyHistory{duration: d}
}

// historyFor returns the history of c's policy, bound to c's signals,
// keeping share of the ticks of HistoryWindow (historyShare); e.mu is
// held. A signal keeps its values and counters across a reload as long as
// its name is unchanged; a changed evaluation interval restarts the
// values, which are meaningless on the new time base.
func (e *Engine) historyFor(c *Circuit, share float64) *policyHistory {
	if e.histories == nil {
		e.histories = map[string]*policyHistory{}
	}
	h := e.histories[c.Spec.Name]
	if h == nil {
		h = newPolicyHistory()
		e.histories[c.Spec.Name] = h
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var series []signalSeries
	invalid := map[string]uint64{}
	for _, s := range h.series {
		invalid[s.name] = s.invalid
	}
	for _, n := range c.nodes {
		outs := n.comp.Ports().Out
		for slot, idx := range n.out {
			if idx >= 0 {
				name := c.names[idx]
				series = append(series, signalSeries{bind: idx, invalid: invalid[name], name: name, component: componentLabel(n.spec.Path), port: outs[slot]})
			}
		}
	}
	size := sharedTicks(c.Spec.EvaluationInterval, share)
	if h.interval != c.Spec.EvaluationInterval || h.size == 0 {
		h.interval, h.size, h.series = c.Spec.EvaluationInterval, size, series
		h.timesNs, h.values, h.next, h.n = nil, nil, 0, 0
		return h
	}
	h.relayout(series, size)
	return h
}

// relayout moves the history to new series and rings of size ticks,
// keeping the newest ticks held, as many as fit, and each signal's values
// by name (NaN at the ticks before a new one existed); h.mu is held.
func (h *policyHistory) relayout(series []signalSeries, size int) {
	same := size == h.size && len(series) == len(h.series)
	column := map[string]int{}
	for j, s := range h.series {
		column[s.name] = j
	}
	for j := range series {
		if i, ok := column[series[j].name]; !ok || i != j {
			same = false
		}
	}
	if same {
		h.series = series // the same columns; the labels may have moved
		return
	}
	keep, oldWidth, width := min(h.n, size), len(h.series), len(series)
	times := make([]int64, keep, max(keep, min(64, size)))
	values := make([]float64, keep*width, cap(times)*width)
	for k := range keep {
		slot := (h.next - keep + k + h.size) % h.size // the k-th oldest kept
		times[k] = h.timesNs[slot]
		for j, s := range series {
			v := math.NaN()
			if i, ok := column[s.name]; ok {
				v = h.values[slot*oldWidth+i]
			}
			values[k*width+j] = v
		}
	}
	h.series, h.size, h.timesNs, h.values, h.n, h.next = series, size, times, values, keep, keep%size
}

// historyTicks is how many ticks a policy with this interval keeps when
// the history budget allows it all.
func historyTicks(interval time.Duration) int {
	if interval <= 0 {
		return MaxHistoryTicks
	}
	return min(int(math.Ceil(float64(HistoryWindow)/float64(interval))), MaxHistoryTicks)
}

// sharedTicks is how many ticks a policy with this interval keeps when
// the set keeps share of its history: at least one, the last.
func sharedTicks(interval time.Duration, share float64) int {
	return max(1, int(float64(historyTicks(interval))*share))
}

// historyBytes is the most a policy's history may take: 8 bytes per signal
// and for the tick's time, per tick kept.
func historyBytes(c *Circuit, ticks int) int64 {
	return int64(ticks) * int64(len(c.names)+1) * 8
}

// historyShare is the part of what it would keep (HistoryWindow, at most
// MaxHistoryTicks ticks) that every policy of set keeps so that their
// history fits Caps.HistoryBytes together: 1 when it all fits. Each
// policy keeps the latest ticks, at least one, so a set of more policies
// than the budget holds rows takes a row each. The history feeds the live
// page; the protection does not depend on it, so a set too large for the
// window keeps a shorter one rather than being refused.
func historyShare(set []*Running) float64 {
	var total int64
	for _, r := range set {
		total += historyBytes(r.Circuit, historyTicks(r.Circuit.Spec.EvaluationInterval))
	}
	if limit := Caps.withDefaults().HistoryBytes; total > limit {
		return float64(limit) / float64(total)
	}
	return 1
}

// checkHistoryBudget warns when the policies' signal history would take
// more than Caps.HistoryBytes over the whole HistoryWindow: each keeps
// the same part of it instead (historyShare). The warning names the
// policy that takes the most, and how much of the window it keeps.
func checkHistoryBudget(set []*Running) Diagnostics {
	share := historyShare(set)
	if share >= 1 {
		return nil
	}
	var biggest *Circuit
	var biggestBytes, total int64
	for _, r := range set {
		c := r.Circuit
		bytes := historyBytes(c, historyTicks(c.Spec.EvaluationInterval))
		total += bytes
		if bytes > biggestBytes {
			biggest, biggestBytes = c, bytes
		}
	}
	kept := time.Duration(sharedTicks(biggest.Spec.EvaluationInterval, share)) * biggest.Spec.EvaluationInterval
	return Diagnostics{{Pos: biggest.Spec.Pos, Warning: true, Message: fmt.Sprintf(
		"the policies' signal history over %s would take %s, over the budget of %s (engine.Caps.HistoryBytes): each policy keeps the same part of it instead; policy %q, which takes the most (%d signals, a tick every %s), keeps the last %s; raise the budget, or use a longer evaluation_interval or fewer signals",
		HistoryWindow, sizeString(total), sizeString(Caps.withDefaults().HistoryBytes), biggest.Spec.Name, len(biggest.names), biggest.Spec.EvaluationInterval, kept.Round(time.Second))}}
}

// sizeString is bytes in MiB, or in KiB under one MiB.
func sizeString(bytes int64) string {
	if bytes < 1<<20 {
		return fmt.Sprintf("%d KiB", bytes>>10)
	}
	return fmt.Sprintf("%d MiB", bytes>>20)
}

// componentLabel is a component's path within its policy,
// "components[4].AIMDController", without the file's "policies.<key>."
// prefix, which repeats the policy.
func componentLabel(path string) string {
	if i := strings.LastIndex(path, "components["); i >= 0 {
		return path[i:]
	}
	return path
}

// forgetHistory drops the history of a removed policy; e.mu is held.
func (e *Engine) forgetHistory(name string) { delete(e.histories, name) }

// record stores one tick of c, at nowNs on the engine clock, that took
// took of wall time.
func (h *policyHistory) record(c *Circuit, nowNs int64, took time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	width := len(h.series)
	if len(h.timesNs) < h.size {
		// The rings hold fewer than size ticks: they grow by one,
		// reallocating by doubling up to size.
		if len(h.timesNs) == cap(h.timesNs) {
			grown := min(max(2*cap(h.timesNs), 64), h.size)
			h.timesNs = append(make([]int64, 0, grown), h.timesNs...)
			h.values = append(make([]float64, 0, grown*width), h.values...)
		}
		h.timesNs = h.timesNs[:len(h.timesNs)+1]
		h.values = h.values[:len(h.values)+width]
	}
	h.timesNs[h.next] = nowNs
	row := h.values[h.next*width : (h.next+1)*width]
	for j := range h.series {
		s := &h.series[j]
		v := c.signals[s.bind]
		row[j] = v
		if v != v { // NaN
			s.invalid++
		}
	}
	h.next = (h.next + 1) % h.size
	h.n = min(h.n+1, h.size)
	h.ticks++
	h.duration.Record(int64(took))
}

// at is series j's value in a slot of the ring.
func (h *policyHistory) at(slot, j int) float64 { return h.values[slot*len(h.series)+j] }

// PolicyHistory is one policy's signals over its last ticks (up to
// HistoryWindow), oldest first.
type PolicyHistory struct {
	Policy             string `json:"policy"`
	EvaluationInterval string `json:"evaluation_interval"`
	// TimesNs are the ticks' times on the engine clock (monotonic
	// nanoseconds; see Engine.Now).
	TimesNs []int64        `json:"t_ns"`
	Signals []SignalSeries `json:"signals"`
}

// SignalSeries is one signal's values at PolicyHistory.TimesNs; an invalid
// value is NaN, null in JSON.
type SignalSeries struct {
	Signal string `json:"signal"`
	// Component is the producing component's path, e.g.
	// "components[4].AIMDController", and Port its output port.
	Component string  `json:"component"`
	Port      string  `json:"port"`
	Values    []Float `json:"values"`
}

// History returns every running policy's signals at the ticks after sinceNs
// (engine clock), oldest first; math.MinInt64 returns all that is kept.
func (e *Engine) History(sinceNs int64) []PolicyHistory {
	out := []PolicyHistory{}
	for _, r := range e.Policies() {
		h := r.hist
		if h == nil {
			continue
		}
		h.mu.Lock()
		ph := PolicyHistory{Policy: r.Circuit.Spec.Name, EvaluationInterval: r.Circuit.Spec.EvaluationInterval.String(), TimesNs: []int64{}}
		var slots []int
		for k := 0; k < h.n; k++ {
			slot := (h.next - h.n + k + h.size) % h.size
			if h.timesNs[slot] > sinceNs {
				slots = append(slots, slot)
				ph.TimesNs = append(ph.TimesNs, h.timesNs[slot])
			}
		}
		for j, s := range h.series {
			ss := SignalSeries{Signal: s.name, Component: s.component, Port: s.port, Values: make([]Float, len(slots))}
			for i, slot := range slots {
				ss.Values[i] = Float(h.at(slot, j))
			}
			ph.Signals = append(ph.Signals, ss)
		}
		h.mu.Unlock()
		out = append(out, ph)
	}
	return out
}

// PolicyStats is what an exporter reads of one running policy after its
// last tick.
type PolicyStats struct {
	Policy string
	// Ticks counts the policy's ticks since its name was first loaded.
	Ticks         uint64
	TickDurations actuators.CumulativeCounts
	Signals       []SignalStats
	Actuators     []ActuatorSetpoint
}

// SignalStats is one signal after the last tick.
type SignalStats struct {
	Signal, Component, Port string
	// Value is the last tick's value, NaN when invalid or before the first
	// tick.
	Value float64
	// InvalidTicks counts the ticks at which the signal was invalid.
	InvalidTicks uint64
}

// ActuatorSetpoint is one limiter of a policy and its current setpoint.
type ActuatorSetpoint struct {
	ControlPoint, API string
	// Kind is "rate_limiter" (Setpoint in requests per second) or
	// "concurrency_limiter" (Setpoint in requests in flight).
	Kind string
	// Setpoint is NaN when the limiter is not limiting (fail-open).
	Setpoint float64
	// Global is set for a global rate limit, whose Setpoint is this
	// engine's share; Exact too when it is decided in Redis per request.
	Global *fleet.Status
	Exact  *fleet.ExactStatus
}

// Stats returns the last tick of every running policy, for exporters.
func (e *Engine) Stats() []PolicyStats {
	var out []PolicyStats
	for _, r := range e.Policies() {
		h := r.hist
		if h == nil {
			continue
		}
		ps := PolicyStats{Policy: r.Circuit.Spec.Name}
		h.mu.Lock()
		ps.Ticks = h.ticks
		ps.TickDurations = h.duration.Read()
		for j, s := range h.series {
			v := math.NaN()
			if h.n > 0 {
				v = h.at((h.next-1+h.size)%h.size, j)
			}
			ps.Signals = append(ps.Signals, SignalStats{Signal: s.name, Component: s.component, Port: s.port, Value: v, InvalidTicks: s.invalid})
		}
		h.mu.Unlock()
		for i := range r.sinks {
			// Field by field: a reload may be clearing the detach field of
			// this policy's sinks concurrently (takeSink).
			s := &r.sinks[i]
			sel := s.comp.Selector().Normalized()
			a := ActuatorSetpoint{ControlPoint: sel.ControlPoint, API: sel.API}
			if s.limiter.Bucket != nil {
				a.Kind, a.Setpoint = "rate_limiter", s.limiter.Bucket.Rate()
			} else {
				a.Kind, a.Setpoint = "concurrency_limiter", s.limiter.Concurrency.Limit()
			}
			if s.member != nil {
				st := s.member.Status(time.Now())
				a.Global = &st
			}
			if s.exact != nil {
				st := s.exact.Status()
				a.Exact = &st
			}
			ps.Actuators = append(ps.Actuators, a)
		}
		out = append(out, ps)
	}
	return out
}
