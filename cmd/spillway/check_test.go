package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestCheckGolden runs `spillway check` on every policy and every directory
// in testdata/check and compares its output, positions included, with the
// .golden file. A directory checks that one broken file hides no other's
// errors.
func TestCheckGolden(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/check/*.cue")
	if err != nil || len(files) < 8 {
		t.Fatalf("want at least 8 golden policies, got %d (%v)", len(files), err)
	}
	entries, err := os.ReadDir("testdata/check")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("testdata/check", e.Name()))
		}
	}
	if len(dirs) < 1 {
		t.Fatal("want at least one golden directory")
	}
	for _, file := range append(files, dirs...) {
		name := strings.TrimSuffix(filepath.Base(file), ".cue")
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := newRoot()
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs([]string{"check", file})
			err := cmd.Execute()
			if err != nil {
				out.WriteString("exit status 1\n")
			}
			golden := strings.TrimSuffix(file, ".cue") + ".golden"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/spillway -run TestCheckGolden -update)", err)
			}
			if got := out.String(); got != string(want) {
				t.Errorf("spillway check %s:\ngot:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}

// TestCheckShippedPolicies keeps the example policies valid.
func TestCheckShippedPolicies(t *testing.T) {
	t.Parallel()
	report := check([]string{"../../policies"})
	if !report.OK || len(report.Policies) == 0 {
		t.Fatalf("policies/ does not check clean: %+v", report)
	}
	report = check([]string{"demo_policy.cue"})
	if !report.OK || len(report.Policies) != 1 {
		t.Fatalf("the demo policy does not check clean: %+v", report)
	}
}
