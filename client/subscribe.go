package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Subscription defaults and limits (herald.proto, SubscribeStart).
const (
	subscribeCreditEventsDefault = 1000
	subscribeCreditBytesDefault  = 4 << 20
	subscribeHeartbeatDefault    = 5 * time.Second
	subscribeHeartbeatMin        = 100 * time.Millisecond
	// subscribeHeartbeatMax is the largest interval heartbeat_ms holds.
	subscribeHeartbeatMax = time.Duration(1<<32-1) * time.Millisecond
	// subscribeQueueFramesPerPartition bounds the frames (one server
	// response each, at most 500 events and the credit window) that wait
	// between the partitions' streams and the caller, per partition.
	subscribeQueueFramesPerPartition = 2
)

// ErrInconsistentStream matches the error that ends a subscription whose
// server sent what breaks the subscription contract: events out of order
// or before the position asked for, a next offset that does not pass them,
// another partition's or another epoch's events. Nothing of the offending
// response is delivered; the subscription never skips or repeats an event
// to get past it.
var ErrInconsistentStream = errors.New("client: inconsistent subscription stream")

// Position is where a partition's subscription resumes: the offset of the
// next event to deliver and the partition's epoch that offset belongs to
// (0: not known; any epoch is accepted).
type Position struct {
	Offset uint64
	Epoch  uint64
}

// SubscribeOptions says what a subscription reads and how. The zero value
// reads every partition of the topic from its earliest retained event,
// every event, with the server's default credit and heartbeat.
type SubscribeOptions struct {
	// Partitions are the partitions read, merged into one stream (each
	// partition's events in offset order; no order across partitions).
	// Nil: every partition of the topic, except that with TenantID on a
	// topic ordered per tenant it is the tenant's partition.
	Partitions []uint32
	// Start is where every partition starts: FromEarliest (the zero
	// Start), FromLatest, FromOffset, FromSequence (needs TenantID) or
	// FromTime, as for a Reader. FromLatest is fixed to an offset (by a
	// Fetch from the leader) before the first stream opens, so that a
	// reconnect does not move it.
	Start Start
	// Epoch is the partitions' epoch Start belongs to (Delivered.Epoch);
	// 0 accepts any. A partition at another epoch (its topic was deleted
	// and recreated) ends the subscription with an *EpochChangedError.
	Epoch uint64
	// Resume overrides Start and Epoch per partition: each partition
	// listed starts at its Position, as Subscription.Positions returned it.
	Resume map[uint32]Position
	// Filters; every one set must match. TenantID keeps one tenant's
	// events, Key (when non-nil, even empty) the events with exactly this
	// key, Headers the events with each named header at exactly this
	// value. A filtered subscription still resumes by offset, past the
	// events it skipped.
	TenantID string
	Key      []byte
	Headers  map[string]string
	// CreditEvents and CreditBytes are each partition's credit window: the
	// server sends at most this many events and bytes (of encoded events)
	// that the caller has not taken yet. Credit is given back as the caller
	// takes events. 0: 1,000 events and 4 MiB. One event larger than the
	// byte window is still sent, alone.
	CreditEvents uint32
	CreditBytes  uint32
	// Heartbeat is the interval of the server's heartbeats on an idle
	// stream, which carry the high watermark (see Subscription.Lag); a
	// stream silent for three intervals is taken for dead and resumed
	// elsewhere. 0: 5s; at least 100ms.
	Heartbeat time.Duration
}

