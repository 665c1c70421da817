package dashboards

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spillway-dev/spillway/engine"
)

// The Grafana dashboard model, as much of it as Spillway uses. Field order
// is the output order, so generated files diff cleanly.

type dashboard struct {
	UID           string      `json:"uid"`
	Title         string      `json:"title"`
	Description   string      `json:"description"`
	Tags          []string    `json:"tags"`
	Timezone      string      `json:"timezone"`
	Editable      bool        `json:"editable"`
	GraphTooltip  int         `json:"graphTooltip"`
	SchemaVersion int         `json:"schemaVersion"`
	Version       int         `json:"version"`
	Refresh       string      `json:"refresh"`
	Time          timeRange   `json:"time"`
	Templating    templating  `json:"templating"`
	Annotations   annotations `json:"annotations"`
	Panels        []panel     `json:"panels"`
}

type timeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type templating struct {
	List []variable `json:"list"`
}

type variable struct {
	Name       string      `json:"name"`
	Label      string      `json:"label"`
	Type       string      `json:"type"`
	Datasource *datasource `json:"datasource,omitempty"`
	Query      string      `json:"query"`
	Definition string      `json:"definition,omitempty"`
	Regex      string      `json:"regex"`
	Current    current     `json:"current"`
	Hide       int         `json:"hide"`
	Refresh    int         `json:"refresh"`
	Multi      bool        `json:"multi,omitempty"`
	IncludeAll bool        `json:"includeAll,omitempty"`
	AllValue   string      `json:"allValue,omitempty"`
	Sort       int         `json:"sort,omitempty"`
	Options    []string    `json:"options"`
}

type current struct {
	Text  string `json:"text,omitempty"`
	Value string `json:"value,omitempty"`
}

type annotations struct {
	List []any `json:"list"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type panel struct {
	ID          int          `json:"id"`
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Description string       `json:"description,omitempty"`
	GridPos     gridPos      `json:"gridPos"`
	Datasource  *datasource  `json:"datasource,omitempty"`
	Interval    string       `json:"interval,omitempty"`
	Targets     []target     `json:"targets,omitempty"`
	FieldConfig *fieldConfig `json:"fieldConfig,omitempty"`
	Options     any          `json:"options,omitempty"`
	Collapsed   *bool        `json:"collapsed,omitempty"`
}

type target struct {
	RefID        string      `json:"refId"`
	Datasource   *datasource `json:"datasource"`
	Expr         string      `json:"expr"`
	LegendFormat string      `json:"legendFormat"`
	Range        bool        `json:"range"`
}

type fieldConfig struct {
	Defaults  fieldDefaults `json:"defaults"`
	Overrides []any         `json:"overrides"`
}

type fieldDefaults struct {
	Unit       string         `json:"unit"`
	Custom     map[string]any `json:"custom,omitempty"`
	Thresholds *thresholds    `json:"thresholds,omitempty"`
}

type thresholds struct {
	Mode  string          `json:"mode"`
	Steps []thresholdStep `json:"steps"`
}

type thresholdStep struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"`
}

// builder lays panels out on Grafana's 24-column grid, row by row.
type builder struct {
	ds     *datasource
	panels []panel
	x, y   int
	rowH   int
}

func (b *builder) row(title string) {
	b.newLine()
	no := false
	b.panels = append(b.panels, panel{ID: len(b.panels) + 1, Type: "row", Title: title,
		GridPos: gridPos{H: 1, W: 24, X: 0, Y: b.y}, Collapsed: &no})
	b.y++
}

func (b *builder) newLine() {
	if b.x > 0 {
		b.x, b.y = 0, b.y+b.rowH
	}
	b.rowH = 0
}

// add places p, w columns wide and h high, after the previous panel.
func (b *builder) add(p panel, w, h int) {
	if b.x+w > 24 {
		b.newLine()
	}
	p.ID = len(b.panels) + 1
	p.GridPos = gridPos{H: h, W: w, X: b.x, Y: b.y}
	p.Datasource = b.ds
	for i := range p.Targets {
		p.Targets[i].RefID = string(rune('A' + i))
		p.Targets[i].Datasource = b.ds
		p.Targets[i].Range = true
	}
	b.panels = append(b.panels, p)
	b.x += w
	b.rowH = max(b.rowH, h)
}

func timeseries(title, description, unit string, targets ...target) panel {
	return panel{Type: "timeseries", Title: title, Description: description, Targets: targets,
		FieldConfig: &fieldConfig{Defaults: fieldDefaults{Unit: unit,
			// A gap is an invalid signal or a missing scrape: show it.
			Custom: map[string]any{"spanNulls": false, "showPoints": "never", "lineWidth": 1}},
			Overrides: []any{}},
		Options: map[string]any{"legend": map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true},
			"tooltip": map[string]any{"mode": "multi", "sort": "none"}}}
}

