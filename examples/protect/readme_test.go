package main

import (
	"os"
	"strings"
	"testing"
)

// The README's "Protect a service" snippet is this file's main.go, whole,
// so what a reader copies is what this package compiles.
func TestTheReadmeShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Protect a service\n")
	if !ok {
		t.Fatal(`README.md has no "## Protect a service" section`)
	}
	_, block, ok := strings.Cut(section, "\n```go\n")
	if !ok {
		t.Fatal(`README.md's "Protect a service" has no go block`)
	}
	block, _, _ = strings.Cut(block, "\n```\n")
	block += "\n"
	if block == string(src) {
		return
	}
	got, want := strings.Split(block, "\n"), strings.Split(string(src), "\n")
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("README.md's snippet differs from examples/protect/main.go at line %d:\nREADME:  %q\nmain.go: %q", i+1, got[i], want[i])
		}
	}
	t.Fatalf("README.md's snippet has %d lines, examples/protect/main.go %d", len(got), len(want))
}

// The policy the README shows next to it is policies/default.cue
// without its opening comment.
func TestTheReadmePolicyIsTheShippedOne(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := os.ReadFile("../../policies/default.cue")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "\n## Protect a service\n")
	_, block, ok := strings.Cut(section, "\n```cue\n")
	if !ok {
		t.Fatal(`README.md's "Protect a service" has no cue block`)
	}
	block, _, _ = strings.Cut(block, "\n```\n")
	_, body, _ := strings.Cut(string(policy), "\npackage ")
	if block+"\n" != "package "+body {
		t.Errorf("README.md's policy is not policies/default.cue:\n%s\nwant:\n%s", block, "package "+body)
	}
}
