package server

import (
	"context"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/controller"
)

// registrySyncWaitMax bounds one registry sync: the read index round trip
// to the controller leader and the wait for this node to apply up to it.
const registrySyncWaitMax = 5 * time.Second

// controllerReadIndex returns the registry index that a read beginning now
// must see applied here: from this node when it leads the controller,
// otherwise from the leader over NodeInternal. It writes nothing to the
// controller's log (see raft.Group.ReadIndex).
func (n *Node) controllerReadIndex(ctx context.Context) (uint64, error) {
	leaderID, leaderAddr := n.controllerLeader()
	switch {
	case leaderID == "":
		return 0, wire.NoLeader("controller")
	case leaderID == n.cfg.NodeID:
		idx, err := n.controller.ReadIndex(registrySyncWaitMax, n.controllerFSM.AppliedIndex, true)
		if err != nil {
			n.logger.Debug("controller read index failed", "err", err)
			return 0, wire.NoLeader("controller")
		}
		return idx, nil
	}
	ic, err := n.peers.internal(leaderAddr)
	if err != nil {
		return 0, wire.NoLeader("controller")
	}
	resp, err := ic.ControllerReadIndex(ctx, &heraldpb.ControllerReadIndexRequest{})
	if err != nil {
		n.logger.Debug("controller read index from the leader failed", "leader", leaderID, "err", err)
		return 0, wire.NoLeader("controller")
	}
	return resp.GetIndex(), nil
}

// awaitRegistry waits until this node's registry has applied index, or ctx
// ends (NO_LEADER: retry) or the node stops.
func (n *Node) awaitRegistry(ctx context.Context, index uint64) error {
	for {
		ch := n.controllerFSM.AppliedAdvanced()
		if n.controllerFSM.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return wire.NoLeader("controller")
		case <-n.stop:
			return wire.NodeStopping(n.cfg.NodeID)
		}
	}
}

// syncRegistry returns once this node's registry reflects every registry
// change acknowledged before the call, so that a read served from it
// afterwards is linearizable; NO_LEADER (retryable) when that cannot be
// known within registrySyncWaitMax.
func (n *Node) syncRegistry(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, registrySyncWaitMax)
	defer cancel()
	idx, err := n.controllerReadIndex(ctx)
	if err != nil {
		return err
	}
	return n.awaitRegistry(ctx, idx)
}

// registryRead prepares a registry read: linearizable (syncRegistry) unless
// the caller asked for a stale one.
func (n *Node) registryRead(ctx context.Context, stale bool) error {
	if stale {
		return nil
	}
	return n.syncRegistry(ctx)
}

// ControllerReadIndex serves controllerReadIndex for a peer.
func (s *internalService) ControllerReadIndex(context.Context, *heraldpb.ControllerReadIndexRequest) (*heraldpb.ControllerReadIndexResponse, error) {
	n := s.node
	if id, addr := n.controllerLeader(); id != n.cfg.NodeID {
		return nil, wire.NotLeader(id, addr)
	}
	idx, err := n.controller.ReadIndex(registrySyncWaitMax, n.controllerFSM.AppliedIndex, true)
	if err != nil {
		return nil, wire.NoLeader("controller")
	}
	return &heraldpb.ControllerReadIndexResponse{Index: idx}, nil
}

// MarkGroupsLive serves markGroupsLive for a peer (this node must lead the
// controller).
func (s *internalService) MarkGroupsLive(_ context.Context, req *heraldpb.MarkGroupsLiveRequest) (*heraldpb.MarkGroupsLiveResponse, error) {
	n := s.node
	if id, addr := n.controllerLeader(); id != n.cfg.NodeID {
		return nil, wire.NotLeader(id, addr)
	}
	if _, err := n.proposeController(&controller.MarkLive{GroupIDs: req.GetGroupIds()}); err != nil {
		return nil, err
	}
	return &heraldpb.MarkGroupsLiveResponse{}, nil
}

// markGroupsLive records through the controller that groups have been
// bootstrapped (see controller.Partition.Live).
func (n *Node) markGroupsLive(ctx context.Context, gids []uint64) error {
	leaderID, leaderAddr := n.controllerLeader()
	switch {
	case leaderID == "":
		return wire.NoLeader("controller")
	case leaderID == n.cfg.NodeID:
		_, err := n.proposeController(&controller.MarkLive{GroupIDs: gids})
		return err
	}
	ic, err := n.peers.internal(leaderAddr)
	if err != nil {
		return err
	}
	_, err = ic.MarkGroupsLive(ctx, &heraldpb.MarkGroupsLiveRequest{GroupIds: gids})
	return err
}
