// Package dashboards generates one Grafana dashboard per Spillway policy
// (DESIGN §7), from the policy's compiled circuit: a panel for every signal,
// the decisions per API, latency percentiles against the setpoint, the
// rate limit, and the engine's own health. Every query reads a metric that
// package telemetry exports, narrowed to the job and instance variables'
// choices (the labels Prometheus adds), so one dashboard serves a fleet.
//
// The dashboard parameters are seed 004's: a policy's config.dashboard
// (refresh_interval, time_from, time_to, datasource.name,
// datasource.filter_regex) is honoured when its blueprint has one, and the
// seed's defaults apply otherwise.
package dashboards

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// Config is seed 004's dashboard parameters.
type Config struct {
	RefreshInterval string `json:"refresh_interval"`
	TimeFrom        string `json:"time_from"`
	TimeTo          string `json:"time_to"`
	Datasource      struct {
		Name        string `json:"name"`
		FilterRegex string `json:"filter_regex"`
	} `json:"datasource"`
}

// DefaultConfig is seed 004's defaults: refresh every 5 s, the last 15
// minutes, a Prometheus datasource chosen by the $datasource variable.
func DefaultConfig() Config {
	var c Config
	c.RefreshInterval, c.TimeFrom, c.TimeTo = "5s", "now-15m", "now"
	c.Datasource.Name = "$datasource"
	return c
}

// configOf reads config.dashboard from the evaluated policy, over the
// defaults.
func configOf(spec engine.Spec) (Config, error) {
	c := DefaultConfig()
	var src struct {
		Config struct {
			Dashboard *Config `json:"dashboard"`
		} `json:"config"`
	}
	if len(spec.Source) > 0 {
		src.Config.Dashboard = &c
		if err := json.Unmarshal(spec.Source, &src); err != nil {
			return c, fmt.Errorf("%s: policy %s: config.dashboard: %v", spec.Pos, spec.Name, err)
		}
	}
	if _, err := regexp.Compile(c.Datasource.FilterRegex); err != nil {
		return c, fmt.Errorf("%s: policy %s: config.dashboard.datasource.filter_regex: %v", spec.Pos, spec.Name, err)
	}
	if c.RefreshInterval != "" {
		if _, err := time.ParseDuration(c.RefreshInterval); err != nil {
			return c, fmt.Errorf("%s: policy %s: config.dashboard.refresh_interval: %v", spec.Pos, spec.Name, err)
		}
	}
	return c, nil
}

