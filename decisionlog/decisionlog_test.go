package decisionlog_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spillway-dev/spillway/decisionlog"
)

func TestLogKeepsTheLatestAndFilters(t *testing.T) {
	log := decisionlog.New(3)
	for i, outcome := range []string{decisionlog.Accepted, decisionlog.RateLimited, decisionlog.Accepted, decisionlog.ConcurrencyLimited, decisionlog.Accepted} {
		api := "a"
		if i%2 == 1 {
			api = "b"
		}
		log.Add(decisionlog.Decision{API: api, Outcome: outcome, Explanation: string(rune('0' + i))})
	}
	all := log.Recent(decisionlog.Filter{})
	if len(all) != 3 || all[0].Explanation != "4" || all[2].Explanation != "2" {
		t.Fatalf("ring of 3 after 5: %+v, want the last three, newest first", all)
	}
	if got := log.Recent(decisionlog.Filter{Outcome: "rejected"}); len(got) != 1 || got[0].Outcome != decisionlog.ConcurrencyLimited {
		t.Errorf("rejected: %+v", got)
	}
	if got := log.Recent(decisionlog.Filter{API: "a", Limit: 1}); len(got) != 1 || got[0].Explanation != "4" {
		t.Errorf("api a, limit 1: %+v", got)
	}
	if log.Total() != 5 {
		t.Errorf("total %d, want 5", log.Total())
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
