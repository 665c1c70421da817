package httpmw

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

// meteredCP is a control point on a clock the test sets, with one
// concurrency slot and a flux meter on every request.
func meteredCP() (cp *controlpoint.ControlPoint, nowNs *atomic.Int64, slots *actuators.ConcurrencyLimiter, tap *actuators.Recorder) {
	nowNs = new(atomic.Int64)
	cp = controlpoint.NewRegistry(nowNs.Load).Get("ingress")
	slots = actuators.NewConcurrencyLimiter(1)
	tap = actuators.NewRecorder(0)
	cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Concurrency: slots})
	cp.API(controlpoint.AllAPIs).AttachTap(tap)
	tap.Snapshot(0)
	return cp, nowNs, slots, tap
}

// plainWriter is a ResponseWriter with nothing but the three methods: it
// cannot flush, hijack or set deadlines.
type plainWriter struct{ h http.Header }

func (w *plainWriter) Header() http.Header         { return w.h }
func (w *plainWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *plainWriter) WriteHeader(int)             {}

// brokenPipeWriter is a server's writer whose client has gone: each flush
// fails, as net/http's does once the connection is closed.
type brokenPipeWriter struct{ plainWriter }

func (w *brokenPipeWriter) FlushError() error { return syscall.EPIPE }

// TestAnOpenStreamHoldsNoSlot: 16 idle server-sent-event clients made the
// default policy refuse almost every cheap request, each stream holding a
// concurrency slot and counting as one long latency. A stream's ticket now
// ends at its first flush: with one slot, a cheap request is admitted
// while the stream stays open, and the stream's latency is the 5 ms to its
// first event, not the minute it stays open.
func TestAnOpenStreamHoldsNoSlot(t *testing.T) {
	cp, nowNs, slots, tap := meteredCP()
	flushed, release := make(chan struct{}), make(chan struct{})
	h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cheap" {
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		nowNs.Store(5e6)
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		close(flushed)
		<-release
		nowNs.Store(60e9)
		io.WriteString(w, "data: a minute later\n\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("a later flush: %v", err)
		}
	}), Options{})
	streamed := make(chan *httptest.ResponseRecorder)
	go func() { streamed <- serve(h, "/events", nil) }()
	<-flushed
	if n := slots.InFlight(); n != 0 {
		t.Errorf("an open stream holds %d slots, want 0 once it flushed", n)
	}
	if w := serve(h, "/cheap", nil); w.Code != http.StatusOK {
		t.Errorf("a cheap request while a stream is open: %d, want 200", w.Code)
	}
	close(release)
	if w := <-streamed; w.Body.String() != "data: first\n\ndata: a minute later\n\n" {
		t.Errorf("the stream's body %q lost an event", w.Body.String())
	}
	win := tap.Snapshot(nowNs.Load())
	if win.Completed != 2 || win.Goodput != 2 || win.LatencySumNs != 5e6 || win.InFlight != 0 || slots.InFlight() != 0 {
		t.Errorf("window %d completed, %d goodput, latency sum %d ns, %d in flight, %d slots held; want 2, 2, 5e6 (the time to the first flush), 0, 0",
			win.Completed, win.Goodput, win.LatencySumNs, win.InFlight, slots.InFlight())
	}
}

