// Package shard spreads counters that every request writes over one cache
// line per processor, so that cores counting at once do not take turns
// owning one line.
package shard

import (
	"math/bits"
	"runtime"
	_ "unsafe" // go:linkname
)

// procPin and procUnpin are the runtime's own per-P pinning, which
// sync.Pool uses; the runtime keeps them linkable (go.dev/issue/67401).
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// Index returns the id of the processor (the scheduler's P) running the
// caller, in [0, GOMAXPROCS). It is a hint: the goroutine may move to
// another P as soon as Index returns, so a shard picked with it must still
// be written atomically.
func Index() int {
	id := procPin()
	procUnpin()
	return id
}

// Pin is Index, keeping the caller on its processor until Unpin: meanwhile
// no other goroutine runs on that processor, so state that only this
// processor's requests touch (a slot per processor, indexed by the id) can
// be read and written without read-modify-write atomics. The caller must
// call Unpin soon, and must not block, allocate much or call Pin again
// before it does.
func Pin() int { return procPin() }

// Unpin ends a Pin.
func Unpin() { procUnpin() }

// MaxShards bounds Count, so that memory per sharded object stays fixed on
// machines with many cores; beyond it, processors share shards.
const MaxShards = 16

// Count returns how many shards a new sharded object should have:
// GOMAXPROCS rounded up to a power of two, at most MaxShards. Index()&(n-1)
// then picks one; if GOMAXPROCS grows later, processors share shards.
func Count() int {
	n := min(runtime.GOMAXPROCS(0), MaxShards)
	return 1 << bits.Len(uint(n-1))
}