// WriteDir compiles every policy in dir and writes one dashboard per
// policy to out/<policy_name>.json, creating out. It writes nothing when
// any policy fails to load or compile, and returns the files written.
func WriteDir(dir, out string) ([]string, error) {
	specs, diags := engine.LoadDir(dir)
	if len(diags.Errors()) > 0 {
		return nil, diags
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("%s: no policies", dir)
	}
	boards := make([][]byte, len(specs))
	for i, s := range specs {
		b, err := Generate(s)
		if err != nil {
			return nil, err
		}
		boards[i] = b
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for i, s := range specs {
		file := filepath.Join(out, s.Name+".json")
		if err := os.WriteFile(file, boards[i], 0o644); err != nil {
			return files, err
		}
		files = append(files, file)
	}
	return files, nil
}

// Generate returns the Grafana dashboard of one policy as indented JSON.
// The policy is compiled first, so a policy the engine would refuse gets
// its errors, not a dashboard.
func Generate(spec engine.Spec) ([]byte, error) {
	if _, diags := engine.Compile(spec); len(diags.Errors()) > 0 {
		return nil, diags
	}
	cfg, err := configOf(spec)
	if err != nil {
		return nil, err
	}
	p, err := inspect(spec)
	if err != nil {
		return nil, err
	}
	d := build(spec, cfg, p)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// policyParts is what the dashboard needs to know of a circuit.
type policyParts struct {
	signals   []signalInfo
	meters    []selector // flux meters
	limiters  []limiter  // actuators
	latencies []latencyControl
}

type signalInfo struct{ name, component, port string }

type selector struct {
	ControlPoint string `json:"control_point"`
	API          string `json:"api"`
}

type limiter struct {
	kind string // RateLimiter or ConcurrencyLimiter
	sel  selector
}

// latencyControl is a controller that holds a latency to a setpoint: its
// measured latency signal, and a setpoint signal or constant (ms).
type latencyControl struct {
	component       string
	latency         string
	setpointSignal  string
	setpointMs      float64
	setpointIsConst bool
}

// latencyControllers names, per component type, the input port carrying
// the latency and the one carrying its setpoint ("" when the setpoint is a
// parameter).
var latencyControllers = map[string]struct{ latency, setpoint string }{
	"AIMDController":          {"signal", "setpoint"},
	"GradientController":      {"signal", "setpoint"},
	"LatencyTargetController": {"latency_p90_ms", ""},
}

func inspect(spec engine.Spec) (policyParts, error) {
	var p policyParts
	for _, c := range spec.Components {
		for _, out := range c.Out {
			p.signals = append(p.signals, signalInfo{name: out.Signal, component: componentLabel(c.Path), port: out.Port})
		}
		var params struct {
			Selector      *selector `json:"selector"`
			TargetLatency string    `json:"target_latency"`
		}
		if len(c.Params) > 0 {
			if err := json.Unmarshal(c.Params, &params); err != nil {
				return p, fmt.Errorf("%s: %s: %v", c.Pos, c.Path, err)
			}
		}
		if params.Selector != nil && params.Selector.API == "" {
			params.Selector.API = "*"
		}
		switch c.Type {
		case "FluxMeter":
			p.meters = appendUnique(p.meters, *params.Selector)
		case "RateLimiter", "ConcurrencyLimiter":
			p.limiters = append(p.limiters, limiter{kind: c.Type, sel: *params.Selector})
		}
		ports, ok := latencyControllers[c.Type]
		if !ok {
			continue
		}
		lc := latencyControl{component: componentLabel(c.Path)}
		for _, in := range c.In {
			switch {
			case in.Port == ports.latency && !in.IsConst:
				lc.latency = in.Signal
			case in.Port == ports.setpoint && in.IsConst:
				lc.setpointMs, lc.setpointIsConst = in.Const, true
			case in.Port == ports.setpoint:
				lc.setpointSignal = in.Signal
			}
		}
		if params.TargetLatency != "" {
			d, err := time.ParseDuration(params.TargetLatency)
			if err != nil {
				return p, fmt.Errorf("%s: %s.target_latency: %v", c.Pos, c.Path, err)
			}
			lc.setpointMs, lc.setpointIsConst = float64(d)/1e6, true
		}
		p.latencies = append(p.latencies, lc)
	}
	return p, nil
}

func appendUnique(list []selector, s selector) []selector {
	for _, have := range list {
		if have == s {
			return list
		}
	}
	return append(list, s)
}

// componentLabel is the component label of spillway_signal: the path
// within the policy, without the file's "policies.<key>." prefix.
func componentLabel(path string) string {
	if i := strings.LastIndex(path, "components["); i >= 0 {
		return path[i:]
	}
	return path
}

// q quotes a PromQL string literal (Go escaping, which PromQL shares).
func q(s string) string { return strconv.Quote(s) }

// uid is the dashboard's Grafana uid: at most 40 of [A-Za-z0-9_-].
func uid(policy string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, policy)
	id := "spillway-" + clean
	if len(id) <= 40 && clean == policy {
		return id
	}
	sum := sha256.Sum256([]byte(policy))
	return "spillway-" + clean[:min(len(clean), 22)] + "-" + hex.EncodeToString(sum[:4])
}

// unitOf picks a Grafana unit from an output port's name.
func unitOf(port string) string {
	switch {
	case strings.HasSuffix(port, "_ms"):
		return "ms"
	case strings.HasSuffix(port, "_rps"), port == "rate_limit":
		return "reqps"
	}
	return "short"
}

// sortedSelectors orders selectors for stable output.
func sortedSelectors(list []selector) []selector {
	out := append([]selector{}, list...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].ControlPoint != out[j].ControlPoint {
			return out[i].ControlPoint < out[j].ControlPoint
		}
		return out[i].API < out[j].API
	})
	return out
}
