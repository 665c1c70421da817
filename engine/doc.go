// Package engine runs Spillway policies inside one process. It loads
// policy files (CUE, checked against the embedded blueprints, errors as
// path:line:col), compiles each policy into a Circuit of components, ticks
// every circuit at its evaluation interval on an injected clock, and
// publishes the setpoints to the limiters of the process's control points.
// It reloads the policy directory when it changes, keeping component state
// and token-bucket tokens across the swap, and reports what runs through
// Status and History.
//
// A service usually imports package spillway instead, which starts an
// engine with its metrics and admin endpoints; the gRPC interceptors are in
// package spillwaygrpc, so that this package does not link grpc.
package engine
