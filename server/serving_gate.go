package server

import (
	"context"
	"strings"

	"google.golang.org/grpc"

	"github.com/heraldlog/herald/client/wire"
)

// The gRPC server starts before the controller group is open: a rejoining
// or restarting controller must hear its peers over the Raft transport,
// which shares the port. Every other service reads state that exists only
// once the controller is open (n.controller, n.controllerFSM), so until
// then their calls are answered by the gate, never by a handler.
//
// State is published to handlers once: StartNode sets n.controller and
// n.controllerFSM, then stores n.serving (release); the gate loads it
// (acquire) before any handler runs, so no handler ever reads a field that
// is still being written.

// gatedServicePrefix names the services the gate holds back: the public
// Herald API and NodeInternal (package herald.v1). The Raft transport
// (herald.raft.v1) serves from the first moment.
const gatedServicePrefix = "/herald.v1."

// servingGate refuses a gated call while the node is starting.
func (n *Node) servingGate(fullMethod string) error {
	if n.serving.Load() || !strings.HasPrefix(fullMethod, gatedServicePrefix) {
		return nil
	}
	n.metrics.refusedStarting.Inc()
	return wire.NodeStarting(n.cfg.NodeID)
}

// gateUnary is the unary interceptor of the serving gate.
func (n *Node) gateUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := n.servingGate(info.FullMethod); err != nil {
		return nil, wire.Status(err).Err()
	}
	return handler(ctx, req)
}

// gateStream is the stream interceptor of the serving gate.
func (n *Node) gateStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := n.servingGate(info.FullMethod); err != nil {
		return wire.Status(err).Err()
	}
	return handler(srv, ss)
}
