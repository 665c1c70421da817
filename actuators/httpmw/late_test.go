package httpmw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

type returnedKey struct{}

// TestLateWritesNeverReachAnotherResponse serves /a and /b concurrently over
// a real server. Each handler leaves two goroutines behind: one writes as
// its handler returns, one once the middleware has returned. The process
// must survive, every body must hold only its own path's letter, and every
// write after the return must fail with ErrHandlerReturned.
func TestLateWritesNeverReachAnotherResponse(t *testing.T) {
	var late sync.WaitGroup
	var unexpected error
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if unexpected == nil {
			unexpected = err
		}
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		letter := []byte(r.URL.Path[1:])
		returned := r.Context().Value(returnedKey{}).(chan struct{})
		w.Write(letter)
		late.Add(2)
		go func() { // races the return: lands in this response or is refused
			defer late.Done()
			for {
				if _, err := w.Write(letter); err != nil {
					if !errors.Is(err, ErrHandlerReturned) {
						fail(err)
					}
					return
				}
			}
		}()
		go func() { // strictly after the return
			defer late.Done()
			<-returned
			for i := 0; i < 3; i++ {
				if _, err := w.Write([]byte("LATE")); !errors.Is(err, ErrHandlerReturned) {
					fail(fmt.Errorf("a write after the handler returned: error %v, want ErrHandlerReturned", err))
				}
				w.WriteHeader(http.StatusInternalServerError)
				w.(http.Flusher).Flush()
			}
		}()
	})
	mw := Wrap(newCP(), handler, Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		returned := make(chan struct{})
		mw.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), returnedKey{}, returned)))
		close(returned)
	}))
	defer srv.Close()

	const clients, tries = 8, 50
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := []string{"a", "b"}[c%2]
			for i := 0; i < tries; i++ {
				resp, err := srv.Client().Get(srv.URL + "/" + path)
				if err != nil {
					fail(err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					fail(err)
					return
				}
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Errorf("/%s: status %d, want 200", path, resp.StatusCode))
				}
				if len(body) == 0 || strings.Trim(string(body), path) != "" {
					fail(fmt.Errorf("/%s: body %.40q holds bytes of another response", path, body))
				}
			}
		}()
	}
	wg.Wait()
	late.Wait()
	if unexpected != nil {
		t.Fatal(unexpected)
	}
}

func TestAfterReturnTheWrapperForwardsNothing(t *testing.T) {
	var kept http.ResponseWriter
	h := Wrap(newCP(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kept = w
		w.Write([]byte("body"))
	}), Options{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if n, err := kept.Write([]byte("late")); n != 0 || !errors.Is(err, ErrHandlerReturned) {
		t.Fatalf("late Write: %d, %v; want 0, ErrHandlerReturned", n, err)
	}
	kept.WriteHeader(http.StatusInternalServerError)
	kept.(http.Flusher).Flush()
	if rec.Code != http.StatusOK || rec.Body.String() != "body" || rec.Flushed {
		t.Fatalf("recorder: %d %q flushed=%v; want 200 \"body\" unflushed", rec.Code, rec.Body.String(), rec.Flushed)
	}
	if _, _, err := kept.(http.Hijacker).Hijack(); !errors.Is(err, ErrHandlerReturned) {
		t.Fatalf("late Hijack: %v, want ErrHandlerReturned", err)
	}
}
