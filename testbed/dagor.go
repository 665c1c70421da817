package testbed

import (
	"slices"
	"time"
)

// DagorPolicy is the DAGOR-like baseline: no Spillway policy at the entry
// (like NoPolicy), and instead every bounded service sheds by priority on
// its own, after the upstream services have already spent their work on
// the request. It is modelled on DAGOR (Zhou et al., "Overload Control for
// Scaling WeChat Microservices", SoCC 2018), without the paper's
// collaborative part: no service tells its callers its admission level, so
// a request doomed downstream is still served upstream. It runs in the
// virtual driver only; see dagorShedder for the mechanism.
func DagorPolicy() Policy { return Policy{Name: "dagor", Dagor: true} }

// DAGOR's published parameters (SoCC 2018, §4.2 and §4.3).
const (
	// dagorQueueThreshold: a service is overloaded when the mean queueing
	// time of the requests it started in a window exceeds 20 ms.
	dagorQueueThreshold = 20 * time.Millisecond
	// dagorWindow and dagorWindowRequests: a window ends after 1 s or
	// after 2000 requests have arrived, whichever comes first.
	dagorWindow         = time.Second
	dagorWindowRequests = 2000
	// dagorShed: an overloaded service moves its admission level so that
	// about 5 % fewer of the window's requests would have passed.
	dagorShed = 0.05
	// dagorRelax: a service that is not overloaded moves it so that about
	// 1 % more would have passed.
	dagorRelax = 0.01
	// dagorUserLevels is the number of user priorities within one
	// business priority (the paper hashes the user ID into 128).
	dagorUserLevels = 128
)

// dagorShedder is one bounded service's DAGOR admission control, a pure
// state machine: the caller reports each request's arrival (Admit, which
// answers whether the service takes it) and the queueing time of each
// request that reaches a worker (Started), with the virtual time of both.
//
// Requests carry a compound priority, here a rank: business priority first
// (the API's Priority, 1 the most important), then a user priority hashed
// from the request, one of 128 per business priority, so that the level
// moves in steps finer than a whole API. Rank 0 is the most important. A
// request passes when its rank is below the cutoff; at first every rank
// passes.
//
// The service counts, per window, the requests that arrive at each rank
// (shed or not) and the mean queueing time of those it starts. When a
// window ends it moves the cutoff once:
//
//   - overloaded (mean queueing time > 20 ms): down to the highest cutoff
//     at which at most 95 % of the window's admitted requests would have
//     passed, so the least important ranks go first;
//   - otherwise: up to the lowest cutoff at which at least 101 % of them
//     would have passed, and at least one more request; where no request
//     arrived above the cutoff, that is every rank.
//
// A window in which nothing started has a mean queueing time of 0. It is
// not safe for concurrent use.
type dagorShedder struct {
	cutoff      int   // requests of rank < cutoff pass
	windowStart int64 // virtual nanoseconds
	arrived     int   // requests that arrived in the window, shed or not
	started     int   // requests that reached a worker in the window
	queuedNs    int64 // their total queueing time
	histogram   []int // arrivals in the window, per rank
}

func newDagorShedder(ranks int) *dagorShedder {
	return &dagorShedder{cutoff: ranks, histogram: make([]int, ranks)}
}

// Admit counts a request of the given rank arriving at now and reports
// whether the service takes it.
func (d *dagorShedder) Admit(now int64, rank int) bool {
	d.roll(now)
	d.histogram[rank]++
	d.arrived++
	pass := rank < d.cutoff
	if d.arrived >= dagorWindowRequests {
		d.adjust(now)
	}
	return pass
}

// Started counts a request that reached a worker at now after waiting
// queued in the service's queue.
func (d *dagorShedder) Started(now int64, queued time.Duration) {
	d.roll(now)
	d.started++
	d.queuedNs += int64(queued)
}

// roll ends the window if it is a full dagorWindow old.
func (d *dagorShedder) roll(now int64) {
	if now-d.windowStart >= int64(dagorWindow) {
		d.adjust(now)
	}
}

// adjust moves the cutoff for the window that ends at now and starts the
// next one.
func (d *dagorShedder) adjust(now int64) {
	overloaded := d.started > 0 && d.queuedNs/int64(d.started) > int64(dagorQueueThreshold)
	admitted := 0
	for _, n := range d.histogram[:d.cutoff] {
		admitted += n
	}
	passed := admitted
	if overloaded {
		target := (1 - dagorShed) * float64(admitted)
		for d.cutoff > 0 && float64(passed) > target {
			d.cutoff--
			passed -= d.histogram[d.cutoff]
		}
	} else {
		target := (1 + dagorRelax) * float64(admitted)
		for d.cutoff < len(d.histogram) && (float64(passed) < target || passed == admitted) {
			passed += d.histogram[d.cutoff]
			d.cutoff++
		}
	}
	d.windowStart, d.arrived, d.started, d.queuedNs = now, 0, 0, 0
	clear(d.histogram)
}

// dagorRanks are each API's business priority as a rank offset: the
// index of its Priority among the app's distinct priorities, most
// important first, times dagorUserLevels. The second result is the number
// of ranks.
func dagorRanks(app App) ([]int, int) {
	var priorities []int
	for _, api := range app.APIs {
		priorities = append(priorities, api.Priority)
	}
	slices.Sort(priorities)
	priorities = slices.Compact(priorities)
	offsets := make([]int, len(app.APIs))
	for i, api := range app.APIs {
		offsets[i] = slices.Index(priorities, api.Priority) * dagorUserLevels
	}
	return offsets, len(priorities) * dagorUserLevels
}

// dagorUser is a request's user priority, 0 to dagorUserLevels−1, hashed
// from its demand seed: the same for every call of the request and for
// its retries, as a hashed user ID would be.
func dagorUser(demand uint64) int {
	return int(mix64(demand^0xda6057a7e) % dagorUserLevels)
}
