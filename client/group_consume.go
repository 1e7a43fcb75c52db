package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// Consuming a partition of a consumer group, at the protocol's level
// (docs/protocol.md, "Consuming a partition of a group"): a member that
// owns a partition under a generation opens a GroupConsume stream on the
// partition's leader, receives batches and acknowledges or nacks offsets.
// The consumer iterator (joining, rebalancing, every partition) is built
// on this.

// Aliases of the GroupConsume wire types.
type (
	// GroupBatch is one delivery: Events (as Fetch delivers them) with
	// DeliveryCounts, one per event (1 the first time).
	GroupBatch = heraldpb.GroupConsumeBatch
	// GroupAckResult answers one Ack or Nack: per-offset outcomes, the
	// floor after it, or UnknownOutcome (resend to learn it) or Refused.
	GroupAckResult = heraldpb.GroupAckResult
	// GroupConsumeStarted is how the leader accepted the stream.
	GroupConsumeStarted = heraldpb.GroupConsumeStarted
)

// GroupConsumeOptions names the partition, the member and its
// assignment, and bounds the batches.
type GroupConsumeOptions struct {
	Topic      string
	Group      string
	Partition  uint32
	MemberID   string
	Generation uint64
	// MaxBatchEvents and MaxBatchBytes bound a batch (0: 100 events,
	// 1 MiB; at most 1,000 and 4 MiB).
	MaxBatchEvents uint32
	MaxBatchBytes  uint32
	// MaxBatchesInFlight is the window: batches received and not yet
	// settled at most (0: 2; at most 8). A larger one hides more of the
	// round trips of a delivery and its ack.
	MaxBatchesInFlight uint32
}

// GroupConsumeStream is one open GroupConsume stream. Recv is for one
// goroutine; Ack and Nack may be called from any goroutine, concurrently
// with Recv. Close (or ending the context it was opened with) ends it.
type GroupConsumeStream struct {
	started *GroupConsumeStarted
	stream  heraldpb.Herald_GroupConsumeClient
	cancel  context.CancelFunc
	addr    string

	sendMu sync.Mutex // gRPC allows one sender at a time
	nextID uint64     // under sendMu
}

// Started is the leader's answer to the start: the group's floor, cursor
// and config on the partition.
func (s *GroupConsumeStream) Started() *GroupConsumeStarted { return s.started }

// Addr is the address of the node serving the stream (the leader).
func (s *GroupConsumeStream) Addr() string { return s.addr }

// GroupConsume opens a GroupConsume stream on the leader of
// opts.Partition, following NOT_LEADER hints and retrying while the
// partition has no leader (up to Config.MaxRetries). It fails at once
// with ErrGroupFenced (the generation or member is not the partition's
// assignment), ErrGroupNotFound, ErrTopicNotFound, ErrPartitionNotFound or
// ErrInvalidArgument.
func (c *Client) GroupConsume(ctx context.Context, opts GroupConsumeOptions) (*GroupConsumeStream, error) {
	start := &heraldpb.GroupConsumeStart{Topic: opts.Topic, Group: opts.Group, Partition: opts.Partition,
		MemberId: opts.MemberID, Generation: opts.Generation, MaxBatchEvents: opts.MaxBatchEvents, MaxBatchBytes: opts.MaxBatchBytes,
		MaxBatchesInFlight: opts.MaxBatchesInFlight}
	addr := c.meta.leader(opts.Topic, opts.Partition)
	var last error
	for attempt := 0; attempt <= c.cfg.MaxRetries; attempt++ {
		if addr == "" {
			if _, err := c.Metadata(ctx, opts.Topic); err != nil && !transient(err) {
				return nil, err
			}
			addr = c.meta.leader(opts.Topic, opts.Partition)
			if addr == "" {
				addr = c.meta.nextServer("")
			}
		}
		s, err := c.openGroupConsume(ctx, addr, start)
		if err == nil {
			c.meta.setLeader(opts.Topic, opts.Partition, addr)
			return s, nil
		}
		last = err
		var nl *wire.NotLeaderError
		switch {
		case errors.As(err, &nl):
			c.meta.forgetLeader(opts.Topic, opts.Partition, addr)
			if nl.LeaderAddr != "" && nl.LeaderAddr != addr {
				addr = nl.LeaderAddr
				continue // a named leader: go there at once
			}
			addr = ""
		case errors.Is(err, wire.ErrNoLeader), errors.Is(err, wire.ErrUnavailable), transient(err):
			c.meta.forgetLeader(opts.Topic, opts.Partition, addr)
			addr = ""
		default:
			return nil, err
		}
		if err := sleep(ctx, c.backoff.delay(attempt)); err != nil {
			return nil, ctxErr(ctx, last)
		}
	}
	return nil, fmt.Errorf("client: group consume of partition %d of %s: %w", opts.Partition, opts.Topic, last)
}

