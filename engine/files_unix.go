//go:build unix

package engine

import "syscall"

// Open flags for policy files and directories. O_NONBLOCK makes opening a
// named pipe return at once instead of waiting for a writer; the opened
// descriptor is then refused for not being a regular file.
const (
	openNonBlocking   = syscall.O_NONBLOCK
	openNoFollow      = syscall.O_NOFOLLOW
	openDirectoryOnly = syscall.O_DIRECTORY
)
