package httpmw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
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

// TestLateResponseControllerCallsAreRefused: the wrapper handed the
// server's writer out through Unwrap, so a goroutine the handler left
// behind could call EnableFullDuplex, SetReadDeadline or SetWriteDeadline
// on it through http.ResponseController after the handler returned, when
// the writer serves the next request (a data race under -race). The
// wrapper now implements every ResponseController call inside its gate.
// Over a real server, under -race: a goroutine calls them in a loop until
// refused, racing the return; then each call after the return must fail
// with ErrHandlerReturned.
func TestLateResponseControllerCallsAreRefused(t *testing.T) {
	calls := map[string]func(*http.ResponseController) error{
		"Flush":            (*http.ResponseController).Flush,
		"EnableFullDuplex": (*http.ResponseController).EnableFullDuplex,
		"SetReadDeadline":  func(rc *http.ResponseController) error { return rc.SetReadDeadline(time.Time{}) },
		"SetWriteDeadline": func(rc *http.ResponseController) error { return rc.SetWriteDeadline(time.Time{}) },
		"Hijack":           func(rc *http.ResponseController) error { _, _, err := rc.Hijack(); return err },
	}
	var late sync.WaitGroup
	var mu sync.Mutex
	var refusedWith []error
	h := Wrap(newCP(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // net/http cannot go full duplex over an unread body
		rc := http.NewResponseController(w)
		late.Go(func() { // one goroutine: a ResponseWriter is not for concurrent use
			for {
				for name, call := range calls {
					if name == "Hijack" {
						continue // it would succeed, and take the connection
					}
					if err := call(rc); err != nil {
						mu.Lock()
						refusedWith = append(refusedWith, fmt.Errorf("%s: %w", name, err))
						mu.Unlock()
						return
					}
				}
			}
		})
	}), Options{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	for range 100 {
		resp, err := srv.Client().Post(srv.URL, "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	late.Wait()
	for _, err := range refusedWith {
		if !errors.Is(err, ErrHandlerReturned) {
			t.Fatalf("a late call failed with %v, want ErrHandlerReturned", err)
		}
	}

	var kept http.ResponseWriter
	Wrap(newCP(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { kept = w }), Options{}).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	for name, call := range calls {
		if err := call(http.NewResponseController(kept)); !errors.Is(err, ErrHandlerReturned) {
			t.Errorf("%s after the handler returned: %v, want ErrHandlerReturned", name, err)
		}
	}
}

// blockingWriter is a server's writer whose client does not read: Write
// blocks until released.
type blockingWriter struct {
	plainWriter
	entered, release chan struct{}
}

func (w *blockingWriter) Write(b []byte) (int, error) {
	close(w.entered)
	<-w.release
	return len(b), nil
}

// TestTheReturnSleepsWhileALateWriteIsBlocked: a write that a goroutine
// left behind started before its handler returned holds the middleware's
// return until it ends, so that its bytes land in its own response. The
// wait spun on runtime.Gosched, a full core per blocked write; it now
// sleeps. The process may use a little CPU in the half second, not a core.
func TestTheReturnSleepsWhileALateWriteIsBlocked(t *testing.T) {
	bw := &blockingWriter{plainWriter{h: http.Header{}}, make(chan struct{}), make(chan struct{})}
	h := Wrap(newCP(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go w.Write([]byte("from a goroutine the handler left behind"))
		<-bw.entered
	}), Options{})
	returned := make(chan struct{})
	go func() {
		h.ServeHTTP(bw, httptest.NewRequest("GET", "/", nil))
		close(returned)
	}()
	<-bw.entered
	before := processCPU()
	select {
	case <-returned:
		t.Fatal("the middleware returned during a write to its response")
	case <-time.After(500 * time.Millisecond):
	}
	used := processCPU() - before
	close(bw.release)
	<-returned
	if used > 100*time.Millisecond {
		t.Errorf("while a late write was blocked, the process used %v of CPU in 500 ms: the middleware spins", used)
	}
}

func processCPU() time.Duration {
	var usage syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// TestCloseWaitsOutEveryCallThatEntered drives the gate alone: callers
// enter and exit in a loop, some refused (the late ones, whose enter and
// exit also move the count), while the wrapper closes. closeGate must
// return only once no call is inside, and must always return: its wake-up
// is sent once, by whichever exit takes the count to zero while it waits.
func TestCloseWaitsOutEveryCallThatEntered(t *testing.T) {
	for range 2000 {
		sw := &readerFromWriter{}
		var inside atomic.Int32
		var callers sync.WaitGroup
		for range 4 {
			callers.Go(func() {
				for sw.enter() {
					inside.Add(1)
					runtime.Gosched()
					inside.Add(-1)
					sw.exit()
				}
				for range 3 { // refused callers after the close
					sw.enter()
				}
			})
		}
		runtime.Gosched()
		sw.closeGate()
		if n := inside.Load(); n != 0 {
			t.Fatalf("closeGate returned with %d calls inside", n)
		}
		callers.Wait()
	}
}

// ctxReader ends (with the context's error) only when ctx is done: a body
// read from an upstream request made with r.Context(), say.
type ctxReader struct{ ctx context.Context }

func (c ctxReader) Read([]byte) (int, error) { <-c.ctx.Done(); return 0, c.ctx.Err() }

// A handler that gives up on a copy after a deadline of its own and
// returns leaves a goroutine in io.Copy(w, src). It must get
// ErrHandlerReturned at its next write: were ReadFrom forwarded for any
// source, the end of the request would wait on ReadFrom, which waits on
// src, which waits on r.Context(), which net/http cancels only after
// ServeHTTP returns, and the request would never end, nor free its slot.
func TestACopyLeftBehindDoesNotHoldTheRequest(t *testing.T) {
	cp := newCP()
	cl := actuators.NewConcurrencyLimiter(1)
	cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Concurrency: cl})
	returned := make(chan struct{})
	h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := make(chan struct{})
		go func() {
			close(started)
			io.Copy(w, ctxReader{r.Context()})
		}()
		<-started
		time.Sleep(50 * time.Millisecond) // the handler's own timeout
	}), Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		close(returned)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	go func() {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	select {
	case <-returned:
	case <-time.After(1500 * time.Millisecond):
		t.Errorf("ServeHTTP has not returned 1.5 s after its handler did: the end of the request waits on a copy from a source that ends with it")
	}
}
