//go:build unix

package engine

import "syscall"

// lowerPriority makes the evaluator child nice 10.
func lowerPriority() { _ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, 10) }
