package server

import (
	"context"
	"encoding/json"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
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
// lead it) and returns the state machine's result, or its error.
func (n *Node) proposeController(cmd controllerCommand) (interface{}, error) {
	cmd.Version = controllerFormatVersion
	data, err := json.Marshal(&cmd)
	if err != nil {
		return nil, err
	}
	future := n.controller.Raft().Apply(encodeControllerEntry(data), 5*time.Second)
	if err := future.Error(); err != nil {
		return nil, classifyRaftError(err, "controller")
	}
	if err, ok := future.Response().(error); ok {
		return nil, err
	}
	return future.Response(), nil
}
