//go:build !unix

package engine

// Elsewhere there are no named pipes to block on; the checks after
// opening still refuse anything that is not a regular file.
const (
	openNonBlocking   = 0
	openNoFollow      = 0
	openDirectoryOnly = 0
)
