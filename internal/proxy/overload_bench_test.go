package proxy_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
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

// itemToServe writes the 2 KiB item.txt a stock server serves into a new
// directory and picks a free loopback port for that server.
func itemToServe(b *testing.B) (dir string, port int) {
	b.Helper()
	dir = b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "item.txt"), []byte(strings.Repeat("x", 2048)), 0o644); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return dir, port
}
