package actuators

import (
	"sync/atomic"

	"github.com/spillway-dev/spillway/actuators/internal/shard"
)

// Counter is a uint64 counter that many goroutines may add to at once
// without contending: each processor adds to its own shard, on its own
// cache line, and Load adds the shards up.
//
// The zero value is a counter at 0, ready to use; its shards are allocated
// by the first Add (Add(0) allocates them ahead of the hot path). Add and
// Load are safe for concurrent use and lock-free; Add allocates nothing
// after the first. A Load racing Adds sees each of them or not, as with one
// atomic word, but not necessarily in the order they happened.
type Counter struct {
	shards atomic.Pointer[[]paddedUint64]
}

// paddedUint64 is one shard, alone on its 64-byte cache line.
type paddedUint64 struct {
	n atomic.Uint64
	_ [56]byte
}

// Add adds delta to the counter.
func (c *Counter) Add(delta uint64) { c.AddOn(shard.Index(), delta) }

// AddOn is Add into the shard of processor proc, for a caller that adds to
// several counters and looks its processor up once (package
// actuators/internal/shard). Any proc is correct; only the caller's own
// avoids contention.
func (c *Counter) AddOn(proc int, delta uint64) {
	s := c.shards.Load()
	if s == nil {
		s = c.allocate()
	}
	(*s)[proc&(len(*s)-1)].n.Add(delta)
}

// Load returns the counter's value.
func (c *Counter) Load() uint64 {
	s := c.shards.Load()
	if s == nil {
		return 0
	}
	var total uint64
	for i := range *s {
		total += (*s)[i].n.Load()
	}
	return total
}

func (c *Counter) allocate() *[]paddedUint64 {
	s := make([]paddedUint64, shard.Count())
	if c.shards.CompareAndSwap(nil, &s) {
		return &s
	}
	return c.shards.Load()
}
