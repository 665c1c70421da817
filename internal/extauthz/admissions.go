package extauthz

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

// admissions holds the requests ext_authz admitted until Envoy's access
// log reports them finished. It is a ring of fixed size indexed by
// admission number, so memory is fixed and a lookup is one slot: an
// admission still held when the ring comes round to its slot again, cap
// admissions later, is the oldest held and is evicted (finished as a
// server error and counted). Each slot has its own lock, so admissions
// contend only with the completion of the same slot.
type admissions struct {
	slots []admissionSlot
	mask  uint64
	// epoch is random per table: an id from another process (Envoy's
	// buffered log entries of admissions before a restart) never matches.
	epoch uint64
	next  atomic.Uint64

	open                                   atomic.Int64
	evicted, expired, completed, unmatched atomic.Uint64
}

type admissionSlot struct {
	mu      sync.Mutex
	seq     uint64 // 0: empty
	ticket  controlpoint.Ticket
	startNs int64 // engine clock
}

// newAdmissions returns a table of at least capacity slots (a power of
// two).
func newAdmissions(capacity int) *admissions {
	n := 1
	for n < capacity {
		n <<= 1
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return &admissions{slots: make([]admissionSlot, n), mask: uint64(n - 1), epoch: binary.LittleEndian.Uint64(b[:])}
}

// add holds t, admitted at nowNs, and returns its admission id.
func (a *admissions) add(t controlpoint.Ticket, nowNs int64) string {
	seq := a.next.Add(1)
	sl := &a.slots[seq&a.mask]
	sl.mu.Lock()
	if sl.seq > seq {
		// A later admission took the slot first: this one is the older.
		sl.mu.Unlock()
		a.evicted.Add(1)
		t.Done(false)
		return a.id(seq)
	}
	old, oldStart, had := sl.ticket, sl.startNs, sl.seq != 0
	sl.seq, sl.ticket, sl.startNs = seq, t, nowNs
	sl.mu.Unlock()
	if had {
		a.evicted.Add(1)
		old.DoneAfter(false, time.Duration(nowNs-oldStart))
	} else {
		a.open.Add(1)
	}
	return a.id(seq)
}

// id is the admission id of seq: the table's epoch and seq, in
// lower-case hex.
func (a *admissions) id(seq uint64) string {
	var b [maxIDLength]byte
	return string(a.appendID(b[:0], seq))
}

func (a *admissions) appendID(b []byte, seq uint64) []byte {
	b = strconv.AppendUint(b, a.epoch, 16)
	b = append(b, '-')
	return strconv.AppendUint(b, seq, 16)
}

// maxIDLength bounds an id read from a log entry (two 64-bit hex numbers
// and a dash).
const maxIDLength = 33

// take removes and returns the admission id names, if it is held. Only
// the id exactly as issued names it.
func (a *admissions) take(id string) (t controlpoint.Ticket, startNs int64, ok bool) {
	if len(id) > maxIDLength {
		return t, 0, false
	}
	_, seqHex, found := strings.Cut(id, "-")
	if !found {
		return t, 0, false
	}
	seq, err := strconv.ParseUint(seqHex, 16, 64)
	var b [maxIDLength]byte
	if err != nil || seq == 0 || string(a.appendID(b[:0], seq)) != id {
		return t, 0, false
	}
	sl := &a.slots[seq&a.mask]
	sl.mu.Lock()
	if sl.seq != seq {
		sl.mu.Unlock()
		return t, 0, false
	}
	t, startNs = sl.ticket, sl.startNs
	sl.seq, sl.ticket = 0, controlpoint.Ticket{}
	sl.mu.Unlock()
	a.open.Add(-1)
	return t, startNs, true
}

// expire finishes, as server errors, the admissions made at or before
// cutoffNs, and returns how many. nowNs is the latency's end.
func (a *admissions) expire(cutoffNs, nowNs int64) int {
	n := 0
	for i := range a.slots {
		sl := &a.slots[i]
		sl.mu.Lock()
		if sl.seq == 0 || sl.startNs > cutoffNs {
			sl.mu.Unlock()
			continue
		}
		t, start := sl.ticket, sl.startNs
		sl.seq, sl.ticket = 0, controlpoint.Ticket{}
		sl.mu.Unlock()
		a.open.Add(-1)
		t.DoneAfter(false, time.Duration(nowNs-start))
		n++
	}
	return n
}
