package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

// limitPolicy limits the control point "cp" to RATE requests per second;
// the rate also identifies which version of the file is running.
func limitPolicy(rate int) string {
	return enginetest.Policy("limit", "20ms", fmt.Sprintf(`{Variable: {value: %d, out_ports: output: "RATE"}},
		{RateLimiter: {selector: {control_point: "cp"}, in_ports: {rate_limit: "RATE"}}},`, rate))
}

// A live HTTP server behind Spillway serves 8 clients while its policy file
// is rewritten 7 times, alternating valid, invalid and empty; each rewrite
// waits for the previous reload to finish and for requests to be served
// since, so every reload happens under load. Every request is admitted or
// rejected, none is lost or fails with a 5xx, and the policy running at the
// end is the last valid one.
func TestReloadUnderLoadLosesNothing(t *testing.T) {
	const (
		clients  = 8
		rewrites = 7 // valid, invalid, empty, twice, then valid
	)
	dir := t.TempDir()
	file := filepath.Join(dir, "limit.cue")
	if err := os.WriteFile(file, []byte(limitPolicy(5000)), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Start(context.Background(), engine.Options{
		Policies: dir, Watch: true, Debounce: 5 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	srv := httptest.NewServer(eng.HTTP("cp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 10 * time.Second}

	var offered, admitted, rejected, other atomic.Int64
	var firstOther atomic.Value
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop.Store(true) // before the wait, also when the test fails early
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				offered.Add(1)
				resp, err := client.Get(srv.URL + "/")
				if err != nil {
					other.Add(1)
					firstOther.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					admitted.Add(1)
				case http.StatusTooManyRequests:
					rejected.Add(1)
				default:
					other.Add(1)
					firstOther.CompareAndSwap(nil, resp.Status)
				}
			}
		}()
	}

	// Rewrite the file while the load runs: valid, invalid, empty, ...,
	// ending on a valid version (6 % 3 == 0).
	lastValid := 5000
	finished := func(attempts uint64) func() bool {
		return func() bool {
			st := eng.Status().Reload
			return st.Attempts > attempts && st.Applied+st.LoadErrors >= st.Attempts
		}
	}
	for i := 0; i < rewrites; i++ {
		since := offered.Load()
		enginetest.Eventually(t, 10*time.Second, "requests served since the last reload", func() bool {
			return offered.Load() >= since+2*clients
		})
		var src string
		switch i % 3 {
		case 0:
			lastValid = 1000 + 100*i
			src = limitPolicy(lastValid)
		case 1:
			src = limitPolicy(1)[:80] // half-written
		case 2:
			src = ""
		}
		attempts := eng.Status().Reload.Attempts
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		enginetest.Eventually(t, 30*time.Second, fmt.Sprintf("the reload of rewrite %d", i), finished(attempts))
	}
	since := offered.Load()
	enginetest.Eventually(t, 10*time.Second, "requests served after the last reload", func() bool {
		return offered.Load() >= since+2*clients
	})
	stop.Store(true)
	wg.Wait()

	served := admitted.Load() + rejected.Load()
	if other.Load() != 0 {
		t.Fatalf("%d requests neither admitted nor rejected; first: %v", other.Load(), firstOther.Load())
	}
	if served != offered.Load() {
		t.Fatalf("admitted %d + rejected %d = %d, offered %d", admitted.Load(), rejected.Load(), served, offered.Load())
	}
	acc, rej := eng.ControlPoints().Get("cp").API("*").Counts()
	if int64(acc) != admitted.Load() || int64(rej) != rejected.Load() {
		t.Fatalf("the control point counted %d admitted, %d rejected; the clients saw %d and %d", acc, rej, admitted.Load(), rejected.Load())
	}
	if admitted.Load() == 0 || rejected.Load() == 0 {
		t.Fatalf("admitted %d, rejected %d: the test needs both", admitted.Load(), rejected.Load())
	}
	enginetest.Eventually(t, 10*time.Second, fmt.Sprintf("RATE %d of the last valid version", lastValid), func() bool {
		v, err := eng.Signal("limit", "RATE")
		return err == nil && v == float64(lastValid) && eng.Status().Reload.LastError == nil
	})
	st := eng.Status().Reload
	t.Logf("offered %d: admitted %d, rejected %d; reloads: %d attempts, %d applied, %d load errors",
		offered.Load(), admitted.Load(), rejected.Load(), st.Attempts, st.Applied, st.LoadErrors)
	if st.LoadErrors == 0 || st.Applied < 2 {
		t.Fatalf("reloads %+v: the rewrites did not exercise both outcomes", st)
	}
}