// TestATicketEndsOnceAtTheFirstFlushOrTheEnd: each way a response can end
// finishes its ticket exactly once (a second finish would release the slot
// twice and leave InFlight at -1), at the first flush that reached the
// server's writer or else at the handler's end, with the status known by
// then. The handler sets the clock to 3 ms before its first flush and to
// 9 ms before it returns.
func TestATicketEndsOnceAtTheFirstFlushOrTheEnd(t *testing.T) {
	for _, tc := range []struct {
		name         string
		writer       func() http.ResponseWriter
		beforeFlush  func(w http.ResponseWriter)
		afterFlush   func(w http.ResponseWriter)
		goodput      uint64
		latencyNs    uint64
		wantPanicked bool
	}{
		{
			name:      "a response that never flushes is timed to its end",
			writer:    func() http.ResponseWriter { return httptest.NewRecorder() },
			latencyNs: 9e6, goodput: 1,
		},
		{
			name:        "a streamed response is timed to its first flush",
			writer:      func() http.ResponseWriter { return httptest.NewRecorder() },
			beforeFlush: func(w http.ResponseWriter) { w.(http.Flusher).Flush() },
			afterFlush:  func(w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) },
			latencyNs:   3e6, goodput: 1, // the flush sent 200; the late 500 is superfluous
		},
		{
			name:   "a 500 flushed is an error",
			writer: func() http.ResponseWriter { return httptest.NewRecorder() },
			beforeFlush: func(w http.ResponseWriter) {
				w.WriteHeader(http.StatusInternalServerError)
				w.(http.Flusher).Flush()
			},
			latencyNs: 3e6, goodput: 0,
		},
		{
			name:        "a handler that panics after its first flush finishes its ticket once",
			writer:      func() http.ResponseWriter { return httptest.NewRecorder() },
			beforeFlush: func(w http.ResponseWriter) { w.(http.Flusher).Flush() },
			afterFlush:  func(w http.ResponseWriter) { panic("after the stream started") },
			latencyNs:   3e6, goodput: 1,
			wantPanicked: true,
		},
		{
			name:       "a handler that panics before flushing is an error at its end",
			writer:     func() http.ResponseWriter { return httptest.NewRecorder() },
			afterFlush: func(w http.ResponseWriter) { panic("before any flush") },
			latencyNs:  9e6, goodput: 0,
			wantPanicked: true,
		},
		{
			name:        "a flush the server's writer cannot do changes nothing",
			writer:      func() http.ResponseWriter { return &plainWriter{h: http.Header{}} },
			beforeFlush: func(w http.ResponseWriter) { w.(http.Flusher).Flush() },
			latencyNs:   9e6, goodput: 1,
		},
		{
			name:        "a flush that fails (the client left) ends the ticket as an error",
			writer:      func() http.ResponseWriter { return &brokenPipeWriter{plainWriter{h: http.Header{}}} },
			beforeFlush: func(w http.ResponseWriter) { w.(http.Flusher).Flush() },
			latencyNs:   3e6, goodput: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp, nowNs, slots, tap := meteredCP()
			h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				nowNs.Store(3e6)
				if tc.beforeFlush != nil {
					tc.beforeFlush(w)
				}
				nowNs.Store(9e6)
				if tc.afterFlush != nil {
					tc.afterFlush(w)
				}
			}), Options{})
			panicked := func() (panicked bool) {
				defer func() { panicked = recover() != nil }()
				h.ServeHTTP(tc.writer(), httptest.NewRequest("GET", "/", nil))
				return false
			}()
			if panicked != tc.wantPanicked {
				t.Fatalf("the handler's panic went on: %v, want %v", panicked, tc.wantPanicked)
			}
			win := tap.Snapshot(nowNs.Load())
			if win.Completed != 1 || win.Goodput != tc.goodput || win.Errors != 1-tc.goodput || win.LatencySumNs != tc.latencyNs || win.InFlight != 0 || slots.InFlight() != 0 {
				t.Errorf("window %d completed, %d goodput, %d errors, latency sum %d ns, %d in flight, %d slots held; want 1, %d, %d, %d, 0, 0",
					win.Completed, win.Goodput, win.Errors, win.LatencySumNs, win.InFlight, slots.InFlight(), tc.goodput, 1-tc.goodput, tc.latencyNs)
			}
		})
	}
}

// TestResponseControllerGetsTheServersAnswers: http.ResponseController
// through the wrapper returns what it returns on the server's writer
// itself: the flush error of a connection whose client left, and errors
// wrapping http.ErrNotSupported where the writer lacks a feature. The
// wrapper had swallowed flush errors and made up its own hijack error.
func TestResponseControllerGetsTheServersAnswers(t *testing.T) {
	calls := []struct {
		name string
		call func(*http.ResponseController) error
	}{
		{"Flush", (*http.ResponseController).Flush},
		{"Hijack", func(rc *http.ResponseController) error { _, _, err := rc.Hijack(); return err }},
		{"SetReadDeadline", func(rc *http.ResponseController) error { return rc.SetReadDeadline(time.Time{}) }},
		{"SetWriteDeadline", func(rc *http.ResponseController) error { return rc.SetWriteDeadline(time.Time{}) }},
		{"EnableFullDuplex", (*http.ResponseController).EnableFullDuplex},
	}
	for _, writer := range []struct {
		name string
		w    http.ResponseWriter
	}{
		{"a writer that supports nothing", &plainWriter{h: http.Header{}}},
		{"a writer whose client left", &brokenPipeWriter{plainWriter{h: http.Header{}}}},
	} {
		for _, c := range calls {
			var bare, wrapped error
			handler := func(err *error) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					*err = c.call(http.NewResponseController(w))
				})
			}
			r := httptest.NewRequest("GET", "/", nil)
			handler(&bare).ServeHTTP(writer.w, r)
			Wrap(newCP(), handler(&wrapped), Options{}).ServeHTTP(writer.w, r)
			if bare == nil || wrapped == nil || bare.Error() != wrapped.Error() ||
				errors.Is(bare, http.ErrNotSupported) != errors.Is(wrapped, http.ErrNotSupported) {
				t.Errorf("%s, %s: %v through the middleware, want %v as without it", writer.name, c.name, wrapped, bare)
			}
		}
	}
}

