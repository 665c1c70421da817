package dashboards_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spillway-dev/spillway/dashboards"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
	"github.com/spillway-dev/spillway/telemetry"
)

const examples = "../policies"

// exampleBoards generates the dashboard of every example policy. The
// evaluation is the costly part, so it runs once for the test binary;
// callers only read what it returns.
func exampleBoards(t *testing.T) (map[string]map[string]any, []engine.Spec) {
	t.Helper()
	examplesOnce.Do(func() { examplesBoards, examplesSpecs, examplesErr = generateExampleBoards() })
	if examplesErr != nil {
		t.Fatal(examplesErr)
	}
	return examplesBoards, examplesSpecs
}

var (
	examplesOnce   sync.Once
	examplesBoards map[string]map[string]any
	examplesSpecs  []engine.Spec
	examplesErr    error
)

func generateExampleBoards() (map[string]map[string]any, []engine.Spec, error) {
	specs, diags := engine.LoadDir(examples)
	if len(diags.Errors()) > 0 || len(specs) == 0 {
		return nil, nil, fmt.Errorf("example policies: %v", diags)
	}
	boards := map[string]map[string]any{}
	for _, s := range specs {
		b, err := dashboards.Generate(s)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", s.Name, err)
		}
		var d map[string]any
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, nil, fmt.Errorf("%s: not JSON: %v", s.Name, err)
		}
		boards[s.Name] = d
	}
	return boards, specs, nil
}

// panels returns a dashboard's panels as maps.
func panels(d map[string]any) []map[string]any {
	var out []map[string]any
	for _, p := range d["panels"].([]any) {
		out = append(out, p.(map[string]any))
	}
	return out
}

// exprs returns every PromQL expression of a dashboard.
func exprs(d map[string]any) []string {
	var out []string
	for _, p := range panels(d) {
		targets, _ := p["targets"].([]any)
		for _, t := range targets {
			out = append(out, t.(map[string]any)["expr"].(string))
		}
	}
	return out
}

func TestDashboardsHaveGrafanasShape(t *testing.T) {
	t.Parallel()
	boards, _ := exampleBoards(t)
	for name, d := range boards {
		for _, field := range []string{"uid", "title", "description", "tags", "timezone", "editable", "schemaVersion", "version", "refresh", "time", "templating", "annotations", "panels"} {
			if _, ok := d[field]; !ok {
				t.Errorf("%s: no top-level %q", name, field)
			}
		}
		if uid := d["uid"].(string); len(uid) > 40 || !regexp.MustCompile(`^[A-Za-z0-9_-]+$`).MatchString(uid) {
			t.Errorf("%s: uid %q is not a Grafana uid", name, uid)
		}
		// Seed 004's dashboard parameters.
		tr := d["time"].(map[string]any)
		if d["refresh"] != "5s" || tr["from"] != "now-15m" || tr["to"] != "now" {
			t.Errorf("%s: refresh %v time %v, want 5s and now-15m..now", name, d["refresh"], tr)
		}
		vars := d["templating"].(map[string]any)["list"].([]any)
		if len(vars) != 3 {
			t.Fatalf("%s: templating %v, want datasource, job and instance", name, vars)
		}
		if v := vars[0].(map[string]any); v["name"] != "datasource" || v["type"] != "datasource" || v["query"] != "prometheus" || v["regex"] != "" {
			t.Errorf("%s: datasource variable %v", name, v)
		}
		// job and instance: the labels Prometheus adds to what it scrapes,
		// each a multi-value query variable defaulting to all (".*"), the
		// instances narrowed to the jobs chosen.
		policy := strconv.Quote(name)
		for i, want := range []struct{ name, query string }{
			{"job", `label_values(spillway_tick_duration_seconds_count{policy=` + policy + `}, job)`},
			{"instance", `label_values(spillway_tick_duration_seconds_count{policy=` + policy + `, job=~"$job"}, instance)`},
		} {
			v := vars[i+1].(map[string]any)
			ds, _ := v["datasource"].(map[string]any)
			cur, _ := v["current"].(map[string]any)
			if v["name"] != want.name || v["type"] != "query" || v["query"] != want.query || v["definition"] != want.query ||
				v["multi"] != true || v["includeAll"] != true || v["allValue"] != ".*" || cur["value"] != "$__all" ||
				ds["uid"] != "${datasource}" || v["refresh"] != 2.0 {
				t.Errorf("%s: %s variable %v", name, want.name, v)
			}
		}
		ids := map[float64]bool{}
		var cells [][24]bool // occupancy of the grid, to find overlaps
		for _, p := range panels(d) {
			id := p["id"].(float64)
			if ids[id] {
				t.Errorf("%s: panel id %v repeats", name, id)
			}
			ids[id] = true
			g := p["gridPos"].(map[string]any)
			x, y, w, h := int(g["x"].(float64)), int(g["y"].(float64)), int(g["w"].(float64)), int(g["h"].(float64))
			if w <= 0 || h <= 0 || x < 0 || x+w > 24 {
				t.Errorf("%s: panel %v gridPos %v off the grid", name, id, g)
				continue
			}
			for len(cells) < y+h {
				cells = append(cells, [24]bool{})
			}
			for r := y; r < y+h; r++ {
				for c := x; c < x+w; c++ {
					if cells[r][c] {
						t.Errorf("%s: panel %v (%q) overlaps another", name, id, p["title"])
					}
					cells[r][c] = true
				}
			}
			if p["type"] == "row" {
				continue
			}
			if ds := p["datasource"].(map[string]any); ds["uid"] != "${datasource}" || ds["type"] != "prometheus" {
				t.Errorf("%s: panel %v datasource %v", name, id, ds)
			}
			targets, _ := p["targets"].([]any)
			if len(targets) == 0 {
				t.Errorf("%s: panel %v (%q) has no query", name, id, p["title"])
			}
			refs := map[string]bool{}
			for _, tg := range targets {
				tm := tg.(map[string]any)
				if ref, _ := tm["refId"].(string); ref == "" || refs[ref] {
					t.Errorf("%s: panel %v: missing or repeated refId %q", name, id, ref)
				} else {
					refs[ref] = true
				}
				if e, _ := tm["expr"].(string); e == "" {
					t.Errorf("%s: panel %v: empty expr", name, id)
				}
			}
		}
	}
}

