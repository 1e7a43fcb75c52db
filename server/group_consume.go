package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/partition"
	"github.com/heraldlog/herald/server/controller"
)

// GroupConsume: a member that owns partition p of a consumer group under
// generation g (the replicated assignment, GroupState.Generation/Member)
// consumes p on p's leader (docs/protocol.md, "Consuming a partition of a
// group"; docs/architecture.md, "Consumer groups"). The stream has two
// goroutines: the handler's, which runs the serving loop (groupConsumer.run)
// and owns every piece of the stream's state, and a receiver that turns
// the member's acks and nacks into items on a bounded channel and exits
// when the stream ends (gRPC cancels the stream when the handler returns).

// Bounds and defaults of a GroupConsume stream.
const (
	groupConsumeBatchEventsDefault = 100
	groupConsumeBatchEventsMax     = 1000
	groupConsumeBatchBytesDefault  = 1 << 20
	groupConsumeBatchBytesMax      = 4 << 20
	// groupConsumeBatchesInFlightDefault and Max bound the batches sent
	// to the member and not yet settled (every offset acknowledged or
	// nacked, or the ack wait passed): the member's window, which it may
	// ask for (max_batches_in_flight).
	groupConsumeBatchesInFlightDefault = 2
	groupConsumeBatchesInFlightMax     = 8
	// groupConsumeAckQueueMax bounds the acks and nacks received and not
	// yet proposed; a member past it waits (gRPC flow control).
	groupConsumeAckQueueMax = 64
	// groupConsumeAckLinger is how long the loop gathers acks into one
	// proposal after the first (or until GroupCommandOffsetsMax offsets).
	groupConsumeAckLinger = 2 * time.Millisecond
	// groupConsumeLeaderCheck is how often an idle loop checks that this
	// node still leads the partition (a lost leadership applies nothing,
	// so Replica.Changed does not say so).
	groupConsumeLeaderCheck = 250 * time.Millisecond
	// groupDueScanInterval is the longest a stream goes without scanning
	// the group's due index when nothing was due at the last scan (a
	// pending offset this stream did not deliver or nack, which it cannot
	// know of, is redelivered at most this late).
	groupDueScanInterval = time.Second
	// groupDeadLettersPerStepMax bounds the offsets one step of the loop
	// dead-letters (one produce call, one proposal).
	groupDeadLettersPerStepMax = 64
	// groupDeadLetterRetryWait is the pause after a dead-letter write
	// failed before the loop tries again (the offsets stay pending).
	groupDeadLetterRetryWait = time.Second
	// groupDeadLetterWriteTimeout bounds one dead-letter produce call.
	groupDeadLetterWriteTimeout = 10 * time.Second
)

// groupConsumeEventsField is GroupConsumeBatch.events: the same number as
// FetchResponse.events, so appendWireEvent's encoding serves it.
var groupConsumeEventsField = fieldNumber((&heraldpb.GroupConsumeBatch{}).ProtoReflect().Descriptor(), "events", protoreflect.MessageKind)

func init() {
	if groupConsumeEventsField != fetchEventsField {
		panic("server: GroupConsumeBatch.events and FetchResponse.events must share a field number")
	}
}

// checkGroupConsumeStart checks a stream's first message.
func checkGroupConsumeStart(req *heraldpb.GroupConsumeRequest) (*heraldpb.GroupConsumeStart, error) {
	start := req.GetStart()
	if start == nil {
		return nil, wire.InvalidArgument("start", "the first message of a group consume stream must be start")
	}
	var errs []error
	if err := validateGroupName(start.GetGroup()); err != nil {
		errs = append(errs, err)
	}
	if start.GetMemberId() == "" || len(start.GetMemberId()) > 255 {
		errs = append(errs, wire.InvalidArgument("member_id", "member id of %d bytes, want 1..255", len(start.GetMemberId())))
	}
	if start.GetGeneration() == 0 {
		errs = append(errs, wire.InvalidArgument("generation", "generation 0 is no assignment"))
	}
	if start.GetMaxBatchEvents() > groupConsumeBatchEventsMax {
		errs = append(errs, wire.InvalidArgument("max_batch_events", "max batch events %d above the limit %d", start.GetMaxBatchEvents(), groupConsumeBatchEventsMax))
	}
	if start.GetMaxBatchBytes() > groupConsumeBatchBytesMax {
		errs = append(errs, wire.InvalidArgument("max_batch_bytes", "max batch bytes %d above the limit %d", start.GetMaxBatchBytes(), groupConsumeBatchBytesMax))
	}
	if start.GetMaxBatchesInFlight() > groupConsumeBatchesInFlightMax {
		errs = append(errs, wire.InvalidArgument("max_batches_in_flight", "%d batches in flight above the limit %d", start.GetMaxBatchesInFlight(), groupConsumeBatchesInFlightMax))
	}
	return start, firstError(errs...)
}

