package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// GroupMessage is one delivery of an event to a GroupConsumer: the event,
// where it is and how often it was delivered. Ack or Nack it once it is
// handled; one neither acknowledged nor nacked is redelivered after the
// group's ack wait.
type GroupMessage struct {
	Event     *Event
	Partition uint32
	Offset    uint64
	// DeliveryCount is 1 the first time the event is delivered and rises
	// with each redelivery (after an ack wait, a nack, or a stream that
	// ended before the event was acknowledged).
	DeliveryCount uint32
	// Generation is the group generation under which it was delivered.
	Generation uint64
	// ProcessedSequence is the group's processed mark of the event's
	// idempotency key on the partition when the leader sent it (0: none):
	// the highest tenant sequence a member acknowledged with AckProcessed
	// under the same key. See Processed (group_once.go).
	ProcessedSequence uint64

	stream *groupPartitionStream
}

// Ack acknowledges the message on the stream that delivered it and waits
// for the partition's leader to record it. nil: recorded (or recorded
// before). An error matching ErrGroupFenced or ErrStaleGeneration alone:
// the partition had moved to another member or generation (a rebalance)
// before the ack could be sent; nothing was written and the event is
// redelivered to its new owner, so handle events idempotently. An error
// matching ErrUnknownOutcome (and, when that was the cause, ErrGroupFenced
// or the NOT_LEADER error): the stream ended after the ack was sent, by a
// rebalance or a leader move or failure; the ack may have been recorded,
// and if it was not the event is redelivered. Ack may be called from any
// goroutine.
func (m *GroupMessage) Ack(ctx context.Context) error {
	return m.stream.settle(ctx, false, 0, m.Offset, nil)
}

// Nack asks for the message to be redelivered after delay (0: at once;
// at most 24 h) instead of the group's ack wait. Its errors are Ack's.
func (m *GroupMessage) Nack(ctx context.Context, delay time.Duration) error {
	if delay < 0 || delay > 24*time.Hour {
		return InvalidArgument("delay", "a nack delay is 0 to 24 h")
	}
	return m.stream.settle(ctx, true, uint32(delay.Milliseconds()), m.Offset, nil)
}

// groupStreams are the partition streams of one generation: one goroutine
// each, all ended by stop.
type groupStreams struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// stop ends the streams and waits for their goroutines.
func (s *groupStreams) stop() {
	s.cancel()
	s.wg.Wait()
}

// startStreams starts one goroutine per partition of m. A goroutine
// signals rejoin (without blocking) when its partition fences the member.
func (g *GroupConsumer) startStreams(ctx context.Context, m *GroupMembership, rejoin chan<- struct{}, log *slog.Logger) *groupStreams {
	sctx, cancel := context.WithCancel(ctx)
	gs := &groupStreams{cancel: cancel}
	for _, p := range m.Partitions {
		gs.wg.Add(1)
		go func() {
			defer gs.wg.Done()
			if g.consumePartition(sctx, p, m.Generation, log.With("partition", p, "generation", m.Generation)) {
				select {
				case rejoin <- struct{}{}:
				default:
				}
			}
		}()
	}
	return gs
}

// consumePartition keeps a GroupConsume stream open on partition's leader
// under generation until ctx ends (it returns false) or the partition
// fences the member (true: join again). A stream that ends otherwise (the
// leadership moved, the node failed) is reopened after a jittered
// backoff.
func (g *GroupConsumer) consumePartition(ctx context.Context, partition uint32, generation uint64, log *slog.Logger) (rejoin bool) {
	if int(partition) >= len(g.queued) {
		// The topic's partitions are fixed at creation: this one is of a
		// topic recreated since the consumer started.
		g.fail(fmt.Errorf("client: group consumer: assigned partition %d, but %s had %d partitions when the consumer started", partition, g.topic, len(g.queued)))
		g.cancel()
		return false
	}
	for attempt := 0; ; attempt++ {
		s, err := g.c.GroupConsume(ctx, GroupConsumeOptions{Topic: g.topic, Group: g.group, Partition: partition,
			MemberID: g.member, Generation: generation, MaxBatchEvents: g.opts.MaxBatchEvents, MaxBatchBytes: g.opts.MaxBatchBytes,
			MaxBatchesInFlight: g.opts.MaxBatchesInFlight})
		if err == nil {
			log.Debug("herald: group consumer: stream open", "addr", s.Addr(), "floor", s.Started().GetFloor())
			ps := newGroupPartitionStream(s, partition, generation)
			err = g.receive(ctx, ps, log)
			s.Close()
			attempt = 0
			if ctx.Err() != nil {
				ps.end(fmt.Errorf("client: partition %d of %s: generation %d of the member ended: %w", partition, g.topic, generation, ErrGroupFenced))
				return false
			}
			ps.end(err)
			var nl *wire.NotLeaderError
			if errors.As(err, &nl) {
				g.c.meta.forgetLeader(g.topic, partition, s.Addr())
				if nl.LeaderAddr != "" {
					g.c.meta.setLeader(g.topic, partition, nl.LeaderAddr)
				}
			} else {
				g.c.meta.forgetLeader(g.topic, partition, s.Addr())
			}
		}
		switch {
		case ctx.Err() != nil:
			return false
		case groupConsumerFatal(err):
			// The group or topic is gone, or the request is malformed: no
			// join mends it, so the consumer ends (Next returns err).
			log.Error("herald: group consumer: partition stream refused; the consumer ends", "err", err)
			g.fail(err)
			g.cancel()
			return false
		case groupConsumerRejoin(err):
			log.Debug("herald: group consumer: partition stream fenced", "err", err)
			return true
		}
		log.Debug("herald: group consumer: partition stream ended; reopening", "err", err, "attempt", attempt)
		if sleep(ctx, g.c.backoff.delay(attempt)) != nil {
			return false
		}
	}
}

