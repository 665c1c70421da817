package testbed

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

// App is a model of a microservice application: services with bounded
// worker pools, and APIs that are call chains through them. Services shared
// by several APIs make those APIs contend, which is TopFull's setting
// (DESIGN.md §8). The same App runs live (StartLive) and in virtual time
// (Simulate with Virtual).
type App struct {
	// Name identifies the app in reports.
	Name string
	// Entry is the service that receives client requests. Spillway's
	// control point sits in front of it, and it makes every call of an
	// API's chain: its own work locally, the others over the network.
	Entry string
	// Services are the app's services, each named once.
	Services []Service
	// APIs are what clients call. Each is served at the entry under the
	// route pattern Label(), which is also its Spillway API label.
	APIs []API
	// ClientTimeout is how long a client waits for a whole answer before
	// it gives up; a request still queued then leaves its queue.
	ClientTimeout time.Duration
}

// Service is one service of an App.
type Service struct {
	Name string
	// Workers each serve one call at a time; calls beyond them wait in
	// FIFO order. 0 means unbounded: every call is served at once, as a
	// Go frontend that spends its time waiting would be.
	Workers int
	// Discipline is how the workers serve their calls: "" or DisciplineFIFO
	// as above, or DisciplineSharing, where Workers are cores that every
	// call in the service shares (virtual driver only; see Sharing).
	Discipline string
}

// The service disciplines of Service.Discipline.
const (
	DisciplineFIFO    = "fifo"
	DisciplineSharing = "processor-sharing"
)

// Sharing reports whether s is a processor-sharing service: every call
// starts at once, and n calls on w < n workers each run at w/n of a
// worker's speed, as the goroutines of a Go service share its cores (or
// a database's queries its CPUs). There is no queue to wait in: overload
// stretches every call in service, and a call whose client gave up runs
// on, taking its share, to its end.
func (s Service) Sharing() bool { return s.Discipline == DisciplineSharing }

// WithSharing is app with every bounded service processor-sharing, named
// NAME-ps (sim's and bench's --sharing): the same APIs, costs and
// capacity, served as a Go service's goroutines share its cores rather
// than by workers that take calls in turn.
func WithSharing(app App) App {
	app.Name += "-ps"
	app.Services = slices.Clone(app.Services)
	for i := range app.Services {
		if app.Services[i].Workers > 0 {
			app.Services[i].Discipline = DisciplineSharing
		}
	}
	return app
}

// API is one client-facing operation of an App.
type API struct {
	// Name is a lower-case identifier; the route is Label().
	Name string
	// SLO is the latency within which an OK answer counts as goodput.
	SLO time.Duration
	// Priority orders APIs by importance, TopFull style: 1 is the highest,
	// larger numbers are less important.
	Priority int
	// PriorityWeight is the value of one answer of this API in the optimal
	// reference (optimalRates); 0 means 1.
	PriorityWeight float64
	// Weight is the API's share of the app's nominal traffic mix; the
	// weights of an App need not sum to 1. Scenarios express load as a
	// multiple of the capacity at this mix.
	Weight float64
	// Calls run in order. A call holds one worker of its service for a
	// service time drawn from Time, then releases it: workers are not held
	// across calls.
	Calls []Call
}

// Call is one step of an API's call chain.
type Call struct {
	Service string
	// Time is the service time of this call on one worker.
	Time Dist
}

// Label is the API's route pattern at the entry, "GET /" + Name, which is
// also its API label at Spillway's control point (httpmw labels requests
// by r.Pattern).
func (a API) Label() string { return "GET /" + a.Name }

// Path is the URL path of the API at the entry.
func (a API) Path() string { return "/" + a.Name }

var appName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// The most APIs, services and calls per API an App may have: an app file
// is input, and a run's time grows with each (CheckRequests bounds the
// rest). 64 APIs over 31 services, 32 calls each, take 10 s a run; the
// shipped apps have at most 32 APIs, 6 services and 6 calls.
const (
	MaxAPIs     = 64
	MaxServices = 32
	MaxCalls    = 16
)

