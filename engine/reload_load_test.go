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
)

// limitPolicy limits the control point "cp" to RATE requests per second;
// the rate also identifies which version of the file is running.
func limitPolicy(rate int) string {
	return fmt.Sprintf(`
package t
import bp "spillway.dev/blueprints"
policies: limit: bp.#Policy & {
	policy_name: "limit"
	evaluation_interval: "20ms"
	components: [
		{Variable: {value: %d, out_ports: output: "RATE"}},
		{RateLimiter: {selector: {control_point: "cp"}, in_ports: {rate_limit: "RATE"}}},
	]
}
`, rate)
}

// A live HTTP server behind Spillway serves 200k requests from 32 clients
// while its policy file is rewritten 100 times, alternating valid, invalid
// and empty. Every request is admitted or rejected, none is lost or fails
// with a 5xx, and the policy running at the end is the last valid one.
func TestReloadUnderLoadLosesNothing(t *testing.T) {
	const (
		total    = 200_000
		clients  = 32
		rewrites = 100
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
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for offered.Add(1) <= total {
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

	// Rewrite the file while the load runs, spread over it: valid,
	// invalid, empty, ..., ending on a valid version (99 % 3 == 0).
	lastValid := 5000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < rewrites; i++ {
			for offered.Load() < int64(i+1)*total/(rewrites+1) {
				time.Sleep(time.Millisecond)
			}
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
			if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	<-done

	served := admitted.Load() + rejected.Load()
	if other.Load() != 0 {
		t.Fatalf("%d requests neither admitted nor rejected; first: %v", other.Load(), firstOther.Load())
	}
	if served != total {
		t.Fatalf("admitted %d + rejected %d = %d, offered %d", admitted.Load(), rejected.Load(), served, total)
	}
	acc, rej := eng.ControlPoints().Get("cp").API("*").Counts()
	if int64(acc) != admitted.Load() || int64(rej) != rejected.Load() {
		t.Fatalf("the control point counted %d admitted, %d rejected; the clients saw %d and %d", acc, rej, admitted.Load(), rejected.Load())
	}
	if admitted.Load() == 0 || rejected.Load() == 0 {
		t.Fatalf("admitted %d, rejected %d: the test needs both", admitted.Load(), rejected.Load())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := eng.Signal("limit", "RATE")
		if err == nil && v == float64(lastValid) && eng.Status().Reload.LastError == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running policy has RATE %v (err %v), want the last valid %d; reload %+v", v, err, lastValid, eng.Status().Reload)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := eng.Status().Reload
	t.Logf("offered %d: admitted %d, rejected %d; reloads: %d attempts, %d applied, %d load errors",
		total, admitted.Load(), rejected.Load(), st.Attempts, st.Applied, st.LoadErrors)
	if st.LoadErrors == 0 || st.Applied < 2 {
		t.Fatalf("reloads %+v: the rewrites did not exercise both outcomes", st)
	}
}
