package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The spillway binary that the tests running several processes start,
// built once for the whole test binary: a link of the CLI costs seconds,
// tens of them on a loaded machine.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// spillwayBinary builds ./cmd/spillway (without the race detector, as a
// user runs it) on first use and returns its path.
func spillwayBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "spillway-test-bin-")
		if built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "spillway")
		built.out, built.err = exec.Command("go", "build", "-o", built.path, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("go build: %v\n%s", built.err, built.out)
	}
	return built.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}
