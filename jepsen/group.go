package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/heraldlog/herald/client"
)

// The consumer-group workload: a group on the live topic, consumed by a
// few members through the SDK's GroupConsumer (the proxies' side of the
// cluster, as every other client), which ack most messages and leave
// some unacknowledged or nack them; after the run, one drain member acks
// everything (many acks in flight at once) until the group's floor
// reaches the end of every partition.
// checkGroups judges the history.

// Group workload limits and pacing.
const (
	// groupName is the workload's group on the live topic.
	groupName = "jepsen-group"
	// groupAckWait is the group's ack wait: short, so that redeliveries
	// of what a member leaves unacknowledged happen within a run.
	groupAckWait = 2 * time.Second
	// groupSessionTimeout is the members' session timeout: a member cut
	// off by a fault is expired, and its partitions rebalanced, within
	// a run.
	groupSessionTimeout = 3 * time.Second
	// groupBatchEvents bounds the batches a member receives.
	groupBatchEvents = 20
	// groupDrainBatchEvents bounds the batches the drain member
	// receives. The server keeps two batches in flight per stream and
	// replicates each delivery before it sends it, so the drain moves
	// at most two batches a partition per delivery-and-ack round trip:
	// with batches of 20 that was about 200 events a second a partition
	// on the loaded 2-core machine, short of the end after 60 s. Two
	// batches of 500 stay within the group's default max pending (1,000
	// a partition). The checker's rule (a) bounds what a member may
	// still hold with the batch size it ran with (groupBufferedMessagesMax).
	groupDrainBatchEvents = 500
	// groupSettleTimeout bounds one Ack or Nack.
	groupSettleTimeout = 5 * time.Second
	// groupNackDelayMax bounds the delay of a nack.
	groupNackDelayMax = 500 * time.Millisecond
	// groupAckPercent and groupNackPercent are the shares of the
	// messages a member acks and nacks; the rest it leaves
	// unacknowledged (redelivered after groupAckWait).
	groupAckPercent  = 80
	groupNackPercent = 10
	// groupDeliveriesMax bounds the deliveries one member records (the
	// history stays bounded whatever the run's length): past it, the
	// member stops.
	groupDeliveriesMax = 1 << 20
	// groupDrainTimeout bounds the drain after the run.
	groupDrainTimeout = 60 * time.Second
	// groupDrainPoll is how often the drain asks whether the floors
	// reached the high watermarks.
	groupDrainPoll = 500 * time.Millisecond
	// groupDrainAcksInFlightMax bounds the drain member's acks sent and
	// not yet answered. The drain acks each message on its own goroutine
	// so that the partition leaders gather many acks into one proposal
	// (one ack at a time is one Raft round trip each, about 110 acks a
	// second on the 2-core machine). The bound covers what the drain's
	// consumer holds with the default 3 partitions, (2×3+1)×500: with
	// more, Next waits for a slot and the SDK drops a batch past its
	// bound, redelivered after the ack wait.
	groupDrainAcksInFlightMax = 3500
	// groupMembersMax bounds Options.GroupMembers.
	groupMembersMax = 16
	// groupProcessBase numbers the members' processes, past every other
	// worker's.
	groupProcessBase = 1 << 16
)

// Modes of FGroupAck ops, and of the drain's FGroupDeliver ops.
const (
	GroupAckMode  = "ack"
	GroupNackMode = "nack"
	GroupDrain    = "drain"
)

// DefaultGroupMembers returns the group members Run starts in mode when
// the caller does not say: three in careful mode, none in volume mode
// (where every delivery of millions of events would be recorded).
func DefaultGroupMembers(mode string) int {
	if mode == ModeVolume {
		return 0
	}
	return 3
}

// groupConfig is the workload group's config: max deliveries 0 (no
// bound), so nothing is dead-lettered and every offset below the floor
// was acknowledged.
func groupConfig() *client.GroupConfig {
	return &client.GroupConfig{AckWaitMs: groupAckWait.Milliseconds(), MaxDeliveries: 0}
}

