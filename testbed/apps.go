package testbed

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// builtinFiles are the shipped apps, one JSON file each: the apps known
// by name, the file's base name.
//
//go:embed apps/*.json
var builtinFiles embed.FS

// AppNames lists the built-in apps.
func AppNames() []string {
	entries, err := builtinFiles.ReadDir("apps")
	if err != nil {
		panic(err) // the directory is embedded
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(names)
	return names
}

// BuiltinApp returns the built-in app of that name, or with the name
// "random:SEED" the random app of that seed (RandomAppOf).
func BuiltinApp(name string) (App, error) {
	if seed, ok := strings.CutPrefix(name, "random:"); ok {
		n, err := strconv.ParseUint(seed, 10, 64)
		if err != nil {
			return App{}, fmt.Errorf("app %q: the seed must be a whole number >= 0", name)
		}
		return RandomAppOf(n), nil
	}
	data, err := builtinFiles.ReadFile("apps/" + name + ".json")
	if err != nil || strings.ContainsAny(name, "/.") {
		return App{}, fmt.Errorf("unknown app %q (built-in: %s; random:SEED; or give a .json file)", name, strings.Join(AppNames(), ", "))
	}
	app, err := ParseApp(data)
	if err != nil {
		return App{}, fmt.Errorf("apps/%s.json: %w", name, err)
	}
	return app, nil
}

// mustBuiltin is BuiltinApp for a shipped app, which the tests load.
func mustBuiltin(name string) App {
	app, err := BuiltinApp(name)
	if err != nil {
		panic(err)
	}
	return app
}

// TwoTierApp is cfg as an App: the demo's app. Its one API, "api", is
// served at EntryPattern. The frontend is unbounded, so the backend pool
// is the bottleneck and Capacity() equals cfg.Capacity(). The SLO of 250
// ms and client timeout of 2 s are the demo's.
func TwoTierApp(cfg TwoTierConfig) App {
	return App{
		Name:          "two-tier",
		Entry:         "frontend",
		ClientTimeout: 2 * time.Second,
		Services:      []Service{{Name: "frontend"}, {Name: "backend", Workers: cfg.Workers}},
		APIs: []API{{
			Name: "api", SLO: 250 * time.Millisecond, Priority: 1, Weight: 1,
			Calls: []Call{{Service: "frontend", Time: cfg.FrontendTime}, {Service: "backend", Time: cfg.BackendTime}},
		}},
	}
}

// Boutique is a shop loosely after Google's Online Boutique call graph:
// four APIs over six services. The unbounded frontend makes every call;
// productcatalog serves all four APIs, currency three, and checkout touches
// the most services. At the nominal mix (home 30 %, product 45 %, cart
// 15 %, checkout 10 %, after the Boutique load generator's weights)
// productcatalog is the bottleneck and the capacity is about 1270 req/s,
// so 4× capacity is about 5k req/s. Checkout matters most (priority 1) and
// browsing the home page least (priority 4).
//
// Service times are lognormal (σ = 0.5) except the frontend's constant
// 1 ms, so a request's latency has a tail even on an idle app.
func Boutique() App { return mustBuiltin("boutique") }

// HeteroCost is apps/hetero-cost.json: two APIs at one shared database of
// 8 workers whose costs differ 20×, lookup (2 ms, 90 % of the traffic) and
// report (40 ms). Proportional admission cuts both alike; the optimum
// admits the cheap lookups first, about 1.9× as much at priority-mix load.
func HeteroCost() App { return mustBuiltin("hetero-cost") }

// MultiBottleneck is apps/multi-bottleneck.json: four APIs over two
// bounded services, db and index; browse loads only db, search only index,
// order and report both, so different APIs are capped by different
// services.
func MultiBottleneck() App { return mustBuiltin("multi-bottleneck") }

// appFile is the JSON form of an App. Durations are Go duration strings.
type appFile struct {
	Name          string        `json:"name"`
	Entry         string        `json:"entry"`
	ClientTimeout string        `json:"client_timeout"`
	Services      []serviceFile `json:"services"`
	APIs          []apiFile     `json:"apis"`
}

type serviceFile struct {
	Name    string `json:"name"`
	Workers int    `json:"workers"`
	// Discipline is Service.Discipline.
	Discipline string `json:"discipline,omitempty"`
}

type apiFile struct {
	Name     string `json:"name"`
	SLO      string `json:"slo"`
	Priority int    `json:"priority"`
	// PriorityWeight is API.PriorityWeight; omitted means 1.
	PriorityWeight float64    `json:"priority_weight,omitempty"`
	Weight         *float64   `json:"weight"`
	Calls          []callFile `json:"calls"`
}

type callFile struct {
	Service string   `json:"service"`
	Time    distFile `json:"time"`
}

type distFile struct {
	Kind  string  `json:"kind"`
	Mean  string  `json:"mean"`
	Sigma float64 `json:"sigma"`
}

// maxAppFileBytes is the largest app file LoadAppFile reads.
const maxAppFileBytes = 1 << 20

// LoadAppFile reads an App from a JSON file. Unknown fields are errors, and
// every error names the file and the offending field, e.g.
//
//	shop.json: apis[1].calls[0].service "db": no such service (have frontend, cart)
//
// A JSON syntax error carries its line and column. An API's weight
// defaults to 1 and its priority to 1; client_timeout defaults to 2s.
func LoadAppFile(path string) (App, error) {
	f, err := os.Open(path)
	if err != nil {
		return App{}, err
	}
	defer f.Close()
	// An app within MaxAPIs, MaxServices and MaxCalls is far smaller: the
	// bound keeps a stray file from being read whole into memory.
	data, err := io.ReadAll(io.LimitReader(f, maxAppFileBytes+1))
	if err != nil {
		return App{}, err
	}
	if len(data) > maxAppFileBytes {
		return App{}, fmt.Errorf("%s: larger than %d bytes: not an app file", path, maxAppFileBytes)
	}
	app, err := ParseApp(data)
	if err != nil {
		return App{}, fmt.Errorf("%s: %w", path, err)
	}
	return app, nil
}

// ParseApp decodes and validates an App from its JSON form; see LoadAppFile.
func ParseApp(data []byte) (App, error) {
	var f appFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax):
			line, col := lineCol(data, syntax.Offset)
			return App{}, fmt.Errorf("%d:%d: %v", line, col, err)
		case errors.As(err, &typ):
			line, col := lineCol(data, typ.Offset)
			return App{}, fmt.Errorf("%d:%d: %s: cannot use JSON %s as %s", line, col, typ.Field, typ.Value, typ.Type)
		}
		return App{}, err
	}
	app := App{Name: f.Name, Entry: f.Entry, ClientTimeout: 2 * time.Second}
	if f.ClientTimeout != "" {
		d, err := time.ParseDuration(f.ClientTimeout)
		if err != nil {
			return App{}, fmt.Errorf("client_timeout %q: %v", f.ClientTimeout, err)
		}
		app.ClientTimeout = d
	}
	for _, s := range f.Services {
		app.Services = append(app.Services, Service(s))
	}
	for i, a := range f.APIs {
		api := API{Name: a.Name, Priority: a.Priority, PriorityWeight: a.PriorityWeight, Weight: 1}
		if a.Priority == 0 {
			api.Priority = 1
		}
		if a.Weight != nil {
			api.Weight = *a.Weight
		}
		slo, err := time.ParseDuration(a.SLO)
		if err != nil {
			return App{}, fmt.Errorf("apis[%d].slo %q: %v", i, a.SLO, err)
		}
		api.SLO = slo
		for j, c := range a.Calls {
			mean, err := time.ParseDuration(c.Time.Mean)
			if err != nil {
				return App{}, fmt.Errorf("apis[%d].calls[%d].time.mean %q: %v", i, j, c.Time.Mean, err)
			}
			api.Calls = append(api.Calls, Call{Service: c.Service, Time: Dist{Kind: c.Time.Kind, Mean: mean, Sigma: c.Time.Sigma}})
		}
		app.APIs = append(app.APIs, api)
	}
	if err := app.Validate(); err != nil {
		return App{}, err
	}
	return app, nil
}

// lineCol converts a byte offset of data into a 1-based line and column.
func lineCol(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}
