package extauthz

import (
	"strconv"
	"strings"
	"testing"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

// FuzzAdmissionID: an id from a log entry finishes an admission only when
// it is exactly the id that admission was given; anything else, however
// malformed, is no match and no panic.
func FuzzAdmissionID(f *testing.F) {
	a := newAdmissions(8)
	issued := map[string]bool{}
	for range 5 {
		issued[a.add(controlpoint.Ticket{}, 0)] = true
	}
	// Other spellings first, while the admissions are still held.
	for id := range issued {
		f.Add(id + "0")
		f.Add("0" + id)
		f.Add(strings.ToUpper(id))
	}
	for id := range issued {
		f.Add(id)
	}
	f.Add("")
	f.Add("-")
	f.Add(strconv.FormatUint(a.epoch, 16) + "-0")
	f.Add(strconv.FormatUint(a.epoch, 16) + "-ffffffffffffffff")
	f.Add("ffffffffffffffffffffffffffffffffffffffff-1")
	f.Fuzz(func(t *testing.T, id string) {
		_, _, ok := a.take(id)
		if ok && !issued[id] {
			t.Fatalf("%q matched an admission it does not name", id)
		}
		delete(issued, id)
	})
}
