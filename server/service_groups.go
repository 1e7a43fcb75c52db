package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/partition"
	"github.com/heraldlog/herald/server/controller"
)

// The public consumer group administration: create, list, describe,
// reset, delete. A group is one state per partition of its topic
// (partition/group.go); each call runs its part on every partition's
// leader at once (group_leader.go) and answers for the whole topic.

// Defaults of a consumer group's config (ConsumerGroupConfig).
const (
	groupAckWaitDefault    = 30 * time.Second
	groupMaxPendingDefault = 1000
)

// groupConfigFromWire is c with the defaults filled in, as the partitions
// store it.
func groupConfigFromWire(c *heraldpb.ConsumerGroupConfig) partition.GroupConfig {
	cfg := partition.GroupConfig{
		AckWait:       time.Duration(c.GetAckWaitMs()) * time.Millisecond,
		MaxDeliveries: c.GetMaxDeliveries(),
		MaxPending:    c.GetMaxPending(),
		KeyOrder:      c.GetKeyOrder(),
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = groupAckWaitDefault
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = groupMaxPendingDefault
	}
	return cfg
}

func groupConfigWire(c partition.GroupConfig) *heraldpb.ConsumerGroupConfig {
	return &heraldpb.ConsumerGroupConfig{AckWaitMs: c.AckWait.Milliseconds(), MaxDeliveries: c.MaxDeliveries, MaxPending: c.MaxPending, KeyOrder: c.KeyOrder}
}

func describeGroupConfig(c partition.GroupConfig) string {
	return fmt.Sprintf("ack wait %s, max deliveries %d, max pending %d, key order %t", c.AckWait, c.MaxDeliveries, c.MaxPending, c.KeyOrder)
}

// validateGroupConfig reports every problem of a requested config at once
// as one INVALID_ARGUMENT naming the first field.
func validateGroupConfig(c *heraldpb.ConsumerGroupConfig) error {
	var errs []error
	if c.GetAckWaitMs() < 0 {
		errs = append(errs, wire.InvalidArgument("ack_wait_ms", "ack wait %d ms must not be negative", c.GetAckWaitMs()))
	}
	if c.GetAckWaitMs() > int64(groupAckWaitMax/time.Millisecond) {
		errs = append(errs, wire.InvalidArgument("ack_wait_ms", "ack wait %d ms above the limit %s", c.GetAckWaitMs(), groupAckWaitMax))
	}
	if c.GetMaxPending() > partition.GroupPendingMax {
		errs = append(errs, wire.InvalidArgument("max_pending", "max pending %d above the limit %d", c.GetMaxPending(), partition.GroupPendingMax))
	}
	if len(errs) > 0 {
		return wire.InvalidArgument(fieldOf(errs[0]), "%v", errors.Join(errs...))
	}
	return nil
}

// groupAckWaitMax bounds a group's ack wait: a redelivery later than a
// day is no soft retry.
const groupAckWaitMax = 24 * time.Hour

