package components

import (
	"fmt"
	"math"
	"strings"
	"time"
)

func init() {
	failMode := Param{Name: "fail_mode", Kind: String}
	Register(Info{Type: "RateLimiter", New: func() Component { return &RateLimiter{} },
		Params: []Param{failMode, {Name: "scope", Kind: String, Default: string(DefaultScope)}, {Name: "key", Kind: String},
			// mode's default, lease, and budget's, DefaultExactBudget, hold
			// only for a global limit, and budget only in exact mode.
			{Name: "mode", Kind: String}, {Name: "budget", Kind: DurationKind, Range: Above(0)}}})
	Register(Info{Type: "ConcurrencyLimiter", New: func() Component { return &ConcurrencyLimiter{} },
		Params: []Param{failMode, concurrencyBulkhead}})
}

// RateLimiter sets a token bucket at its selector: rate_limit in requests
// per second and an optional burst in requests. Invalid means no limit.
//
// With scope "global", rate_limit and burst are the totals of every engine
// that declares the same key, shared through Redis (engine.Options.Redis):
// each engine's bucket holds its share, so deciding a request never leaves
// the process.
type RateLimiter struct {
	Select Selector `json:"selector"`
	Fail   FailMode `json:"fail_mode,omitempty"`
	// Scope is ScopeLocal (the default) or ScopeGlobal.
	Scope Scope `json:"scope,omitempty"`
	// Key names a global limit across the fleet; required with ScopeGlobal
	// and refused without it.
	Key string `json:"key,omitempty"`
	// Mode is how a global limit decides: ModeLease (the default) or
	// ModeExact; refused for a local limit.
	Mode Mode `json:"mode,omitempty"`
	// Budget bounds the wait on Redis of one request in ModeExact
	// (default DefaultExactBudget); refused in ModeLease.
	BudgetSet   *Duration `json:"budget,omitempty"`
	budget      Duration  // in force, after Provision
	rate, burst float64
}

// Mode says how a global rate limit decides each request.
type Mode string

// The modes of a global RateLimiter, and exact mode's time budget.
const (
	// ModeLease decides every request locally, against this engine's
	// share of the limit, which is reconciled through Redis every sync
	// interval: no network on the request path.
	ModeLease Mode = "lease"
	// ModeExact decides every request in Redis (one atomic GCRA step, one
	// round trip), within Budget; a request Redis does not answer in time
	// is decided locally against the lease share (fail-static). For low
	// rates, where a round trip per request is acceptable.
	ModeExact Mode = "exact"
	// DefaultExactBudget is the longest a request waits on Redis in
	// ModeExact unless the policy says otherwise.
	DefaultExactBudget = 5 * time.Millisecond
	// MaxExactBudget bounds Budget.
	MaxExactBudget = time.Second
)

// Scope says whether a rate limit is this process's or the fleet's.
type Scope string

// The scopes of a RateLimiter.
const (
	// ScopeLocal limits the requests of this process alone.
	ScopeLocal Scope = "local"
	// ScopeGlobal limits the requests of every process with the same key.
	ScopeGlobal Scope = "global"
	// DefaultScope is the scope of a RateLimiter that declares none.
	DefaultScope = ScopeLocal
	// MaxGlobalKeyLength is the longest key, in bytes.
	MaxGlobalKeyLength = 128
)

// Ports: rate_limit, burst →.
func (*RateLimiter) Ports() Ports {
	return Ports{In: []Port{{Name: "rate_limit", Required: true, Bounds: NonNegative}, {Name: "burst", Bounds: NonNegative}}}
}

