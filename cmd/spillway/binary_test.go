package main

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/testcli"
)

// spillwayBinary is the CLI built without the race detector, as a user
// runs it (testcli.Path): the tests running several processes start it.
func spillwayBinary(t *testing.T) string {
	t.Helper()
	path, err := testcli.Path()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// The same build evaluates the policies of this test binary's loads.
func TestMain(m *testing.M) {
	os.Exit(testcli.Main(m, func(cli string) { engine.Limits.Evaluator = cli }))
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
