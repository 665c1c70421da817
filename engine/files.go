package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
)

// Reading the policy directory never blocks. A named pipe, socket, device
// or symbolic-link loop named *.cue is a load error of that file, reported
// at its position; it can neither hang a reload nor, through it, shutdown.

// openPolicyFile opens a policy file for reading. Only a regular file, or a
// symbolic link that resolves to one (a Kubernetes ConfigMap mount is made
// of these), is opened. The type is checked before opening, so a device is
// never opened, and again on the opened descriptor, so a file swapped in
// between is caught. Opening is non-blocking, which is what keeps a named
// pipe from waiting for a writer.
//
// The error's text is worded for a diagnostic at the file's position and
// does not repeat the path. It matches fs.ErrNotExist only when the name
// itself does not exist (a dangling link exists: the link is there).
func openPolicyFile(name string) (*os.File, error) {
	link, err := os.Lstat(name)
	if err != nil {
		return nil, bareError(err)
	}
	info, flag := link, os.O_RDONLY|openNonBlocking
	if link.Mode()&fs.ModeSymlink != 0 {
		if info, err = os.Stat(name); err != nil {
			return nil, brokenLink(name, err)
		}
	} else {
		flag |= openNoFollow
	}
	if !info.Mode().IsRegular() {
		return nil, notRegular(info.Mode())
	}
	f, err := os.OpenFile(name, flag, 0)
	if err != nil {
		return nil, bareError(err)
	}
	if info, err = f.Stat(); err != nil || !info.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, bareError(err)
		}
		return nil, notRegular(info.Mode())
	}
	return f, nil
}

// readDirSorted lists dir in name order, like os.ReadDir, but opens it
// non-blocking and only if it is a directory: a named pipe put in the
// directory's place is an error, not a hang.
func readDirSorted(dir string) ([]fs.DirEntry, error) {
	d, err := os.OpenFile(dir, os.O_RDONLY|openNonBlocking|openDirectoryOnly, 0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, err
}

// isDirectory reports whether a directory entry is a directory or a
// symbolic link to one. Policy loading is not recursive, so these are
// skipped whatever their names, x.cue included.
func isDirectory(e fs.DirEntry, path string) bool {
	if e.IsDir() {
		return true
	}
	if e.Type()&fs.ModeSymlink == 0 {
		return false
	}
	info, err := os.Stat(path) // a stat never opens, so never blocks
	return err == nil && info.IsDir()
}

// unreadable is the diagnostic of a policy file that could not be read:
// at the file's first line, or at the bare path when there is no file.
func unreadable(file string, err error) Diagnostic {
	pos := Position{File: file, Line: 1, Col: 1}
	if errors.Is(err, fs.ErrNotExist) {
		pos = Position{File: file}
	}
	return Diagnostic{Pos: pos, Message: err.Error()}
}

// bareError drops the operation and path from an *fs.PathError: the
// diagnostic's position already names the file.
func bareError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// brokenLink explains why the symbolic link name does not resolve; err is
// what os.Stat returned for it.
func brokenLink(name string, err error) error {
	target, rerr := os.Readlink(name)
	if rerr != nil {
		target = "?"
	}
	switch {
	case errors.Is(err, syscall.ELOOP):
		return fmt.Errorf("symbolic link loop: it points to %s, which never leads to a file", target)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("dangling symbolic link: its target %s does not exist", target)
	}
	return fmt.Errorf("symbolic link to %s cannot be followed: %w", target, bareError(err))
}

// notRegular is the error for a file of mode m that is not a regular file.
func notRegular(m fs.FileMode) error {
	kind := "special file"
	switch {
	case m.IsDir():
		kind = "directory"
	case m&fs.ModeNamedPipe != 0:
		kind = "named pipe"
	case m&fs.ModeSocket != 0:
		kind = "socket"
	case m&fs.ModeCharDevice != 0:
		kind = "character device"
	case m&fs.ModeDevice != 0:
		kind = "block device"
	}
	return fmt.Errorf("not a regular file (%s)", kind)
}