// GroupConsume serves one member's consumption of one partition of a
// group, on the partition's leader only.
func (s *heraldService) GroupConsume(stream heraldpb.Herald_GroupConsumeServer) error {
	n := s.node
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start, err := checkGroupConsumeStart(first)
	if err != nil {
		return err
	}
	release, err := n.limits.acquireStream(stream.Context())
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	t, err := n.lookupTopic(ctx, start.GetTopic())
	if err != nil {
		return err
	}
	if int(start.GetPartition()) >= len(t.Partitions) {
		return wire.PartitionNotFound(t.Name, start.GetPartition())
	}
	p := t.Partitions[start.GetPartition()]
	r := n.replica(p.GroupID)
	if r == nil {
		return wire.NotLeader("", "")
	}
	if !r.IsLeader() {
		addr, id := r.Leader()
		return wire.NotLeader(id, addr)
	}
	// A read index: the assignment and the state read below cover every
	// acknowledged command.
	if err := r.CatchUp(ctx); err != nil {
		if errors.Is(err, partition.ErrNotLeader) {
			addr, id := r.Leader()
			return wire.NotLeader(id, addr)
		}
		return wire.NoLeader(fmt.Sprintf("partition %d of %s: the leader could not confirm it has applied every acknowledged write (%v)", p.Index, t.Name, err))
	}
	c := &groupConsumer{
		n: n, r: r, topic: t.Name, index: p.Index, groupID: p.GroupID,
		group: start.GetGroup(), member: start.GetMemberId(), generation: start.GetGeneration(),
		batchEvents: int(start.GetMaxBatchEvents()), batchBytes: int(start.GetMaxBatchBytes()),
		inFlightMax: int(start.GetMaxBatchesInFlight()),
		stream:      stream, acks: make(chan *groupAckItem, groupConsumeAckQueueMax),
		inFlight: map[uint64]*groupBatchInFlight{},
	}
	if c.batchEvents == 0 {
		c.batchEvents = groupConsumeBatchEventsDefault
	}
	if c.batchBytes == 0 {
		c.batchBytes = groupConsumeBatchBytesDefault
	}
	if c.inFlightMax == 0 {
		c.inFlightMax = groupConsumeBatchesInFlightDefault
	}
	st, err := c.state()
	if err != nil {
		return err
	}
	c.config = st.Config
	c.takeoverFrom, c.takeoverEnd = st.Floor, st.Delivered
	if err := stream.Send(&heraldpb.GroupConsumeResponse{Msg: &heraldpb.GroupConsumeResponse_Started{Started: &heraldpb.GroupConsumeStarted{
		Partition: p.Index, Floor: st.Floor, Cursor: st.Delivered, HighWatermark: r.HighWatermark(), Config: groupConfigWire(st.Config)}}}); err != nil {
		return err
	}

	// The receiver is owned by this handler's stream: Recv returns when
	// the stream ends, which it does when the handler returns.
	go func() {
		if err := c.receive(ctx); !errors.Is(err, io.EOF) {
			cancel(err)
		}
	}()
	m := n.metrics.groupConsume
	m.streams.Inc()
	defer m.streams.Dec()
	n.logger.Debug("group consume: start", "topic", c.topic, "partition", c.index, "group", c.group, "member", c.member, "generation", c.generation)
	err = c.run(ctx)
	if errors.Is(err, wire.ErrGroupFenced) {
		m.fenced.WithLabelValues(c.topic, c.group).Inc()
		n.logger.Info("group consume: member fenced", "topic", c.topic, "partition", c.index, "group", c.group,
			"member", c.member, "generation", c.generation, "err", err)
	}
	return err
}

