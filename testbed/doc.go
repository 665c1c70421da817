// Package testbed runs a simulated service on loopback and offers it
// open-loop load, so that Spillway's effect on goodput can be measured live.
//
// The app is TwoTier: an entry ("frontend") HTTP server that calls a backend
// HTTP server whose bounded worker pool is the bottleneck. Load is Run:
// Poisson arrivals from a seeded RNG, each request in its own goroutine, so
// slow answers never delay later arrivals (DESIGN.md §8).
package testbed
