package server

import (
	"context"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// The public calls of the consumer group coordinator (group_coordinator.go):
// JoinGroup, GroupHeartbeat, LeaveGroup. Only the coordinator (the leader
// of the topic's partition 0) answers them; any other node answers
// NOT_LEADER naming the leader it knows, which the SDK follows.

// validateMemberID checks a member id: the group name alphabet (ids are
// log attributes and stored in the partitions' state), 1-200 characters.
func validateMemberID(id string) error {
	if !topicNamePattern.MatchString(id) {
		return wire.InvalidArgument("member_id", "invalid member id %q: 1-200 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	}
	return nil
}

// sessionTimeoutFromWire is the session timeout a join asks for (0: the
// default), or INVALID_ARGUMENT outside [memberSessionTimeoutMin, Max].
func sessionTimeoutFromWire(ms int64) (time.Duration, error) {
	if ms == 0 {
		return memberSessionTimeoutDefault, nil
	}
	if ms < memberSessionTimeoutMin.Milliseconds() || ms > memberSessionTimeoutMax.Milliseconds() {
		return 0, wire.InvalidArgument("session_timeout_ms", "session timeout %d ms, want %d..%d (0: %d)", ms,
			memberSessionTimeoutMin.Milliseconds(), memberSessionTimeoutMax.Milliseconds(), memberSessionTimeoutDefault.Milliseconds())
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// JoinGroup answers once the member's generation is applied on every
// partition; a failure of the rebalance (an unknown outcome on a
// partition, no leader, the deadline) is the answer, and the member joins
// again.
func (s *heraldService) JoinGroup(ctx context.Context, req *heraldpb.JoinGroupRequest) (*heraldpb.JoinGroupResponse, error) {
	n := s.node
	session, serr := sessionTimeoutFromWire(req.GetSessionTimeoutMs())
	if err := firstError(validateGroupName(req.GetGroup()), validateMemberID(req.GetMemberId()), serr); err != nil {
		return nil, err
	}
	t, err := n.lookupTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	r, err := n.coordinatorReplica(t)
	if err != nil {
		return nil, err
	}
	generation, parts, err := n.coordinator.join(ctx, r, t, req.GetGroup(), req.GetMemberId(), session)
	if err != nil {
		return nil, err
	}
	return &heraldpb.JoinGroupResponse{Generation: generation, Partitions: parts,
		HeartbeatIntervalMs: (session / 3).Milliseconds(), CoordinatorId: n.cfg.NodeID}, nil
}

// GroupHeartbeat renews the member's session; rebalance=true tells it to
// join again. A member the coordinator does not know is UNKNOWN_MEMBER.
func (s *heraldService) GroupHeartbeat(ctx context.Context, req *heraldpb.GroupHeartbeatRequest) (*heraldpb.GroupHeartbeatResponse, error) {
	n := s.node
	if err := firstError(validateGroupName(req.GetGroup()), validateMemberID(req.GetMemberId())); err != nil {
		return nil, err
	}
	t, err := n.lookupTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	r, err := n.coordinatorReplica(t)
	if err != nil {
		return nil, err
	}
	generation, rebalance, err := n.coordinator.heartbeat(r, t, req.GetGroup(), req.GetMemberId(), req.GetGeneration())
	if err != nil {
		return nil, err
	}
	return &heraldpb.GroupHeartbeatResponse{Generation: generation, Rebalance: rebalance}, nil
}

// LeaveGroup removes the member at once (its partitions move by a
// rebalance the coordinator runs after answering); a member it does not
// know has left already.
func (s *heraldService) LeaveGroup(ctx context.Context, req *heraldpb.LeaveGroupRequest) (*heraldpb.LeaveGroupResponse, error) {
	n := s.node
	if err := firstError(validateGroupName(req.GetGroup()), validateMemberID(req.GetMemberId())); err != nil {
		return nil, err
	}
	t, err := n.lookupTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	if _, err := n.coordinatorReplica(t); err != nil {
		return nil, err
	}
	n.coordinator.leave(t, req.GetGroup(), req.GetMemberId())
	return &heraldpb.LeaveGroupResponse{}, nil
}
