package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/testbed"
)

// overloadRun offers target half its capacity for warm, then three times it
// for overload, and returns the goodput after warm as a share of capacity
// and the rejections per second.
func overloadRun(b *testing.B, target string, capacity float64, warm, overload, slo, timeout time.Duration) (goodput, rejected float64) {
	b.Helper()
	res, err := testbed.Run(context.Background(), testbed.LoadConfig{
		URL:     target,
		Phases:  []testbed.Phase{{Duration: warm, Rate: 0.5 * capacity}, {Duration: overload, Rate: 3 * capacity}},
		SLO:     slo,
		Timeout: timeout,
		Seed:    7,
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var seconds float64
	for _, s := range res.Seconds {
		if s.T >= int(warm/time.Second) {
			goodput += float64(s.Goodput)
			rejected += float64(s.Rejected)
			seconds++
		}
	}
	return goodput / seconds / capacity, rejected / seconds
}
