package shard

import (
	"runtime"
	"testing"
)

func TestCountIsAPowerOfTwoCoveringTheProcessors(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct{ procs, want int }{{1, 1}, {2, 2}, {3, 4}, {8, 8}, {9, 16}, {16, 16}, {64, MaxShards}} {
		runtime.GOMAXPROCS(c.procs)
		if got := Count(); got != c.want {
			t.Errorf("GOMAXPROCS %d: Count() = %d, want %d", c.procs, got, c.want)
		}
	}
}

func TestIndexIsAProcessor(t *testing.T) {
	for i := 0; i < 100; i++ {
		if id := Index(); id < 0 || id >= runtime.GOMAXPROCS(0) {
			t.Fatalf("Index() = %d, outside [0, GOMAXPROCS=%d)", id, runtime.GOMAXPROCS(0))
		}
	}
}