// createGroup creates the workload's group on the live topic at its
// earliest offset, retrying until setupTimeout.
func createGroup(ctx context.Context, c *Cluster) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	var last error
	for {
		cl, err := c.newClient(ctx)
		if err == nil {
			_, err = cl.CreateGroup(ctx, topicName, groupName, groupConfig(), client.GroupStartEarliest())
			if errors.Is(err, client.ErrGroupExists) {
				err = nil
			}
			_ = cl.Close()
		}
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("jepsen: the cluster did not create group %s: %w", groupName, errors.Join(last, ctx.Err()))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// GroupMember is one member of the workload's group: it consumes through
// a GroupConsumer until ctx ends and records every delivery and every
// settle (FGroupDeliver, FGroupAck). With Drain it takes batches of
// groupDrainBatchEvents and acks every message, each on its own goroutine (at most groupDrainAcksInFlightMax at once;
// consume waits for them before it returns); otherwise it settles each
// message before it takes the next.
type GroupMember struct {
	Process int
	Cluster *Cluster
	Seed    uint64
	Drain   bool
	// deliveries counts the FGroupDeliver ops it recorded; Run's
	// goroutine only.
	deliveries int
}

var _ Reader = (*GroupMember)(nil)

// Name is "group-member-<process>"; it is also the member id.
func (m *GroupMember) Name() string { return fmt.Sprintf("group-member-%d", m.Process) }

// Run consumes until ctx ends (then it returns nil) or
// groupDeliveriesMax deliveries were recorded. A consumer that ends on
// its own (the SDK gave up: a fatal error) is started again.
func (m *GroupMember) Run(ctx context.Context, rec *Recorder) error {
	rng := rand.New(rand.NewPCG(m.Seed, uint64(m.Process)))
	cl, err := m.Cluster.newClient(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("jepsen: %s: %w", m.Name(), err)
	}
	defer cl.Close()
	batch := groupBatchEvents
	if m.Drain {
		batch = groupDrainBatchEvents
	}
	for ctx.Err() == nil && m.deliveries < groupDeliveriesMax {
		g, err := cl.ConsumeGroup(ctx, topicName, groupName, client.GroupConsumerOptions{MemberID: m.Name(),
			SessionTimeout: groupSessionTimeout, MaxBatchEvents: uint32(batch)})
		if err != nil {
			if !sleepCtx(ctx, 250*time.Millisecond) {
				return nil
			}
			continue
		}
		m.consume(ctx, rec, rng, g)
		_ = g.Close()
	}
	return nil
}

// consume records and settles g's messages until g or ctx ends. The
// drain's acks run concurrently; consume returns once every one of them
// completed (each is bounded by groupSettleTimeout).
func (m *GroupMember) consume(ctx context.Context, rec *Recorder, rng *rand.Rand, g *client.GroupConsumer) {
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
	slots := make(chan struct{}, groupDrainAcksInFlightMax)
	for m.deliveries < groupDeliveriesMax {
		msg, err := g.Next(ctx)
		if err != nil {
			return
		}
		e := msg.Event
		deliver := Op{Type: TypeOK, F: FGroupDeliver, Process: m.Process, Name: m.Name(), Partition: msg.Partition, Offset: msg.Offset,
			Deliveries: msg.DeliveryCount, Generation: msg.Generation}
		if e != nil {
			deliver.Events = observeContent([]*client.Event{e})
		}
		if m.Drain {
			deliver.Mode = GroupDrain
		}
		rec.Record(deliver)
		m.deliveries++
		roll := rng.IntN(100)
		mode := GroupAckMode
		switch {
		case m.Drain || roll < groupAckPercent:
		case roll < groupAckPercent+groupNackPercent:
			mode = GroupNackMode
		default:
			continue // left unacknowledged: redelivered after the ack wait
		}
		op := Op{Type: TypeInvoke, F: FGroupAck, Process: m.Process, Name: m.Name(), Partition: msg.Partition, Offset: msg.Offset,
			Deliveries: msg.DeliveryCount, Generation: msg.Generation, Mode: mode}
		rec.Record(op)
		if !m.Drain {
			var delay time.Duration
			if mode == GroupNackMode {
				delay = time.Duration(rng.Int64N(int64(groupNackDelayMax)))
			}
			settleGroupMessage(ctx, rec, msg, op, delay)
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			op.Type, op.Time, op.Error = TypeFail, 0, "the drain ended before the ack was sent"
			rec.Record(op)
			return
		}
		inFlight.Add(1)
		go func() { // owned by consume: waited for before it returns
			defer inFlight.Done()
			defer func() { <-slots }()
			settleGroupMessage(ctx, rec, msg, op, 0)
		}()
	}
}

// settleGroupMessage acks msg (or, when op's mode is nack, nacks it after
// delay), bounded by groupSettleTimeout, and records op's completion.
func settleGroupMessage(ctx context.Context, rec *Recorder, msg *client.GroupMessage, op Op, delay time.Duration) {
	sctx, cancel := context.WithTimeout(ctx, groupSettleTimeout)
	defer cancel()
	t0 := time.Now()
	var err error
	if op.Mode == GroupNackMode {
		err = msg.Nack(sctx, delay)
	} else {
		err = msg.Ack(sctx)
	}
	op.Type, op.Time, op.LatencyNs = groupSettleType(err), 0, int64(time.Since(t0))
	if err != nil {
		op.Error = err.Error()
	}
	rec.Record(op)
}

// groupSettleType classifies a settle's error: nil is ok (recorded); a
// fence or stale generation alone is fail (nothing written, the SDK says
// so); anything else, an unknown outcome among them, is info.
func groupSettleType(err error) string {
	switch {
	case err == nil:
		return TypeOK
	case errors.Is(err, client.ErrUnknownOutcome):
		return TypeInfo
	case errors.Is(err, client.ErrGroupFenced) || errors.Is(err, client.ErrStaleGeneration):
		return TypeFail
	}
	return TypeInfo
}

// drainGroup runs one drain member (acking everything) until the group's
// floor reaches the high watermark of every partition, or
// groupDrainTimeout; then it records the group's state on every
// partition (FGroupState). It reports how the drain ended.
func drainGroup(ctx context.Context, c *Cluster, rec *Recorder, partitions uint32, seed uint64) string {
	dctx, cancel := context.WithTimeout(ctx, groupDrainTimeout)
	defer cancel()
	cl, err := c.newClient(dctx)
	if err != nil {
		return fmt.Sprintf("no client for the drain: %v", err)
	}
	defer cl.Close()
	member := &GroupMember{Process: groupProcessBase + groupMembersMax, Cluster: c, Seed: seed, Drain: true}
	mctx, mcancel := context.WithCancel(dctx)
	done := make(chan struct{})
	go func() { // owned by drainGroup: ends with mctx
		defer close(done)
		_ = member.Run(mctx, rec)
	}()
	t0 := time.Now()
	drained := false
	var info *client.GroupInfo
	for !drained && sleepCtx(dctx, groupDrainPoll) {
		info, err = cl.DescribeGroup(dctx, topicName, groupName)
		if err != nil {
			continue
		}
		drained = len(info.GetPartitions()) == int(partitions)
		for _, p := range info.GetPartitions() {
			drained = drained && p.GetPresent() && p.GetFloor() >= p.GetHighWatermark() && p.GetPending() == 0
		}
	}
	mcancel()
	<-done
	// The final state, read after the drain member left.
	sctx, scancel := context.WithTimeout(ctx, setupTimeout)
	defer scancel()
	info, err = cl.DescribeGroup(sctx, topicName, groupName)
	if err != nil {
		for p := range partitions {
			rec.Record(Op{Type: TypeFail, F: FGroupState, Process: -3, Partition: p, Name: groupName, Error: err.Error()})
		}
		return fmt.Sprintf("describe after the drain failed: %v", err)
	}
	for _, p := range info.GetPartitions() {
		op := Op{Type: TypeOK, F: FGroupState, Process: -3, Partition: p.GetPartition(), Name: groupName, Node: p.GetLeaderId(),
			From: p.GetFloor(), Next: p.GetCursor(), Count: int(p.GetPending()), HighWatermark: p.GetHighWatermark()}
		if !p.GetPresent() {
			op.Type, op.Error = TypeFail, "group not present on the partition"
		}
		rec.Record(op)
	}
	if drained {
		return fmt.Sprintf("drained in %s", time.Since(t0).Round(time.Millisecond))
	}
	return fmt.Sprintf("not drained after %s (floors short of the high watermarks)", groupDrainTimeout)
}