// openGroupConsume makes one attempt: open the stream at addr, send start
// and wait for the leader's started.
func (c *Client) openGroupConsume(ctx context.Context, addr string, start *heraldpb.GroupConsumeStart) (*GroupConsumeStream, error) {
	hc, err := c.pool.client(addr)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := hc.GroupConsume(sctx)
	if err != nil {
		cancel()
		return nil, wire.FromStatus(err)
	}
	if err := stream.Send(&heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Start{Start: start}}); err != nil {
		_, rerr := stream.Recv() // the server's error, if it sent one
		cancel()
		if rerr != nil {
			return nil, wire.FromStatus(rerr)
		}
		return nil, wire.FromStatus(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, wire.FromStatus(err)
	}
	started := resp.GetStarted()
	if started == nil {
		cancel()
		return nil, fmt.Errorf("client: group consume: the server's first message is %T, not started", resp.GetMsg())
	}
	return &GroupConsumeStream{started: started, stream: stream, cancel: cancel, addr: addr}, nil
}

// Recv returns the next batch, or the ack result of an Ack or Nack. The
// stream's end is an error: NOT_LEADER (the partition's leadership moved;
// open a new stream: unacknowledged offsets are redelivered there),
// ErrGroupFenced, the context's error, or another wire error.
func (s *GroupConsumeStream) Recv() (*GroupBatch, *GroupAckResult, error) {
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			return nil, nil, wire.FromStatus(err)
		}
		switch m := resp.GetMsg().(type) {
		case *heraldpb.GroupConsumeResponse_Batch:
			return m.Batch, nil, nil
		case *heraldpb.GroupConsumeResponse_AckResult:
			return nil, m.AckResult, nil
		}
		// Anything else (a message a newer server adds) is skipped.
	}
}

// AckWithMarks acknowledges as Ack does and writes marks (processed
// marks of the idempotent consumer, each naming an offset this ack
// acknowledges) in the same Raft command; it returns the id its
// GroupAckResult will carry. A bad mark refuses the whole ack (the result
// says refused and why; nothing written).
func (s *GroupConsumeStream) AckWithMarks(before uint64, offsets []uint64, marks []*heraldpb.ProcessedMark) (uint64, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.nextID++
	err := s.stream.Send(&heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Ack{Ack: &heraldpb.GroupConsumeAck{
		Id: s.nextID, Before: before, Offsets: offsets, Marks: marks}}})
	return s.nextID, wire.FromStatus(err)
}

// Ack acknowledges every pending offset below before (0: none) and each
// of offsets, and returns the id its GroupAckResult will carry.
func (s *GroupConsumeStream) Ack(before uint64, offsets ...uint64) (uint64, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.nextID++
	err := s.stream.Send(&heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Ack{Ack: &heraldpb.GroupConsumeAck{
		Id: s.nextID, Before: before, Offsets: offsets}}})
	return s.nextID, wire.FromStatus(err)
}

// Nack makes offsets due for redelivery after delayMs and returns the id
// its GroupAckResult will carry.
func (s *GroupConsumeStream) Nack(delayMs uint32, offsets ...uint64) (uint64, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.nextID++
	err := s.stream.Send(&heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Nack{Nack: &heraldpb.GroupConsumeNack{
		Id: s.nextID, DelayMs: delayMs, Offsets: offsets}}})
	return s.nextID, wire.FromStatus(err)
}

// settle sends an ack of offset (or a nack, after delayMs) and calls
// registered with its id first, under the send lock, so that its
// GroupAckResult cannot be received before the caller waits for it.
func (s *GroupConsumeStream) settle(nack bool, delayMs uint32, offset uint64, mark *heraldpb.ProcessedMark, registered func(id uint64)) (uint64, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.nextID++
	registered(s.nextID)
	ack := &heraldpb.GroupConsumeAck{Id: s.nextID, Offsets: []uint64{offset}}
	if mark != nil {
		ack.Marks = []*heraldpb.ProcessedMark{mark}
	}
	req := &heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Ack{Ack: ack}}
	if nack {
		req = &heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Nack{Nack: &heraldpb.GroupConsumeNack{Id: s.nextID, DelayMs: delayMs, Offsets: []uint64{offset}}}}
	}
	return s.nextID, wire.FromStatus(s.stream.Send(req))
}

// Close ends the stream. Offsets delivered and not acknowledged are
// redelivered after the group's ack wait.
func (s *GroupConsumeStream) Close() error {
	s.sendMu.Lock()
	_ = s.stream.CloseSend()
	s.sendMu.Unlock()
	s.cancel()
	return nil
}
