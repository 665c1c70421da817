package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
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

// startCommand runs the command line (newRoot with args) in this process
// until stop, which cancels it and fails the test if it exited with an
// error or did not stop within 10 s. Call stop before the servers the
// command talks to are closed: `defer startCommand(t, ...)()`.
func startCommand(t *testing.T, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	root := newRoot()
	var out bytes.Buffer // read only once the command has returned
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	return func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s exited with %v\n%s", args[0], err, out.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop with its context", args[0])
		}
	}
}
