package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// BenchmarkReloadLatency measures a policy file write until the new policy
// is live: the fsnotify event, the 50 ms debounce, the load, compile and
// swap. The policy is the shipped latency-AIMD example, so the load
// includes evaluating the blueprint. It reports the median and p99 in ms.
func BenchmarkReloadLatency(b *testing.B) {
	src, err := os.ReadFile("../policies/latency-aimd.cue")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	file := filepath.Join(dir, "p.cue")
	if err := os.WriteFile(file, src, 0o644); err != nil {
		b.Fatal(err)
	}
	eng, err := engine.Start(context.Background(), engine.Options{
		Policies: dir, Watch: true, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := eng.Status().Reload.Applied
		version := append(fmt.Appendf(nil, "// version %d\n", i), src...)
		start := time.Now()
		if err := os.WriteFile(file, version, 0o644); err != nil {
			b.Fatal(err)
		}
		for eng.Status().Reload.Applied == before {
			if time.Since(start) > 10*time.Second {
				b.Fatal("the write was never applied")
			}
			time.Sleep(100 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100])/1e6, "p99-ms")
}
