package components

import "math"

func init() {
	Register(Info{Type: "RateLimiter", New: func() Component { return &RateLimiter{} }})
	Register(Info{Type: "ConcurrencyLimiter", New: func() Component { return &ConcurrencyLimiter{} }})
}

// RateLimiter sets a token bucket at its selector: rate_limit in requests
// per second and an optional burst in requests. Invalid means no limit.
type RateLimiter struct {
	Select      Selector `json:"selector"`
	Fail        FailMode `json:"fail_mode,omitempty"`
	rate, burst float64
}

// Ports: rate_limit, burst →.
func (*RateLimiter) Ports() Ports {
	return Ports{In: []Port{{Name: "rate_limit", Required: true, Bounds: NonNegative}, {Name: "burst", Bounds: NonNegative}}}
}

// Provision starts with no limit.
func (r *RateLimiter) Provision(Env) error {
	r.rate, r.burst = Invalid, Invalid
	return r.Fail.Validate()
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

// ConcurrencyLimiter caps requests in flight at its selector.
type ConcurrencyLimiter struct {
	Select Selector `json:"selector"`
	Fail   FailMode `json:"fail_mode,omitempty"`
	limit  float64
}

// Ports: limit →.
func (*ConcurrencyLimiter) Ports() Ports {
	return Ports{In: []Port{{Name: "limit", Required: true, Bounds: NonNegative}}}
}

// Provision starts with no limit.
func (c *ConcurrencyLimiter) Provision(Env) error {
	c.limit = Invalid
	return c.Fail.Validate()
}

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
