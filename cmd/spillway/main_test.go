package main

import (
	"os"
	"testing"
)

// asSpillway is the environment variable that makes this package's test
// binary run as the spillway command: a test that needs the command as a
// process (several proxies on one Redis) starts os.Args[0] with it set
// instead of running `go build`, which takes tens of seconds on a loaded
// machine, and the child runs under the race detector when the test does.
const asSpillway = "SPILLWAY_TEST_RUN_AS_COMMAND"

func TestMain(m *testing.M) {
	if os.Getenv(asSpillway) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// spillwayCommand is the spillway command as a child process: this test
// binary, run as main.
func spillwayCommand(t *testing.T) string {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatalf("the test binary cannot run itself as the command: %v", err)
	}
	return bin
}
