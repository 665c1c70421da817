package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// DefaultDebounce gathers a burst of file events into one reload.
const DefaultDebounce = 50 * time.Millisecond

// Change is what a successful reload did to the running set.
type Change struct {
	Added     []string       `json:"added"`
	Removed   []string       `json:"removed"`
	Updated   []PolicyUpdate `json:"updated"`
	Unchanged []string       `json:"unchanged"`
}

// PolicyUpdate is a policy that a reload replaced: Kept of its Components
// carried their state over.
type PolicyUpdate struct {
	Name       string `json:"name"`
	Kept       int    `json:"kept_state"`
	Components int    `json:"components"`
}

// ReloadStatus is the policy directory's reload history, shown on /status.
type ReloadStatus struct {
	Dir string `json:"dir,omitempty"`
	// Attempts counts loads of a changed directory; a burst of events whose
	// files are byte-for-byte what was last loaded is not an attempt.
	Attempts uint64 `json:"attempts"`
	Applied  uint64 `json:"applied"`
	// LoadErrors is spillway_policy_load_errors_total: failed attempts.
	LoadErrors  uint64       `json:"load_errors_total"`
	LastApplied *time.Time   `json:"last_applied,omitempty"`
	LastChange  *Change      `json:"last_change,omitempty"`
	LastError   *ReloadError `json:"last_error,omitempty"`
	// WatchError is why the directory is not being watched right now;
	// changes are picked up again once the watch is back.
	WatchError string `json:"watch_error,omitempty"`
}

// ReloadError is the last failed reload; the policies that were running
// before it kept running.
type ReloadError struct {
	Time  time.Time    `json:"time"`
	Files []string     `json:"files"`
	Diags []Diagnostic `json:"errors"`
}

type reloadState struct {
	digest     [sha256.Size]byte
	loaded     bool // digest is set
	attempts   atomic.Uint64
	applied    atomic.Uint64
	loadErrors atomic.Uint64
	lastOK     time.Time
	lastChange *Change
	lastErr    *ReloadError
	watchErr   error // guarded by errMu
	// evaluated is the last attempt's clean file evaluations; the next
	// evaluates only the files that changed. Guarded by reloadMu.
	evaluated evalCache
}

// errClosed is a reload that found the engine closed.
var errClosed = errors.New("the engine is closed")

// LoadErrors is the number of failed policy reloads since Start.
func (e *Engine) LoadErrors() uint64 { return e.reload.loadErrors.Load() }

// Reload loads, compiles and validates every policy file of the engine's
// directory and swaps the whole set in only if all of it succeeds. On
// failure the running policies keep running, the errors are logged as
// path:line:col lines, counted, and shown on /status. When the files are
// byte-for-byte those of the last attempt, nothing happens and changed is
// false.
func (e *Engine) Reload() (changed bool, err error) {
	dir := e.opts.Policies
	if dir == "" {
		return false, fmt.Errorf("the engine has no policy directory")
	}
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	if e.isClosed() {
		return false, errClosed
	}

	files, err := policyFiles(dir)
	var srcs [][]byte
	var diags Diagnostics
	if err != nil {
		diags = Diagnostics{{Pos: Position{File: dir}, Message: err.Error()}}
	} else {
		srcs, diags = readFiles(files)
	}
	h := sha256.New()
	for i, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(srcs[i]))
		h.Write(srcs[i])
	}
	fmt.Fprintf(h, "%v", diags)
	var digest [sha256.Size]byte
	h.Sum(digest[:0])
	if e.reload.loaded && digest == e.reload.digest {
		return false, nil
	}
	e.reload.digest, e.reload.loaded = digest, true
	e.reload.attempts.Add(1)

	// Every file that reads is evaluated, and every policy that loads is
	// compiled, so that one broken file does not hide another's errors;
	// but any error keeps the whole running set.
	specs, more, kept := loadSources(e.lifetime, files, srcs, e.reload.evaluated)
	e.reload.evaluated = kept
	next, compiled := compileAll(specs)
	compiled = append(compiled, e.checkGlobal(next)...)
	compiled = append(compiled, e.checkPromQL(next)...)
	diags = append(append(diags, more...), compiled...)
	if len(diags.Errors()) > 0 {
		if e.isClosed() {
			return true, errClosed
		}
		diags = diags.sorted()
		e.reload.loadErrors.Add(1)
		e.reloadFailed(files, diags)
		return true, diags
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return true, errClosed
	}
	ch := e.commit(next)
	e.mu.Unlock()
	e.setErrors(nil)
	e.reload.applied.Add(1)
	e.errMu.Lock()
	e.reload.lastOK, e.reload.lastChange, e.reload.lastErr = time.Now(), &ch, nil
	e.errMu.Unlock()
	e.logChange(dir, ch, len(files))
	return true, nil
}

// reloadWhenPending reloads the policy directory each time pending is
// signalled, one reload at a time, until ctx is done. It is not part of
// e.wg: Close does not wait for a reload in progress (see Reload).
func (e *Engine) reloadWhenPending(ctx context.Context, pending <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-pending:
			if _, err := e.Reload(); err != nil && !errors.Is(err, errClosed) {
				e.log.Error("policy reload failed; the previous policies keep running", "dir", e.opts.Policies)
			}
		}
	}
}

func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// setWatchError records the policy watcher's trouble, nil when there is
// none, for /status.
func (e *Engine) setWatchError(err error) {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	e.reload.watchErr = err
}

func (e *Engine) reloadFailed(files []string, diags Diagnostics) {
	e.setErrors(diags)
	e.errMu.Lock()
	e.reload.lastErr = &ReloadError{Time: time.Now(), Files: append([]string{}, files...), Diags: diags}
	e.errMu.Unlock()
	for _, d := range diags {
		e.log.Error(d.String())
	}
}

func (e *Engine) logChange(dir string, ch Change, files int) {
	for _, name := range ch.Added {
		e.log.Info("policy added", "policy", name)
	}
	for _, u := range ch.Updated {
		e.log.Info("policy updated", "policy", u.Name, "kept_state", u.Kept, "components", u.Components)
	}
	for _, name := range ch.Removed {
		e.log.Warn("policy removed: its file or declaration is gone", "policy", name)
	}
	if files == 0 {
		e.log.Warn("no policy files: the engine runs no policies", "dir", dir)
	}
}

// reloadStatus snapshots the reload history.
func (e *Engine) reloadStatus() *ReloadStatus {
	if e.opts.Policies == "" || e.opts.Specs != nil {
		return nil
	}
	e.errMu.Lock()
	defer e.errMu.Unlock()
	rs := &ReloadStatus{
		Dir:        e.opts.Policies,
		Attempts:   e.reload.attempts.Load(),
		Applied:    e.reload.applied.Load(),
		LoadErrors: e.reload.loadErrors.Load(),
		LastChange: e.reload.lastChange,
		LastError:  e.reload.lastErr,
	}
	if e.reload.watchErr != nil {
		rs.WatchError = e.reload.watchErr.Error()
	}
	if !e.reload.lastOK.IsZero() {
		t := e.reload.lastOK
		rs.LastApplied = &t
	}
	return rs
}
