package testbed

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

//lint:file-ignore ST1005 Dist.validate's messages begin with a field's name: they follow the caller's path to it.

// Dist kinds.
const (
	Constant    = "constant"
	Exponential = "exponential"
	Lognormal   = "lognormal"
)

// Dist is a service-time distribution.
type Dist struct {
	// Kind is Constant, Exponential or Lognormal.
	Kind string
	// Mean is the distribution's mean; every kind is parameterised by it so
	// that Capacity does not depend on the shape.
	Mean time.Duration
	// Sigma is the lognormal shape: the standard deviation of the
	// underlying normal. Other kinds ignore it.
	Sigma float64
}

// Sample draws one service time from d using rng. It panics if d.Kind is not
// a known kind; StartTwoTier reports that as an error instead. rng is not
// synchronised here: callers sharing one rng between goroutines must lock.
func (d Dist) Sample(rng *rand.Rand) time.Duration {
	mean := float64(d.Mean)
	switch d.Kind {
	case Constant:
		return d.Mean
	case Exponential:
		return time.Duration(rng.ExpFloat64() * mean)
	case Lognormal:
		if d.Mean <= 0 {
			return 0
		}
		// E[exp(mu + sigma*Z)] = exp(mu + sigma²/2), so this mu keeps the mean at d.Mean.
		mu := math.Log(mean) - d.Sigma*d.Sigma/2
		return time.Duration(math.Exp(mu + d.Sigma*rng.NormFloat64()))
	}
	panic(fmt.Sprintf("testbed: Dist.Kind %q: must be %q, %q or %q", d.Kind, Constant, Exponential, Lognormal))
}

// validate reports why d cannot be sampled, naming the offending field:
// its messages are the tail of the caller's path to d, so they begin with
// the field's name.
func (d Dist) validate() error {
	switch d.Kind {
	case Constant, Exponential, Lognormal:
	default:
		return fmt.Errorf("Kind %q: must be %q, %q or %q", d.Kind, Constant, Exponential, Lognormal)
	}
	if d.Mean < 0 {
		return fmt.Errorf("Mean %v: must be >= 0", d.Mean)
	}
	if d.Sigma < 0 || math.IsNaN(d.Sigma) || math.IsInf(d.Sigma, 0) {
		return fmt.Errorf("Sigma %v: must be finite and >= 0", d.Sigma)
	}
	return nil
}
