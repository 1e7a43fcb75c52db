package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/partition"
	"github.com/heraldlog/herald/server/controller"
)

// Consumer group commands reach each partition's leader: a group lives in
// every partition of its topic (partition/group.go), and only a leader
// proposes its commands and knows where its log ends. The node answering
// the public call runs one PartitionGroupRequest per partition through
// runPartitionGroup: locally when it leads the partition, else through
// NodeInternal.PartitionGroup on the leader it knows (its replica's view,
// a NOT_LEADER hint, or each replica's node in turn). The leader serves
// it in partitionGroupLocal and never forwards it again.

// Bounds of reaching a partition's leader for one group command.
const (
	// groupLeaderRetryWait is the pause between two attempts.
	groupLeaderRetryWait = 50 * time.Millisecond
	// groupLeaderAttemptsMax bounds the attempts of one command (with the
	// pause, at least 10 s of elections), within the call's deadline.
	groupLeaderAttemptsMax = 200
)

// runPartitionGroup runs req (its group_id, topic and partition set from
// p) on p's leader, retrying while the partition has no leader or the node
// asked is not it, until it is answered, ctx ends or the attempts run out.
// Only answers that wrote nothing are retried (NOT_LEADER, NO_LEADER, a
// peer that was never reached); anything else is the answer.
func (n *Node) runPartitionGroup(ctx context.Context, t *controller.Topic, p controller.Partition, req *heraldpb.PartitionGroupRequest) (*heraldpb.PartitionGroupResponse, error) {
	req.GroupId, req.Topic, req.Partition = p.GroupID, t.Name, p.Index
	var hint string // a leader address learnt from a NOT_LEADER answer
	var err error
	for attempt := 0; attempt < groupLeaderAttemptsMax; attempt++ {
		var resp *heraldpb.PartitionGroupResponse
		resp, err = n.partitionGroupOnce(ctx, p, req, &hint)
		if err == nil {
			return resp, nil
		}
		var nl *wire.NotLeaderError
		if !errors.As(err, &nl) && !errors.Is(err, wire.ErrNoLeader) {
			return nil, err
		}
		if hint != "" {
			continue // a named leader: go there at once
		}
		select {
		case <-ctx.Done():
			return nil, wire.NoLeader(fmt.Sprintf("partition %d of %s: none answered as leader before the deadline (nothing written): %v", p.Index, t.Name, err))
		case <-n.stop:
			return nil, wire.NodeStopping(n.cfg.NodeID)
		case <-time.After(groupLeaderRetryWait):
		}
	}
	return nil, wire.NoLeader(fmt.Sprintf("partition %d of %s after %d attempts (nothing written): %v", p.Index, t.Name, groupLeaderAttemptsMax, err))
}

// partitionGroupOnce makes one attempt of runPartitionGroup.
func (n *Node) partitionGroupOnce(ctx context.Context, p controller.Partition, req *heraldpb.PartitionGroupRequest, hint *string) (*heraldpb.PartitionGroupResponse, error) {
	addr := *hint
	*hint = ""
	if r := n.replica(p.GroupID); r != nil {
		if r.IsLeader() {
			return n.partitionGroupLocal(ctx, r, req)
		}
		if a, _ := r.Leader(); a != "" && addr == "" {
			addr = a
		}
	}
	if addr == "" {
		nodes := n.nodes()
		addr = nodes[p.Replicas[int(time.Now().UnixNano()%int64(len(p.Replicas)))]]
	}
	if addr == "" || addr == n.cfg.GRPCAddr {
		return nil, wire.NoLeader(fmt.Sprintf("partition %d of %s", p.Index, req.GetTopic()))
	}
	ic, err := n.peers.internal(addr)
	if err != nil {
		return nil, err
	}
	n.metrics.forwarded.WithLabelValues("PartitionGroup").Inc()
	fctx, sent := wire.TrackSent(forwardContext(ctx))
	resp, err := ic.PartitionGroup(fctx, req)
	if err == nil {
		return resp, nil
	}
	err = wire.FromStatus(err)
	var nl *wire.NotLeaderError
	switch {
	case errors.As(err, &nl):
		if nl.LeaderAddr != addr {
			*hint = nl.LeaderAddr
		}
		return nil, err
	case errors.Is(err, wire.ErrUnavailable) && !sent():
		// Never left this node: nothing was written.
		return nil, wire.NoLeader(fmt.Sprintf("partition %d of %s: leader %s unreachable", p.Index, req.GetTopic(), addr))
	case !sent():
		return nil, err // never left this node (the caller's deadline): nothing was written
	case isGroupWrite(req) && wire.Reason(err) == heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED:
		// Not the leader's answer but gRPC's (the connection broke, the
		// deadline passed) after the request left: the leader may have
		// proposed it.
		return nil, wire.UnknownOutcome("partition %d of %s: consumer group %q: forwarding to %s: %v", p.Index, req.GetTopic(), req.GetGroup(), addr, err)
	}
	return nil, err
}

