package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testcli"
)

// The policies of this test binary are evaluated by the spillway CLI built
// without the race detector (EvalLimits.Evaluator), which is a real bounded
// child and, under -race, about six times faster than this binary
// re-executed. TestTheRunningBinaryIsTheDefaultEvaluator keeps the default.
func TestMain(m *testing.M) {
	os.Exit(testcli.Main(m, func(cli string) { Limits.Evaluator = cli }))
}

// With Evaluator empty, the child is this binary re-executed, as in every
// host that does not set it: a policy loads, and an error keeps its
// position.
func TestTheRunningBinaryIsTheDefaultEvaluator(t *testing.T) {
	withLimits(t, EvalLimits{})
	Limits.Evaluator = ""
	before := evaluations.Load()
	specs, diags := LoadSource("p.cue", []byte(limiterPolicy("p", "ingress")))
	if len(diags.Errors()) > 0 || len(specs) != 1 || specs[0].Name != "p" {
		t.Fatalf("specs %v, diags %v; want policy p", specs, diags)
	}
	_, diags = LoadSource("bad.cue", []byte("package t\npolicies: p: {policy_name: 3}\n"))
	if len(diags.Errors()) == 0 || diags[0].Pos.File != "bad.cue" || diags[0].Pos.Line != 2 {
		t.Fatalf("diags %v, want an error at bad.cue:2", diags)
	}
	if n := evaluations.Load() - before; n != 2 {
		t.Fatalf("%d evaluations, want 2", n)
	}
}

// Another Spillway binary answers as this one does: the same specs as an
// evaluation in this process, and the parent's Caps, which travel with the
// request.
func TestAnotherSpillwayBinaryEvaluates(t *testing.T) {
	cli, err := testcli.Path()
	if err != nil {
		t.Fatal(err)
	}
	withLimits(t, EvalLimits{Evaluator: cli})
	src := []byte(limiterPolicy("p", "ingress"))
	specs, diags := LoadSource("p.cue", src)
	wantSpecs, wantDiags := loadSource("p.cue", src)
	if !reflect.DeepEqual(specs, wantSpecs) || !reflect.DeepEqual(diags, wantDiags) {
		t.Fatalf("the CLI answered %+v, %v; in-process %+v, %v", specs, diags, wantSpecs, wantDiags)
	}
	saved := Caps
	Caps.ComponentsPerPolicy = 1
	defer func() { Caps = saved }()
	_, diags = LoadSource("p.cue", src)
	if len(diags.Errors()) != 1 || !strings.Contains(diags[0].Message, "2 components, over the cap of 1") {
		t.Fatalf("diags %v, want the parent's cap of 1 component", diags)
	}
}

// An evaluator that cannot be started, or that is not a Spillway binary,
// is a load error of the file that names the program, returned at once;
// one that never answers is stopped by the wall-time bound.
func TestABadEvaluatorIsALoadError(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the fake evaluators are shell scripts")
	}
	dir := t.TempDir()
	script := func(name, body string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	missing := filepath.Join(dir, "no-such-evaluator")
	notExecutable := script("not-executable", "exit 0", 0o644)
	silent := script("silent", "exit 0", 0o755)
	failing := script("failing", "echo broken >&2; exit 3", 0o755)
	asleep := script("asleep", "exec sleep 60", 0o755)
	const timeout = 200 * time.Millisecond
	for _, tc := range []struct {
		name, evaluator string
		want            []string // in the message, besides the evaluator's path
		within          time.Duration
	}{
		{"a path that does not exist", missing, []string{"starting the policy evaluator", "no such file"}, 5 * time.Second},
		{"a directory", dir, []string{"starting the policy evaluator", "permission denied"}, 5 * time.Second},
		{"a file that is not executable", notExecutable, []string{"starting the policy evaluator", "permission denied"}, 5 * time.Second},
		{"a name not in PATH", "no-such-spillway-evaluator", []string{"starting the policy evaluator", "not found"}, 5 * time.Second},
		{"a program that exits without a result", silent, []string{"exited without a result", "not a Spillway binary"}, 5 * time.Second},
		{"a program that fails", failing, []string{"failed (exit status 3): broken"}, 5 * time.Second},
		{"a program that never answers", asleep, []string{"evaluation took longer than 1.2s"}, 6*timeout + 5*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withLimits(t, EvalLimits{Timeout: timeout, Evaluator: tc.evaluator})
			start := time.Now()
			specs, diags := LoadSource("p.cue", []byte(limiterPolicy("p", "ingress")))
			took := time.Since(start)
			if specs != nil || len(diags) != 1 || diags[0].Pos != (Position{File: "p.cue", Line: 1, Col: 1}) {
				t.Fatalf("specs %v, diags %v; want one error at p.cue:1:1", specs, diags)
			}
			msg := diags[0].Message
			if tc.evaluator != asleep && !strings.Contains(msg, tc.evaluator) {
				t.Errorf("%q does not name the evaluator %s", msg, tc.evaluator)
			}
			for _, want := range tc.want {
				if !strings.Contains(msg, want) {
					t.Errorf("%q does not say %q", msg, want)
				}
			}
			if took > tc.within {
				t.Errorf("returned after %s, want within %s", took, tc.within)
			}
		})
	}
}
