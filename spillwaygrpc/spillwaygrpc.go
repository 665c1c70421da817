// Package spillwaygrpc protects a gRPC server with a Spillway engine: its
// interceptors admit or reject each call at a named control point, labelled
// by the call's full method name. It is apart from package spillway so that
// a service that speaks only HTTP never links grpc.
//
//	rpc := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(spillwaygrpc.Unary(eng, "ingress")),
//		grpc.ChainStreamInterceptor(spillwaygrpc.Stream(eng, "ingress")))
//
// A rate limit rejects with RESOURCE_EXHAUSTED, a concurrency limit with
// UNAVAILABLE (see package actuators/grpcmw, which does the work).
package spillwaygrpc

import (
	"google.golang.org/grpc"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/actuators/grpcmw"
)

// Engine is what the interceptors need of an engine: its control points.
// Both *spillway.Engine and *engine.Engine are one.
type Engine interface {
	ControlPoints() *controlpoint.Registry
}

// Unary is the named control point of eng as a unary server interceptor.
func Unary(eng Engine, controlPoint string) grpc.UnaryServerInterceptor {
	return grpcmw.Unary(eng.ControlPoints().Get(controlPoint))
}

// Stream is the named control point of eng as a stream server interceptor.
// A stream holds its concurrency slot and is timed only up to its first
// answer (grpcmw.Stream), so long-lived watches can share a control point
// with unary calls.
func Stream(eng Engine, controlPoint string) grpc.StreamServerInterceptor {
	return grpcmw.Stream(eng.ControlPoints().Get(controlPoint))
}
