//go:build unix

package engine_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/engine"
)

// mkfifo makes a named pipe; nothing ever writes to it.
func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// listenUnix leaves a socket file at path until the test ends.
func listenUnix(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Skipf("cannot make a socket file: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
}

// Anything named *.cue that is not a regular file, or a link to one, is a
// load error of that file at line 1, found without blocking; the good
// files beside it are not enough to load. Directories are not policy
// files whatever their names: loading is not recursive.
func TestLoadDirRefusesWhatIsNotARegularFile(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) // makes dir/x.cue
		want  string                         // "" when x.cue is skipped
	}{
		{"a named pipe", func(t *testing.T, dir string) {
			mkfifo(t, filepath.Join(dir, "x.cue"))
		}, "not a regular file (named pipe)"},
		{"a link to a named pipe", func(t *testing.T, dir string) {
			mkfifo(t, filepath.Join(dir, ".pipe"))
			mustDo(t, os.Symlink(".pipe", filepath.Join(dir, "x.cue")))
		}, "not a regular file (named pipe)"},
		{"a socket", func(t *testing.T, dir string) {
			listenUnix(t, filepath.Join(dir, "x.cue"))
		}, "not a regular file (socket)"},
		{"a character device", func(t *testing.T, dir string) {
			mustDo(t, os.Symlink(os.DevNull, filepath.Join(dir, "x.cue")))
		}, "not a regular file (character device)"},
		{"a symbolic link loop", func(t *testing.T, dir string) {
			mustDo(t, os.Symlink("y.cue", filepath.Join(dir, "x.cue")))
			mustDo(t, os.Symlink("x.cue", filepath.Join(dir, "y.cue")))
		}, "symbolic link loop: it points to y.cue"},
		{"a dangling symbolic link", func(t *testing.T, dir string) {
			mustDo(t, os.Symlink(filepath.Join("..data", "x.cue"), filepath.Join(dir, "x.cue")))
		}, "dangling symbolic link: its target ..data/x.cue does not exist"},
		{"an unreadable file", func(t *testing.T, dir string) {
			if os.Geteuid() == 0 {
				t.Skip("root reads every file")
			}
			writePolicy(t, dir, "x.cue", counterSrc("x", 1))
			mustDo(t, os.Chmod(filepath.Join(dir, "x.cue"), 0))
		}, "permission denied"},
		{"a directory named x.cue", func(t *testing.T, dir string) {
			mustDo(t, os.Mkdir(filepath.Join(dir, "x.cue"), 0o755))
		}, ""},
		{"a link to a directory named x.cue", func(t *testing.T, dir string) {
			mustDo(t, os.Mkdir(filepath.Join(dir, ".sub"), 0o755))
			writePolicy(t, filepath.Join(dir, ".sub"), "y.cue", counterSrc("y", 1))
			mustDo(t, os.Symlink(".sub", filepath.Join(dir, "x.cue")))
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writePolicy(t, dir, "a.cue", counterSrc("a", 1))
			tc.setup(t, dir)
			var specs []engine.Spec
			var diags engine.Diagnostics
			within(t, 5*time.Second, "LoadDir", func() { specs, diags = engine.LoadDir(dir) })
			if tc.want == "" {
				if len(diags) != 0 || len(specs) != 1 || specs[0].Name != "a" {
					t.Fatalf("specs %v, diagnostics %v; want x.cue skipped and policy a loaded", specs, diags)
				}
				return
			}
			want := filepath.Join(dir, "x.cue") + ":1:1: " + tc.want
			if specs != nil || len(diags) == 0 || !strings.HasPrefix(diags[0].String(), want) {
				t.Fatalf("specs %v, diagnostics:\n%v\nwant an error starting %q", specs, diags, want)
			}
		})
	}
}

// A missing file has no line to point at; its diagnostic is the bare path.
func TestLoadFilesReportsAMissingFileAtItsPath(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone.cue")
	_, diags := engine.LoadFiles([]string{missing})
	if want := missing + ": no such file or directory"; len(diags) != 1 || diags[0].String() != want {
		t.Fatalf("diagnostics %v, want %q", diags, want)
	}
}

// A named pipe in the policy directory at startup fails Start at once,
// naming the file; it does not wait for a writer.
func TestStartFailsOnANamedPipe(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, "a.cue", counterSrc("a", 1))
	pipe := filepath.Join(dir, "p.cue")
	mkfifo(t, pipe)
	for _, watch := range []bool{false, true} {
		var err error
		within(t, 5*time.Second, "Start", func() {
			var eng *engine.Engine
			eng, err = engine.Start(context.Background(), engine.Options{Policies: dir, Watch: watch, ManualTicks: true})
			if eng != nil {
				eng.Close()
			}
		})
		if err == nil || !strings.Contains(err.Error(), pipe+":1:1: not a regular file (named pipe)") {
			t.Fatalf("watch %v: Start returned %v; want the named pipe's error", watch, err)
		}
	}
}

// A named pipe that appears in the watched directory is a load error shown
// on /status with its file; it blocks neither later reloads nor Close.
// The whole set is refused while it is there, as with any bad file;
// removing it lets the edit made meanwhile apply.
func TestWatcherSurvivesANamedPipe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePolicy(t, dir, "a.cue", counterSrc("a", 1))
	eng := startWatching(t, dir)
	attempts := eng.Status().Reload.Attempts
	expect := func(step string, value int, wantPipeError bool) {
		t.Helper()
		attempts++
		if got := waitAttempts(t, eng, attempts); got != attempts {
			t.Fatalf("%s: %d reload attempts, want %d", step, got, attempts)
		}
		eng.Tick()
		if v, err := eng.Signal("a", "V"); err != nil || v != float64(value) {
			t.Fatalf("%s: the running policy outputs %v (%v), want %d", step, v, err, value)
		}
		last := eng.Status().Reload.LastError
		if !wantPipeError {
			if last != nil {
				t.Fatalf("%s: last error %+v, want none", step, last)
			}
			return
		}
		want := filepath.Join(dir, "p.cue") + ":1:1: not a regular file (named pipe)"
		if last == nil || len(last.Diags) != 1 || last.Diags[0].String() != want || !slices.Contains(last.Files, filepath.Join(dir, "p.cue")) {
			t.Fatalf("%s: last error %+v, want %q", step, last, want)
		}
	}
	pipe := filepath.Join(dir, "p.cue")
	mkfifo(t, pipe)
	expect("a named pipe appears", 1, true)
	writePolicy(t, dir, "a.cue", counterSrc("a", 2))
	expect("an edit beside the pipe", 1, true)
	mustDo(t, os.Remove(pipe))
	expect("the pipe is removed", 2, false)
	mkfifo(t, pipe)
	expect("a named pipe appears again", 2, true)
	within(t, 2*time.Second, "Close with a named pipe in the directory", eng.Close)
}
