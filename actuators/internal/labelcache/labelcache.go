// Package labelcache remembers what the label strings a server holds
// resolve to: a ServeMux's route patterns, gRPC method names. Such a
// string is the same string (the same bytes at the same address) on every
// request, so the cache finds it by the address of its bytes, without
// hashing or comparing them.
package labelcache

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// MaxEntries bounds a cache. A server has as many patterns or methods as
// it registered; a caller whose labels are built per request (and so are
// new strings each time) fills the cache once and then always misses,
// without allocating further.
const MaxEntries = 256

// Cache maps labels to values of type V. The zero value is an empty cache
// ready to use. Get is lock-free and allocation-free; Put copies the table
// under a mutex. A Cache must not be copied after first use.
type Cache[V any] struct {
	mu    sync.Mutex
	table atomic.Pointer[table[V]]
}

// table is an immutable open-addressing table, at most half full.
type table[V any] struct {
	mask    uintptr
	len     int
	entries []entry[V]
}

type entry[V any] struct {
	// label keeps its bytes alive, so that no other string can take their
	// address while the entry exists.
	label string
	value V
}

// Get returns the value put for label, matched by the address and length
// of its bytes: a string with the same text elsewhere in memory misses. An
// empty label always misses.
func (c *Cache[V]) Get(label string) (v V, ok bool) {
	t := c.table.Load()
	if t == nil || len(label) == 0 {
		return v, false
	}
	data := unsafe.StringData(label)
	for i := slot(data) & t.mask; ; i = (i + 1) & t.mask {
		e := &t.entries[i]
		if unsafe.StringData(e.label) == data && len(e.label) == len(label) {
			return e.value, true
		}
		if len(e.label) == 0 {
			return v, false
		}
	}
}

// Put remembers v for label (this string: its bytes' address), unless the
// label is empty or the cache holds MaxEntries labels already; once full,
// it returns without locking. A value put for a label must stay right for
// as long as the cache lives.
func (c *Cache[V]) Put(label string, v V) {
	if len(label) == 0 {
		return
	}
	if t := c.table.Load(); t != nil && t.len >= MaxEntries {
		return // full: callers that miss forever do not queue on mu
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.table.Load()
	if _, ok := c.Get(label); ok {
		return
	}
	n := 1
	if old != nil {
		n += old.len
	}
	if n > MaxEntries {
		return
	}
	size := 8
	for size < 2*n {
		size *= 2
	}
	next := &table[V]{mask: uintptr(size - 1), len: n, entries: make([]entry[V], size)}
	if old != nil {
		for _, e := range old.entries {
			if len(e.label) != 0 {
				next.insert(e)
			}
		}
	}
	next.insert(entry[V]{label, v})
	c.table.Store(next)
}

func (t *table[V]) insert(e entry[V]) {
	i := slot(unsafe.StringData(e.label)) & t.mask
	for len(t.entries[i].label) != 0 {
		i = (i + 1) & t.mask
	}
	t.entries[i] = e
}

// slot spreads an address over the table (Fibonacci hashing).
func slot(data *byte) uintptr {
	return uintptr(uint64(uintptr(unsafe.Pointer(data))) * 0x9E3779B97F4A7C15 >> 40)
}