func expr(e, legend string) target { return target{Expr: e, LegendFormat: legend} }

// fleetMatchers narrow a query to the series of the jobs and instances
// chosen in the dashboard's job and instance variables: the labels
// Prometheus adds to every series it scrapes. "All" is ".*", which also
// matches a series without the label.
const fleetMatchers = `job=~"$job", instance=~"$instance"`

// labelVariable is a multi-value variable over the values of label among
// the series of the policy's tick durations (every policy that ticks has
// them), narrowed by the matchers of the variables before it.
func labelVariable(ds *datasource, name, label, policy, narrow string) variable {
	query := fmt.Sprintf(`label_values(spillway_tick_duration_seconds_count{policy=%s%s}, %s)`, policy, narrow, name)
	return variable{Name: name, Label: label, Type: "query", Datasource: ds, Query: query, Definition: query,
		Current: current{Text: "All", Value: "$__all"}, Refresh: 2, Multi: true, IncludeAll: true, AllValue: ".*", Sort: 1,
		Options: []string{}}
}

// variableName is the datasource template variable a name such as
// "$datasource" or "${datasource}" refers to; a literal datasource name is
// offered as the default of a variable called "datasource".
func variableName(name string) (variable string, literal bool) {
	if strings.HasPrefix(name, "$") {
		return strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(name, "$"), "{"), "}"), false
	}
	return "datasource", true
}

