package components

import (
	"errors"
	"fmt"
)

func init() {
	Register(Info{Type: "ServiceOverload", New: func() Component { return &ServiceOverload{} },
		Params: []Param{soService, soUtilisationThreshold, soQueueingThresholdMs}})
}

// Defaults of ServiceOverload: a service that keeps nine workers in ten
// busy is what binds its APIs' admission, and a call that waits 10 ms
// there waits behind a queue. The simulator's overload verdict uses the
// same thresholds.
const (
	DefaultOverloadUtilisation = 0.9
	DefaultOverloadQueueingMs  = 10.0
)

// The parameters of ServiceOverload (#ServiceOverload).
var (
	soService              = Param{Name: "service", Kind: String}
	soUtilisationThreshold = Param{Name: "utilisation_threshold", Default: DefaultOverloadUtilisation, Range: Above(0)}
	soQueueingThresholdMs  = Param{Name: "queueing_threshold_ms", Default: DefaultOverloadQueueingMs, Range: Above(0)}
)

// ServiceOverload is one service's overload signal for the RL bridge
// (GET /services), from which an agent forms TopFull's dynamic clusters:
// the APIs whose calls cross a common overloaded service.
//
// overloaded is 1 when a valid utilisation is at least
// utilisation_threshold or a valid queueing_ms at least
// queueing_threshold_ms, 0 when neither is, and invalid when both inputs
// are invalid (nothing is known). Any signal may feed it: a flux meter at a
// control point in front of the service (the topfull blueprint's
// services), a PromQL query, a Variable set by dynamic config.
type ServiceOverload struct {
	Service              string   `json:"service"`
	UtilisationThreshold *float64 `json:"utilisation_threshold"`
	QueueingThresholdMs  *float64 `json:"queueing_threshold_ms"`

	utilisationThreshold, queueingThresholdMs float64
	last                                      ServiceLoad
}

// ServiceLoad is a service's overload signal after a tick.
type ServiceLoad struct {
	Service string
	// Utilisation (a share of capacity) and QueueingMs (ms a call waits)
	// are the inputs of the tick; Invalid when unknown.
	Utilisation, QueueingMs float64
	Overloaded              bool
}

// ServiceSignal is a component that reports a service's overload to the
// engine, which serves it on the RL bridge.
type ServiceSignal interface {
	Component
	// Load is the service's signal after the last Execute.
	Load() ServiceLoad
}

// Ports: utilisation, queueing_ms → overloaded.
func (*ServiceOverload) Ports() Ports {
	return Ports{In: []Port{{Name: "utilisation"}, {Name: "queueing_ms"}}, Out: []string{"overloaded"}}
}

// Provision applies the defaults and checks the thresholds.
func (s *ServiceOverload) Provision(Env) error {
	if s.Service == "" {
		return errors.New("service is required (the service's name, as the APIs' services list it)")
	}
	if len(s.Service) > 256 {
		return fmt.Errorf("service: %d bytes, over the maximum of 256", len(s.Service))
	}
	var err error
	if s.utilisationThreshold, err = soUtilisationThreshold.Float(s.UtilisationThreshold); err != nil {
		return err
	}
	if s.queueingThresholdMs, err = soQueueingThresholdMs.Float(s.QueueingThresholdMs); err != nil {
		return err
	}
	s.last = ServiceLoad{Service: s.Service, Utilisation: Invalid, QueueingMs: Invalid}
	return nil
}

// Execute runs one tick.
func (s *ServiceOverload) Execute(in, out []float64) {
	util, queue := in[0], in[1]
	hot := (IsValid(util) && util >= s.utilisationThreshold) || (IsValid(queue) && queue >= s.queueingThresholdMs)
	switch {
	case hot:
		out[0] = 1
	case IsValid(util) || IsValid(queue):
		out[0] = 0
	default:
		out[0] = Invalid
	}
	s.last = ServiceLoad{Service: s.Service, Utilisation: util, QueueingMs: queue, Overloaded: hot}
}

// Load is the service's signal after the last Execute.
func (s *ServiceOverload) Load() ServiceLoad { return s.last }
