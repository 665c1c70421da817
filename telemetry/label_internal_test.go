package telemetry

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

func TestBoundedLabelValue(t *testing.T) {
	limit := controlpoint.MaxLabelLength
	long := strings.Repeat("a", 8<<10)
	for _, c := range []struct {
		name, in string
	}{
		{"short", "GET /a"},
		{"at the bound", strings.Repeat("a", limit)},
		{"8 KB", long},
		{"8 KB with another ending", long + "b"},
		{"multibyte across the cut", strings.Repeat("é", limit)},
		{"invalid UTF-8", "cp\xff"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := boundedLabelValue(c.in)
			if len(got) > limit || !utf8.ValidString(got) {
				t.Fatalf("%d bytes, valid UTF-8 %v; want at most %d, valid", len(got), utf8.ValidString(got), limit)
			}
			if len(c.in) <= limit && utf8.ValidString(c.in) && got != c.in {
				t.Fatalf("%q changed to %q", c.in, got)
			}
		})
	}
	if boundedLabelValue(long) == boundedLabelValue(long+"b") {
		t.Fatal("two long values with one prefix must stay distinct")
	}
}
