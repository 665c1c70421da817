package extauthz_test

import (
	"os"
	"testing"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/testcli"
)

// The policies these tests load are evaluated by the spillway CLI built
// without the race detector (engine.Limits.Evaluator), a real bounded child
// as in production; under -race this test binary re-executed would
// evaluate them about six times slower. engine's own tests keep the
// default evaluator covered.
func TestMain(m *testing.M) {
	os.Exit(testcli.Main(m, func(cli string) { engine.Limits.Evaluator = cli }))
}
