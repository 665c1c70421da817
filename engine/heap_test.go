//go:build !race

package engine

// The heap of reloads is measured without the race detector: the test
// evaluates in this process on one goroutine, where the detector has
// nothing to check and makes each evaluation about six times slower.
// scripts/test runs it after the race run.

import (
	"flag"
	"os"
	"runtime"
	"testing"
)

// heapReloads is how many reloads TestReloadsDoNotGrowTheHeap measures
// after its warm-up. Each is a full CUE evaluation in this process, about
// 30 ms (0.2 s under the race detector, which this file is built without),
// so the suite measures a hundred: a leak of a few KiB a reload is past
// the bound by then; the soak is
// go test ./engine/ -run TestReloadsDoNotGrowTheHeap -args -heap-reloads=900
var heapReloads = flag.Int("heap-reloads", 100, "reloads TestReloadsDoNotGrowTheHeap measures after its warm-up")

// leakPerReload is the heap growth per reload that
// TestReloadsDoNotGrowTheHeap fails on, whatever the number of reloads: a
// leaked CUE context is megabytes, a leaked spec tens of KiB.
const leakPerReload = 8 << 10

// A fresh CUE context per load (which matters to EvalLimits.InProcess and
// to the evaluator child alike): reloads of the blueprint policy leave the
// heap where the warm-up left it, give or take leakPerReload per reload.
func TestReloadsDoNotGrowTheHeap(t *testing.T) {
	src, err := os.ReadFile("../policies/latency-aimd.cue")
	if err != nil {
		t.Fatal(err)
	}
	reload := func() {
		specs, diags := loadSource("p.cue", src)
		if len(diags.Errors()) > 0 {
			t.Fatal(diags)
		}
		if _, d := compileAll(specs); len(d.Errors()) > 0 {
			t.Fatal(d)
		}
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const warmup = 5
	for range warmup {
		reload()
	}
	base := heap()
	n := max(*heapReloads, 1)
	for range n {
		reload()
	}
	after := heap()
	slack := uint64(n) * leakPerReload
	t.Logf("heap after %d reloads %d KiB, after %d more %d KiB (bound +%d KiB)", warmup, base>>10, n, after>>10, slack>>10)
	if after > base+slack {
		t.Fatalf("heap grew from %d KiB to %d KiB over %d reloads, more than %d KiB each", base>>10, after>>10, n, leakPerReload>>10)
	}
}
