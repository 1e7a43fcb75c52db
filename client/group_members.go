package client

import (
	"context"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Consumer group membership, the lower-level calls a group consumer is
// built on (docs/protocol.md, "Group membership"). The group's
// coordinator is the node that leads partition 0 of the topic: each call
// goes to the leader of partition 0 the client knows, follows NOT_LEADER
// to the node it names, and retries NO_LEADER with backoff, as a produce
// to partition 0 would.
//
// A member's protocol: JoinGroup; then GroupHeartbeat every
// HeartbeatInterval with the join's generation; join again when a
// heartbeat answers rebalance=true or fails with ErrUnknownMember (the
// member expired, or the coordinator moved); LeaveGroup when done. Work
// only on the partitions of the last join: the partitions refuse the
// commands of any other generation.

// GroupMembership is a member's assignment from JoinGroup.
type GroupMembership struct {
	// Generation numbers the assignment; the partitions fence every other.
	Generation uint64
	// Partitions are the indexes of the partitions the member owns,
	// ascending (none when the group has more members than partitions).
	Partitions []uint32
	// HeartbeatInterval is how often to call GroupHeartbeat.
	HeartbeatInterval time.Duration
	// CoordinatorID is the node that answered, the group's coordinator.
	CoordinatorID string
}

// JoinGroup makes member (an id the caller chooses, stable across
// restarts if it likes; 1-200 characters of letters, digits, '.', '_',
// '-') a member of group of topic, with sessionTimeout (0: the server's
// 10 s; 1 s to 5 min), and returns its partitions once the generation is
// applied on every partition. Joining again is harmless (a member's join
// is resent after an ambiguous failure); an error after a rebalance
// started may match ErrUnknownOutcome or ErrNoLeader: join again.
// ErrGroupNotFound: the group does not exist; ErrTooManyMembers: the
// coordinator holds the most members or groups it may.
func (c *Client) JoinGroup(ctx context.Context, topic, group, member string, sessionTimeout time.Duration) (*GroupMembership, error) {
	if err := checkMember(topic, group, member); err != nil {
		return nil, err
	}
	if _, err := c.shape(ctx, topic); err != nil {
		return nil, err
	}
	req := &heraldpb.JoinGroupRequest{Topic: topic, Group: group, MemberId: member, SessionTimeoutMs: sessionTimeout.Milliseconds()}
	resp, err := invoke(ctx, c, coordinatorCall("join group "+group+" of "+topic+" as "+member, topic, true), heraldpb.HeraldClient.JoinGroup, req)
	if err != nil {
		return nil, err
	}
	return &GroupMembership{Generation: resp.GetGeneration(), Partitions: resp.GetPartitions(),
		HeartbeatInterval: time.Duration(resp.GetHeartbeatIntervalMs()) * time.Millisecond, CoordinatorID: resp.GetCoordinatorId()}, nil
}

// GroupHeartbeat renews member's session under generation (its last
// join's). It returns the coordinator's current generation and whether
// the member must join again (rebalance). ErrUnknownMember: the
// coordinator does not know the member (expired, or the coordinator
// moved): join again.
func (c *Client) GroupHeartbeat(ctx context.Context, topic, group, member string, generation uint64) (current uint64, rebalance bool, err error) {
	if err := checkMember(topic, group, member); err != nil {
		return 0, false, err
	}
	if _, err := c.shape(ctx, topic); err != nil {
		return 0, false, err
	}
	req := &heraldpb.GroupHeartbeatRequest{Topic: topic, Group: group, MemberId: member, Generation: generation}
	resp, err := invoke(ctx, c, coordinatorCall("heartbeat group "+group+" of "+topic+" as "+member, topic, false), heraldpb.HeraldClient.GroupHeartbeat, req)
	if err != nil {
		return 0, false, err
	}
	return resp.GetGeneration(), resp.GetRebalance(), nil
}

// LeaveGroup removes member from group of topic at once; its partitions
// move to the others by a rebalance that follows. Leaving twice, or as a
// member the coordinator does not know, succeeds.
func (c *Client) LeaveGroup(ctx context.Context, topic, group, member string) error {
	if err := checkMember(topic, group, member); err != nil {
		return err
	}
	if _, err := c.shape(ctx, topic); err != nil {
		return err
	}
	req := &heraldpb.LeaveGroupRequest{Topic: topic, Group: group, MemberId: member}
	_, err := invoke(ctx, c, coordinatorCall("leave group "+group+" of "+topic+" as "+member, topic, true), heraldpb.HeraldClient.LeaveGroup, req)
	return err
}

// coordinatorCall is a call bound to partition 0 of topic, whose leader
// is the coordinator of the topic's groups. A join or leave changes the
// coordinator's memory: resending it is harmless (idempotent).
func coordinatorCall(op, topic string, mutating bool) call {
	return call{op: op, topic: topic, partition: 0, bound: true, mutating: mutating, idempotent: mutating}
}

func checkMember(topic, group, member string) error {
	if err := checkGroupNames(topic, group); err != nil {
		return err
	}
	if member == "" {
		return InvalidArgument("member_id", "a consumer group member needs an id")
	}
	return nil
}
