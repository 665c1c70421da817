package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/enginetest"
)

// watchDebounce is longer than the 50 ms default so that a save pattern's
// steps are never split on a busy CI machine.
const watchDebounce = 150 * time.Millisecond

// waitAttempts waits for the engine's reload attempts to reach want and
// finish, then for one quiet debounce period in which a save split in two
// would start a second attempt, and returns the count then. A second
// attempt that starts later still shows in the next save's count.
func waitAttempts(t *testing.T, eng *engine.Engine, want uint64) uint64 {
	t.Helper()
	// An attempt counts when it starts; it is over once applied or failed
	// (evaluation runs in a child process, which a loaded machine slows).
	finished := func() bool {
		st := eng.Status().Reload
		return st.Attempts >= want && st.Applied+st.LoadErrors >= st.Attempts
	}
	enginetest.Eventually(t, 30*time.Second, fmt.Sprintf("reload attempt %d to finish", want), finished)
	time.Sleep(watchDebounce)
	enginetest.Eventually(t, 30*time.Second, "the reload attempts to finish", finished)
	return eng.Status().Reload.Attempts
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Every way of saving a policy triggers exactly one reload, and the next
// tick runs the new policy. A bad save keeps the old policy running; a
// fixed save recovers.
func TestWatcherReloadsOncePerSave(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, "policies")
	mustDo(t, os.Mkdir(dir, 0o755))
	file := filepath.Join(dir, "a.cue")
	writePolicy(t, dir, "a.cue", counterSrc("a", 1))
	eng := enginetest.Start(t, engine.Options{Policies: dir, Watch: true, Debounce: watchDebounce})

	attempts := eng.Status().Reload.Attempts
	value := 1
	expect := func(name string, wantErr bool) {
		t.Helper()
		attempts++
		if got := waitAttempts(t, eng, attempts); got != attempts {
			t.Fatalf("%s: %d reload attempts, want exactly %d", name, got, attempts)
		}
		eng.Tick()
		v, err := eng.Signal("a", "V")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v != float64(value) {
			t.Fatalf("%s: the running policy outputs %v, want %d", name, v, value)
		}
		if st := eng.Status(); (st.Reload.LastError != nil) != wantErr {
			t.Fatalf("%s: last error %+v, want error: %v", name, st.Reload.LastError, wantErr)
		}
	}

	value = 2
	mustDo(t, os.WriteFile(file, []byte(counterSrc("a", value)), 0o644))
	expect("write in place", false)

	value = 3 // an editor's atomic save: a temp file renamed over the original
	tmp := filepath.Join(dir, ".a.cue.tmp")
	mustDo(t, os.WriteFile(tmp, []byte(counterSrc("a", value)), 0o644))
	mustDo(t, os.Rename(tmp, file))
	expect("atomic rename", false)

	value = 4 // vim: rename to a backup, write anew, delete the backup
	mustDo(t, os.Rename(file, file+"~"))
	mustDo(t, os.WriteFile(file, []byte(counterSrc("a", value)), 0o644))
	mustDo(t, os.Remove(file+"~"))
	expect("vim backup rename", false)

	value = 5 // truncate, then write, as two steps
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	mustDo(t, err)
	mustDo(t, f.Truncate(0))
	_, err = f.Write([]byte(counterSrc("a", value)))
	mustDo(t, err)
	mustDo(t, f.Close())
	expect("truncate then write", false)

	// A bad save keeps value 5 running; the fix recovers.
	mustDo(t, os.WriteFile(file, []byte("policies: a: {"), 0o644))
	expect("bad save", true)
	if eng.LoadErrors() != 1 {
		t.Fatalf("load errors = %d, want 1", eng.LoadErrors())
	}
	mustDo(t, os.WriteFile(file, nil, 0o644))
	expect("empty save", true)
	value = 6
	mustDo(t, os.WriteFile(file, []byte(counterSrc("a", value)), 0o644))
	expect("fixed save", false)

	// A new file adds a policy; deleting it removes the policy.
	writePolicy(t, dir, "b.cue", counterSrc("b", 1))
	expect("create", false)
	if _, ok := eng.Policy("b"); !ok {
		t.Fatal("policy b was not added")
	}
	mustDo(t, os.Remove(filepath.Join(dir, "b.cue")))
	expect("delete", false)
	if _, ok := eng.Policy("b"); ok {
		t.Fatal("policy b was not removed")
	}

	// The directory itself is replaced: renamed away, a new one renamed in.
	value = 7
	next := filepath.Join(root, "next")
	mustDo(t, os.Mkdir(next, 0o755))
	writePolicy(t, next, "a.cue", counterSrc("a", value))
	mustDo(t, os.Rename(dir, filepath.Join(root, "old")))
	mustDo(t, os.Rename(next, dir))
	expect("directory replaced", false)

	// The watch follows the new directory.
	value = 8
	mustDo(t, os.WriteFile(file, []byte(counterSrc("a", value)), 0o644))
	expect("write in the new directory", false)
}

