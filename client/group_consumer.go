package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// A group consumer: a member of a consumer group that joins, heartbeats,
// consumes every partition it owns and follows rebalances and leader
// moves by itself (docs/protocol.md, "The Go group consumer"). It is
// built on JoinGroup, GroupHeartbeat, LeaveGroup and GroupConsume.

// Group consumer limits.
const (
	// groupConsumerWindowDefault and Max: the batches in flight per
	// partition (GroupConsumerOptions.MaxBatchesInFlight), which also
	// bound the batches received from one partition that wait for the
	// caller. The server keeps at most that many in flight per stream, so
	// one more arrives only when an earlier one's ack wait passed; a batch
	// past the bound is dropped (its events are redelivered after the ack
	// wait, and DroppedBatches counts it) so that the partition's stream
	// never blocks and its ack results keep flowing.
	groupConsumerWindowDefault = 2
	groupConsumerWindowMax     = 8
	// groupConsumerLeaveTimeout bounds the LeaveGroup that Close sends.
	groupConsumerLeaveTimeout = 5 * time.Second
	// groupConsumerAckResends bounds the resends of an ack whose outcome
	// is unknown (resending is safe: applied twice it is already done).
	groupConsumerAckResends = 3
)

// ErrConsumerClosed ends a GroupConsumer's Next after Close, or after the
// context it was made with ended.
var ErrConsumerClosed = errors.New("client: group consumer closed")

// GroupConsumerOptions configures a GroupConsumer. The zero value joins
// with a random member id, the server's session timeout and batch bounds.
type GroupConsumerOptions struct {
	// MemberID is the member's id (1-200 characters of letters, digits,
	// '.', '_', '-'); "": "consumer-" and 16 random hex digits.
	MemberID string
	// SessionTimeout is how long the coordinator keeps the member without
	// a heartbeat (0: the server's 10 s; 1 s to 5 min).
	SessionTimeout time.Duration
	// MaxBatchEvents and MaxBatchBytes bound each batch a partition
	// sends (0: 100 events, 1 MiB).
	MaxBatchEvents uint32
	MaxBatchBytes  uint32
	// MaxBatchesInFlight is the window of each partition: batches
	// received and not yet settled (0: 2; at most 8). A larger one hides
	// more of each batch's two Raft rounds (its delivery and its ack):
	// docs/benchmarks.md measures 2, 4 and 8.
	MaxBatchesInFlight uint32
}

// window returns the effective MaxBatchesInFlight.
func (o GroupConsumerOptions) window() int {
	if o.MaxBatchesInFlight == 0 {
		return groupConsumerWindowDefault
	}
	return int(o.MaxBatchesInFlight)
}

// Limits of GroupConsumerOptions (docs/protocol.md).
const (
	groupSessionTimeoutMin = time.Second
	groupSessionTimeoutMax = 5 * time.Minute
	groupBatchEventsMax    = 1000
	groupBatchBytesMax     = 4 << 20
)

// validate reports every option out of its range at once.
func (o GroupConsumerOptions) validate() error {
	var errs []error
	if o.SessionTimeout != 0 && (o.SessionTimeout < groupSessionTimeoutMin || o.SessionTimeout > groupSessionTimeoutMax) {
		errs = append(errs, InvalidArgument("session_timeout_ms", "session timeout %s: want 0 (the server's) or 1s to 5m", o.SessionTimeout))
	}
	if o.MaxBatchEvents > groupBatchEventsMax {
		errs = append(errs, InvalidArgument("max_batch_events", "%d events: at most %d", o.MaxBatchEvents, groupBatchEventsMax))
	}
	if o.MaxBatchesInFlight > groupConsumerWindowMax {
		errs = append(errs, InvalidArgument("max_batches_in_flight", "%d batches in flight: at most %d", o.MaxBatchesInFlight, groupConsumerWindowMax))
	}
	if o.MaxBatchBytes > groupBatchBytesMax {
		errs = append(errs, InvalidArgument("max_batch_bytes", "%d bytes: at most %d", o.MaxBatchBytes, groupBatchBytesMax))
	}
	return errors.Join(errs...)
}