// validateGroupName checks a consumer group name; names share the topic
// alphabet (they are metric labels).
func validateGroupName(name string) error {
	if !topicNamePattern.MatchString(name) {
		return wire.InvalidArgument("group", "invalid consumer group name %q: 1-200 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// validateGroupStart checks a start's arguments (their resolution is the
// leader's).
func validateGroupStart(field string, s *heraldpb.GroupStart) error {
	if p, ok := s.GetAt().(*heraldpb.GroupStart_Position); ok {
		if _, known := heraldpb.StartPosition_name[int32(p.Position)]; !known {
			return wire.InvalidArgument(field, "unknown start position %d", p.Position)
		}
	}
	return nil
}

// firstError returns the first non-nil error (each is a wire error naming
// its field, which a joined error would lose).
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// groupPart is one partition's answer to a group command.
type groupPart struct {
	index uint32
	resp  *heraldpb.PartitionGroupResponse
	err   error
}

// groupFanOutMax bounds the partitions one group call works on at once
// (a topic has up to 1,024).
const groupFanOutMax = 64

// eachPartitionGroup runs the command mk makes for each partition of t on
// that partition's leader, up to groupFanOutMax at once, and returns the
// answers in partition order.
func (n *Node) eachPartitionGroup(ctx context.Context, t *controller.Topic, mk func() *heraldpb.PartitionGroupRequest) []groupPart {
	parts := make([]groupPart, len(t.Partitions))
	slots := make(chan struct{}, groupFanOutMax)
	var wg sync.WaitGroup
	for i, p := range t.Partitions {
		slots <- struct{}{}
		wg.Add(1)
		go func() { // owned by eachPartitionGroup: ends with runPartitionGroup
			defer func() { <-slots; wg.Done() }()
			resp, err := n.runPartitionGroup(ctx, t, p, mk())
			parts[i] = groupPart{index: p.Index, resp: resp, err: err}
		}()
	}
	wg.Wait()
	return parts
}

// groupWriteOutcome is the error of a group command whose parts ran on
// each partition, or nil when all succeeded. written names the partitions
// whose part wrote something. As for produce (partsOutcome), an error
// after anything may have been written is an unknown outcome, never a
// refusal.
func groupWriteOutcome(parts []groupPart, written func(groupPart) bool) error {
	var (
		committed []uint32
		failed    []partError
	)
	for _, part := range parts {
		switch {
		case part.err != nil:
			failed = append(failed, partError{part.index, part.err})
		case written(part):
			committed = append(committed, part.index)
		}
	}
	return partsOutcome(committed, failed)
}

// groupInfo builds the answer for a group from its partitions' answers:
// partitions without it (or that failed) are marked not present.
func groupInfo(t *controller.Topic, name string, parts []groupPart) *heraldpb.ConsumerGroupInfo {
	info := &heraldpb.ConsumerGroupInfo{Topic: t.Name, Name: name}
	for _, part := range parts {
		var st *heraldpb.PartitionGroupState
		if part.err == nil {
			for _, g := range part.resp.GetGroups() {
				if g.GetName() == name {
					st = g
				}
			}
		}
		if st == nil {
			info.Partitions = append(info.Partitions, &heraldpb.ConsumerGroupPartition{Partition: part.index})
			continue
		}
		ps := st.GetState()
		ps.Partition = part.index
		if info.Config == nil {
			info.Config = st.GetConfig()
		}
		info.Partitions = append(info.Partitions, ps)
		info.LagEvents += ps.GetLagEvents()
		info.LagMs = max(info.LagMs, ps.GetLagMs())
		info.Pending += ps.GetPending()
	}
	return info
}

func (s *heraldService) CreateGroup(ctx context.Context, req *heraldpb.CreateGroupRequest) (*heraldpb.CreateGroupResponse, error) {
	n := s.node
	t, err := n.lookupTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	if err := firstError(validateGroupName(req.GetGroup()), validateGroupConfig(req.GetConfig()), validateGroupStart("start", req.GetStart())); err != nil {
		return nil, err
	}
	cfg := groupConfigWire(groupConfigFromWire(req.GetConfig()))
	parts := n.eachPartitionGroup(ctx, t, func() *heraldpb.PartitionGroupRequest {
		return &heraldpb.PartitionGroupRequest{Group: req.GetGroup(), Command: &heraldpb.PartitionGroupRequest_Create{
			Create: &heraldpb.PartitionGroupCreate{Config: cfg, Start: req.GetStart()}}}
	})
	if err := groupWriteOutcome(parts, func(p groupPart) bool { return !p.resp.GetExisted() }); err != nil {
		return nil, err
	}
	n.logger.Info("consumer group created", "topic", t.Name, "group", req.GetGroup())
	return &heraldpb.CreateGroupResponse{Group: groupInfo(t, req.GetGroup(), parts)}, nil
}

func (s *heraldService) ResetGroup(ctx context.Context, req *heraldpb.ResetGroupRequest) (*heraldpb.ResetGroupResponse, error) {
	n := s.node
	t, err := n.lookupTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	if err := firstError(validateGroupName(req.GetGroup()), validateGroupStart("to", req.GetTo())); err != nil {
		return nil, err
	}
	parts := n.eachPartitionGroup(ctx, t, func() *heraldpb.PartitionGroupRequest {
		return &heraldpb.PartitionGroupRequest{Group: req.GetGroup(), Command: &heraldpb.PartitionGroupRequest_Reset_{
			Reset_: &heraldpb.PartitionGroupReset{To: req.GetTo()}}}
	})
	if err := groupWriteOutcome(parts, func(groupPart) bool { return true }); err != nil {
		return nil, err
	}
	n.logger.Info("consumer group reset", "topic", t.Name, "group", req.GetGroup())
	return &heraldpb.ResetGroupResponse{Group: groupInfo(t, req.GetGroup(), parts)}, nil
}

// DeleteGroup deletes the group on every partition. A partition where it
// does not exist counts as deleted, unless it exists on none (NotFound):
// a delete retried after a partial failure completes it.
func (s *heraldService) DeleteGroup(ctx context.Context, req *heraldpb.DeleteGroupRequest) (*heraldpb.DeleteGroupResponse, error) {
	n := s.node
	t, err := n.lookupTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	if err := validateGroupName(req.GetGroup()); err != nil {
		return nil, err
	}
	parts := n.eachPartitionGroup(ctx, t, func() *heraldpb.PartitionGroupRequest {
		return &heraldpb.PartitionGroupRequest{Group: req.GetGroup(), Command: &heraldpb.PartitionGroupRequest_Delete{
			Delete: &heraldpb.PartitionGroupDelete{}}}
	})
	missing := 0
	for i := range parts {
		if errors.Is(parts[i].err, wire.ErrGroupNotFound) {
			parts[i].err, parts[i].resp = nil, &heraldpb.PartitionGroupResponse{Existed: true} // nothing written there
			missing++
		}
	}
	if missing == len(parts) {
		return nil, wire.GroupNotFound(t.Name, req.GetGroup())
	}
	if err := groupWriteOutcome(parts, func(p groupPart) bool { return !p.resp.GetExisted() }); err != nil {
		return nil, err
	}
	n.logger.Info("consumer group deleted", "topic", t.Name, "group", req.GetGroup())
	return &heraldpb.DeleteGroupResponse{}, nil
}

// DescribeGroup reads the group's state on every partition's leader (after
// a read index, so lag is current). A partition without the group (a
// create or delete that reached only some) is shown as not present; a
// group present on none is NotFound.
func (s *heraldService) DescribeGroup(ctx context.Context, req *heraldpb.DescribeGroupRequest) (*heraldpb.DescribeGroupResponse, error) {
	n := s.node
	t, err := n.lookupTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	if err := validateGroupName(req.GetGroup()); err != nil {
		return nil, err
	}
	parts := n.eachPartitionGroup(ctx, t, func() *heraldpb.PartitionGroupRequest {
		return &heraldpb.PartitionGroupRequest{Group: req.GetGroup(), Command: &heraldpb.PartitionGroupRequest_Read{
			Read: &heraldpb.PartitionGroupRead{}}}
	})
	missing := 0
	for _, part := range parts {
		switch {
		case errors.Is(part.err, wire.ErrGroupNotFound):
			missing++
		case part.err != nil:
			return nil, fmt.Errorf("partition %d: %w", part.index, part.err)
		}
	}
	if missing == len(parts) {
		return nil, wire.GroupNotFound(t.Name, req.GetGroup())
	}
	return &heraldpb.DescribeGroupResponse{Group: groupInfo(t, req.GetGroup(), parts)}, nil
}

// ListGroups lists the topic's groups (those present on any partition),
// by name, each with its total lag and pending count.
func (s *heraldService) ListGroups(ctx context.Context, req *heraldpb.ListGroupsRequest) (*heraldpb.ListGroupsResponse, error) {
	n := s.node
	t, err := n.lookupTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	parts := n.eachPartitionGroup(ctx, t, func() *heraldpb.PartitionGroupRequest {
		return &heraldpb.PartitionGroupRequest{Command: &heraldpb.PartitionGroupRequest_Read{Read: &heraldpb.PartitionGroupRead{}}}
	})
	byName := map[string]*heraldpb.ConsumerGroupInfo{}
	for _, part := range parts {
		if part.err != nil {
			return nil, fmt.Errorf("partition %d: %w", part.index, part.err)
		}
		for _, g := range part.resp.GetGroups() {
			info, ok := byName[g.GetName()]
			if !ok {
				info = &heraldpb.ConsumerGroupInfo{Topic: t.Name, Name: g.GetName(), Config: g.GetConfig()}
				byName[g.GetName()] = info
			}
			info.LagEvents += g.GetState().GetLagEvents()
			info.LagMs = max(info.LagMs, g.GetState().GetLagMs())
			info.Pending += g.GetState().GetPending()
		}
	}
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	sort.Strings(names)
	resp := &heraldpb.ListGroupsResponse{}
	for _, name := range names {
		resp.Groups = append(resp.Groups, byName[name])
	}
	return resp, nil
}
