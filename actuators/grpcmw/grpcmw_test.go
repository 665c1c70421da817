package grpcmw

import (
	"context"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/spillway-dev/spillway/actuators"
	"github.com/spillway-dev/spillway/actuators/controlpoint"
)

func TestUnaryRejectsWithResourceExhaustedAndLabelsByMethod(t *testing.T) {
	cp := controlpoint.NewRegistry(func() int64 { return 0 }).Get("grpc")
	const method = "/shop.Cart/Add"
	cp.API(method).AttachLimiter(&controlpoint.Limiter{Bucket: actuators.NewTokenBucket(0, 1, 0)})
	in := Unary(cp)
	info := &grpc.UnaryServerInfo{FullMethod: method}
	// Client metadata claiming another API is ignored.
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("api", "/shop.Cart/Free"))
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	if _, err := in(ctx, nil, info, ok); err != nil {
		t.Fatalf("first call: %v", err)
	}
	_, err := in(ctx, nil, info, ok)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second call: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, seen := cp.APIs()["/shop.Cart/Free"]; seen {
		t.Fatal("a label from client metadata was used")
	}
}

func TestConcurrencyLimitIsUnavailable(t *testing.T) {
	cp := controlpoint.NewRegistry(func() int64 { return 0 }).Get("grpc")
	cp.API(controlpoint.AllAPIs).AttachLimiter(&controlpoint.Limiter{Concurrency: actuators.NewConcurrencyLimiter(0)})
	_, err := Unary(cp)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/a/b"}, func(context.Context, any) (any, error) { return nil, nil })
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("%v, want UNAVAILABLE", err)
	}
}

type fakeStream struct{ grpc.ServerStream }

func (fakeStream) Context() context.Context { return context.Background() }

func TestStreamInterceptorRecordsOutcome(t *testing.T) {
	cp := controlpoint.NewRegistry(func() int64 { return 0 }).Get("grpc")
	tap := actuators.NewRecorder(0)
	cp.API(controlpoint.AllAPIs).AttachTap(tap)
	in := Stream(cp)
	info := &grpc.StreamServerInfo{FullMethod: "/a/Watch"}
	_ = in(nil, fakeStream{}, info, func(any, grpc.ServerStream) error { return nil })
	_ = in(nil, fakeStream{}, info, func(any, grpc.ServerStream) error { return status.Error(codes.Internal, "x") })
	_ = in(nil, fakeStream{}, info, func(any, grpc.ServerStream) error { return status.Error(codes.NotFound, "x") })
	_ = in(nil, fakeStream{}, info, func(any, grpc.ServerStream) error { return errors.New("plain") })
	if w := tap.Snapshot(0); w.Completed != 4 || w.Goodput != 2 || w.Errors != 2 {
		t.Fatalf("window %+v: want 4 completed, 2 good (OK, NotFound), 2 errors", w)
	}
}

type canceledStream struct{ grpc.ServerStream }

func (canceledStream) Context() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// A stream that its client ended by canceling (a watch) ended normally:
// neither abandoned nor an error. A unary call whose client canceled is
// abandoned.
func TestCanceledStreamIsNotAbandonedButACanceledCallIs(t *testing.T) {
	cp := controlpoint.NewRegistry(func() int64 { return 0 }).Get("grpc")
	tap := actuators.NewRecorder(0)
	cp.API(controlpoint.AllAPIs).AttachTap(tap)
	_ = Stream(cp)(nil, canceledStream{}, &grpc.StreamServerInfo{FullMethod: "/a/Watch"},
		func(any, grpc.ServerStream) error { return status.Error(codes.Canceled, "client canceled") })
	if w := tap.Snapshot(0); w.Goodput != 1 || w.Abandoned != 0 {
		t.Errorf("stream: goodput %d, errors %d, abandoned %d; want goodput 1", w.Goodput, w.Errors, w.Abandoned)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _ = Unary(cp)(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/a/Get"}, func(context.Context, any) (any, error) {
		return nil, status.Error(codes.Canceled, "client canceled")
	})
	if w := tap.Snapshot(0); w.Abandoned != 1 {
		t.Errorf("unary: abandoned %d, want 1", w.Abandoned)
	}
}