// isGroupWrite reports whether req proposes a command (not a read).
func isGroupWrite(req *heraldpb.PartitionGroupRequest) bool {
	return req.GetRead() == nil
}

// PartitionGroup serves runPartitionGroup for a peer: this node must lead
// the partition.
func (s *internalService) PartitionGroup(ctx context.Context, req *heraldpb.PartitionGroupRequest) (*heraldpb.PartitionGroupResponse, error) {
	r := s.node.replica(req.GetGroupId())
	if r == nil {
		return nil, wire.NotLeader("", "")
	}
	if !r.IsLeader() {
		addr, id := r.Leader()
		return nil, wire.NotLeader(id, addr)
	}
	return s.node.partitionGroupLocal(ctx, r, req)
}

// partitionGroupLocal runs req on r, which leads its partition. It first
// takes a read index (Replica.CatchUp: nothing written), so that the
// watermarks that resolve a start and the state it reads cover every
// acknowledged write.
func (n *Node) partitionGroupLocal(ctx context.Context, r *partition.Replica, req *heraldpb.PartitionGroupRequest) (*heraldpb.PartitionGroupResponse, error) {
	where := fmt.Sprintf("partition %d of %s", req.GetPartition(), req.GetTopic())
	if err := r.CatchUp(ctx); err != nil {
		if errors.Is(err, partition.ErrNotLeader) {
			addr, id := r.Leader()
			return nil, wire.NotLeader(id, addr)
		}
		return nil, wire.NoLeader(fmt.Sprintf("%s: the leader could not confirm it has applied every acknowledged write (%v)", where, err))
	}
	name := req.GetGroup()
	resp := &heraldpb.PartitionGroupResponse{}
	var (
		res partition.GroupResult
		err error
	)
	switch c := req.GetCommand().(type) {
	case *heraldpb.PartitionGroupRequest_Create:
		cfg := groupConfigFromWire(c.Create.GetConfig())
		start, serr := resolveGroupStart(r, c.Create.GetStart())
		if serr != nil {
			return nil, serr
		}
		res, err = r.GroupCreate(name, cfg, start)
		if errors.Is(err, partition.ErrGroupExists) {
			// A retried create (after a partial failure or an unknown
			// outcome) finds the group: created, if with the same config.
			st, serr := r.GroupState(name)
			if serr != nil {
				return nil, n.groupError(req, serr)
			}
			if st.Config != cfg {
				return nil, wire.GroupExists(req.GetTopic(), name, fmt.Sprintf("on partition %d with %s, not %s",
					req.GetPartition(), describeGroupConfig(st.Config), describeGroupConfig(cfg)))
			}
			res, err, resp.Existed = partition.GroupResult{State: st}, nil, true
		}
	case *heraldpb.PartitionGroupRequest_Reset_:
		start, serr := resolveGroupStart(r, c.Reset_.GetTo())
		if serr != nil {
			return nil, serr
		}
		res, err = r.GroupReset(name, start)
	case *heraldpb.PartitionGroupRequest_Delete:
		res, err = r.GroupDelete(name)
	case *heraldpb.PartitionGroupRequest_Assign:
		// From the group's coordinator (group_coordinator.go); a retried
		// assign of the current generation and member is a no-op.
		res, err = r.GroupAssign(name, c.Assign.GetGeneration(), c.Assign.GetMember())
	case *heraldpb.PartitionGroupRequest_Read:
		if name == "" {
			states, rerr := r.Groups()
			if rerr != nil {
				return nil, n.groupError(req, rerr)
			}
			now := time.Now()
			for _, st := range states {
				resp.Groups = append(resp.Groups, n.groupStateWire(r, st, now))
			}
			return resp, nil
		}
		var st partition.GroupState
		st, err = r.GroupState(name)
		res.State = st
	default:
		return nil, wire.InvalidArgument("command", "unknown consumer group command %T", c)
	}
	if err != nil {
		return nil, n.groupError(req, err)
	}
	resp.Groups = append(resp.Groups, n.groupStateWire(r, res.State, time.Now()))
	return resp, nil
}

