package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/partition"
	"github.com/heraldlog/herald/server/controller"
)

// Contract fencing keeps produce from applying a topic contract older than
// the last acknowledged `topic alter`, whichever node checks it:
//
//   - an alter commits in the registry at Raft index v, which becomes the
//     topic's ContractVersion;
//   - before the alter is acknowledged, every partition of the topic
//     commits a fence at v into its own log (fenceContract);
//   - produce stamps each call with the ContractVersion it was checked
//     against, and a partition refuses a call stamped below its fence
//     (partition.ErrContractChanged: nothing written); the node then syncs
//     its registry, checks the events again and resends them
//     (produceToPartitionChecked).
//
// The fence is ordered with the appends in the partition's log, so no
// leader change or lagging registry lets an old contract through after the
// alter was acknowledged. The reconciler fences partitions an alter could
// not reach (fenceLagging).

// fenceRetryWait is the pause between attempts to reach a partition's
// leader for a fence.
const fenceRetryWait = 50 * time.Millisecond

// fenceWaitMax bounds how long an alter waits for its fences.
const fenceWaitMax = 10 * time.Second

// fenceContract fences every partition of t with t.ContractVersion,
// waiting until each has committed it, ctx ends or fenceWaitMax passes.
func (n *Node) fenceContract(ctx context.Context, t *controller.Topic) error {
	ctx, cancel := context.WithTimeout(ctx, fenceWaitMax)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []uint32
		last   error
	)
	for _, p := range t.Partitions {
		wg.Add(1)
		go func() { // owned by fenceContract: ends with ctx
			defer wg.Done()
			if err := n.fencePartition(ctx, p, t.ContractVersion); err != nil {
				mu.Lock()
				failed, last = append(failed, p.Index), err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		slices.Sort(failed)
		return fmt.Errorf("partitions %v of %s not fenced with contract version %d: %w", failed, t.Name, t.ContractVersion, last)
	}
	return nil
}

// fencePartition commits a fence at version into p's log through its
// leader, following NOT_LEADER hints, until it is in or ctx ends.
func (n *Node) fencePartition(ctx context.Context, p controller.Partition, version uint64) error {
	var hint string // a leader address learnt from a NOT_LEADER answer
	for attempt := 0; ; attempt++ {
		err := n.fenceOnce(ctx, p, version, &hint)
		if err == nil {
			n.metrics.contractFences.WithLabelValues("alter", "ok").Inc()
			return nil
		}
		n.logger.Debug("contract fence attempt failed", "group", p.GroupID, "version", version, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			n.metrics.contractFences.WithLabelValues("alter", "error").Inc()
			return err
		case <-n.stop:
			return wire.NodeStopping(n.cfg.NodeID)
		case <-time.After(fenceRetryWait):
		}
	}
}

// fenceOnce makes one attempt: locally when this node leads the group,
// else through the leader it knows (its replica's view, a hint, or each
// replica's node in turn).
func (n *Node) fenceOnce(ctx context.Context, p controller.Partition, version uint64, hint *string) error {
	addr := *hint
	if r := n.replica(p.GroupID); r != nil {
		if r.IsLeader() {
			_, err := r.FenceContract(version)
			return err
		}
		if a, _ := r.Leader(); a != "" {
			addr = a
		}
	}
	if addr == "" {
		nodes := n.nodes()
		addr = nodes[p.Replicas[int(time.Now().UnixNano()%int64(len(p.Replicas)))]]
	}
	*hint = ""
	ic, err := n.peers.internal(addr)
	if err != nil {
		return err
	}
	_, err = ic.FenceContract(ctx, &heraldpb.FenceContractRequest{GroupId: p.GroupID, Version: version})
	var nl *wire.NotLeaderError
	if errors.As(wire.FromStatus(err), &nl) && nl.LeaderAddr != "" {
		*hint = nl.LeaderAddr
	}
	return err
}

// FenceContract serves fenceOnce for a peer: this node must lead the group.
func (s *internalService) FenceContract(_ context.Context, req *heraldpb.FenceContractRequest) (*heraldpb.FenceContractResponse, error) {
	n := s.node
	r := n.replica(req.GetGroupId())
	if r == nil {
		return nil, wire.NotLeader("", "")
	}
	v, err := r.FenceContract(req.GetVersion())
	switch {
	case errors.Is(err, partition.ErrNotLeader):
		addr, id := r.Leader()
		return nil, wire.NotLeader(id, addr)
	case err != nil:
		return nil, wire.UnknownOutcome("fence group %d at contract version %d: %v", req.GetGroupId(), req.GetVersion(), err)
	}
	return &heraldpb.FenceContractResponse{Version: v}, nil
}

// fenceLagging fences the partitions this node leads whose contract
// version trails their topic's: an alter whose own fencing did not reach
// them (its caller saw an error) still takes effect everywhere.
func (n *Node) fenceLagging() {
	for _, a := range n.controllerFSM.AssignedTo(n.cfg.NodeID) {
		if a.ContractVersion == 0 {
			continue
		}
		r := n.replica(a.Partition.GroupID)
		if r == nil || !r.IsLeader() {
			continue
		}
		have, err := r.ContractVersion()
		if err != nil || have >= a.ContractVersion {
			continue
		}
		if _, err := r.FenceContract(a.ContractVersion); err != nil {
			n.metrics.contractFences.WithLabelValues("reconcile", "error").Inc()
			n.logger.Debug("cannot fence a lagging partition yet", "topic", a.Topic, "group", a.Partition.GroupID, "version", a.ContractVersion, "err", err)
			continue
		}
		n.metrics.contractFences.WithLabelValues("reconcile", "ok").Inc()
		n.logger.Info("fenced a partition with its topic's contract", "topic", a.Topic, "group", a.Partition.GroupID, "version", a.ContractVersion, "was", have)
	}
}