// A stream handler that stops when its client cancels usually returns the
// context's own error: that is the stream's normal end too.
func TestStreamEndedWithTheContextsErrorIsNotAnError(t *testing.T) {
	cp := controlpoint.NewRegistry(func() int64 { return 0 }).Get("grpc")
	tap := actuators.NewRecorder(0)
	cp.API(controlpoint.AllAPIs).AttachTap(tap)
	_ = Stream(cp)(nil, canceledStream{}, &grpc.StreamServerInfo{FullMethod: "/a/Watch"},
		func(_ any, ss grpc.ServerStream) error { <-ss.Context().Done(); return ss.Context().Err() })
	if w := tap.Snapshot(0); w.Goodput != 1 || w.Errors != 0 {
		t.Errorf("goodput %d, errors %d, abandoned %d; want goodput 1", w.Goodput, w.Errors, w.Abandoned)
	}
}

// scriptedStream is a stream whose client has sent msgs messages.
type scriptedStream struct {
	grpc.ServerStream
	msgs int
}

func (*scriptedStream) Context() context.Context { return context.Background() }
func (*scriptedStream) SendMsg(any) error        { return nil }
func (s *scriptedStream) RecvMsg(any) error {
	if s.msgs == 0 {
		return io.EOF
	}
	s.msgs--
	return nil
}

// A stream is admitted and timed like a call up to its first answer: its
// concurrency slot is freed and its latency taken when it sends its first
// message or receives its client's second, so a watch that stays open
// holds no slot once it has answered, and the time it stays open is not
// its latency. A stream that has done neither holds its slot to its end.
func TestStreamHoldsItsSlotUntilItsFirstAnswer(t *testing.T) {
	var now int64
	cp := controlpoint.NewRegistry(func() int64 { return now }).Get("grpc")
	tap := actuators.NewRecorder(0)
	all := cp.API(controlpoint.AllAPIs)
	all.AttachTap(tap)
	all.AttachLimiter(&controlpoint.Limiter{Concurrency: actuators.NewConcurrencyLimiter(1)})
	in := Stream(cp)
	info := &grpc.StreamServerInfo{FullMethod: "/a/Watch", IsServerStream: true}
	// another is a call made while the stream is open: admitted only if
	// the stream's slot is free.
	another := func() codes.Code {
		_, err := Unary(cp)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/a/Get"}, func(context.Context, any) (any, error) { return nil, nil })
		return status.Code(err)
	}
	for _, tt := range []struct {
		name string
		msgs int // the client's
		// serve is the handler up to the moment the stream stays open
		serve   func(grpc.ServerStream)
		freed   bool
		latency int64 // of the stream, in ns: to its answer, or its end
	}{
		{"a watch that answers", 1, func(ss grpc.ServerStream) { ss.RecvMsg(nil); now += 3e6; ss.SendMsg(nil) }, true, 3e6},
		{"an upload: a second message", 3, func(ss grpc.ServerStream) { ss.RecvMsg(nil); now += 2e6; ss.RecvMsg(nil) }, true, 2e6},
		{"one request, no answer yet", 1, func(ss grpc.ServerStream) { ss.RecvMsg(nil); now += 5e6; ss.RecvMsg(nil) }, false, 5e6 + 7e9},
	} {
		before := tap.Snapshot(0)
		_ = in(nil, &scriptedStream{msgs: tt.msgs}, info, func(_ any, ss grpc.ServerStream) error {
			tt.serve(ss)
			if got, want := another(), map[bool]codes.Code{true: codes.OK, false: codes.Unavailable}[tt.freed]; got != want {
				t.Errorf("%s: a call while it stays open: %v, want %v", tt.name, got, want)
			}
			now += 7e9 // open for 7 s more
			ss.SendMsg(nil)
			return nil
		})
		// The call, if admitted, took no time: the sum is the stream's.
		w := tap.Snapshot(0)
		if got := int64(w.LatencySumNs - before.LatencySumNs); got != tt.latency {
			t.Errorf("%s: latency %d ns, want %d", tt.name, got, tt.latency)
		}
		if n := w.Completed - before.Completed; n != map[bool]uint64{true: 2, false: 1}[tt.freed] {
			t.Errorf("%s: %d completed, want the stream once (and the call if admitted)", tt.name, n)
		}
	}
	if got := another(); got != codes.OK {
		t.Errorf("after the streams: a call %v, want every slot free", got)
	}
}
