package client

import (
	"context"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Consumer groups: a named, durable position in a topic, kept per
// partition by the partition's Raft group (docs/protocol.md, "Consumer
// groups"). These calls administer them; any node answers each one and
// runs it on every partition's leader.

// Aliases of the consumer group wire types.
type (
	// GroupConfig is a group's config: ack wait, max deliveries, max
	// pending (zero fields take the server's defaults: 30 s, no bound,
	// 1,000).
	GroupConfig = heraldpb.ConsumerGroupConfig
	// GroupStart says where a group starts or is reset to; build one with
	// GroupStartEarliest, GroupStartLatest, GroupStartOffset or
	// GroupStartTime. nil means earliest.
	GroupStart = heraldpb.GroupStart
	// GroupInfo is a group on every partition of its topic, with its lag.
	GroupInfo = heraldpb.ConsumerGroupInfo
	// GroupPartition is a group's state on one partition: floor (its
	// committed position), cursor, assignment, pending and dead-lettered
	// counts, watermarks and lag.
	GroupPartition = heraldpb.ConsumerGroupPartition
)

// GroupStartEarliest starts at each partition's low watermark (the oldest
// retained event).
func GroupStartEarliest() *GroupStart {
	return &GroupStart{At: &heraldpb.GroupStart_Position{Position: Earliest}}
}

// GroupStartLatest starts at each partition's high watermark: only events
// produced from now on.
func GroupStartLatest() *GroupStart {
	return &GroupStart{At: &heraldpb.GroupStart_Position{Position: Latest}}
}

// GroupStartOffset starts at offset on every partition, clamped into each
// partition's [low watermark, high watermark].
func GroupStartOffset(offset uint64) *GroupStart {
	return &GroupStart{At: &heraldpb.GroupStart_Offset{Offset: offset}}
}

// GroupStartTime starts, on each partition, at the first event produced
// at or after t (the high watermark when every event is older).
func GroupStartTime(t time.Time) *GroupStart {
	return &GroupStart{At: &heraldpb.GroupStart_TimeUnixNano{TimeUnixNano: t.UnixNano()}}
}

// CreateGroup creates consumer group group of topic with cfg (nil: the
// defaults) at start (nil: earliest) and returns it as created. Creating
// a group that exists with the same config succeeds and changes nothing,
// so the SDK resends it after an ambiguous failure, which also completes
// a create that reached only some partitions; if it still fails, the
// error matches ErrUnknownOutcome. A group of that name with another
// config gives ErrGroupExists; a partition full of groups,
// ErrTooManyGroups.
func (c *Client) CreateGroup(ctx context.Context, topic, group string, cfg *GroupConfig, start *GroupStart) (*GroupInfo, error) {
	if err := checkGroupNames(topic, group); err != nil {
		return nil, err
	}
	req := &heraldpb.CreateGroupRequest{Topic: topic, Group: group, Config: cfg, Start: start}
	resp, err := invoke(ctx, c, call{op: "create group " + group + " of " + topic, mutating: true, idempotent: true}, heraldpb.HeraldClient.CreateGroup, req)
	if err != nil {
		return nil, err
	}
	return resp.GetGroup(), nil
}

// ListGroups returns topic's consumer groups by name, each with its total
// lag and pending count (no per-partition detail: DescribeGroup). It
// retries transient failures.
func (c *Client) ListGroups(ctx context.Context, topic string) ([]*GroupInfo, error) {
	if topic == "" {
		return nil, InvalidArgument("topic", "a topic name is required")
	}
	resp, err := invoke(ctx, c, call{op: "list groups of " + topic}, heraldpb.HeraldClient.ListGroups, &heraldpb.ListGroupsRequest{Topic: topic})
	if err != nil {
		return nil, err
	}
	return resp.GetGroups(), nil
}

// DescribeGroup returns a consumer group's state on every partition, read
// on each partition's leader (so its lag is current), or an error
// matching ErrGroupNotFound. It retries transient failures.
func (c *Client) DescribeGroup(ctx context.Context, topic, group string) (*GroupInfo, error) {
	if err := checkGroupNames(topic, group); err != nil {
		return nil, err
	}
	resp, err := invoke(ctx, c, call{op: "describe group " + group + " of " + topic}, heraldpb.HeraldClient.DescribeGroup,
		&heraldpb.DescribeGroupRequest{Topic: topic, Group: group})
	if err != nil {
		return nil, err
	}
	return resp.GetGroup(), nil
}

// ResetGroup moves a consumer group's position on every partition to
// (nil: earliest), dropping its pending deliveries, and returns the group
// as reset. It is not resent after an ambiguous failure
// (ErrUnknownOutcome: DescribeGroup tells where the group is).
func (c *Client) ResetGroup(ctx context.Context, topic, group string, to *GroupStart) (*GroupInfo, error) {
	if err := checkGroupNames(topic, group); err != nil {
		return nil, err
	}
	resp, err := invoke(ctx, c, call{op: "reset group " + group + " of " + topic, mutating: true}, heraldpb.HeraldClient.ResetGroup,
		&heraldpb.ResetGroupRequest{Topic: topic, Group: group, To: to})
	if err != nil {
		return nil, err
	}
	return resp.GetGroup(), nil
}

// DeleteGroup deletes a consumer group and its positions on every
// partition, or fails with ErrGroupNotFound when no partition has it. It
// is not resent after an ambiguous failure (ErrUnknownOutcome); deleting
// again completes a delete that reached only some partitions.
func (c *Client) DeleteGroup(ctx context.Context, topic, group string) error {
	if err := checkGroupNames(topic, group); err != nil {
		return err
	}
	_, err := invoke(ctx, c, call{op: "delete group " + group + " of " + topic, mutating: true}, heraldpb.HeraldClient.DeleteGroup,
		&heraldpb.DeleteGroupRequest{Topic: topic, Group: group})
	return err
}

func checkGroupNames(topic, group string) error {
	switch {
	case topic == "":
		return InvalidArgument("topic", "a topic name is required")
	case group == "":
		return InvalidArgument("group", "a consumer group needs a name")
	}
	return nil
}