// GroupConsumer is a member of a consumer group that consumes the
// partitions the group's coordinator gives it. Its goroutines: one that
// joins and heartbeats (it owns the membership and the partition
// streams), and one per owned partition's stream; Close ends them all.
//
// On a rebalance (a heartbeat that answers rebalance, or
// ErrUnknownMember, ErrGroupFenced or ErrStaleGeneration from any call)
// it closes every stream, joins again and opens the streams of the
// partitions of the new generation. When a partition's leadership moves
// or its node fails, it reopens that stream on the new leader after a
// jittered backoff (Config.BackoffMin..BackoffMax), as long as the
// membership still gives it the partition. Delivery is at least once:
// an event not acknowledged by its member is redelivered, to whichever
// member owns its partition, after the group's ack wait.
//
// Next (and Messages) is for one goroutine; a message's Ack and Nack may
// be called from any goroutine. Close may be called from any goroutine,
// more than once.
type GroupConsumer struct {
	c       *Client
	topic   string
	group   string
	member  string
	opts    GroupConsumerOptions
	cancel  context.CancelFunc
	done    chan struct{} // closed when the membership goroutine exits
	inbox   chan *groupInboxBatch
	queued  []atomic.Int32 // batches in inbox, by partition
	dropped atomic.Uint64  // batches dropped past the window (DroppedBatches)
	// skippedAcked counts redeliveries not handed out because this
	// consumer's ack of the offset was recorded meanwhile (SkippedAcked).
	skippedAcked atomic.Uint64
	current      []*GroupMessage // the batch Next is taking from; Next's goroutine only

	mu struct {
		sync.Mutex
		err        error // why the consumer ended (nil: Close or its context)
		generation uint64
		partitions []uint32
	}
}

// ConsumeGroup joins group (which must exist: CreateGroup) of topic as a
// member and starts consuming the partitions it is given; the first join
// happens in the background, so an error such as ErrGroupNotFound comes
// from Next. ctx bounds the consumer's life: when it ends the consumer
// leaves the group and ends as after Close.
func (c *Client) ConsumeGroup(ctx context.Context, topic, group string, opts GroupConsumerOptions) (*GroupConsumer, error) {
	if opts.MemberID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		opts.MemberID = "consumer-" + hex.EncodeToString(b[:])
	}
	if err := checkMember(topic, group, opts.MemberID); err != nil {
		return nil, err
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	shape, err := c.shape(ctx, topic)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	g := &GroupConsumer{
		c: c, topic: topic, group: group, member: opts.MemberID, opts: opts, cancel: cancel,
		done:   make(chan struct{}),
		inbox:  make(chan *groupInboxBatch, int(shape.partitions)*opts.window()),
		queued: make([]atomic.Int32, shape.partitions),
	}
	go g.run(rctx)
	return g, nil
}

// DroppedBatches counts the batches a partition sent while the caller had
// not taken the earlier ones (past MaxBatchesInFlight waiting): their
// events come again after the group's ack wait. A count that grows says
// the caller takes messages slower than it acknowledges them.
func (g *GroupConsumer) DroppedBatches() uint64 { return g.dropped.Load() }

// SkippedAcked counts redeliveries Next did not return because the
// consumer's own ack of the offset, on the same stream, was recorded after
// the leader sent them (the ack wait ran out while the event was being
// handled): the event is done, and handing it out again would only make
// the caller handle it twice.
func (g *GroupConsumer) SkippedAcked() uint64 { return g.skippedAcked.Load() }

// MemberID is the consumer's member id.
func (g *GroupConsumer) MemberID() string { return g.member }

// Assignment returns the generation and partitions of the consumer's last
// join (0 and none before the first).
func (g *GroupConsumer) Assignment() (generation uint64, partitions []uint32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.generation, append([]uint32(nil), g.mu.partitions...)
}

// Close stops the consumer's streams, leaves the group (bounded by 5 s)
// and waits for its goroutines. Messages not acknowledged are redelivered
// to the group's other members. It returns the error that ended the
// consumer, if one did (not the close itself).
func (g *GroupConsumer) Close() error {
	g.cancel()
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mu.err
}

