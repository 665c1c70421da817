package access

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// UnaryBearer is a gRPC interceptor that refuses, with UNAUTHENTICATED,
// every call whose "authorization" metadata is not "Bearer <token>" for
// b's token. A nil b lets every call through.
func UnaryBearer(b *Bearer) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := b.allowsCall(ctx); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamBearer is UnaryBearer for streaming calls: a stream without the
// token is refused before its first message is read.
func StreamBearer(b *Bearer) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := b.allowsCall(ss.Context()); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

func (b *Bearer) allowsCall(ctx context.Context) error {
	if b == nil {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) != 1 || !b.AllowsAuthorization(values[0]) {
		return status.Error(codes.Unauthenticated, "missing or wrong bearer token in the authorization metadata")
	}
	return nil
}
