package testbed

import (
	"os"
	"testing"

	"github.com/spillway-dev/spillway/internal/enginetest"
)

// The spillway CLI, built without the race detector, evaluates this test
// binary's policies (enginetest.Main): re-executing a -race test binary
// for each file would evaluate the CUE about six times slower.
func TestMain(m *testing.M) { os.Exit(enginetest.Main(m)) }
