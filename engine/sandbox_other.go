//go:build !unix

package engine

func lowerPriority() {}