// Provision starts with no limit and checks the scope and key.
func (r *RateLimiter) Provision(Env) error {
	r.rate, r.burst = Invalid, Invalid
	if r.Scope == "" {
		r.Scope = DefaultScope
	}
	switch r.Scope {
	case ScopeLocal:
		if r.Key != "" {
			return fmt.Errorf("key: only a global rate limit has a key (set scope: %q)", ScopeGlobal)
		}
	case ScopeGlobal:
		if r.Key == "" {
			return fmt.Errorf("key: a global rate limit needs a key, the name every instance shares")
		}
		if len(r.Key) > MaxGlobalKeyLength || strings.ContainsAny(r.Key, "{}") || strings.IndexFunc(r.Key, func(c rune) bool { return c < ' ' || c == 0x7f }) >= 0 {
			return fmt.Errorf("key: %q: must be at most %d bytes, without braces or control characters", r.Key, MaxGlobalKeyLength)
		}
	default:
		return fmt.Errorf("scope: %q: must be %q or %q", r.Scope, ScopeLocal, ScopeGlobal)
	}
	switch {
	case r.Mode != "" && r.Scope != ScopeGlobal:
		return fmt.Errorf("mode: only a global rate limit has a mode (set scope: %q)", ScopeGlobal)
	case r.Mode == "":
		r.Mode = ModeLease
	case r.Mode != ModeLease && r.Mode != ModeExact:
		return fmt.Errorf("mode: %q: must be %q or %q", r.Mode, ModeLease, ModeExact)
	}
	switch {
	case r.BudgetSet != nil && r.Mode != ModeExact:
		return fmt.Errorf("budget: only mode %q waits on Redis", ModeExact)
	case r.Mode == ModeExact && r.BudgetSet == nil:
		r.budget = Duration(DefaultExactBudget)
	case r.Mode == ModeExact:
		r.budget = *r.BudgetSet
		if r.budget <= 0 || r.budget.std() > MaxExactBudget {
			return fmt.Errorf("budget: %s must be > 0 and at most %s", r.budget.std(), MaxExactBudget)
		}
	}
	return r.Fail.Validate()
}

// ExactBudget is the time budget of a global limit in ModeExact, or 0.
func (r *RateLimiter) ExactBudget() time.Duration {
	if r.Mode == ModeExact {
		return r.budget.std()
	}
	return 0
}

// GlobalKey is the key of a global rate limit, or "" for a local one.
func (r *RateLimiter) GlobalKey() string {
	if r.Scope == ScopeGlobal {
		return r.Key
	}
	return ""
}

// FailMode is the bucket's behaviour when its setpoint goes stale.
func (r *RateLimiter) FailMode() FailMode { return r.Fail }

// Selector is where the bucket sits.
func (r *RateLimiter) Selector() Selector { return r.Select }

// Kind is RateSink.
func (*RateLimiter) Kind() SinkKind { return RateSink }

// Execute latches the setpoint; a negative rate is 0.
func (r *RateLimiter) Execute(in, _ []float64) { r.rate, r.burst = nonNegative(in[0]), in[1] }

// Setpoint returns the latched rate and burst.
func (r *RateLimiter) Setpoint() (float64, float64) { return r.rate, r.burst }

// concurrencyBulkhead is ConcurrencyLimiter's bulkhead.
var concurrencyBulkhead = Param{Name: "bulkhead", Kind: Bool, Default: true}

// ConcurrencyLimiter caps requests in flight at its selector.
//
// A limiter shared by several APIs is a bulkhead too (bulkhead, default
// true): an API most of whose requests over the last second or so were not
// answered to a client still waiting (abandoned or failed), such as one whose own dependency hangs, is admitted only while
// the limit has room and does not count against it for the APIs that are
// answered, which keep the whole limit (actuators.Partition). When every
// API is answered, or none is, it is the plain shared limit (once the
// requests admitted while one was not have finished).
type ConcurrencyLimiter struct {
	Select   Selector `json:"selector"`
	Fail     FailMode `json:"fail_mode,omitempty"`
	Bulkhead *bool    `json:"bulkhead"`
	limit    float64
	bulkhead bool
}

// Ports: limit →.
func (*ConcurrencyLimiter) Ports() Ports {
	return Ports{In: []Port{{Name: "limit", Required: true, Bounds: NonNegative}}}
}

// Provision starts with no limit.
func (c *ConcurrencyLimiter) Provision(Env) error {
	c.limit = Invalid
	c.bulkhead = c.Bulkhead == nil || *c.Bulkhead
	return c.Fail.Validate()
}

// IsBulkhead reports whether APIs that are not answered use only the room
// the others leave (bulkhead).
func (c *ConcurrencyLimiter) IsBulkhead() bool { return c.bulkhead }

// FailMode is the limiter's behaviour when its setpoint goes stale.
func (c *ConcurrencyLimiter) FailMode() FailMode { return c.Fail }

// Selector is where the limiter sits.
func (c *ConcurrencyLimiter) Selector() Selector { return c.Select }

// Kind is ConcurrencySink.
func (*ConcurrencyLimiter) Kind() SinkKind { return ConcurrencySink }

// Execute latches the setpoint; a negative limit is 0.
func (c *ConcurrencyLimiter) Execute(in, _ []float64) { c.limit = nonNegative(in[0]) }

// Setpoint returns the latched limit.
func (c *ConcurrencyLimiter) Setpoint() (float64, float64) { return c.limit, Invalid }

func nonNegative(v float64) float64 {
	if IsValid(v) {
		return math.Max(v, 0)
	}
	return v
}