// Validate reports the first invalid field of a, by its path.
func (a App) Validate() error {
	if !appName.MatchString(a.Name) {
		return fmt.Errorf("name %q: must match %s", a.Name, appName)
	}
	if a.ClientTimeout <= 0 {
		return fmt.Errorf("client_timeout %v: must be > 0", a.ClientTimeout)
	}
	if len(a.Services) == 0 {
		return fmt.Errorf("services: must have at least one service")
	}
	if len(a.Services) > MaxServices {
		return fmt.Errorf("services: %d, at most %d: each bounded one is a constraint of the optimal reference's linear program", len(a.Services), MaxServices)
	}
	seen := map[string]bool{}
	for i, s := range a.Services {
		if !appName.MatchString(s.Name) {
			return fmt.Errorf("services[%d].name %q: must match %s", i, s.Name, appName)
		}
		if seen[s.Name] {
			return fmt.Errorf("services[%d].name %q: declared twice", i, s.Name)
		}
		seen[s.Name] = true
		if s.Workers < 0 {
			return fmt.Errorf("services[%d].workers %d: must be >= 0 (0 is unbounded)", i, s.Workers)
		}
		switch s.Discipline {
		case "", DisciplineFIFO:
		case DisciplineSharing:
			if s.Workers == 0 {
				return fmt.Errorf("services[%d].discipline %q: an unbounded service (workers 0) has nothing to share", i, s.Discipline)
			}
		default:
			return fmt.Errorf("services[%d].discipline %q: must be %q or %q", i, s.Discipline, DisciplineFIFO, DisciplineSharing)
		}
	}
	if !seen[a.Entry] {
		return fmt.Errorf("entry %q: no such service (have %s)", a.Entry, strings.Join(a.serviceNames(), ", "))
	}
	if len(a.APIs) == 0 {
		return fmt.Errorf("apis: must have at least one API")
	}
	if len(a.APIs) > MaxAPIs {
		return fmt.Errorf("apis: %d, at most %d: a run's time grows with each (the optimal reference is a linear program over the APIs, solved every second: 64 take 2.5 s a run, 300 took 90 s)", len(a.APIs), MaxAPIs)
	}
	apis := map[string]bool{}
	var totalWeight float64
	for i, api := range a.APIs {
		if !appName.MatchString(api.Name) {
			return fmt.Errorf("apis[%d].name %q: must match %s", i, api.Name, appName)
		}
		if apis[api.Name] {
			return fmt.Errorf("apis[%d].name %q: declared twice", i, api.Name)
		}
		apis[api.Name] = true
		if api.SLO <= 0 {
			return fmt.Errorf("apis[%d].slo %v: must be > 0", i, api.SLO)
		}
		if api.Priority < 1 {
			return fmt.Errorf("apis[%d].priority %d: must be >= 1 (1 is the highest)", i, api.Priority)
		}
		if !(api.Weight >= 0) || math.IsInf(api.Weight, 0) {
			return fmt.Errorf("apis[%d].weight %v: must be finite and >= 0", i, api.Weight)
		}
		totalWeight += api.Weight
		if !(api.PriorityWeight >= 0) || math.IsInf(api.PriorityWeight, 0) {
			return fmt.Errorf("apis[%d].priority_weight %v: must be finite and >= 0 (0 is 1)", i, api.PriorityWeight)
		}
		if len(api.Calls) == 0 {
			return fmt.Errorf("apis[%d].calls: must have at least one call", i)
		}
		if len(api.Calls) > MaxCalls {
			return fmt.Errorf("apis[%d].calls: %d, at most %d: each call is simulated for every request", i, len(api.Calls), MaxCalls)
		}
		for j, c := range api.Calls {
			if !seen[c.Service] {
				return fmt.Errorf("apis[%d].calls[%d].service %q: no such service (have %s)", i, j, c.Service, strings.Join(a.serviceNames(), ", "))
			}
			if err := c.Time.validate(); err != nil {
				return fmt.Errorf("apis[%d].calls[%d].time.%s", i, j, lowerFirst(err.Error()))
			}
		}
	}
	if totalWeight <= 0 {
		return fmt.Errorf("apis: at least one weight must be > 0")
	}
	return nil
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func (a App) serviceNames() []string {
	names := make([]string, len(a.Services))
	for i, s := range a.Services {
		names[i] = s.Name
	}
	return names
}

// API returns the API with the given name.
func (a App) API(name string) (API, bool) {
	for _, api := range a.APIs {
		if api.Name == name {
			return api, true
		}
	}
	return API{}, false
}

// calls reports whether the API named api calls service.
func (a App) calls(api, service string) bool {
	for _, x := range a.APIs {
		if x.Name != api {
			continue
		}
		for _, c := range x.Calls {
			if c.Service == service {
				return true
			}
		}
	}
	return false
}

// apiIndex returns the index of the API named name, or -1.
func (a App) apiIndex(name string) int {
	for i, x := range a.APIs {
		if x.Name == name {
			return i
		}
	}
	return -1
}

func (a App) serviceIndex(name string) int {
	return slices.IndexFunc(a.Services, func(s Service) bool { return s.Name == name })
}

// workers returns every service's worker count, in Services order.
// workers returns every service's worker count (0: unbounded), as the
// references take it: worker-seconds of the nominal service times that a
// service does per second.
func (a App) workers() []float64 {
	w := make([]float64, len(a.Services))
	for i, s := range a.Services {
		w[i] = float64(s.Workers)
	}
	return w
}

// demand returns, for each service, the mean busy time in seconds that one
// request of API api costs that service's workers.
func (a App) demand(api int) []float64 {
	d := make([]float64, len(a.Services))
	for _, c := range a.APIs[api].Calls {
		d[a.serviceIndex(c.Service)] += c.Time.Mean.Seconds()
	}
	return d
}

// scale returns the largest f such that offering rates[i]·f req/s to each
// API i keeps every bounded service's utilization at most 1, given the
// services' worker counts: by Little's law a service with w workers
// sustains w seconds of work per second. It is +Inf when the rates load no
// bounded service.
func (a App) scale(rates []float64, workers []float64) float64 {
	f := math.Inf(1)
	for s := range a.Services {
		if workers[s] == 0 {
			continue
		}
		var load float64 // worker-seconds per second at the given rates
		for i := range a.APIs {
			if rates[i] > 0 {
				load += rates[i] * a.demand(i)[s]
			}
		}
		if load > 0 {
			f = math.Min(f, workers[s]/load)
		}
	}
	return f
}

// CapacityAlone is the sustainable load of API api alone, in req/s: the
// rate at which its busiest bounded service is fully utilized when no
// other API runs. It is +Inf if the API calls no bounded service.
func (a App) CapacityAlone(api int) float64 {
	rates := make([]float64, len(a.APIs))
	rates[api] = 1
	return a.scale(rates, a.workers())
}

// Capacity is the sustainable load of the whole app at its nominal mix, in
// req/s: the largest total rate, split between APIs by Weight, that keeps
// every bounded service's utilization at most 1.
func (a App) Capacity() float64 {
	return a.totalOf(a.Weights()) * a.scale(a.Weights(), a.workers())
}

// Weights returns the APIs' traffic weights normalised to sum to 1.
func (a App) Weights() []float64 {
	w := make([]float64, len(a.APIs))
	var sum float64
	for _, api := range a.APIs {
		sum += api.Weight
	}
	for i, api := range a.APIs {
		w[i] = api.Weight / sum
	}
	return w
}

func (a App) totalOf(rates []float64) float64 {
	var sum float64
	for _, r := range rates {
		sum += r
	}
	return sum
}

// capacityShares returns each API's share of the app's capacity when APIs
// are offered rates (req/s) with the given worker counts: the offered mix
// scaled to the largest rate every bounded service sustains. An API offered
// nothing has a share of 0. A share above the offered rate means the API
// could take more.
func (a App) capacityShares(rates []float64, workers []float64) []float64 {
	f := a.scale(rates, workers)
	shares := make([]float64, len(rates))
	for i, r := range rates {
		if r > 0 {
			shares[i] = r * f
		}
	}
	return shares
}

// sharedService is the bounded service that the most APIs call; ties go to
// the one most utilized at the nominal mix. It is where the capacity-drop
// scenario removes workers. It returns -1 if no service is bounded.
func (a App) sharedService() int {
	best, bestAPIs, bestUtil := -1, 0, 0.0
	weights := a.Weights()
	for s, svc := range a.Services {
		if svc.Workers == 0 {
			continue
		}
		apis, load := 0, 0.0
		for i := range a.APIs {
			if d := a.demand(i)[s]; d > 0 {
				apis++
				load += weights[i] * d
			}
		}
		util := load / float64(svc.Workers)
		if apis > bestAPIs || (apis == bestAPIs && util > bestUtil) {
			best, bestAPIs, bestUtil = s, apis, util
		}
	}
	return best
}
