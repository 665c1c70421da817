package components

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

func init() {
	Register(Info{Type: "PromQL", New: func() Component { return &PromQL{} },
		Params: []Param{promqlQuery, promqlInterval, promqlTimeout}})
}

// The parameters of PromQL (#PromQL). The timeout's default is derived
// from the interval; the interval's minimum and the timeout's maximum are
// checked by Provision beyond the schema's bounds.
var (
	promqlQuery    = Param{Name: "query", Kind: String}
	promqlInterval = Param{Name: "interval", Kind: DurationKind, Default: DefaultPromQLInterval, Range: Above(0)}
	promqlTimeout  = Param{Name: "timeout", Kind: DurationKind, Range: Above(0)}
)

// The PromQL component's defaults and bounds.
const (
	// DefaultPromQLInterval is how often the query runs when the policy
	// does not say.
	DefaultPromQLInterval = 10 * time.Second
	// DefaultPromQLTimeout is the query's time budget when the policy does
	// not say, shortened to the interval when that is shorter.
	DefaultPromQLTimeout = 2 * time.Second
	// MinPromQLInterval keeps a policy from hammering Prometheus.
	MinPromQLInterval = 100 * time.Millisecond
	// MaxPromQLQueryBytes bounds the query text.
	MaxPromQLQueryBytes = 4096
	// PromQLStaleIntervals is how many intervals a value stays valid after
	// the query that fetched it answered: one late or failed poll is
	// absorbed, two are not.
	PromQLStaleIntervals = 2
)

// PromQL emits the value of a PromQL query against the engine's Prometheus
// (engine.Options.Prometheus): a fleet-wide signal such as the p95 latency
// or the request rate of every replica. The engine runs the query off the
// tick path, every interval with the timeout, and hands the component the
// last answer and its age before each tick (ObserveQuery); the component
// itself does no I/O.
//
// The output is invalid before the first answer, when the last query
// failed (an error, a timeout, an empty result, several series, a result
// that is not a number, NaN or ±Inf), and when the last answer is older
// than PromQLStaleIntervals intervals.
type PromQL struct {
	QueryText   string    `json:"query"`
	IntervalSet *Duration `json:"interval"`
	TimeoutSet  *Duration `json:"timeout"`

	interval, timeout Duration // in force, after Provision
	value             float64
	age               time.Duration
}

// Query is what the engine runs for a QuerySource.
type Query struct {
	// PromQL is the query text, evaluated as an instant query.
	PromQL string
	// Interval is the time between the starts of two queries; Timeout
	// bounds each one (Timeout ≤ Interval).
	Interval, Timeout time.Duration
}

// QuerySource is a component fed from a query the engine runs off the
// tick path (PromQL).
type QuerySource interface {
	Component
	Query() Query
	// ObserveQuery stores, before a tick, the last answer (Invalid when the
	// last query failed or none has answered) and how long ago it came.
	ObserveQuery(value float64, age time.Duration)
}

// Ports: no inputs; the query's value as output.
func (*PromQL) Ports() Ports { return Ports{Out: []string{"output"}} }

// Provision applies the defaults and checks the bounds.
func (p *PromQL) Provision(Env) error {
	p.value = Invalid
	q := strings.TrimSpace(p.QueryText)
	switch {
	case q == "":
		return errors.New("query: must not be empty")
	case len(q) > MaxPromQLQueryBytes:
		return fmt.Errorf("query: %d bytes, over the maximum of %d", len(q), MaxPromQLQueryBytes)
	}
	p.QueryText = q
	var err error
	if p.interval, err = promqlInterval.Duration(p.IntervalSet); err != nil {
		return err
	}
	if p.interval.std() < MinPromQLInterval {
		return fmt.Errorf("interval: %s is shorter than the minimum %s", p.interval.std(), MinPromQLInterval)
	}
	p.timeout = Duration(min(DefaultPromQLTimeout, p.interval.std()))
	if p.TimeoutSet != nil {
		if p.timeout, err = promqlTimeout.Duration(p.TimeoutSet); err != nil {
			return err
		}
	}
	if p.timeout > p.interval {
		return fmt.Errorf("timeout: %s must be at most the interval %s", p.timeout.std(), p.interval.std())
	}
	return nil
}

// Query is the query the engine runs for this component.
func (p *PromQL) Query() Query {
	return Query{PromQL: p.QueryText, Interval: p.interval.std(), Timeout: p.timeout.std()}
}

// MaxAge is the age past which the last answer is invalid.
func (p *PromQL) MaxAge() time.Duration { return PromQLStaleIntervals * p.interval.std() }

// ObserveQuery stores the last answer and its age for the tick about to run.
func (p *PromQL) ObserveQuery(value float64, age time.Duration) { p.value, p.age = value, age }

// Execute emits the last answer while it is fresh and finite.
func (p *PromQL) Execute(_, out []float64) {
	if math.IsInf(p.value, 0) || p.age > p.MaxAge() {
		out[0] = Invalid
		return
	}
	out[0] = p.value
}
