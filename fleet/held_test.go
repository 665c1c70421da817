package fleet

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHeldSharesNeverAddUpToMoreThanTheLimit plays the sync script's
// arithmetic (the total is the sum of the members' last reports) for
// fleets of 2 to 5 members, each syncing once an interval at a random
// moment of it, with demand that jumps between nothing, a fair part and
// ten times it, as stalls and bursts make it, and syncs that Redis
// executes but whose answer is lost. Redis dies after a random sync; the
// shares the members hold then add up to at most the limit, whatever the
// order of their syncs.
func TestHeldSharesNeverAddUpToMoreThanTheLimit(t *testing.T) {
	const limit = 300.0
	interval := DefaultSyncInterval
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	worst := 0.0
	for trial := range 2000 {
		n := 2 + rng.IntN(4)
		s := &Syncer{interval: interval, ttl: MemberTTLIntervals * interval}
		arrivals := make([]uint64, n)
		members := make([]*Member, n)
		for i := range members {
			members[i] = s.Join("k", "m", func(float64, float64) {}, func() uint64 { return arrivals[i] })
			members[i].lastAt = start
			members[i].SetLimit(limit, limit/10)
		}
		reported := make([]float64, n) // what Redis holds
		type attempt struct {
			at     time.Duration
			member int
			lost   bool // Redis executes it, the answer never arrives
		}
		var attempts []attempt
		rounds := 3 + rng.IntN(10)
		for round := range rounds {
			for i := range n {
				at := time.Duration(round)*interval + time.Duration(rng.Int64N(int64(interval)))
				if rng.IntN(10) == 0 {
					attempts = append(attempts, attempt{at, i, true})
					at += time.Duration(rng.Int64N(int64(interval) - int64(at%interval)))
				}
				attempts = append(attempts, attempt{at, i, false})
			}
		}
		slices.SortStableFunc(attempts, func(a, b attempt) int { return int(a.at - b.at) })
		// Redis dies after a sync of the last round.
		stop := len(attempts) - rng.IntN(n)
		for _, a := range attempts[:stop] {
			m := members[a.member]
			now := start.Add(a.at)
			dt := now.Sub(m.lastAt).Seconds()
			rate := []float64{0, limit / float64(n), 10 * limit / float64(n)}[rng.IntN(3)]
			arrivals[a.member] += uint64(rate * dt)
			demand := m.measure(now)
			reported[a.member] = demand
			if a.lost {
				m.failed(errors.New("i/o timeout"), now)
				continue
			}
			total := 0.0
			for _, d := range reported {
				total += d
			}
			m.synced(n, demand, total, now)
		}
		sum := 0.0
		for _, m := range members {
			m.failed(errors.New("connection refused"), start.Add(time.Duration(rounds)*interval))
			sum += m.Share()
		}
		worst = math.Max(worst, sum)
		if sum > limit*(1+1e-9) {
			t.Fatalf("trial %d, %d members: held shares add up to %.1f, more than the limit %.0f", trial, n, sum, limit)
		}
	}
	t.Logf("the most the held shares added up to: %.1f of %.0f", worst, limit)
}
