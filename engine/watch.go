package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// The wait between attempts to watch again after watching failed doubles
// from watchRetryMin up to watchRetryMax.
const (
	watchRetryMin = 50 * time.Millisecond
	watchRetryMax = time.Second
)

// errWatcherStopped is a watcher whose event channels closed under us.
var errWatcherStopped = errors.New("the file watcher stopped")

// WatchDir calls onChange once after every burst of changes in dir, a burst
// being events no more than debounce apart. It returns only when ctx is
// done.
//
// It watches the directory, never the files, so that every way of saving
// is seen: writes in place, truncate then write, an editor's temp file
// renamed over the original, vim's backup renames, creates and deletes,
// and a Kubernetes ConfigMap's `..data` symlink swap. It also watches the
// parent, so the directory itself may be replaced (renamed away and
// recreated, or a symlink to it swapped); the watch follows the new one.
//
// Watching never gives up. When it fails (no watcher can be made, the
// watcher reports an error other than a queue overflow or its channels
// close, the directory or its parent is gone), WatchDir logs and tries
// again, waiting 50 ms at first and at most 1 s between attempts, until it
// succeeds or ctx is done. Events may have been missed meanwhile, so a
// watch that is back counts as a burst.
//
// onChange runs on the watcher's goroutine, so calls never overlap; it
// should return promptly, since events wait while it runs. The events are
// only a hint: onChange is expected to re-read the directory, and
// Engine.Reload ignores bursts that changed no policy file. onState, when
// not nil, is called on the same goroutine with nil whenever the watches
// are in place (first, and again after a failure), and with the error
// whenever watching fails.
func WatchDir(ctx context.Context, dir string, debounce time.Duration, log *slog.Logger, onChange func(), onState func(error)) {
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	if log == nil {
		log = slog.Default()
	}
	state := func(err error) {
		if onState != nil {
			onState(err)
		}
	}
	retry := watchRetryMin
	var failed error // the failure last logged, so that a lasting one is logged once
	for missed := false; ; missed = true {
		began := time.Now()
		err := watchOnce(ctx, dir, debounce, log, onChange, func(err error) {
			if err == nil && failed != nil {
				log.Info("watching the policy directory again", "dir", dir)
				failed = nil
			}
			state(err)
		}, missed)
		if ctx.Err() != nil {
			return
		}
		if failed == nil || failed.Error() != err.Error() {
			log.Warn("cannot watch the policy directory; retrying, the running policies keep running", "dir", dir, "err", err)
		}
		failed = err
		state(err)
		if time.Since(began) > watchRetryMax {
			retry = watchRetryMin // it had been working: not a failure in a row
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		retry = min(2*retry, watchRetryMax)
	}
}

// watchOnce sets up one watcher of dir and its parent and serves its
// events until ctx is done (it returns nil) or the watch breaks (it
// returns why). state receives nil once the watches are in place, and
// the trouble of a directory that is gone while its parent is watched.
// When missed, the first burst is assumed.
func watchOnce(ctx context.Context, dir string, debounce time.Duration, log *slog.Logger, onChange func(), state func(error), missed bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	parent := filepath.Dir(abs)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	defer w.Close()
	if err := w.Add(parent); err != nil {
		return fmt.Errorf("watching the parent of %s: %w", dir, err)
	}
	if err := w.Add(abs); err != nil {
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	state(nil)

	timer := time.NewTimer(debounce)
	if !missed {
		timer.Stop()
	}
	defer timer.Stop()
	gone := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errWatcherStopped
			}
			switch {
			case ev.Name == abs:
				// The directory itself was created, removed, renamed or
				// (as a symlink) swapped: watch whatever is there now. If
				// nothing is, its re-creation will show up on the parent.
				_ = w.Remove(abs)
				if err := w.Add(abs); err != nil {
					log.Warn("policy directory is gone; keeping the running policies", "dir", dir, "err", err)
					gone = true
					state(fmt.Errorf("policy directory is gone: %w", err))
				} else if gone {
					gone = false
					state(nil)
				}
			case ev.Name == parent && ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0:
				// The parent's own watch ends with it: start again.
				return fmt.Errorf("the parent of %s was removed or renamed", dir)
			case filepath.Dir(ev.Name) != abs:
				continue // a sibling in the parent
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errWatcherStopped
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				return fmt.Errorf("the file watcher failed: %w", err)
			}
			// An overflowed event queue loses events, not changes: reload.
			log.Warn("policy watcher", "dir", dir, "err", err)
			timer.Reset(debounce)
		case <-timer.C:
			onChange()
		}
	}
}
