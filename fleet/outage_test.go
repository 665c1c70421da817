package fleet_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spillway-dev/spillway/fleet"
)

// TestFailedSyncsLeakNothing: a Syncer replaces its client after every
// failed sync (see SyncOnce); a long outage must not pile up goroutines,
// and each failed sync returns within the sync interval.
func TestFailedSyncsLeakNothing(t *testing.T) {
	s, err := fleet.New(fleet.Options{Client: redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Join("k", "m", func(float64, float64) {}, func() uint64 { return 0 })
	ctx := context.Background()
	s.SyncOnce(ctx)
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 200 {
		t0 := time.Now()
		if err := s.SyncOnce(ctx); err == nil {
			t.Fatal("a sync with nothing listening succeeded")
		}
		if d := time.Since(t0); d > s.Interval()+50*time.Millisecond {
			t.Fatalf("a failed sync took %v, more than the sync interval %v", d, s.Interval())
		}
	}
	time.Sleep(300 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+5 {
		t.Errorf("goroutines: %d before 200 failed syncs, %d after", before, after)
	}
	if s.Failures() < 200 {
		t.Errorf("Failures() = %d, want at least 200", s.Failures())
	}
}