// receive reads s until it ends: batches go to the consumer's inbox (at
// most the window waiting per partition: a batch
// past it is dropped and redelivered after the ack wait), ack results to
// their waiters. It never blocks on the caller, so ack results always
// flow.
func (g *GroupConsumer) receive(ctx context.Context, ps *groupPartitionStream, log *slog.Logger) error {
	for {
		b, r, err := ps.s.Recv()
		if err != nil {
			return err
		}
		if r != nil {
			ps.result(r)
			continue
		}
		events := b.GetEvents()
		if len(events) == 0 {
			continue
		}
		counts := b.GetDeliveryCounts()
		if len(counts) != len(events) {
			return fmt.Errorf("client: group consume of partition %d: a batch of %d events with %d delivery counts", ps.partition, len(events), len(counts))
		}
		processed := b.GetProcessedSequences()
		if len(processed) != 0 && len(processed) != len(events) {
			return fmt.Errorf("client: group consume of partition %d: a batch of %d events with %d processed sequences", ps.partition, len(events), len(processed))
		}
		queued := &g.queued[ps.partition]
		if int(queued.Load()) >= g.opts.window() {
			g.dropped.Add(1)
			log.Debug("herald: group consumer: batch dropped, the caller has not taken the earlier ones; redelivered after the ack wait",
				"events", len(events), "first_offset", events[0].GetOffset())
			continue
		}
		msgs := make([]*GroupMessage, len(events))
		for i, e := range events {
			msgs[i] = &GroupMessage{Event: e, Partition: ps.partition, Offset: e.GetOffset(), DeliveryCount: counts[i],
				Generation: ps.generation, stream: ps}
			if len(processed) > 0 {
				msgs[i].ProcessedSequence = processed[i]
			}
		}
		queued.Add(1)
		select {
		case g.inbox <- &groupInboxBatch{partition: ps.partition, messages: msgs}:
		case <-ctx.Done():
			queued.Add(-1)
			return ctx.Err()
		}
	}
}

// groupInboxBatch is one batch waiting for the caller.
type groupInboxBatch struct {
	partition uint32
	messages  []*GroupMessage
}

// groupPartitionStream is one open stream of a partition and the acks
// waiting for their results. Its receive goroutine calls result and end;
// any goroutine calls settle.
type groupPartitionStream struct {
	s          *GroupConsumeStream
	partition  uint32
	generation uint64
	done       chan struct{} // closed by end

	mu struct {
		sync.Mutex
		err     error                           // why the stream ended
		waiters map[uint64]chan *GroupAckResult // by ack id, registered before the ack is sent
		// acked holds the offsets acknowledged on this stream (the last
		// ackedRemembered of them, oldest first in ackedOrder): a
		// redelivery of one of them that the leader sent before the ack
		// was recorded, and that still waits in the inbox, is not handed
		// to the caller.
		acked      map[uint64]struct{}
		ackedOrder []uint64
	}
}

// ackedRemembered bounds the acknowledged offsets a stream remembers: far
// more than the deliveries its window can hold (at most 8 batches of at
// most 10,000 events).
const ackedRemembered = 1 << 17

// noteAcked remembers that offset's ack was recorded.
func (ps *groupPartitionStream) noteAcked(offset uint64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if _, ok := ps.mu.acked[offset]; ok {
		return
	}
	if len(ps.mu.ackedOrder) >= ackedRemembered {
		delete(ps.mu.acked, ps.mu.ackedOrder[0])
		ps.mu.ackedOrder[0] = 0
		ps.mu.ackedOrder = ps.mu.ackedOrder[1:]
	}
	ps.mu.acked[offset] = struct{}{}
	ps.mu.ackedOrder = append(ps.mu.ackedOrder, offset)
}

