package engine

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchDir calls onChange once after every burst of changes in dir, a burst
// being events no more than debounce apart. It returns when ctx is done.
//
// It watches the directory, never the files, so that every way of saving
// is seen: writes in place, truncate then write, an editor's temp file
// renamed over the original, vim's backup renames, creates and deletes,
// and a Kubernetes ConfigMap's `..data` symlink swap. It also watches the
// parent, so the directory itself may be replaced (renamed away and
// recreated, or a symlink to it swapped); the watch follows the new one.
//
// onChange runs on the watcher's goroutine, so calls never overlap. The
// events are only a hint: onChange is expected to re-read the directory,
// and Engine.Reload ignores bursts that changed no policy file. When ready
// is not nil, it receives nil once the watches are in place, or the error
// that prevented them.
func WatchDir(ctx context.Context, dir string, debounce time.Duration, log *slog.Logger, onChange func(), ready chan<- error) error {
	fail := func(err error) error {
		if ready != nil {
			ready <- err
		}
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fail(err)
	}
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	if log == nil {
		log = slog.Default()
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fail(fmt.Errorf("watching %s: %w", dir, err))
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return fail(fmt.Errorf("watching the parent of %s: %w", dir, err))
	}
	if err := w.Add(abs); err != nil {
		return fail(fmt.Errorf("watching %s: %w", dir, err))
	}
	if ready != nil {
		ready <- nil
	}

	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			switch {
			case ev.Name == abs:
				// The directory itself was created, removed, renamed or
				// (as a symlink) swapped: watch whatever is there now. If
				// nothing is, its re-creation will show up on the parent.
				_ = w.Remove(abs)
				if err := w.Add(abs); err != nil {
					log.Warn("policy directory is gone; keeping the running policies", "dir", dir, "err", err)
				}
			case filepath.Dir(ev.Name) != abs:
				continue // a sibling in the parent
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflowed event queue loses events, not changes: reload.
			log.Warn("policy watcher", "dir", dir, "err", err)
			timer.Reset(debounce)
		case <-timer.C:
			onChange()
		}
	}
}
