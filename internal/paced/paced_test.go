package paced

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// serveAll sends n requests to h at once and returns when all are answered.
func serveAll(h http.Handler, n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		}()
	}
	wg.Wait()
}

// Only lower bounds on time: a busy machine can make answers later, never
// earlier.
func TestQueuedRequestsAreAnsweredOneIntervalApart(t *testing.T) {
	h := New(100) // 10 ms apart
	start := time.Now()
	serveAll(h, 6)
	if elapsed := time.Since(start); elapsed < 50*time.Millisecond {
		t.Fatalf("6 requests at once answered in %v; at 100/s the last waits 5 intervals, 50 ms", elapsed)
	}
}

func TestIdleTimeIsNotBankedAsABurst(t *testing.T) {
	h := New(100)
	serveAll(h, 1)
	time.Sleep(100 * time.Millisecond) // ten idle intervals
	start := time.Now()
	serveAll(h, 3)
	if elapsed := time.Since(start); elapsed < 20*time.Millisecond {
		t.Fatalf("3 requests after an idle spell answered in %v; want the 2 later ones an interval apart each (20 ms), no burst", elapsed)
	}
}

func TestAnswerIsTheBody(t *testing.T) {
	w := httptest.NewRecorder()
	New(1000).ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != 200 || w.Body.Len() != 2048 || w.Header().Get("Content-Type") != "text/plain" {
		t.Fatalf("answer %d, %d bytes, %q; want 200 with 2 KiB of text/plain", w.Code, w.Body.Len(), w.Header().Get("Content-Type"))
	}
}
