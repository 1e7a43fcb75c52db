package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client/wire"
)

// errorInterceptor converts the handlers' typed errors into gRPC statuses
// in the one place that maps them (wire.Status).
func errorInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, wire.Status(err).Err()
	}
	return resp, nil
}

// streamErrorInterceptor is errorInterceptor for streaming RPCs.
func streamErrorInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return wire.Status(err).Err()
}
