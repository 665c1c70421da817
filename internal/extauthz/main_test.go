package extauthz_test

import (
	"os"
	"testing"

	"github.com/spillway-dev/spillway/internal/enginetest"
)

// The spillway CLI, built without the race detector, evaluates the
// policies these tests load (enginetest.Main).
func TestMain(m *testing.M) { os.Exit(enginetest.Main(m)) }
