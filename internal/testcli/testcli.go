// Package testcli builds the spillway CLI for tests, once per test binary:
// the tests that start the CLI as a process use it, and so does every
// package whose tests evaluate many policies, as engine.Limits.Evaluator.
// A test binary built with -race would otherwise re-execute itself for each
// policy file and evaluate the CUE under the race detector, about six times
// slower; the CLI is built without it, as a user runs it, and is a real
// bounded child all the same. Tests import this package; the library never
// does.
package testcli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// cliPackage is what Path builds; an import path, so that it builds from
// any package's directory.
const cliPackage = "github.com/spillway-dev/spillway/cmd/spillway"

var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Path builds the CLI on its first call (go build, so unchanged sources
// only relink) into a temporary directory and returns the binary's path.
// Safe for concurrent use; Remove deletes the build.
func Path() (string, error) {
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "spillway-test-cli-")
		if built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "spillway")
		if out, err := exec.Command("go", "build", "-o", built.path, cliPackage).CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build %s: %v\n%s", cliPackage, err, out)
		}
	})
	return built.path, built.err
}

// Remove deletes what Path built. Call it once the tests are done.
func Remove() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// Main is the body of a TestMain that evaluates policies with the CLI: it
// builds the CLI, passes its path to use (which sets
// engine.Limits.Evaluator; this package cannot import engine, whose own
// tests use it), runs the tests, removes the build and returns the exit
// code for os.Exit.
func Main(m *testing.M, use func(cli string)) int {
	defer Remove()
	cli, err := Path()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testcli:", err)
		return 1
	}
	use(cli)
	return m.Run()
}