// Next returns the next message of any owned partition, waiting for one.
// Each partition's messages come in offset order (a redelivery comes
// again, with its delivery count); there is no order across partitions.
// Messages of a partition the consumer no longer owns are skipped: they
// are redelivered to the new owner. It returns ctx's error when ctx ends,
// and ErrConsumerClosed (or the error that ended the consumer, such as
// ErrGroupNotFound) once the consumer is closed. Next is for one
// goroutine.
func (g *GroupConsumer) Next(ctx context.Context) (*GroupMessage, error) {
	for {
		for len(g.current) > 0 {
			m := g.current[0]
			g.current[0] = nil
			g.current = g.current[1:]
			if m.stream.ended() {
				continue // redelivered to whoever owns the partition now
			}
			if m.DeliveryCount > 1 && m.stream.wasAcked(m.Offset) {
				// A redelivery sent before this consumer's ack of the
				// offset was recorded: it is done.
				g.skippedAcked.Add(1)
				continue
			}
			return m, nil
		}
		select {
		case b := <-g.inbox:
			g.queued[b.partition].Add(-1)
			g.current = b.messages
		case <-g.done:
			g.mu.Lock()
			err := g.mu.err
			g.mu.Unlock()
			if err != nil {
				return nil, err
			}
			return nil, ErrConsumerClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Messages iterates over Next's messages until ctx ends or the consumer
// ends; the last pair carries the error that ended it, except a closed
// consumer's or ctx's end, which just stops the iteration. Breaking out
// of the loop leaves the consumer open: Close it.
func (g *GroupConsumer) Messages(ctx context.Context) iter.Seq2[*GroupMessage, error] {
	return func(yield func(*GroupMessage, error) bool) {
		for {
			m, err := g.Next(ctx)
			if err != nil {
				if !errors.Is(err, ErrConsumerClosed) && ctx.Err() == nil {
					yield(nil, err)
				}
				return
			}
			if !yield(m, nil) {
				return
			}
		}
	}
}

// run owns the membership: it joins, opens the owned partitions' streams,
// heartbeats, and on a rebalance closes the streams and joins again. It
// leaves the group when ctx ends.
func (g *GroupConsumer) run(ctx context.Context) {
	defer close(g.done)
	log := g.c.log.With("topic", g.topic, "group", g.group, "member", g.member)
	rejoin := make(chan struct{}, 1) // a stream fenced: join again
	joined := false
	defer func() {
		if !joined {
			return
		}
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), groupConsumerLeaveTimeout)
		defer cancel()
		if err := g.c.LeaveGroup(lctx, g.topic, g.group, g.member); err != nil {
			log.Warn("herald: group consumer: leave failed; the coordinator expires the member after its session timeout", "err", err)
		} else {
			log.Debug("herald: group consumer left the group")
		}
	}()
	for attempt := 0; ; {
		m, err := g.c.JoinGroup(ctx, g.topic, g.group, g.member, g.opts.SessionTimeout)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if groupConsumerFatal(err) {
				log.Error("herald: group consumer: join refused; the consumer ends", "err", err)
				g.fail(err)
				return
			}
			log.Debug("herald: group consumer: join failed; retrying", "err", err, "attempt", attempt)
			if sleep(ctx, g.c.backoff.delay(attempt)) != nil {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		joined = true
		g.mu.Lock()
		g.mu.generation, g.mu.partitions = m.Generation, append([]uint32(nil), m.Partitions...)
		g.mu.Unlock()
		log.Debug("herald: group consumer joined", "generation", m.Generation, "partitions", m.Partitions)
		streams := g.startStreams(ctx, m, rejoin, log)
		fatal := g.heartbeat(ctx, m, rejoin, log)
		streams.stop()
		// A fence signalled by a stream of the generation just ended is
		// answered by the join that follows.
		select {
		case <-rejoin:
		default:
		}
		if fatal != nil {
			g.fail(fatal)
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// heartbeat renews the membership every m.HeartbeatInterval until a
// rebalance is due (it returns nil), ctx ends (nil) or an error ends the
// consumer (returned). A failed heartbeat is retried at the next tick; the
// coordinator answers ErrUnknownMember once the session expired.
func (g *GroupConsumer) heartbeat(ctx context.Context, m *GroupMembership, rejoin <-chan struct{}, log *slog.Logger) error {
	interval := m.HeartbeatInterval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-rejoin:
			log.Debug("herald: group consumer: a partition fenced the member; joining again", "generation", m.Generation)
			return nil
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, interval)
		_, rebalance, err := g.c.GroupHeartbeat(hctx, g.topic, g.group, g.member, m.Generation)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil && rebalance:
			log.Debug("herald: group consumer: rebalance; joining again", "generation", m.Generation)
			return nil
		case err == nil:
		case groupConsumerRejoin(err):
			log.Debug("herald: group consumer: the coordinator does not know the member; joining again", "err", err)
			return nil
		case groupConsumerFatal(err):
			return err
		default:
			log.Debug("herald: group consumer: heartbeat failed; retrying at the next tick", "err", err)
		}
	}
}

// fail records why the consumer ended (the first reason wins).
func (g *GroupConsumer) fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.err == nil {
		g.mu.err = err
	}
}

// groupConsumerRejoin reports an error that a join answers: the member or
// its generation is not the current one.
func groupConsumerRejoin(err error) bool {
	return errors.Is(err, ErrUnknownMember) || errors.Is(err, ErrGroupFenced) || errors.Is(err, ErrStaleGeneration)
}

// groupConsumerFatal reports an error no retry mends: the group or topic
// is gone, or the request is malformed.
func groupConsumerFatal(err error) bool {
	return errors.Is(err, ErrGroupNotFound) || errors.Is(err, ErrTopicNotFound) ||
		errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrTooManyMembers) || errors.Is(err, ErrClosed)
}

func (g *GroupConsumer) String() string {
	return fmt.Sprintf("group consumer %s of group %s of %s", g.member, g.group, g.topic)
}
