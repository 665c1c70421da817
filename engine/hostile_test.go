package engine

import (
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// hostileCase installs one hostile entry in a watched policy directory.
type hostileCase struct {
	name    string // the file name the error must point at
	install func(t *testing.T, dir string)
}

func hostileCases(t *testing.T) []hostileCase {
	files, err := filepath.Glob("testdata/hostile/*.cue")
	if err != nil || len(files) < 15 {
		t.Fatalf("hostile corpus: %d files (%v), want at least 15", len(files), err)
	}
	var cases []hostileCase
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		cases = append(cases, hostileCase{name, func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, name), string(src))
		}})
	}
	// Entries that cannot be committed: made at test time.
	return append(cases,
		hostileCase{"fifo.cue", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "fifo.cue"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		hostileCase{"socket.cue", func(t *testing.T, dir string) {
			ln, err := net.Listen("unix", filepath.Join(dir, "socket.cue"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}},
		hostileCase{"loop-a.cue", func(t *testing.T, dir string) {
			if err := os.Symlink("loop-b.cue", filepath.Join(dir, "loop-a.cue")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("loop-a.cue", filepath.Join(dir, "loop-b.cue")); err != nil {
				t.Fatal(err)
			}
		}},
		hostileCase{"dangling.cue", func(t *testing.T, dir string) {
			if err := os.Symlink("nowhere/at/all.cue", filepath.Join(dir, "dangling.cue")); err != nil {
				t.Fatal(err)
			}
		}},
		hostileCase{"oversize.cue", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "oversize.cue"), "package p\n// "+strings.Repeat("x", MaxPolicyFileSize)+"\npolicies: {}\n")
		}},
	)
}

// Every hostile entry, dropped into the watched directory of an engine that
// is enforcing a policy, is a load error at a position in that entry; the
// running policy keeps enforcing and ticking on time, and this process's
// memory stays bounded.
func TestHostilePolicyCorpus(t *testing.T) {
	// Half a second of CPU per file: every entry of the corpus is an error
	// whatever stops it (the evaluator's bound or the policy's own
	// error), so a tighter bound only stops the bombs sooner.
	withLimits(t, EvalLimits{Timeout: 500 * time.Millisecond, MemoryBytes: 256 << 20})
	dir := t.TempDir()
	const interval = 100 * time.Millisecond
	// fail_closed: a tick delayed past staleness by a loaded machine must
	// not read as the policy no longer enforcing; the tick gap is checked
	// on its own below.
	guard := strings.Replace(limiterPolicy("guard", "ingress"), `"20ms"`, `"100ms"`, 1)
	guard = strings.Replace(guard, "selector:", `fail_mode: "fail_closed", selector:`, 1)
	writeFile(t, filepath.Join(dir, "guard.cue"), guard)
	e, err := Start(t.Context(), Options{Policies: dir, Watch: true, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cp := e.ControlPoints().Get("ingress")
	for deadline := time.Now().Add(10 * time.Second); !rejectsSome(cp, 5); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the guard policy never started enforcing")
		}
	}
	baseRSS := processRSS(t)
	lag := watchSchedulerLag(t)

	for _, hc := range hostileCases(t) {
		t.Run(hc.name, func(t *testing.T) {
			errorsBefore := e.LoadErrors()
			since := e.Now()
			lag.reset()
			hc.install(t, dir)
			deadline := time.Now().Add(60 * time.Second)
			for e.LoadErrors() == errorsBefore {
				if time.Now().After(deadline) {
					t.Fatalf("no load error after 60 s; status %+v", e.Status().Reload)
				}
				time.Sleep(10 * time.Millisecond)
			}
			var at []Diagnostic
			for _, d := range e.LastErrors() {
				if strings.HasSuffix(d.Pos.File, hc.name) || strings.Contains(d.Message, hc.name) {
					at = append(at, d)
				}
			}
			if len(at) == 0 {
				t.Fatalf("no error names %s: %v", hc.name, e.LastErrors())
			}
			for _, d := range at {
				if d.Pos.File == "" || d.Message == "" {
					t.Fatalf("error without a position or message: %+v", d)
				}
			}
			if !rejectsSome(cp, 5) {
				t.Fatal("the running policy stopped enforcing")
			}
			if rss := processRSS(t); rss-baseRSS > 256<<20 {
				t.Fatalf("RSS grew by %d MiB", (rss-baseRSS)>>20)
			}
			// Late by more than one interval, beyond what the machine's
			// load did to every goroutine of this process.
			if gap, osLag := longestTickGap(e, "guard", since), lag.max(); gap > 2*interval+osLag {
				t.Fatalf("the running policy's ticks were %s apart, more than one interval late (a plain sleeping goroutine overslept by %s)", gap, osLag)
			}
			// Clean up and wait for the good set to load again.
			entries, _ := os.ReadDir(dir)
			for _, en := range entries {
				if en.Name() != "guard.cue" {
					os.Remove(filepath.Join(dir, en.Name()))
				}
			}
			for len(e.LastErrors()) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the directory did not load clean again: %v", e.LastErrors())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	if _, ok := e.Policy("guard"); !ok || len(e.Policies()) != 1 {
		t.Fatalf("running set changed: %d policies", len(e.Policies()))
	}
}

// longestTickGap is the longest time between two ticks of a policy since
// sinceNs (engine clock), counting up to now.
func longestTickGap(e *Engine, policy string, sinceNs int64) time.Duration {
	var gap int64
	for _, h := range e.History(sinceNs) {
		if h.Policy != policy {
			continue
		}
		prev := sinceNs
		for _, t := range append(h.TimesNs, e.Now()) {
			gap = max(gap, t-prev)
			prev = t
		}
	}
	if gap == 0 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(gap)
}

// schedulerLag measures how late a goroutine that sleeps 5 ms at a time
// wakes up: the delay the machine's load, not Spillway, causes.
type schedulerLag struct {
	worst atomic.Int64
}

func watchSchedulerLag(t *testing.T) *schedulerLag {
	l := &schedulerLag{}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		const nap = 5 * time.Millisecond
		for {
			start := time.Now()
			select {
			case <-done:
				return
			case <-time.After(nap):
			}
			if late := int64(time.Since(start) - nap); late > l.worst.Load() {
				l.worst.Store(late)
			}
		}
	}()
	return l
}

func (l *schedulerLag) reset()             { l.worst.Store(0) }
func (l *schedulerLag) max() time.Duration { return time.Duration(l.worst.Load()) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