// groupAckItem is one ack or nack from the member, as received.
type groupAckItem struct {
	nack    bool
	id      uint64
	before  uint64
	offsets []uint64
	delayMs uint32
	marks   []*heraldpb.ProcessedMark // an ack's processed marks (group_consume_marks.go)
}

// receive queues the member's acks and nacks until the stream ends; any
// other message is an error.
func (c *groupConsumer) receive(ctx context.Context) error {
	for {
		req, err := c.stream.Recv()
		if err != nil {
			return err
		}
		var item *groupAckItem
		switch m := req.GetMsg().(type) {
		case *heraldpb.GroupConsumeRequest_Ack:
			item = &groupAckItem{id: m.Ack.GetId(), before: m.Ack.GetBefore(), offsets: m.Ack.GetOffsets(), marks: m.Ack.GetMarks()}
		case *heraldpb.GroupConsumeRequest_Nack:
			item = &groupAckItem{nack: true, id: m.Nack.GetId(), offsets: m.Nack.GetOffsets(), delayMs: m.Nack.GetDelayMs()}
		default:
			return wire.InvalidArgument("msg", "after start, a group consume stream takes only ack and nack messages")
		}
		if len(item.offsets) > partition.GroupCommandOffsetsMax || len(item.marks) > partition.GroupCommandOffsetsMax {
			return wire.InvalidArgument("offsets", "%d offsets and %d processed marks in one ack or nack; the limit is %d of each", len(item.offsets), len(item.marks), partition.GroupCommandOffsetsMax)
		}
		select {
		case c.acks <- item:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// groupConsumer is one GroupConsume stream's serving state. Every field
// but acks belongs to the goroutine running run.
type groupConsumer struct {
	n          *Node
	r          *partition.Replica
	topic      string
	index      uint32
	groupID    uint64 // the partition's Raft group
	group      string
	member     string
	generation uint64
	config     partition.GroupConfig

	batchEvents int
	batchBytes  int
	inFlightMax int // batches in flight at most

	stream heraldpb.Herald_GroupConsumeServer
	acks   chan *groupAckItem

	// inFlight maps each offset sent to the member and not yet settled by
	// it to its batch.
	inFlight map[uint64]*groupBatchInFlight
	batches  []*groupBatchInFlight
	// deadLetterRetryAt: after a failed dead-letter write, no new attempt
	// before it.
	deadLetterRetryAt time.Time
	// The takeover: offsets pending when the stream started were delivered
	// to an earlier stream (of this member after a reconnect or a leader
	// change, or of the previous owner), whose member may never have seen
	// them. The stream redelivers them first, at once rather than at their
	// not-before, from takeoverFrom up to takeoverEnd (the cursor at the
	// start), then serves as usual.
	takeoverFrom, takeoverEnd uint64
	// dueScanAt: no pending offset is due before it, as far as this
	// stream knows (zero: unknown), so a step before it skips the scan of
	// the group's due index (group_consume_deliver.go, "dueScan").
	dueScanAt time.Time
	// orderKeys caches the order keys of the group's pending offsets when
	// it keeps per-key order (group_consume_order.go); nil otherwise.
	orderKeys map[uint64]string
}

// groupBatchInFlight is a batch sent and not settled.
type groupBatchInFlight struct {
	left      int       // offsets not yet acknowledged or nacked
	expiresAt time.Time // its ack wait ends: its offsets become due again
}

// notLeader is the error that ends the stream when this node no longer
// leads the partition (or its replica closed), with the leader it knows.
func (c *groupConsumer) notLeader() error {
	if c.n.replica(c.groupID) != c.r {
		return wire.NotLeader("", "")
	}
	addr, id := c.r.Leader()
	return wire.NotLeader(id, addr)
}

// state reads the group's state here and checks that the stream's member
// and generation are its current assignment.
func (c *groupConsumer) state() (partition.GroupState, error) {
	st, err := c.r.GroupState(c.group)
	if err != nil {
		return st, c.error(err)
	}
	if st.Generation != c.generation || st.Member != c.member {
		return st, wire.GroupFenced(c.topic, c.group, c.index, c.generation, st.Generation,
			fmt.Sprintf("member %q is not the partition's assignment (generation %d, member %q)", c.member, st.Generation, st.Member))
	}
	return st, nil
}

// error maps a replica's error of a group command or read to a wire
// error; proposed reports whether the command was proposed (after which
// only a refusal is a refusal).
func (c *groupConsumer) error(err error) error {
	var se *partition.StaleGenerationError
	var ce *partition.CorruptionError
	switch {
	case errors.As(err, &se):
		return wire.GroupFenced(c.topic, c.group, c.index, se.Generation, se.CurrentGeneration,
			fmt.Sprintf("member %q; the partition's assignment is member %q", se.Member, se.CurrentMember))
	case errors.Is(err, partition.ErrUnknownGroup):
		return wire.GroupNotFound(c.topic, c.group)
	case errors.Is(err, partition.ErrNotLeader), errors.Is(err, partition.ErrClosed):
		return c.notLeader()
	case errors.As(err, &ce):
		return wire.Corruption(ce.Partition, ce.Offset, "%s", ce.Reason)
	case errors.Is(err, partition.ErrUnknownOutcome):
		return wire.UnknownOutcome("consumer group %q on partition %d of %s: %v", c.group, c.index, c.topic, err)
	}
	return err
}

// room reports whether the member may take another batch now, and when
// the earliest unsettled batch's ack wait ends (zero: none).
func (c *groupConsumer) room(now time.Time) (bool, time.Time) {
	live := c.batches[:0]
	var next time.Time
	for _, b := range c.batches {
		if b.left > 0 && now.Before(b.expiresAt) {
			live = append(live, b)
			if next.IsZero() || b.expiresAt.Before(next) {
				next = b.expiresAt
			}
		}
	}
	clear(c.batches[len(live):])
	c.batches = live
	if len(c.batches) == 0 {
		clear(c.inFlight) // every batch settled or expired
	}
	return len(c.batches) < c.inFlightMax, next
}

// track counts a batch of offsets sent, in flight until expiresAt (its
// ack wait's end).
func (c *groupConsumer) track(offsets []uint64, expiresAt time.Time) {
	b := &groupBatchInFlight{left: len(offsets), expiresAt: expiresAt}
	for _, off := range offsets {
		if old, ok := c.inFlight[off]; ok {
			old.left-- // redelivered: it now belongs to the new batch
		}
		c.inFlight[off] = b
	}
	c.batches = append(c.batches, b)
}

// settle marks offset acknowledged or nacked by the member.
func (c *groupConsumer) settle(offset uint64) {
	if b, ok := c.inFlight[offset]; ok {
		b.left--
		delete(c.inFlight, offset)
	}
}

// settleBelow settles every in-flight offset below before.
func (c *groupConsumer) settleBelow(before uint64) {
	for offset := range c.inFlight { // at most batchesInFlightMax batches
		if offset < before {
			c.settle(offset)
		}
	}
}

// run is the serving loop: until the stream ends, the node stops, this
// node loses the partition's leadership or the member is fenced, it
// answers acks and nacks and, while the member has room, delivers.
func (c *groupConsumer) run(ctx context.Context) error {
	n := c.n
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	leaderCheck := time.NewTicker(groupConsumeLeaderCheck)
	defer leaderCheck.Stop()
	for {
		if n.replica(c.groupID) != c.r || !c.r.IsLeader() {
			return c.notLeader()
		}
		changed := c.r.Changed()
		now := time.Now()
		hasRoom, batchExpiry := c.room(now)
		var wakeAt time.Time
		if hasRoom {
			sent, next, err := c.step(ctx, now)
			if err != nil {
				return err
			}
			if sent {
				continue
			}
			wakeAt = next
		}
		if !batchExpiry.IsZero() && (wakeAt.IsZero() || batchExpiry.Before(wakeAt)) {
			wakeAt = batchExpiry
		}
		if !wakeAt.IsZero() {
			timer.Reset(max(time.Until(wakeAt), time.Millisecond))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case item := <-c.acks:
			if err := c.answer(ctx, item); err != nil {
				return err
			}
		case <-changed:
		case <-timer.C:
		case <-leaderCheck.C:
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-n.stop:
			return wire.NodeStopping(n.cfg.NodeID)
		}
	}
}

// topicNow returns the topic's current registry entry (for its
// dead-letter topic), or nil when it is gone.
func (c *groupConsumer) topicNow(ctx context.Context) *controller.Topic {
	t, err := c.n.lookupTopic(ctx, c.topic)
	if err != nil {
		return nil
	}
	return t
}
