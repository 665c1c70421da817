package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzLoadPolicy feeds arbitrary bytes to the loader and compiler. They
// must never panic or hang: every input either loads into compilable
// specs or is rejected with positioned diagnostics. The seed corpus is
// every policy of the repository, good and broken.
func FuzzLoadPolicy(f *testing.F) {
	var seeds []string
	for _, glob := range []string{"../policies/*.cue", "../cmd/spillway/testdata/check/*.cue", "../cmd/spillway/*.cue"} {
		m, _ := filepath.Glob(glob)
		seeds = append(seeds, m...)
	}
	if len(seeds) < 5 {
		f.Fatalf("seed corpus: %d files found, want the repository's policies", len(seeds))
	}
	for _, p := range seeds {
		src, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(counterPolicy))
	f.Add([]byte("policies: x: {policy_name: \"x\", components: [{EMA: {}}]}"))
	f.Add([]byte("package p\npolicies: [for x in [1, 2] {x}]"))
	// Through the bounded child, as every real load goes: a mutated input
	// that explodes (a long list.Range, a deep disjunction) is cut off at
	// 2 s instead of stalling the fuzzer for minutes. The child is this
	// test binary's evaluator (TestMain: the CLI built without the race
	// detector), so a seed costs a process start of tens of milliseconds,
	// not the 0.2 s and six-times-slower CUE of a re-executed -race binary.
	limits := EvalLimits{Timeout: 2 * time.Second, MemoryBytes: 256 << 20, Evaluator: Limits.Evaluator}
	f.Fuzz(func(t *testing.T, src []byte) {
		specs, diags := evaluate(context.Background(), "fuzz.cue", src, limits)
		if len(diags.Errors()) > 0 {
			if specs != nil {
				t.Fatalf("specs returned with errors: %v", diags)
			}
			for _, d := range diags.Errors() {
				if d.Pos.File == "" || d.Message == "" {
					t.Fatalf("diagnostic without a position or message: %+v", d)
				}
			}
			return
		}
		if len(specs) == 0 {
			t.Fatal("no error and no policy")
		}
		for _, s := range specs {
			c, d := Compile(s)
			if c == nil && len(d.Errors()) == 0 {
				t.Fatalf("compile failed without an error for %s", s.Name)
			}
			if c != nil {
				c.Tick()
				c.Tick()
			}
		}
	})
}

// FuzzDecodeDynamicConfig feeds arbitrary bodies to the dynamic-config
// decoder. It must never panic; a refusal is a *ConfigError with a reason
// (TooLarge exactly for bodies over the cap); an accepted body is valid JSON
// within the cap, its variables are finite, and re-encoding and decoding it
// again gives the same config.
func FuzzDecodeDynamicConfig(f *testing.F) {
	for _, body := range []string{
		`{}`,
		`{"dry_run": true}`,
		`{"dry_run": false, "variables": {"RATE_LIMIT": 100, "SETPOINT": -0.5e-3}}`,
		`{"variables": {}}`,
		`{"variables": null, "dry_run": null}`,
		`{"DRY_RUN": true}`,
		`{"dry_run": true, "dry_run": false}`,
		`{"dry_run": true, "Dry_Run": false}`,
		`{"variables": {"A": 1, "A": 2}}`,
		`{"variables": {"A": 1, "\u0041": 2}}`,
		`{"variables": {"\ud800": 1, "\udfff": 2}}`,
		`{"variables": {"A": 1e400}}`,
		`{"variables": {"A": NaN}}`,
		`{"variables": {"A": "1"}}`,
		`{"variables": {"A": -0}}`,
		`{"extra": 1}`,
		`{"dry_run": "yes"}`,
		`{"dry_run": true} {}`,
		`{"dry_run": true}]`,
		`[]`,
		`null`,
		``,
		strings.Repeat("[", 4096),
		"{\"variables\": {\"\xff\": 1, \"\xfe\": 2}}",
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cfg, err := DecodeDynamicConfig(bytes.NewReader(body))
		if err != nil {
			var cfgErr *ConfigError
			if !errors.As(err, &cfgErr) || cfgErr.Reason == "" {
				t.Fatalf("%q: error %#v, want a *ConfigError with a reason", body, err)
			}
			if cfgErr.TooLarge != (len(body) > MaxDynamicConfigSize) {
				t.Fatalf("%d-byte body: TooLarge %v (cap %d)", len(body), cfgErr.TooLarge, MaxDynamicConfigSize)
			}
			return
		}
		if len(body) > MaxDynamicConfigSize || !json.Valid(body) {
			t.Fatalf("accepted %q: over the cap or not valid JSON", body)
		}
		for name, v := range cfg.Variables {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("accepted %q: variable %q is %v", body, name, v)
			}
		}
		again, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("accepted %q, but re-encoding %+v fails: %v", body, cfg, err)
		}
		back, err := DecodeDynamicConfig(bytes.NewReader(again))
		if err != nil {
			t.Fatalf("accepted %q, but not its re-encoding %s: %v", body, again, err)
		}
		if !sameDynamicConfig(cfg, back) {
			t.Fatalf("%q decodes to %+v, its re-encoding %s to %+v", body, cfg, again, back)
		}
	})
}

// sameDynamicConfig reports whether a and b override the same things: an
// empty Variables map is no map.
func sameDynamicConfig(a, b DynamicConfig) bool {
	if (a.DryRun == nil) != (b.DryRun == nil) || (a.DryRun != nil && *a.DryRun != *b.DryRun) {
		return false
	}
	if len(a.Variables) != len(b.Variables) {
		return false
	}
	for name, v := range a.Variables {
		if w, ok := b.Variables[name]; !ok || math.Float64bits(v) != math.Float64bits(w) {
			return false
		}
	}
	return true
}

// Evaluation is bounded: a file that takes too long is an error, and the
// load returns.
func TestLoadSourceTimesOut(t *testing.T) {
	saved := Limits
	Limits.Timeout = time.Nanosecond
	defer func() { Limits = saved }()
	src, err := os.ReadFile("../policies/latency-aimd.cue")
	if err != nil {
		t.Fatal(err)
	}
	_, diags := LoadSource("slow.cue", src)
	if len(diags) != 1 || !strings.Contains(diags[0].Message, "and was stopped") || diags[0].Pos.File != "slow.cue" {
		t.Fatalf("diags %v, want one timeout error at slow.cue", diags)
	}
}