// fleetMatchers is what every selector carries to honour the dashboard's
// job and instance variables.
const fleetMatchers = `job=~"$job", instance=~"$instance"`

// selectorRE finds metric selectors in PromQL; matcherRE their matchers.
var (
	selectorRE = regexp.MustCompile(`\b(spillway_[a-z_]+)(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")`)
)

// runExamples runs every example policy past its warm-up under light
// traffic and returns the engine's /metrics handler, which serves until
// the test ends.
func runExamples(t *testing.T) http.Handler {
	t.Helper()
	clock := &enginetest.Clock{}
	eng := enginetest.Start(t, engine.Options{Policies: examples, Clock: clock.Now})
	m, err := telemetry.New(t.Context(), eng)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	cp := eng.ControlPoints().Get("ingress")
	for tick := 0; tick < 150; tick++ { // 75 s: past the 60 s EMA warm-up
		// Every API that an example policy selects sees traffic, so that
		// its signals are valid and exported.
		for r := 0; r < 10; r++ {
			for _, api := range []string{"GET /home", "GET /product", "GET /cart", "GET /checkout"} {
				if tk, d := cp.Admit(api); d == 0 {
					clock.Advance(2 * time.Millisecond)
					tk.Done(true)
				}
			}
			// and every service the topfull policy measures at a control
			// point of its own (config.services)
			for _, svc := range []string{"productcatalog", "currency", "cart", "recommendation", "checkout"} {
				if tk, d := eng.ControlPoints().Get(svc).Admit("GET /call/{api}/{call}"); d == 0 {
					clock.Advance(time.Millisecond)
					tk.Done(true)
				}
			}
		}
		// An agent sets the rates of the APIs under agent control, so
		// that the topfull policy's rate limits are in force (without one
		// its fallback is, and they are invalid).
		for _, a := range eng.AgentAPIs() {
			if _, err := eng.SetAgentRate(a.Name, 500); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(400 * time.Millisecond)
		eng.Tick()
	}
	return m.Handler()
}

// scrapeExamples scrapes runExamples's /metrics over HTTP.
func scrapeExamples(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(runExamples(t))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// series maps every exported series name (histograms as _bucket, _sum and
// _count) to the label sets of its samples.
func series(families map[string]*dto.MetricFamily) map[string][]map[string]string {
	out := map[string][]map[string]string{}
	for name, f := range families {
		names := []string{name}
		if f.GetType() == dto.MetricType_HISTOGRAM {
			names = []string{name + "_bucket", name + "_sum", name + "_count"}
		}
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			for _, n := range names {
				out[n] = append(out[n], labels)
			}
		}
	}
	return out
}

// Every query of every generated dashboard reads a series that a running
// engine exports: the metric exists in a live scrape, and so does a sample
// with every label value the query asks for by equality.
func TestEveryQueryReadsAnExportedSeries(t *testing.T) {
	t.Parallel()
	boards, specs := exampleBoards(t)
	exported := series(scrapeExamples(t))
	for name, d := range boards {
		for _, e := range exprs(d) {
			found := selectorRE.FindAllStringSubmatch(e, -1)
			if len(found) == 0 {
				t.Errorf("%s: %s reads no spillway metric", name, e)
			}
			for _, sel := range found {
				samples, ok := exported[sel[1]]
				if !ok {
					t.Errorf("%s: %s: the engine exports no %s", name, e, sel[1])
					continue
				}
				if !strings.Contains(sel[2], fleetMatchers) {
					t.Errorf("%s: %s: %s is not narrowed to the chosen job and instance (%s)", name, e, sel[0], fleetMatchers)
				}
				want := map[string]string{}
				for _, m := range matcherRE.FindAllStringSubmatch(sel[2], -1) {
					if m[2] == "=" {
						v, err := strconv.Unquote(m[3])
						if err != nil {
							t.Fatalf("%s: %s: bad label value %s", name, e, m[3])
						}
						want[m[1]] = v
					}
				}
				if !slices.ContainsFunc(samples, func(labels map[string]string) bool {
					for k, v := range want {
						if labels[k] != v {
							return false
						}
					}
					return true
				}) {
					t.Errorf("%s: %s: no exported %s sample has %v", name, e, sel[1], want)
				}
			}
		}
	}
	// And every signal of every circuit has its panel.
	for _, s := range specs {
		queries := strings.Join(exprs(boards[s.Name]), "\n")
		for _, c := range s.Components {
			for _, out := range c.Out {
				if !strings.Contains(queries, `spillway_signal{policy="`+s.Name+`", signal="`+out.Signal+`", job=~"$job", instance=~"$instance"}`) {
					t.Errorf("%s: no panel plots signal %s", s.Name, out.Signal)
				}
			}
		}
	}
}

// The dashboards committed under dashboards/grafana are what the generator
// makes of the example policies today.
func TestCommittedDashboardsAreCurrent(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	files, err := dashboards.WriteDir(examples, out)
	if err != nil {
		t.Fatal(err)
	}
	committed, _ := filepath.Glob("grafana/*.json")
	if len(committed) != len(files) {
		t.Errorf("dashboards/grafana holds %d dashboards, the example policies make %d; run: go run ./cmd/spillway dashboards --policies policies --out dashboards/grafana", len(committed), len(files))
	}
	for _, f := range files {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Join("grafana", filepath.Base(f)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("dashboards/grafana/%s is stale or missing; run: go run ./cmd/spillway dashboards --policies policies --out dashboards/grafana", filepath.Base(f))
		}
	}
}

func TestDashboardParametersAreHonoured(t *testing.T) {
	t.Parallel()
	specs, diags := engine.LoadSource("p.cue", []byte(`
package p
import "spillway.dev/blueprints/latencyaimd"
policies: p: latencyaimd.#Policy & {
	config: {
		policy_name: "p"
		flux_meter: selector: control_point: "ingress"
		dashboard: {
			refresh_interval: "10s"
			time_from: "now-1h"
			datasource: {name: "$prom", filter_regex: "^prod-.*"}
		}
	}
}
`))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	b, err := dashboards.Generate(specs[0])
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	v := d["templating"].(map[string]any)["list"].([]any)[0].(map[string]any)
	if d["refresh"] != "10s" || d["time"].(map[string]any)["from"] != "now-1h" || v["name"] != "prom" || v["regex"] != "^prod-.*" {
		t.Fatalf("refresh %v time %v variable %v", d["refresh"], d["time"], v)
	}
	for _, p := range panels(d) {
		if ds, ok := p["datasource"].(map[string]any); ok && ds["uid"] != "${prom}" {
			t.Fatalf("panel %v uses datasource %v, want ${prom}", p["title"], ds)
		}
	}
}

func TestBadPoliciesGetErrorsNotDashboards(t *testing.T) {
	t.Parallel()
	dir, out := t.TempDir(), filepath.Join(t.TempDir(), "out")
	if _, err := dashboards.WriteDir(dir, out); err == nil || !strings.Contains(err.Error(), "no policies") {
		t.Fatalf("an empty directory: %v, want a no-policies error", err)
	}
	good, err := os.ReadFile(filepath.Join(examples, "latency-aimd.cue"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "good.cue"), good, 0o644)
	os.WriteFile(filepath.Join(dir, "bad.cue"), []byte("policies: {"), 0o644)
	_, err = dashboards.WriteDir(dir, out)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "bad.cue")+":1:") {
		t.Fatalf("a broken file: %v, want its path:line:col", err)
	}
	if _, statErr := os.Stat(out); !os.IsNotExist(statErr) {
		t.Fatal("nothing may be written when a policy is broken")
	}

	specs, diags := engine.LoadSource("p.cue", []byte(`
package p
import "spillway.dev/blueprints/latencyaimd"
policies: p: latencyaimd.#Policy & {
	config: {
		policy_name: "p"
		flux_meter: selector: control_point: "ingress"
		dashboard: datasource: filter_regex: "(unclosed"
	}
}
`))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if _, err := dashboards.Generate(specs[0]); err == nil || !strings.Contains(err.Error(), "filter_regex") {
		t.Fatalf("a bad filter_regex: %v, want an error naming it", err)
	}
}
