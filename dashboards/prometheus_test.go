package dashboards_test

import (
	"context"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/spillway-dev/spillway/internal/promtest"
)

// labelValuesRE parses a variable's label_values(selector, label).
var labelValuesRE = regexp.MustCompile(`^label_values\((.*), (\w+)\)$`)

// TestDashboardsAgainstARealPrometheus: a real Prometheus scrapes an
// engine running every example policy. For every generated dashboard, the
// job variable finds the scrape's job, the instance variable (narrowed to
// that job) finds the scraped instance, and every panel query, with the
// variables set to those values as Grafana would set them, is valid
// PromQL that returns data.
func TestDashboardsAgainstARealPrometheus(t *testing.T) {
	t.Parallel()
	promtest.Binary(t)
	boards, _ := exampleBoards(t)
	srv := httptest.NewServer(runExamples(t))
	defer srv.Close()
	target := strings.TrimPrefix(srv.URL, "http://")
	prom := promtest.Start(t, 200*time.Millisecond, target)
	c, err := api.NewClient(api.Config{Address: prom})
	if err != nil {
		t.Fatal(err)
	}
	papi := v1.NewAPI(c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Enough scrapes for a rate over 2 s.
	for {
		v, _, _, err := papi.Query(ctx, `count_over_time(up{job="spillway"}[2s])`, time.Time{})
		if err == nil && len(v.(model.Vector)) == 1 && v.(model.Vector)[0].Value >= 4 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Prometheus did not scrape the engine: %v %v", v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	for name, d := range boards {
		vars := map[string]string{}
		for _, raw := range d["templating"].(map[string]any)["list"].([]any) {
			v := raw.(map[string]any)
			if v["type"] != "query" {
				continue
			}
			m := labelValuesRE.FindStringSubmatch(v["query"].(string))
			if m == nil {
				t.Fatalf("%s: variable %v: not label_values(selector, label)", name, v["name"])
			}
			selector := m[1]
			for k, val := range vars {
				selector = strings.ReplaceAll(selector, "$"+k, val)
			}
			values, _, _, err := papi.LabelValues(ctx, m[2], []string{selector}, time.Now().Add(-time.Minute), time.Now())
			if err != nil {
				t.Fatalf("%s: variable %v: %v", name, v["name"], err)
			}
			want := map[string]string{"job": "spillway", "instance": target}[m[2]]
			if len(values) != 1 || string(values[0]) != want {
				t.Fatalf("%s: variable %v finds %v, want [%s]", name, v["name"], values, want)
			}
			// Grafana escapes a value for a regex matcher.
			vars[v["name"].(string)] = regexp.QuoteMeta(string(values[0]))
		}
		if len(vars) != 2 {
			t.Fatalf("%s: query variables %v, want job and instance", name, vars)
		}
		for _, e := range exprs(d) {
			q := strings.ReplaceAll(e, "$__rate_interval", "2s")
			for _, k := range []string{"instance", "job"} {
				q = strings.ReplaceAll(q, "$"+k, strings.ReplaceAll(vars[k], `\`, `\\`))
			}
			// A scrape that times out on a loaded machine marks every
			// series stale until the next one, so an empty answer is
			// asked again for a few scrapes before it counts.
			var v model.Value
			var err error
			for try := 0; try < 20; try++ {
				v, _, _, err = papi.Query(ctx, q, time.Time{})
				if err == nil && len(v.(model.Vector)) > 0 {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("%s: %s: %v", name, q, err)
				continue
			}
			if len(v.(model.Vector)) == 0 {
				t.Errorf("%s: %s: no data", name, q)
			}
		}
	}
}