// Validate reports every problem with the options at once.
func (o *SubscribeOptions) Validate() error {
	var errs []error
	if o.Start.kind == startSequence {
		if o.TenantID == "" {
			errs = append(errs, InvalidArgument("tenant_id", "a subscription from a tenant sequence needs the tenant id"))
		}
		if o.Start.n == 0 {
			errs = append(errs, InvalidArgument("sequence", "tenant sequences start at 1"))
		}
	}
	if o.Heartbeat != 0 && (o.Heartbeat < subscribeHeartbeatMin || o.Heartbeat > subscribeHeartbeatMax) {
		errs = append(errs, InvalidArgument("heartbeat_ms", "heartbeat %s: want 0 (5s) or %s to %s", o.Heartbeat, subscribeHeartbeatMin, subscribeHeartbeatMax))
	}
	seen := make(map[uint32]bool, len(o.Partitions))
	for _, p := range o.Partitions {
		if seen[p] {
			errs = append(errs, InvalidArgument("partitions", "partition %d is listed twice", p))
		}
		seen[p] = true
	}
	if o.Partitions != nil && len(o.Partitions) == 0 {
		errs = append(errs, InvalidArgument("partitions", "an empty, non-nil partition list subscribes to nothing; use nil for every partition"))
	}
	for p := range o.Resume {
		if o.Partitions != nil && !seen[p] {
			errs = append(errs, InvalidArgument("resume", "partition %d is resumed but not subscribed to", p))
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns o with the zero credit and heartbeat set.
func (o SubscribeOptions) withDefaults() SubscribeOptions {
	if o.CreditEvents == 0 {
		o.CreditEvents = subscribeCreditEventsDefault
	}
	if o.CreditBytes == 0 {
		o.CreditBytes = subscribeCreditBytesDefault
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = subscribeHeartbeatDefault
	}
	o.Partitions = slices.Clone(o.Partitions)
	o.Resume = maps.Clone(o.Resume)
	o.Headers = maps.Clone(o.Headers)
	if o.Key != nil {
		o.Key = slices.Clone(o.Key)
	}
	return o
}

// Delivered is one event of a subscription, with what the caller needs to
// resume after it.
type Delivered struct {
	// Event carries its partition, offset and tenant sequence (set by the
	// cluster).
	Event *Event
	// Epoch is the epoch of the event's partition (its Raft group id; a
	// recreated topic has new ones).
	Epoch uint64
	// HighWatermark is the partition's next offset as the serving replica
	// knew it when it sent the event.
	HighWatermark uint64
}

// Next is the position after d: a subscription resumed there delivers the
// event after it, with no gap and no repeat.
func (d *Delivered) Next() Position {
	return Position{Offset: d.Event.GetOffset() + 1, Epoch: d.Epoch}
}

// Lag is how many offsets of d's partition follow d, as the serving
// replica knew it.
func (d *Delivered) Lag() uint64 {
	return d.HighWatermark - min(d.HighWatermark, d.Event.GetOffset()+1)
}

// SubscriptionPartition is what a Subscription knows of one of its
// partitions (Subscription.Partitions).
type SubscriptionPartition struct {
	Partition uint32
	// Position is where the partition resumes: past the last event
	// delivered to the caller, or skipped by the filters. Known is false
	// until the first response fixes it (or Start or Resume gave an offset).
	Position Position
	Known    bool
	// HighWatermark is the partition's next offset as last heard (from an
	// event or a heartbeat); Lag is HighWatermark past Position.
	HighWatermark uint64
	Lag           uint64
	// Addr is the node whose stream delivers the partition now ("" between
	// streams); Streams counts the streams opened so far.
	Addr    string
	Streams int
}

// Subscription is a live, resumable subscription to partitions of a
// topic, made by Client.NewSubscription. All runs it; Lag, Positions and
// Partitions report on it and may be called from any goroutine, during or
// after the iteration.
//
// Each partition is served by one gRPC stream (Herald.Subscribe) to a
// node holding a replica of it, chosen at random among the replicas so
// that subscribers spread over them, not all on the leader. A stream that
// fails (the node stopped or unreachable, NO_LEADER, the replica moved, a
// stream silent for three heartbeats) is reopened on the next replica
// after a jittered, exponential backoff (Config.BackoffMin to BackoffMax),
// at exactly the offset after the last event it delivered, and with the
// partition's epoch: no gap, no repeat. Config.MaxRetries bounds the
// consecutive failed streams of a partition (a stream that received
// anything resets the count); past it, All yields the last error.
type Subscription struct {
	c     *Client
	topic string
	opts  SubscribeOptions

	running atomic.Bool // an iteration of All is under way

	mu struct {
		sync.Mutex
		partitions map[uint32]*SubscriptionPartition
	}
}

// NewSubscription returns a subscription to topic as opts say. It checks
// opts and does nothing else until All is iterated.
func (c *Client) NewSubscription(topic string, opts SubscribeOptions) (*Subscription, error) {
	var errs []error
	if topic == "" {
		errs = append(errs, InvalidArgument("topic", "a subscription needs a topic"))
	}
	if err := opts.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Subscription{c: c, topic: topic, opts: opts.withDefaults()}
	s.mu.partitions = make(map[uint32]*SubscriptionPartition)
	return s, nil
}

// Subscribe streams topic's events as opts say, live: the iteration goes
// on past the end of the log, waiting for new events, until the caller
// breaks out of the loop, ctx ends or the subscription fails for good. It
// is Client.NewSubscription followed by All; use those for Lag and
// Positions.
//
//	for d, err := range c.Subscribe(ctx, "orders", client.SubscribeOptions{}) {
//		if err != nil {
//			return err // typed: *OffsetOutOfRangeError, *EpochChangedError, ...
//		}
//		handle(d.Event)
//	}
func (c *Client) Subscribe(ctx context.Context, topic string, opts SubscribeOptions) iter.Seq2[*Delivered, error] {
	s, err := c.NewSubscription(topic, opts)
	if err != nil {
		return func(yield func(*Delivered, error) bool) { yield(nil, err) }
	}
	return s.All(ctx)
}

// All runs the subscription and yields its events: each partition's in
// offset order, partitions merged as their events arrive. An error ends
// the iteration; it is the last thing yielded:
//   - *OffsetOutOfRangeError: a partition's position is below its low
//     watermark (retention removed it) or beyond its end; skipping is the
//     caller's decision (Resume from Low, say);
//   - *EpochChangedError: the position belongs to another epoch of the
//     partition (the topic was deleted and recreated);
//   - ErrTopicNotFound, ErrPartitionNotFound, ErrInvalidArgument;
//   - ctx's error when ctx ends;
//   - the last error of a partition whose streams failed more than
//     Config.MaxRetries times in a row;
//   - ErrInconsistentStream.
//
// Breaking out of the loop or ctx ending stops every stream and goroutine
// of the subscription before the iteration returns. All may be iterated
// again after an iteration ended: it resumes at Positions. Two iterations
// at once are refused (the second yields an ErrInvalidArgument error).
func (s *Subscription) All(ctx context.Context) iter.Seq2[*Delivered, error] {
	return func(yield func(*Delivered, error) bool) {
		if !s.running.CompareAndSwap(false, true) {
			yield(nil, InvalidArgument("subscription", "the subscription to %s is already being iterated", s.topic))
			return
		}
		defer s.running.Store(false)
		s.run(ctx, yield)
	}
}

// run is one iteration of All. It owns the partitions' streamers: they
// end (cancel, then wait) before it returns.
func (s *Subscription) run(parent context.Context, yield func(*Delivered, error) bool) {
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	routes, err := s.resolve(ctx)
	if err != nil {
		yield(nil, err)
		return
	}
	out := make(chan subscribeItem, subscribeQueueFramesPerPartition*len(routes.partitions))
	feeds := make(map[uint32]*feed, len(routes.partitions))
	for _, p := range routes.partitions {
		f := &feed{partition: p, wake: make(chan struct{}, 1)}
		feeds[p] = f
		st := &streamer{sub: s, routes: routes, feed: f, out: out, pos: s.startPosition(p)}
		wg.Go(func() { st.run(ctx) })
	}
	for {
		var it subscribeItem
		select {
		case it = <-out:
		case <-ctx.Done():
			yield(nil, fmt.Errorf("client: subscription to %s: %w", s.topic, parent.Err()))
			return
		}
		if it.err != nil {
			yield(nil, it.err)
			return
		}
		if !s.deliver(it, yield) {
			return
		}
	}
}

// deliver yields it's events, moving the partition's position past each
// before yielding it, then past what the frame skipped; it gives the
// frame's credit back once every event was taken. It reports whether
// the caller wants more.
func (s *Subscription) deliver(it subscribeItem, yield func(*Delivered, error) bool) bool {
	resp := it.resp
	for _, e := range resp.GetEvents() {
		s.setPosition(it.feed.partition, Position{Offset: e.GetOffset() + 1, Epoch: resp.GetEpoch()}, resp.GetHighWatermark())
		if !yield(&Delivered{Event: e, Epoch: resp.GetEpoch(), HighWatermark: resp.GetHighWatermark()}, nil) {
			return false
		}
	}
	s.setPosition(it.feed.partition, Position{Offset: resp.GetNextOffset(), Epoch: resp.GetEpoch()}, resp.GetHighWatermark())
	if n := len(resp.GetEvents()); n > 0 {
		it.feed.giveBack(it.gen, uint64(n), it.eventBytes, s.opts.CreditEvents, s.opts.CreditBytes)
	}
	return true
}

// startPosition is where partition p's first stream starts: its Resume
// position, else the known position of an earlier iteration, else Start
// (known only for FromOffset).
func (s *Subscription) startPosition(p uint32) streamPosition {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sp, ok := s.mu.partitions[p]; ok && sp.Known {
		return streamPosition{known: true, Position: sp.Position}
	}
	if r, ok := s.opts.Resume[p]; ok {
		s.viewLocked(p).Position, s.viewLocked(p).Known = r, true
		return streamPosition{known: true, Position: r}
	}
	if off, ok := s.opts.Start.Offset(); ok {
		s.viewLocked(p).Position, s.viewLocked(p).Known = Position{Offset: off, Epoch: s.opts.Epoch}, true
		return streamPosition{known: true, Position: Position{Offset: off, Epoch: s.opts.Epoch}}
	}
	return streamPosition{Position: Position{Epoch: s.opts.Epoch}}
}

// viewLocked returns partition p's report, made on first use.
func (s *Subscription) viewLocked(p uint32) *SubscriptionPartition {
	sp, ok := s.mu.partitions[p]
	if !ok {
		sp = &SubscriptionPartition{Partition: p}
		s.mu.partitions[p] = sp
	}
	return sp
}

// setPosition records partition p's delivered position and high watermark.
func (s *Subscription) setPosition(p uint32, pos Position, high uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.viewLocked(p)
	sp.Position, sp.Known = pos, true
	sp.HighWatermark = max(sp.HighWatermark, high)
}

// setStream records the node now serving partition p ("" for none).
func (s *Subscription) setStream(p uint32, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.viewLocked(p)
	sp.Addr = addr
	if addr != "" {
		sp.Streams++
	}
}

// Partitions reports on each partition the subscription has started, in
// partition order.
func (s *Subscription) Partitions() []SubscriptionPartition {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SubscriptionPartition, 0, len(s.mu.partitions))
	for _, sp := range s.mu.partitions {
		v := *sp
		if v.Known {
			v.Lag = v.HighWatermark - min(v.HighWatermark, v.Position.Offset)
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b SubscriptionPartition) int { return cmp.Compare(a.Partition, b.Partition) })
	return out
}

// Positions returns where each partition whose position is known resumes:
// give it as SubscribeOptions.Resume to a new subscription (or iterate
// All again) to go on with no gap and no repeat.
func (s *Subscription) Positions() map[uint32]Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[uint32]Position, len(s.mu.partitions))
	for p, sp := range s.mu.partitions {
		if sp.Known {
			out[p] = sp.Position
		}
	}
	return out
}

// Lag is the sum over the partitions of the offsets between the caller's
// position and the partition's high watermark, as last heard from an
// event or a heartbeat (every SubscribeOptions.Heartbeat while a stream
// is idle). It counts events the filters would skip, and events received
// but not yet taken by the caller. 0 before anything was heard.
func (s *Subscription) Lag() uint64 {
	var lag uint64
	for _, p := range s.Partitions() {
		lag += p.Lag
	}
	return lag
}