// A Kubernetes ConfigMap volume: the files are symlinks through `..data`,
// which is swapped atomically to a new timestamped directory.
func TestWatcherFollowsConfigMapSymlinkSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	version := func(name string, value int) {
		t.Helper()
		mustDo(t, os.Mkdir(filepath.Join(dir, name), 0o755))
		writePolicy(t, filepath.Join(dir, name), "a.cue", counterSrc("a", value))
	}
	version("..2026_11_26_10_00_00.1", 1)
	mustDo(t, os.Symlink("..2026_11_26_10_00_00.1", filepath.Join(dir, "..data")))
	mustDo(t, os.Symlink(filepath.Join("..data", "a.cue"), filepath.Join(dir, "a.cue")))
	eng := enginetest.Start(t, engine.Options{Policies: dir, Watch: true, Debounce: watchDebounce})
	eng.Tick()
	if v, _ := eng.Signal("a", "V"); v != 1 {
		t.Fatalf("initial value %v, want 1", v)
	}
	attempts := eng.Status().Reload.Attempts

	// What the kubelet does: a new directory, a temp symlink to it renamed
	// over ..data, the old directory removed.
	version("..2026_11_26_10_05_00.2", 2)
	mustDo(t, os.Symlink("..2026_11_26_10_05_00.2", filepath.Join(dir, "..data_tmp")))
	mustDo(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	mustDo(t, os.RemoveAll(filepath.Join(dir, "..2026_11_26_10_00_00.1")))

	if got := waitAttempts(t, eng, attempts+1); got != attempts+1 {
		t.Fatalf("%d reload attempts after the swap, want %d", got, attempts+1)
	}
	eng.Tick()
	if v, _ := eng.Signal("a", "V"); v != 2 {
		t.Fatalf("after the swap the policy outputs %v, want 2", v)
	}
}

// within runs f and fails the test if it has not returned after limit: a
// regression that blocks fails instead of hanging the test binary.
func within(t *testing.T, limit time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s did not return within %s", what, limit)
	}
}

// startWatching starts an engine that watches dir, with ticks driven by
// hand. Its cleanup fails the test, rather than hanging it, when Close
// takes longer than 2 s.
func startWatching(t *testing.T, dir string) *engine.Engine {
	t.Helper()
	var ns atomic.Int64
	var eng *engine.Engine
	var err error
	within(t, 5*time.Second, "Start", func() {
		eng, err = engine.Start(context.Background(), engine.Options{
			Policies: dir, Watch: true, Debounce: watchDebounce, ManualTicks: true,
			Logger: slog.New(slog.DiscardHandler),
			Clock:  func() int64 { return ns.Add(int64(time.Millisecond)) },
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { within(t, 2*time.Second, "Close", eng.Close) })
	return eng
}

// The watch outlives its directory and the directory's parent: while they
// are gone /status says why nothing is watched, and once they are back
// the policies in them are loaded.
func TestWatcherSurvivesItsParentDirectoryDisappearing(t *testing.T) {
	t.Parallel()
	parent := filepath.Join(t.TempDir(), "etc")
	dir := filepath.Join(parent, "policies")
	mustDo(t, os.MkdirAll(dir, 0o755))
	writePolicy(t, dir, "a.cue", counterSrc("a", 1))
	eng := startWatching(t, dir)

	mustDo(t, os.RemoveAll(parent))
	enginetest.Eventually(t, 10*time.Second, "the watch error", func() bool { return eng.Status().Reload.WatchError != "" })
	eng.Tick()
	if v, _ := eng.Signal("a", "V"); v != 1 {
		t.Fatalf("with the directory gone the policy outputs %v, want 1 still", v)
	}

	mustDo(t, os.MkdirAll(dir, 0o755))
	writePolicy(t, dir, "a.cue", counterSrc("a", 2))
	enginetest.Eventually(t, 10*time.Second, "the new policy", func() bool {
		eng.Tick()
		v, _ := eng.Signal("a", "V")
		return v == 2
	})
	enginetest.Eventually(t, 10*time.Second, "the watch error to clear", func() bool { return eng.Status().Reload.WatchError == "" })

	writePolicy(t, dir, "a.cue", counterSrc("a", 3)) // and the watch is live
	enginetest.Eventually(t, 10*time.Second, "the edit after the watch came back", func() bool {
		eng.Tick()
		v, _ := eng.Signal("a", "V")
		return v == 3
	})
}
