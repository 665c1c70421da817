package promql

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/promtest"
)

func TestQueryAnswers(t *testing.T) {
	hugeVector := promtest.Vector(strings.Split(strings.Repeat("1,", 5000)+"1", ",")...)
	var sawTimeout atomic.Value
	srv := promtest.Fake(t, func(query string, r *http.Request) string {
		sawTimeout.Store(r.FormValue("timeout"))
		switch query {
		case "scalar":
			return `{"status":"success","data":{"resultType":"scalar","result":[1764590000.5,"42.5"]}}`
		case "one":
			return promtest.Vector("1234")
		case "zero":
			return promtest.Vector("0")
		case "empty":
			return promtest.Vector()
		case "two":
			return promtest.Vector("1", "2")
		case "matrix":
			return `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1764590000,"1"],[1764590001,"2"]]}]}}`
		case "string":
			return `{"status":"success","data":{"resultType":"string","result":[1764590000.5,"hello"]}}`
		case "nan":
			return promtest.Vector("NaN")
		case "inf":
			return `{"status":"success","data":{"resultType":"scalar","result":[1764590000.5,"+Inf"]}}`
		case "bad":
			return `400 {"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}`
		case "down":
			return "503 <html>Service Unavailable</html>"
		case "garbage":
			return `{"status":"success","data":`
		case "slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
			return promtest.Vector("1")
		case "huge":
			return hugeVector
		}
		return `400 {"status":"error","errorType":"bad_data","error":"unknown test query"}`
	})
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query string
		want  float64 // NaN: an error containing err
		err   string
	}{
		{"scalar", 42.5, ""},
		{"one", 1234, ""},
		{"zero", 0, ""},
		{"empty", math.NaN(), "empty result"},
		{"two", math.NaN(), "2 series"},
		{"matrix", math.NaN(), "a matrix result"},
		{"string", math.NaN(), `unexpected value type "string"`},
		{"nan", math.NaN(), "the result is NaN"},
		{"inf", math.NaN(), "the result is +Inf"},
		{"bad", math.NaN(), "parse error"},
		{"down", math.NaN(), "server error: 503"},
		{"garbage", math.NaN(), "unexpected end of JSON input"},
		{"slow", math.NaN(), "no answer within the timeout 200ms"},
		{"huge", math.NaN(), fmt.Sprintf("response body over %d bytes", MaxResponseBytes)},
	} {
		t.Run(tc.query, func(t *testing.T) {
			start := time.Now()
			v, err := c.Query(context.Background(), tc.query, 200*time.Millisecond)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %s: the timeout did not bound the query", took)
			}
			if !math.IsNaN(tc.want) {
				if err != nil || v != tc.want {
					t.Fatalf("got %v, %v; want %v", v, err, tc.want)
				}
				if got := sawTimeout.Load(); got != "200ms" {
					t.Errorf("Prometheus was told timeout=%v, want 200ms", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !math.IsNaN(v) {
				t.Fatalf("got %v, %v; want NaN and an error containing %q", v, err, tc.err)
			}
		})
	}
	if len(hugeVector) <= MaxResponseBytes {
		t.Fatalf("the huge answer is %d bytes, not over the bound", len(hugeVector))
	}
}

func TestBoundedBodyAtTheLimit(t *testing.T) {
	for _, tc := range []struct {
		size int
		ok   bool
	}{{MaxResponseBytes, true}, {MaxResponseBytes + 1, false}} {
		b := &boundedBody{body: io.NopCloser(strings.NewReader(strings.Repeat("x", tc.size))), left: MaxResponseBytes}
		n, err := io.Copy(io.Discard, b)
		if tc.ok != (err == nil) || (tc.ok && n != int64(tc.size)) {
			t.Errorf("%d bytes: read %d, err %v; want ok=%v", tc.size, n, err, tc.ok)
		}
	}
}

func TestNewClientRefusesBadAddresses(t *testing.T) {
	for _, addr := range []string{"", "localhost:9090", "ftp://h:1", "http://", "http://h:9090/?x=1", "http://h:9090/#f", "http://[::1"} {
		if _, err := NewClient(addr); err == nil {
			t.Errorf("NewClient(%q): no error", addr)
		}
	}
	c, err := NewClient("http://127.0.0.1:9090/prom/")
	if err != nil || c.Address() != "http://127.0.0.1:9090/prom/" {
		t.Fatalf("a path prefix: %v", err)
	}
}

// TestPollerKeepsTheLastAnswer: answers are stamped with the poller's
// clock, a failure turns the value invalid at once and is counted, and a
// later answer brings it back; every change of state is reported.
func TestPollerKeepsTheLastAnswer(t *testing.T) {
	var answer atomic.Value
	answer.Store(promtest.Vector("7"))
	srv := promtest.Fake(t, func(string, *http.Request) string { return answer.Load().(string) })
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(1000)
	p := NewPoller(c, "q", time.Hour, time.Second, now.Load)
	if a := p.Last(); !math.IsNaN(a.Value) || a.AtNs != 1000 || a.Err != nil {
		t.Fatalf("before any query: %+v", a)
	}
	var changes []string
	p.OnChange = func(prev, next *Answer) { changes = append(changes, fmt.Sprintf("%v→%v", prev.Value, next.Value)) }

	now.Store(2000)
	p.PollOnce(context.Background())
	if a := p.Last(); a.Value != 7 || a.AtNs != 2000 || a.Err != nil || a.Failures != 0 {
		t.Fatalf("after an answer: %+v", a)
	}
	answer.Store(promtest.Vector())
	now.Store(3000)
	p.PollOnce(context.Background())
	p.PollOnce(context.Background())
	if a := p.Last(); !math.IsNaN(a.Value) || a.Err == nil || a.Failures != 2 {
		t.Fatalf("after two empty results: %+v", a)
	}
	answer.Store(promtest.Vector("8"))
	now.Store(4000)
	p.PollOnce(context.Background())
	if a := p.Last(); a.Value != 8 || a.AtNs != 4000 || a.Err != nil || a.Failures != 2 {
		t.Fatalf("after recovery: %+v", a)
	}
	if got := strings.Join(changes, " "); got != "7→NaN NaN→NaN NaN→8" {
		t.Errorf("changes %q", got)
	}

	// A query cut short by the end of ctx records nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.PollOnce(ctx)
	if a := p.Last(); a.Value != 8 {
		t.Fatalf("a cancelled query changed the answer: %+v", a)
	}
}

// TestPollerRunsEveryInterval: Run queries at once and then once per
// interval, never two at a time, and stops when its context ends.
func TestPollerRunsEveryInterval(t *testing.T) {
	var queries, inFlight, overlap atomic.Int64
	srv := promtest.Fake(t, func(string, *http.Request) string {
		if inFlight.Add(1) > 1 {
			overlap.Add(1)
		}
		defer inFlight.Add(-1)
		queries.Add(1)
		time.Sleep(30 * time.Millisecond) // slower than the interval: no overlap all the same

		return promtest.Vector("1")
	})
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPoller(c, "q", 20*time.Millisecond, time.Second, func() int64 { return 0 })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	n := queries.Load()
	if n < 3 || n > 11 {
		t.Errorf("%d queries in 300 ms of 30 ms queries at a 20 ms interval, want 3–11", n)
	}
	if overlap.Load() != 0 {
		t.Errorf("%d queries overlapped", overlap.Load())
	}
	after := queries.Load()
	time.Sleep(60 * time.Millisecond)
	if queries.Load() != after {
		t.Error("the poller queried after Run returned")
	}
}
