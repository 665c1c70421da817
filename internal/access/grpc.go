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
		if b != nil {
			md, _ := metadata.FromIncomingContext(ctx)
			values := md.Get("authorization")
			if len(values) != 1 || !b.AllowsAuthorization(values[0]) {
				return nil, status.Error(codes.Unauthenticated, "missing or wrong bearer token in the authorization metadata")
			}
		}
		return handler(ctx, req)
	}
}
