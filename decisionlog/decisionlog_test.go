package decisionlog_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spillway-dev/spillway/decisionlog"
)

func TestLogKeepsTheLatestOfEachKindAndFilters(t *testing.T) {
	log := decisionlog.New(2)
	start := time.Unix(1_800_000_000, 0)
	outcomes := []string{decisionlog.RateLimited, decisionlog.Accepted, decisionlog.Accepted, decisionlog.ConcurrencyLimited, decisionlog.Accepted, decisionlog.Accepted}
	for i, outcome := range outcomes {
		api := "a"
		if i%2 == 1 {
			api = "b"
		}
		log.Add(decisionlog.Decision{Time: start.Add(time.Duration(i) * time.Second), API: api, Outcome: outcome, Explanation: strconv.Itoa(i)})
	}
	order := func(ds []decisionlog.Decision) string {
		var s []string
		for _, d := range ds {
			s = append(s, d.Explanation)
		}
		return strings.Join(s, ",")
	}
	// Two of each kind: acceptances 4 and 5 pushed 1 and 2 out, but the
	// rejections 0 and 3 stay.
	if got := order(log.Recent(decisionlog.Filter{})); got != "5,4,3,0" {
		t.Errorf("all: %s, want 5,4,3,0 (newest first, two of each kind)", got)
	}
	if got := order(log.Recent(decisionlog.Filter{Outcome: "rejected"})); got != "3,0" {
		t.Errorf("rejected: %s, want 3,0", got)
	}
	if got := order(log.Recent(decisionlog.Filter{Outcome: decisionlog.ConcurrencyLimited})); got != "3" {
		t.Errorf("concurrency_limited: %s, want 3", got)
	}
	if got := order(log.Recent(decisionlog.Filter{API: "a", Limit: 1})); got != "4" {
		t.Errorf("api a, limit 1: %s, want 4", got)
	}
	if log.Total() != 6 {
		t.Errorf("total %d, want 6", log.Total())
	}
}

func TestHandlerAnswersFiltersAndRefusesUnknownOnes(t *testing.T) {
	log := decisionlog.New(8)
	log.Add(decisionlog.Decision{API: "GET /a", Outcome: decisionlog.RateLimited, Explanation: "p: components[1].RateLimiter rate_limit=2"})
	log.Add(decisionlog.Decision{API: "GET /b", Outcome: decisionlog.Accepted})
	srv := httptest.NewServer(log.Handler())
	defer srv.Close()
	get := func(query string) (int, map[string]any) {
		resp, err := http.Get(srv.URL + "/decisions" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	code, m := get("?api=GET+/a&outcome=rejected")
	ds, _ := m["decisions"].([]any)
	if code != 200 || len(ds) != 1 || m["total"] != 2.0 || !strings.Contains(ds[0].(map[string]any)["explanation"].(string), "RateLimiter") {
		t.Fatalf("filtered: %d %v", code, m)
	}
	for _, q := range []string{"?outcome=maybe", "?limit=-1", "?apii=x"} {
		if code, m := get(q); code != 400 || m["error"] == nil {
			t.Errorf("%s: %d %v, want 400 with an error", q, code, m)
		}
	}
}

// TestConcurrentAddsAndReads: writers on many goroutines and a reader at
// once (run with -race); every addition counts, each ring keeps its size,
// and a read is newest first.
func TestConcurrentAddsAndReads(t *testing.T) {
	log := decisionlog.New(16)
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				outcome := decisionlog.Accepted
				if i%5 == 0 {
					outcome = decisionlog.RateLimited
				}
				log.Add(decisionlog.Decision{API: strconv.Itoa(w), Outcome: outcome})
			}
		})
	}
	stop := make(chan struct{})
	reader := make(chan int)
	go func() {
		reads := 0
		for {
			select {
			case <-stop:
				reader <- reads
				return
			default:
				if n := len(log.Recent(decisionlog.Filter{})); n > 32 {
					t.Errorf("a read returned %d decisions from two rings of 16", n)
				}
				reads++
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-reader
	if got := log.Total(); got != writers*each {
		t.Errorf("total %d, want %d", got, writers*each)
	}
	if got := len(log.Recent(decisionlog.Filter{Outcome: "rejected"})); got != 16 {
		t.Errorf("%d rejections kept, want 16", got)
	}
	if got := len(log.Recent(decisionlog.Filter{})); got != 32 {
		t.Errorf("%d decisions kept, want 32", got)
	}
}

func BenchmarkAdd(b *testing.B) {
	log := decisionlog.New(0)
	d := decisionlog.Decision{API: "GET /a", Outcome: decisionlog.Accepted}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			log.Add(d)
		}
	})
}

// What the log keeps of a decision is bounded whatever a client sends: the
// API as the control point counts it ("*" for none, "__overflow__" for a
// label it does not track), the other strings a request chooses cut to
// MaxFieldBytes at a rune boundary and made valid UTF-8.
func TestLogKeepsBoundedFields(t *testing.T) {
	log := decisionlog.New(8)
	long := strings.Repeat("é", 1000) // 2000 bytes
	log.Add(decisionlog.Decision{Source: "check", ControlPoint: long, API: long, Outcome: decisionlog.Accepted,
		Labels: map[string]string{long: "\xff" + long}})
	log.Add(decisionlog.Decision{Source: "proxy", ControlPoint: "ingress", API: "", Outcome: decisionlog.RateLimited})
	got := log.Recent(decisionlog.Filter{})
	if len(got) != 2 {
		t.Fatalf("%d decisions, want 2", len(got))
	}
	unmatched, first := got[0], got[1]
	if unmatched.API != "*" {
		t.Errorf("API of a request with no label %q, want *", unmatched.API)
	}
	if len(log.Recent(decisionlog.Filter{API: "*"})) != 1 {
		t.Error(`?api=* does not find the request with no label`)
	}
	if first.API != "__overflow__" {
		t.Errorf("API of a 2000-byte label %.40q…, want __overflow__", first.API)
	}
	check := func(what, s string) {
		t.Helper()
		if len(s) > decisionlog.MaxFieldBytes || !utf8.ValidString(s) || !strings.HasSuffix(s, "…") {
			t.Errorf("%s: %d bytes, valid UTF-8 %v, %.20q…: want at most %d, valid, cut with …", what, len(s), utf8.ValidString(s), s, decisionlog.MaxFieldBytes)
		}
	}
	check("control point", first.ControlPoint)
	for k, v := range first.Labels {
		check("label name", k)
		check("label value", v)
	}
}
