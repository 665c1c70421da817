// Package grpcmw is Spillway's gRPC control point: unary and stream server
// interceptors that admit or reject each call by its full method name.
package grpcmw

import (
	"context"
	"errors"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

// Rejections are built once so that refusing a call does not allocate them.
var (
	errRateLimited        = status.Error(codes.ResourceExhausted, "spillway: rate limited, retry later")
	errConcurrencyLimited = status.Error(codes.Unavailable, "spillway: concurrency limit reached, retry later")
)

// Unary returns a unary server interceptor for cp. The API label is the
// server's info.FullMethod; metadata from the client is never consulted.
func Unary(cp *controlpoint.ControlPoint) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		ticket, decision := cp.Admit(info.FullMethod)
		if decision != controlpoint.Accepted {
			return nil, rejection(decision)
		}
		defer func() {
			if p := recover(); p != nil {
				ticket.Done(false)
				panic(p)
			}
			finish(ctx, &ticket, err)
		}()
		return handler(ctx, req)
	}
}

// Stream returns a stream server interceptor for cp. Calls served by a
// grpc.UnknownServiceHandler pass through it too, labelled with the method
// the client named: the control point counts such labels past its cap, or
// too long, under controlpoint.OverflowAPI, and a limiter a policy attached
// to a declared method still applies to that method only.
//
// A stream is admitted and timed like a call up to its first answer: its
// ticket ends, its concurrency slot freed and its latency taken, when the
// handler sends its first message or receives the client's second (it is
// then consuming a stream), or returns, whichever comes first. A watch or
// a subscription that stays open for hours thus holds no slot and is not
// timed as an hour-long request once it has answered, so a few idle
// streams cannot fill a concurrency limit that unary calls share; a call
// that is a stream only in form (one request, one answer, as every call
// through a proxy's unknown-service handler is) is timed to its answer. A
// stream that sends nothing and receives no second message holds its slot
// until it does or ends: give such streams a control point of their own.
func Stream(cp *controlpoint.ControlPoint) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		ticket, decision := cp.Admit(info.FullMethod)
		if decision != controlpoint.Accepted {
			return rejection(decision)
		}
		hs := &heldStream{ServerStream: ss, ticket: ticket}
		defer func() {
			if p := recover(); p != nil {
				if hs.end() {
					hs.ticket.Done(false)
				}
				panic(p)
			}
			if !hs.end() {
				return // ended at its first answer
			}
			// A stream's client ends it by canceling (a watch, a
			// subscription): that is its normal end, not an abandonment,
			// whether the handler returns a Canceled status or the
			// context's own error.
			if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
				hs.ticket.Done(true)
				return
			}
			hs.ticket.Done(succeeded(err))
		}()
		return handler(srv, hs)
	}
}

// heldStream is an admitted stream whose ticket is still held until its
// first answer (see Stream). It is the one allocation of a stream's
// admission, and is not pooled: a goroutine the handler started may still
// be in RecvMsg after the handler returned (the proxy's relay of the
// client's messages is), so a reused wrapper could end another stream's
// ticket.
type heldStream struct {
	grpc.ServerStream
	ticket   controlpoint.Ticket
	ended    atomic.Bool
	received atomic.Int32
}

// end reports whether the caller is the one to finish the ticket.
func (s *heldStream) end() bool { return s.ended.CompareAndSwap(false, true) }

func (s *heldStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil && !s.ended.Load() && s.end() {
		s.ticket.Done(true)
	}
	return err
}

func (s *heldStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && s.received.Add(1) == 2 && s.end() {
		s.ticket.Done(true)
	}
	return err
}

// Unwrap returns the stream the interceptor was given, for a handler that
// looks for a stream of its own type under the interceptors'.
func (s *heldStream) Unwrap() grpc.ServerStream { return s.ServerStream }

func rejection(d controlpoint.Decision) error {
	if d == controlpoint.ConcurrencyLimited {
		return errConcurrencyLimited
	}
	return errRateLimited
}

// succeeded reports whether a call counts toward goodput: any status the
// client caused (e.g. InvalidArgument, NotFound) is a served response;
// server-side failures are not.
func succeeded(err error) bool {
	switch status.Code(err) {
	case codes.Unknown, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
		codes.Internal, codes.Unavailable, codes.DataLoss:
		return false
	}
	return true
}

// finish finishes an admitted unary call: abandoned if its context is done
// (the client canceled the call, or its deadline passed; a deadline is
// the client's unless a server interceptor outside this one set its own,
// which then counts as abandoned too), so that the flux meters can tell
// latency no one waited for from the answers'
// (controlpoint.Ticket.Abandon).
func finish(ctx context.Context, ticket *controlpoint.Ticket, err error) {
	if ctx != nil && ctx.Err() != nil {
		ticket.Abandon()
		return
	}
	ticket.Done(succeeded(err))
}
