package labelcache

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestAStringIsFoundByItsBytesNotItsText(t *testing.T) {
	var c Cache[int]
	pattern := "GET /a"
	if _, ok := c.Get(pattern); ok {
		t.Fatal("an empty cache found a label")
	}
	c.Put(pattern, 1)
	if v, ok := c.Get(pattern); !ok || v != 1 {
		t.Fatalf("Get(the string put) = %d, %v; want 1, true", v, ok)
	}
	if v, ok := c.Get(pattern[:len(pattern)-1]); ok {
		t.Fatalf("a prefix of the string put (same address, shorter) found %d", v)
	}
	sameText := strings.Clone(pattern)
	if v, ok := c.Get(sameText); ok {
		t.Fatalf("a copy of the string put (same text elsewhere) found %d", v)
	}
	c.Put("", 2)
	if _, ok := c.Get(""); ok {
		t.Fatal("the empty label was cached")
	}
}

func TestPutKeepsTheFirstValueAndEveryEntryAsItGrows(t *testing.T) {
	var c Cache[int]
	labels := make([]string, MaxEntries+10)
	for i := range labels {
		labels[i] = fmt.Sprintf("GET /route/%d", i)
		c.Put(labels[i], i)
		c.Put(labels[i], -1) // already there: kept
	}
	for i, label := range labels {
		v, ok := c.Get(label)
		switch {
		case i < MaxEntries && (!ok || v != i):
			t.Fatalf("label %d: Get = %d, %v; want %d, true", i, v, ok, i)
		case i >= MaxEntries && ok:
			t.Fatalf("label %d, past MaxEntries, was cached", i)
		}
	}
}

func TestGetDuringPutIsRaceFreeAndAllocationFree(t *testing.T) {
	var c Cache[int]
	labels := make([]string, 100)
	for i := range labels {
		labels[i] = fmt.Sprintf("/%d", i)
	}
	c.Put(labels[0], 0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, label := range labels {
			c.Put(label, i)
		}
	}()
	for range 1000 {
		if v, ok := c.Get(labels[0]); !ok || v != 0 {
			t.Fatalf("Get(labels[0]) = %d, %v during Puts", v, ok)
		}
	}
	wg.Wait()
	if allocs := testing.AllocsPerRun(100, func() { c.Get(labels[50]) }); allocs != 0 {
		t.Fatalf("Get allocates %v times", allocs)
	}
}

func TestAFullCacheNeitherGrowsNorAllocates(t *testing.T) {
	var c Cache[int]
	for i := range MaxEntries {
		c.Put(fmt.Sprintf("/%d", i), i)
	}
	fresh := "/fresh"
	if allocs := testing.AllocsPerRun(100, func() { c.Put(fresh, 1) }); allocs != 0 {
		t.Fatalf("Put into a full cache allocates %v times", allocs)
	}
	if _, ok := c.Get(fresh); ok {
		t.Fatal("a full cache took another label")
	}
}