// wasAcked reports whether offset's ack was recorded on this stream.
func (ps *groupPartitionStream) wasAcked(offset uint64) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	_, ok := ps.mu.acked[offset]
	return ok
}

func newGroupPartitionStream(s *GroupConsumeStream, partition uint32, generation uint64) *groupPartitionStream {
	ps := &groupPartitionStream{s: s, partition: partition, generation: generation, done: make(chan struct{})}
	ps.mu.waiters = map[uint64]chan *GroupAckResult{}
	ps.mu.acked = map[uint64]struct{}{}
	return ps
}

// ended reports whether the stream ended.
func (ps *groupPartitionStream) ended() bool {
	select {
	case <-ps.done:
		return true
	default:
		return false
	}
}

// end records why the stream ended and wakes every ack waiting.
func (ps *groupPartitionStream) end(err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.mu.err != nil {
		return
	}
	if err == nil {
		err = errors.New("client: group consume stream ended")
	}
	ps.mu.err = err
	close(ps.done)
}

// result hands r to the ack waiting for it; a result nobody waits for
// (its ack gave up on its context) is dropped.
func (ps *groupPartitionStream) result(r *GroupAckResult) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if w, ok := ps.mu.waiters[r.GetId()]; ok {
		delete(ps.mu.waiters, r.GetId())
		w <- r // buffered, one result per waiter
	}
}

// register makes w the waiter of ack id.
func (ps *groupPartitionStream) register(id uint64, w chan *GroupAckResult) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.mu.waiters[id] = w
}

// unregister forgets the waiter of ack id.
func (ps *groupPartitionStream) unregister(id uint64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.mu.waiters, id)
}

// await waits for w, the result of an ack sent on the stream.
func (ps *groupPartitionStream) await(ctx context.Context, w chan *GroupAckResult) (*GroupAckResult, error) {
	select {
	case r := <-w:
		return r, nil
	case <-ps.done:
		select {
		case r := <-w:
			return r, nil
		default:
		}
		return nil, ps.endErr(true)
	case <-ctx.Done():
		return nil, fmt.Errorf("client: ack of partition %d: %w (%w)", ps.partition, ctx.Err(), ErrUnknownOutcome)
	}
}

// endErr is the error an ack on the ended stream answers. Not sent
// (sent false): why the stream ended, as it is (a fence: nothing was
// written). Sent and unanswered: an unknown outcome that also matches why
// the stream ended (the ack may have been recorded before the end).
func (ps *groupPartitionStream) endErr(sent bool) error {
	ps.mu.Lock()
	err := ps.mu.err
	ps.mu.Unlock()
	if !sent {
		return err
	}
	return unknownOutcome(fmt.Sprintf("ack on partition %d", ps.partition), ps.s.Addr(), err)
}

// settle acknowledges (or nacks) offset, with mark if not nil, and waits
// for the result, resending an ack whose outcome is unknown a few times.
func (ps *groupPartitionStream) settle(ctx context.Context, nack bool, delayMs uint32, offset uint64, mark *heraldpb.ProcessedMark) error {
	for resend := 0; ; resend++ {
		if ps.ended() {
			return ps.endErr(resend > 0)
		}
		w := make(chan *GroupAckResult, 1)
		var registered uint64
		_, err := ps.s.settle(nack, delayMs, offset, mark, func(id uint64) { registered = id; ps.register(id, w) })
		if err != nil {
			ps.unregister(registered)
			// The send failed: the stream is ending; its receive
			// goroutine records why.
			select {
			case <-ps.done:
				return ps.endErr(true)
			case <-ctx.Done():
				return fmt.Errorf("client: ack of partition %d: %w (%w)", ps.partition, ctx.Err(), ErrUnknownOutcome)
			}
		}
		r, err := ps.await(ctx, w)
		ps.unregister(registered)
		if err != nil {
			return err
		}
		switch {
		case r.GetRefused():
			return fmt.Errorf("client: ack of offset %d of partition %d refused: %s", offset, ps.partition, r.GetError())
		case r.GetUnknownOutcome():
			if resend < groupConsumerAckResends {
				continue
			}
			return unknownOutcome(fmt.Sprintf("ack of offset %d of partition %d", offset, ps.partition), ps.s.Addr(), errors.New(r.GetError()))
		}
		for _, o := range r.GetResults() {
			if o.GetOffset() == offset && o.GetOutcome() == heraldpb.GroupOffsetOutcome_GROUP_OFFSET_NOT_DELIVERED {
				return fmt.Errorf("client: ack of offset %d of partition %d: the leader has no delivery of it", offset, ps.partition)
			}
		}
		if !nack {
			ps.noteAcked(offset)
		}
		return nil
	}
}
