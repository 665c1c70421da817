// Package testcli builds the spillway CLI for tests, at most once per test
// binary (see Path): the tests that start the CLI as a process use it, and
// so does every package whose tests evaluate many policies, as
// engine.Limits.Evaluator. A test binary built with -race would otherwise
// re-execute itself for each policy file and evaluate the CUE under the
// race detector, about six times slower; the CLI is built without it, as a
// user runs it, and is a real bounded child all the same. Tests import this
// package; the library never does.
package testcli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// Path builds the CLI on its first call and returns the binary's path.
// Safe for concurrent use; Remove deletes what it built.
//
// The binary comes from the go command's build cache when it can (go run
// keeps the executables it links there, and -exec echo prints the path
// instead of running it), so the test binaries that need the CLI in one
// go test ./... link it once between them; a link costs about 6 s of CPU. The first go run of a new build runs it from a temporary directory
// that is gone when go exits, and only the next finds it in the cache. When
// neither gives a path that exists (GOCACHE=off), Path falls back to go
// build into a temporary directory of its own.
func Path() (string, error) {
	built.once.Do(func() {
		for range 2 {
			out, err := exec.Command("go", "run", "-exec", "echo", cliPackage).Output()
			if err != nil {
				break
			}
			if path := strings.TrimSpace(string(out)); filepath.IsAbs(path) && executable(path) {
				built.path = path
				return
			}
		}
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

// executable reports whether path is a regular file someone may execute.
func executable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0
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