func build(spec engine.Spec, cfg Config, p policyParts) dashboard {
	varName, literal := variableName(cfg.Datasource.Name)
	dsVar := variable{Name: varName, Label: "Data source", Type: "datasource", Query: "prometheus",
		Regex: cfg.Datasource.FilterRegex, Refresh: 1, Options: []string{}}
	if literal {
		dsVar.Current = current{Text: cfg.Datasource.Name, Value: cfg.Datasource.Name}
	}
	b := &builder{ds: &datasource{Type: "prometheus", UID: "${" + varName + "}"}}
	policy := q(spec.Name)
	vars := []variable{dsVar,
		labelVariable(b.ds, "job", "Job", policy, ""),
		labelVariable(b.ds, "instance", "Instance", policy, `, job=~"$job"`)}
	fleet := ", " + fleetMatchers
	interval := spec.EvaluationInterval.String()

	b.row("Why Spillway shed load")
	if len(p.meters) > 0 || len(p.latencies) > 0 {
		var targets []target
		for _, m := range sortedSelectors(p.meters) {
			for _, quantile := range []struct{ q, name string }{{"0.5", "p50"}, {"0.9", "p90"}, {"0.99", "p99"}} {
				targets = append(targets, expr(fmt.Sprintf(
					`1000 * histogram_quantile(%s, sum by (le) (rate(spillway_request_duration_seconds_bucket{control_point=%s, api=%s%s}[$__rate_interval])))`,
					quantile.q, q(m.ControlPoint), q(m.API), fleet),
					fmt.Sprintf("%s %s %s", quantile.name, m.ControlPoint, m.API)))
			}
		}
		var setpoints []float64
		for _, lc := range p.latencies {
			if lc.latency != "" {
				targets = append(targets, expr(fmt.Sprintf(`spillway_signal{policy=%s, signal=%s%s}`, policy, q(lc.latency), fleet), lc.latency+" ("+lc.component+" input) {{instance}}"))
			}
			if lc.setpointSignal != "" {
				targets = append(targets, expr(fmt.Sprintf(`spillway_signal{policy=%s, signal=%s%s}`, policy, q(lc.setpointSignal), fleet), lc.setpointSignal+" (setpoint) {{instance}}"))
			}
			if lc.setpointIsConst {
				setpoints = append(setpoints, lc.setpointMs)
			}
		}
		latency := timeseries("Latency against the setpoint",
			"Request-duration percentiles at the flux meters, the latency the controller reads, and its setpoint (a red line when it is a constant), in ms.",
			"ms", targets...)
		latency.Interval = interval
		if len(setpoints) > 0 {
			steps := []thresholdStep{{Color: "transparent"}}
			for _, s := range setpoints {
				v := s
				steps = append(steps, thresholdStep{Color: "red", Value: &v})
			}
			latency.FieldConfig.Defaults.Thresholds = &thresholds{Mode: "absolute", Steps: steps}
			latency.FieldConfig.Defaults.Custom["thresholdsStyle"] = map[string]any{"mode": "line"}
		}
		b.add(latency, 12, 9)
	}
	for _, kind := range []struct{ component, metric, title, unit string }{
		{"RateLimiter", "spillway_rate_limit", "Rate limit", "reqps"},
		{"ConcurrencyLimiter", "spillway_concurrency_limit", "Concurrency limit", "short"},
	} {
		var sels []selector
		for _, l := range p.limiters {
			if l.kind == kind.component {
				sels = appendUnique(sels, l.sel)
			}
		}
		if len(sels) == 0 {
			continue
		}
		targets := []target{expr(fmt.Sprintf(`%s{policy=%s%s}`, kind.metric, policy, fleet), "limit {{control_point}} {{api}} {{instance}}")}
		if kind.component == "RateLimiter" {
			for _, s := range sortedSelectors(sels) {
				match := fmt.Sprintf(`control_point=%s, api=%s%s`, q(s.ControlPoint), q(s.API), fleet)
				targets = append(targets,
					expr(fmt.Sprintf(`sum(rate(spillway_requests_total{%s}[$__rate_interval]))`, match), "offered "+s.ControlPoint+" "+s.API),
					expr(fmt.Sprintf(`sum(rate(spillway_requests_total{%s, decision!="rejected"}[$__rate_interval]))`, match), "admitted "+s.ControlPoint+" "+s.API))
			}
		}
		limit := timeseries(kind.title, "The setpoint the policy publishes each tick; a gap means no limit (the setpoint is invalid: fail-open).", kind.unit, targets...)
		limit.Interval = interval
		b.add(limit, 12, 9)
	}
	cps := map[string]bool{}
	for _, s := range p.meters {
		cps[s.ControlPoint] = true
	}
	for _, l := range p.limiters {
		cps[l.sel.ControlPoint] = true
	}
	var decisions []target
	for _, cp := range sortedKeys(cps) {
		decisions = append(decisions, expr(fmt.Sprintf(`sum by (api, decision) (rate(spillway_requests_total{control_point=%s%s}[$__rate_interval]))`, q(cp), fleet),
			cp+" {{api}} {{decision}}"))
	}
	if len(decisions) > 0 {
		b.add(timeseries("Decisions per API",
			`Requests per second by API and decision: accepted (a limit in force admitted it), rejected, would_reject (dry-run), passthrough (no limit in force). api="*" is the whole control point.`,
			"reqps", decisions...), 12, 9)
	}

	b.row("Signals, one point per tick")
	for _, s := range p.signals {
		sp := timeseries(s.name, fmt.Sprintf("%s.%s. Absent while the signal is invalid (NaN).", s.component, s.port), unitOf(s.port),
			expr(fmt.Sprintf(`spillway_signal{policy=%s, signal=%s%s}`, policy, q(s.name), fleet), s.name+" {{instance}}"))
		sp.Interval = interval
		b.add(sp, 8, 7)
	}
	b.add(timeseries("Invalid signals", "Ticks per second at which each signal was invalid (NaN): warm-up, no traffic, or a failed input.", "short",
		expr(fmt.Sprintf(`sum by (signal) (rate(spillway_signal_invalid_total{policy=%s%s}[$__rate_interval]))`, policy, fleet), "{{signal}}")), 8, 7)

	b.row("Engine")
	b.add(timeseries("Tick duration", "Wall time of one tick of this policy: flux-meter snapshot, circuit, setpoints.", "s",
		expr(fmt.Sprintf(`histogram_quantile(0.5, sum by (le) (rate(spillway_tick_duration_seconds_bucket{policy=%s%s}[$__rate_interval])))`, policy, fleet), "p50"),
		expr(fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate(spillway_tick_duration_seconds_bucket{policy=%s%s}[$__rate_interval])))`, policy, fleet), "p99")), 12, 7)
	errs := timeseries("Policy load errors", "Failed reloads of the policy directory (the previous policies kept running); see /status or the live page for the errors.", "short",
		expr(`max by (instance) (spillway_policy_load_errors_total{`+fleetMatchers+`})`, "load errors {{instance}}"))
	b.add(errs, 12, 7)

	file := spec.File
	if file == "" {
		file = spec.Pos.File
	}
	file = filepath.Base(file)
	return dashboard{
		UID:   uid(spec.Name),
		Title: "Spillway: " + spec.Name,
		Description: fmt.Sprintf("Policy %s (%s), evaluated every %s. Generated by `spillway dashboards`; regenerate rather than edit.",
			spec.Name, file, interval),
		Tags:          []string{"spillway"},
		Timezone:      "browser",
		Editable:      true,
		GraphTooltip:  1,
		SchemaVersion: 39,
		Version:       1,
		Refresh:       cfg.RefreshInterval,
		Time:          timeRange{From: cfg.TimeFrom, To: cfg.TimeTo},
		Templating:    templating{List: vars},
		Annotations:   annotations{List: []any{}},
		Panels:        b.panels,
	}
}

func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