// TestAStreamLearnsThatItsClientLeft: over a real server, an event stream
// that stops when a flush fails stops once its client has closed the
// connection, through the middleware as without it.
func TestAStreamLearnsThatItsClientLeft(t *testing.T) {
	for _, wrapped := range []bool{false, true} {
		t.Run(fmt.Sprint("wrapped=", wrapped), func(t *testing.T) {
			flushErr := make(chan error, 1)
			var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				w.Header().Set("Content-Type", "text/event-stream")
				for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
					w.Write([]byte("data: x\n\n")) // unchecked, as many event loops do: they rely on Flush
					if err := rc.Flush(); err != nil {
						flushErr <- err
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
				flushErr <- nil
			})
			if wrapped {
				h = Wrap(newCP(), h, Options{})
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if line, _ := bufio.NewReader(conn).ReadString('\n'); !strings.Contains(line, "200") {
				t.Fatalf("status line %q", line)
			}
			conn.Close()
			if err := <-flushErr; err == nil {
				t.Error("the stream flushed for 3 s to a client that had left: no flush reported the closed connection")
			}
		})
	}
}

// sendfileWriter is a server's writer with io.ReaderFrom, as net/http's
// HTTP/1 writer has; it counts the bytes it was given.
type sendfileWriter struct {
	plainWriter
	readFrom int64
}

func (w *sendfileWriter) ReadFrom(src io.Reader) (int64, error) {
	n, err := io.Copy(io.Discard, src)
	w.readFrom += n
	return n, err
}

// TestReaderFromIsKeptWhereTheServerHasIt: http.ServeContent and io.Copy
// send files with sendfile through the server's io.ReaderFrom, which the
// wrapper had hidden. The handler sees io.ReaderFrom exactly where the
// server's writer has it; what it sends is the server's, byte count and
// all; and the status counts as 200 once a byte went, but not before (an
// empty source sends no header, so a later 500 is the status).
func TestReaderFromIsKeptWhereTheServerHasIt(t *testing.T) {
	var sees bool
	probe := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, sees = w.(io.ReaderFrom) })
	srv := httptest.NewServer(Wrap(newCP(), probe, Options{}))
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.Close()
	if !sees {
		t.Error("behind net/http's server the handler sees no io.ReaderFrom")
	}
	Wrap(newCP(), probe, Options{}).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if sees {
		t.Error("behind a ResponseRecorder, which has no ReadFrom, the handler sees io.ReaderFrom")
	}

	for _, tc := range []struct {
		name     string
		body     string
		file     bool // a regular file; else a reader without WriteTo
		sendfile bool // reaches the server's ReadFrom
		goodput  uint64
	}{
		{"a file sent is a 200", strings.Repeat("x", 4096), true, true, 1},
		{"an empty file sends no header: the 500 after it counts", "", true, true, 0},
		// Any other source may block on the request's own end: it is
		// copied through Write, a chunk at a time through the gate.
		{"another source goes through Write", strings.Repeat("y", 4096), false, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp, nowNs, _, tap := meteredCP()
			var src io.Reader = struct{ io.Reader }{strings.NewReader(tc.body)} // no WriteTo, which io.Copy would prefer
			if tc.file {
				path := filepath.Join(t.TempDir(), "body")
				if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
					t.Fatal(err)
				}
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				src = f
			}
			var n int64
			var err error
			h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n, err = io.Copy(w, src)
				w.WriteHeader(http.StatusInternalServerError)
			}), Options{})
			sw := &sendfileWriter{plainWriter: plainWriter{h: http.Header{}}}
			h.ServeHTTP(sw, httptest.NewRequest("GET", "/", nil))
			want := int64(0)
			if tc.sendfile {
				want = n
			}
			if err != nil || n != int64(len(tc.body)) || sw.readFrom != want {
				t.Errorf("io.Copy returned %d, %v, and the server's ReadFrom got %d bytes; want %d, nil and %d", n, err, sw.readFrom, len(tc.body), want)
			}
			if win := tap.Snapshot(nowNs.Load()); win.Completed != 1 || win.Goodput != tc.goodput {
				t.Errorf("window %d completed, %d goodput; want 1 and %d", win.Completed, win.Goodput, tc.goodput)
			}
		})
	}
}

// A WebSocket is a hijacked connection that stays open: its ticket ends,
// and its slot is freed, at the hijack, timed to it, so that idle sockets
// cannot fill the concurrency limit either.
func TestAHijackedConnectionHoldsNoSlot(t *testing.T) {
	cp, nowNs, slots, tap := meteredCP()
	hijacked, release := make(chan struct{}), make(chan struct{})
	h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cheap" {
			return
		}
		nowNs.Store(2e6)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			close(hijacked)
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		close(hijacked)
		<-release
		nowNs.Store(60e9)
	}), Options{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(srv.URL + "/socket")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-hijacked
	if n := slots.InFlight(); n != 0 {
		t.Errorf("a hijacked connection holds %d slots, want 0", n)
	}
	resp, err := http.Get(srv.URL + "/cheap")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("a cheap request while the socket is open: %v %v, want 200", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	close(release)
	<-done
	win := tap.Snapshot(nowNs.Load())
	if win.Completed != 2 || win.LatencySumNs != 2e6 || win.InFlight != 0 || slots.InFlight() != 0 {
		t.Errorf("window %d completed, latency sum %d ns, %d in flight, %d slots held; want 2, 2e6 (the time to the hijack), 0, 0",
			win.Completed, win.LatencySumNs, win.InFlight, slots.InFlight())
	}
}
