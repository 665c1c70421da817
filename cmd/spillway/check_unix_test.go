//go:build unix

package main

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A named pipe, given as an argument or found in a checked directory, is
// an error at its path; check never waits for a writer.
func TestCheckRefusesANamedPipe(t *testing.T) {
	dir := t.TempDir()
	pipe := filepath.Join(dir, "p.cue")
	if err := syscall.Mkfifo(pipe, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{pipe, dir} {
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, err := runCLI(t, "check", arg)
			done <- result{out, err}
		}()
		select {
		case r := <-done:
			want := pipe + ":1:1: not a regular file (named pipe)\n"
			if r.err == nil || r.out != want {
				t.Fatalf("check %s: %v\n%s\nwant exit 1 and %q", arg, r.err, r.out, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("check %s did not return within 5s", arg)
		}
	}
}