// groupError maps an error of a replica's group command or read to a wire
// error. After a command was proposed, only a refusal by the state machine
// (nothing written) is a refusal; anything else is an unknown outcome.
func (n *Node) groupError(req *heraldpb.PartitionGroupRequest, err error) error {
	topic, name, index := req.GetTopic(), req.GetGroup(), req.GetPartition()
	var (
		ce    *partition.CorruptionError
		stale *partition.StaleGenerationError
	)
	switch {
	case errors.Is(err, partition.ErrUnknownGroup):
		return wire.GroupNotFound(topic, name)
	case errors.Is(err, partition.ErrGroupExists):
		return wire.GroupExists(topic, name, fmt.Sprintf("on partition %d", index))
	case errors.Is(err, partition.ErrTooManyGroups):
		return wire.TooManyGroups(topic, index, partition.GroupsMax)
	case errors.As(err, &stale):
		return wire.StaleGeneration(topic, name, stale.Generation, stale.CurrentGeneration,
			fmt.Sprintf("partition %d is at generation %d, member %q; nothing written", index, stale.CurrentGeneration, stale.CurrentMember))
	case errors.Is(err, partition.ErrInvalidGroupCommand):
		return wire.InvalidArgument("group", "%v", err)
	case errors.Is(err, partition.ErrNotLeader):
		return wire.NoLeader(fmt.Sprintf("partition %d of %s (leadership lost before proposing; nothing written)", index, topic))
	case errors.Is(err, partition.ErrClosed):
		return wire.NoLeader(fmt.Sprintf("partition %d of %s: replica closing", index, topic))
	case errors.As(err, &ce):
		return wire.Corruption(ce.Partition, ce.Offset, "%s", ce.Reason)
	case errors.Is(err, partition.ErrUnknownOutcome), isGroupWrite(req):
		return wire.UnknownOutcome("consumer group %q on partition %d of %s: %v; it may or may not have applied (describe the group to see)", name, index, topic, err)
	default:
		return err
	}
}

// resolveGroupStart turns a start into an offset of r's log, which has
// caught up as leader: earliest is the low watermark, latest the high
// watermark, an offset is clamped into [low, high], a time is the first
// offset produced at or after it (high when every event is older).
func resolveGroupStart(r *partition.Replica, start *heraldpb.GroupStart) (uint64, error) {
	low, high := r.LowWatermark(), r.HighWatermark()
	switch at := start.GetAt().(type) {
	case nil:
		return low, nil
	case *heraldpb.GroupStart_Position:
		switch at.Position {
		case heraldpb.StartPosition_EARLIEST, heraldpb.StartPosition_START_POSITION_UNSPECIFIED:
			return low, nil
		case heraldpb.StartPosition_LATEST:
			return high, nil
		}
		return 0, wire.InvalidArgument("start", "unknown start position %d", at.Position)
	case *heraldpb.GroupStart_Offset:
		return min(max(at.Offset, low), high), nil
	case *heraldpb.GroupStart_TimeUnixNano:
		offset, err := r.OffsetForTime(at.TimeUnixNano)
		if err != nil {
			var ce *partition.CorruptionError
			if errors.As(err, &ce) {
				return 0, wire.Corruption(ce.Partition, ce.Offset, "%s", ce.Reason)
			}
			return 0, err
		}
		return min(max(offset, low), high), nil
	}
	return 0, wire.InvalidArgument("start", "unknown start %T", start.GetAt())
}

// groupStateWire is st on r's partition with r's watermarks and the lag
// as of now: events (high watermark - floor) and time (now - the produce
// time of the event at the floor, 0 when caught up).
func (n *Node) groupStateWire(r *partition.Replica, st partition.GroupState, now time.Time) *heraldpb.PartitionGroupState {
	low, high := r.LowWatermark(), r.HighWatermark()
	_, leaderID := r.Leader()
	p := &heraldpb.ConsumerGroupPartition{
		Present:       true,
		Floor:         st.Floor,
		Cursor:        st.Delivered,
		Generation:    st.Generation,
		Member:        st.Member,
		Pending:       st.Pending,
		DeadLettered:  st.DeadLettered,
		LowWatermark:  low,
		HighWatermark: high,
		LeaderId:      leaderID,
	}
	if high > st.Floor {
		p.LagEvents = high - st.Floor
		// The oldest event not done; below the low watermark it was
		// removed by retention, and the oldest retained one stands in.
		if recs, err := r.Read(max(st.Floor, low), 1, 1); err == nil && len(recs) > 0 {
			p.LagMs = max(0, now.Sub(time.Unix(0, recs[0].TimestampUnixNano)).Milliseconds())
		} else if err != nil {
			n.logger.Debug("consumer group lag: cannot read the event at the floor", "group", r.GroupID(), "floor", st.Floor, "err", err)
		}
	}
	return &heraldpb.PartitionGroupState{Name: st.Name, Config: groupConfigWire(st.Config), State: p}
}
