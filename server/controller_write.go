package server

import (
	"context"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/controller"
)

// controllerCall runs local on the controller leader, or forwards the call
// there with fwd; a forwarded call is never forwarded again.
func controllerCall[T any](ctx context.Context, n *Node, method string, local func() (T, error), fwd func(context.Context, heraldpb.HeraldClient) (T, error)) (T, error) {
	var zero T
	leaderID, leaderAddr := n.controllerLeader()
	if leaderID == n.cfg.NodeID {
		return local()
	}
	if leaderAddr == "" {
		return zero, wire.NoLeader("controller")
	}
	if isForwarded(ctx) {
		return zero, wire.NotLeader(leaderID, leaderAddr)
	}
	n.metrics.forwarded.WithLabelValues(method).Inc()
	hc, err := n.peers.herald(leaderAddr)
	if err != nil {
		return zero, err
	}
	out, err := fwd(forwardContext(ctx), hc)
	if err != nil {
		return zero, wire.FromStatus(err)
	}
	return out, nil
}

// proposeController applies a command on the controller (this node must
// lead it) and returns the state machine's result, or its refusal as a wire
// error. An error of the Raft apply itself, once proposed, is an unknown
// outcome (classifyRaftError), never a refusal.
func (n *Node) proposeController(cmd controller.Command) (interface{}, error) {
	data, err := controller.Encode(cmd)
	if err != nil {
		return nil, err
	}
	future := n.controller.Raft().Apply(data, 5*time.Second)
	if err := future.Error(); err != nil {
		return nil, classifyRaftError(err, "controller")
	}
	if err, ok := future.Response().(error); ok {
		return nil, controllerError(err)
	}
	return future.Response(), nil
}
