package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/heraldlog/herald/client/heraldpb"
)

// subscribeIdleHeartbeats is how many heartbeat intervals a stream may
// stay silent before it is taken for dead (a node paused or cut off
// without closing the connection) and resumed elsewhere.
const subscribeIdleHeartbeats = 3

// subscribeItem is what a partition's streamer hands the caller's
// goroutine: one server response, or the error that ends the iteration.
type subscribeItem struct {
	feed *feed
	// gen is the stream the response came on; credit is given back to
	// that stream only (a new stream starts with a full window).
	gen        uint64
	resp       *heraldpb.SubscribeResponse
	eventBytes uint64 // the credit bytes the server charged for resp's events
	err        error
}

// feed is one partition's credit ledger, shared by its streamer (which
// opens streams and sends grants) and the caller's goroutine (which gives
// credit back as it takes events).
type feed struct {
	partition uint32
	wake      chan struct{} // capacity 1: credit is waiting to be granted

	mu struct {
		sync.Mutex
		gen           uint64 // the current stream
		events, bytes uint64 // taken on stream gen, not granted yet
	}
}

// newStream starts a new stream's ledger and returns its generation.
func (f *feed) newStream() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.gen++
	f.mu.events, f.mu.bytes = 0, 0
	return f.mu.gen
}

// giveBack records events and bytes taken from stream gen, and wakes the
// grant sender once a quarter of either window is due: a stream whose
// server ran out of credit always has at least that much due, so it never
// stalls.
func (f *feed) giveBack(gen, events, bytes uint64, windowEvents, windowBytes uint32) {
	f.mu.Lock()
	if gen != f.mu.gen {
		f.mu.Unlock()
		return
	}
	f.mu.events += events
	f.mu.bytes += bytes
	due := f.mu.events >= max(uint64(windowEvents)/4, 1) || f.mu.bytes >= max(uint64(windowBytes)/4, 1)
	f.mu.Unlock()
	if due {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// take returns the credit due to stream gen and clears it.
func (f *feed) take(gen uint64) (events, bytes uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if gen != f.mu.gen {
		return 0, 0
	}
	events, bytes = f.mu.events, f.mu.bytes
	f.mu.events, f.mu.bytes = 0, 0
	return events, bytes
}

// subscribeRoutes is the topic's layout as a subscription sees it: the
// partitions read and the addresses of each one's replicas.
type subscribeRoutes struct {
	partitions []uint32

	mu struct {
		sync.Mutex
		replicas map[uint32][]string // partition -> gRPC addresses, by node id
	}
}

// resolve loads the topic's metadata: the partitions to read (checked
// against the topic) and their replicas.
func (s *Subscription) resolve(ctx context.Context) (*subscribeRoutes, error) {
	md, err := s.c.Metadata(ctx, s.topic)
	if err != nil {
		return nil, err
	}
	info := describedTopic(md, s.topic)
	if info == nil {
		return nil, TopicNotFound(s.topic)
	}
	count := info.GetConfig().GetPartitions()
	for _, p := range info.GetPartitions() {
		count = max(count, p.GetIndex()+1)
	}
	r := &subscribeRoutes{partitions: slices.Clone(s.opts.Partitions)}
	switch {
	case r.partitions != nil:
	case s.opts.TenantID != "" && tenantOrdered(info.GetConfig().GetOrdering()):
		r.partitions = []uint32{PartitionForTenant(s.opts.TenantID, count)}
	default:
		for p := range count {
			r.partitions = append(r.partitions, p)
		}
	}
	for _, p := range r.partitions {
		if p >= count {
			return nil, PartitionNotFound(s.topic, p)
		}
	}
	r.update(md, s.topic)
	return r, nil
}

// tenantOrdered reports whether a topic ordered so keeps all of a
// tenant's events in one partition (per tenant, the unspecified default).
func tenantOrdered(o heraldpb.Ordering) bool {
	return o != OrderingPerKey && o != OrderingNone
}

// describedTopic returns topic's description in md, or nil.
func describedTopic(md *MetadataResponse, topic string) *TopicInfo {
	for _, t := range md.GetTopics() {
		if t.GetConfig().GetName() == topic {
			return t
		}
	}
	return nil
}

// update records each partition's replica addresses from a Metadata
// answer; a partition the answer does not describe keeps what it had.
func (r *subscribeRoutes) update(md *MetadataResponse, topic string) {
	addrs := make(map[string]string, len(md.GetNodes()))
	for _, n := range md.GetNodes() {
		addrs[n.GetId()] = n.GetGrpcAddr()
	}
	info := describedTopic(md, topic)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.replicas == nil {
		r.mu.replicas = make(map[uint32][]string)
	}
	for _, p := range info.GetPartitions() {
		ids := slices.Sorted(slices.Values(p.GetReplicas()))
		var list []string
		for _, id := range ids {
			if a := addrs[id]; a != "" {
				list = append(list, a)
			}
		}
		if len(list) > 0 {
			r.mu.replicas[p.GetIndex()] = list
		}
	}
}

// replicas returns partition p's replica addresses as last known.
func (r *subscribeRoutes) replicas(p uint32) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.replicas[p]
}

// streamPosition is where a partition's next stream starts.
type streamPosition struct {
	Position      // the offset (when known) and epoch (0: any)
	known    bool // false: from SubscribeOptions.Start
}

// streamer keeps one partition's stream open: it opens a stream on a
// replica, hands its responses to the caller's goroutine in order, and
// when the stream fails opens another where the last one stopped. It is
// owned by Subscription.run, which cancels its context and waits for it.
type streamer struct {
	sub    *Subscription
	routes *subscribeRoutes
	feed   *feed
	out    chan<- subscribeItem
	// pos is the position after the last response handed over: where
	// the next stream starts. Owned by the streamer's goroutine.
	pos streamPosition
	// turn picks the next replica: partitions start at a random replica,
	// and each failure moves on to the next one.
	turn int
}

// run opens streams until ctx ends or one fails for good; a failure for
// good is handed over as the item that ends the iteration.
func (st *streamer) run(ctx context.Context) {
	c := st.sub.c
	p := st.feed.partition
	st.turn = rand.IntN(1 << 16)
	failures := 0
	for {
		if failures > 0 {
			if err := sleep(ctx, c.backoff.delay(failures-1)); err != nil {
				return
			}
		}
		progressed, addr, err := st.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			failures = 0
		}
		failures++
		if !subscribeRetryable(err) || failures > c.cfg.MaxRetries {
			if subscribeRetryable(err) {
				err = fmt.Errorf("client: subscription to %s/%d: gave up after %d failed streams: %w", st.sub.topic, p, failures, err)
			}
			st.handOver(ctx, subscribeItem{feed: st.feed, err: err})
			return
		}
		st.turn++
		c.log.DebugContext(ctx, "herald: subscription stream ended; resuming", "topic", st.sub.topic, "partition", p,
			"addr", addr, "offset", st.pos.Offset, "known", st.pos.known, "failures", failures, "err", err)
		if failures > 1 || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotLeader) {
			// The replicas may have moved: learn them again (best effort).
			if md, err := c.Metadata(ctx, st.sub.topic); err == nil {
				st.routes.update(md, st.sub.topic)
			}
		}
	}
}

// handOver passes it to the caller's goroutine unless ctx ends first.
func (st *streamer) handOver(ctx context.Context, it subscribeItem) bool {
	select {
	case st.out <- it:
		return true
	case <-ctx.Done():
		return false
	}
}

// session runs one stream: it returns whether the stream received
// anything, the node it was on and why it ended.
func (st *streamer) session(ctx context.Context) (progressed bool, addr string, err error) {
	c, p := st.sub.c, st.feed.partition
	if !st.pos.known && st.sub.opts.Start.kind == startLatest {
		// Fix "latest" once, so that a stream that fails before its first
		// response does not move it later and lose events.
		resp, err := c.Fetch(ctx, &FetchRequest{Topic: st.sub.topic, Partition: p, MaxEvents: 1,
			Start: &FetchFromPosition{Position: Latest}})
		if err != nil {
			return false, "", err
		}
		st.pos = streamPosition{known: true, Position: Position{Offset: resp.GetNextOffset(), Epoch: st.pos.Epoch}}
		// Nothing was handed over yet: the caller's position is this one.
		st.sub.setPosition(p, st.pos.Position, resp.GetHighWatermark())
	}
	replicas := st.routes.replicas(p)
	if len(replicas) == 0 {
		replicas = c.meta.servers()
	}
	addr = replicas[st.turn%len(replicas)]
	hc, err := c.pool.client(addr)
	if err != nil {
		return false, addr, err
	}

	streamCtx, cancel := context.WithCancel(ctx)
	var senders sync.WaitGroup
	defer senders.Wait()
	defer cancel()
	stream, err := hc.Subscribe(streamCtx, grpc.ForceCodec(subscribeCodec{}))
	if err != nil {
		return false, addr, FromStatus(err)
	}
	gen := st.feed.newStream()
	if err := stream.Send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Start{Start: st.start()}}); err != nil {
		return false, addr, st.recvError(stream, err)
	}
	st.sub.setStream(p, addr)
	defer st.sub.setStream(p, "")
	// The grant sender owns stream.Send from here on; it ends with the
	// stream's context.
	senders.Go(func() { st.sendGrants(streamCtx, stream, gen) })

	idle := st.sub.opts.Heartbeat * subscribeIdleHeartbeats
	var timedOut atomic.Bool
	watchdog := time.AfterFunc(idle, func() { timedOut.Store(true); cancel() })
	defer watchdog.Stop()
	for {
		watchdog.Reset(idle)
		frame := &subscribeFrame{resp: &heraldpb.SubscribeResponse{}}
		err := stream.RecvMsg(frame)
		watchdog.Stop()
		if err != nil {
			if timedOut.Load() && ctx.Err() == nil {
				return progressed, addr, fmt.Errorf("client: subscription stream on %s silent for %s: %w", addr, idle, ErrUnavailable)
			}
			if errors.Is(err, io.EOF) {
				return progressed, addr, fmt.Errorf("client: subscription stream on %s ended by the server: %w", addr, ErrUnavailable)
			}
			return progressed, addr, FromStatus(err)
		}
		progressed = true
		if err := st.check(frame.resp); err != nil {
			return progressed, addr, err
		}
		resp := frame.resp
		st.pos = streamPosition{known: true, Position: Position{Offset: resp.GetNextOffset(), Epoch: resp.GetEpoch()}}
		if !st.handOver(ctx, subscribeItem{feed: st.feed, gen: gen, resp: resp, eventBytes: frame.eventBytes}) {
			return progressed, addr, ctx.Err()
		}
	}
}

// recvError returns why a stream whose Send failed ended: gRPC reports
// the stream's status on RecvMsg, Send gives only io.EOF.
func (st *streamer) recvError(stream heraldpb.Herald_SubscribeClient, sendErr error) error {
	if errors.Is(sendErr, io.EOF) {
		if _, err := stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
			return FromStatus(err)
		}
	}
	return FromStatus(sendErr)
}

// start is the SubscribeStart of the streamer's next stream.
func (st *streamer) start() *heraldpb.SubscribeStart {
	o := &st.sub.opts
	s := &heraldpb.SubscribeStart{
		Topic: st.sub.topic, Partition: st.feed.partition, Epoch: st.pos.Epoch,
		TenantId: o.TenantID, Key: o.Key, Headers: o.Headers,
		CreditEvents: o.CreditEvents, CreditBytes: o.CreditBytes,
		HeartbeatMs: uint32(o.Heartbeat / time.Millisecond),
	}
	if st.pos.known {
		s.Start = &heraldpb.SubscribeStart_Offset{Offset: st.pos.Offset}
		return s
	}
	switch from := o.Start; from.kind {
	case startLatest:
		s.Start = &heraldpb.SubscribeStart_Position{Position: Latest}
	case startOffset:
		s.Start = &heraldpb.SubscribeStart_Offset{Offset: from.n}
	case startSequence:
		s.Start = &heraldpb.SubscribeStart_Sequence{Sequence: from.n}
	case startTime:
		s.Start = &heraldpb.SubscribeStart_TimeUnixNano{TimeUnixNano: from.at}
	default:
		s.Start = &heraldpb.SubscribeStart_Position{Position: Earliest}
	}
	return s
}

// check holds a response to the subscription contract against the
// streamer's position, before anything of it is handed over.
func (st *streamer) check(resp *heraldpb.SubscribeResponse) error {
	p := st.feed.partition
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: subscription to %s/%d at %d (epoch %d): %s", ErrInconsistentStream,
			st.sub.topic, p, st.pos.Offset, st.pos.Epoch, fmt.Sprintf(format, args...))
	}
	if resp.GetPartition() != p {
		return bad("a response for partition %d", resp.GetPartition())
	}
	if st.pos.Epoch != 0 && resp.GetEpoch() != st.pos.Epoch {
		return bad("a response of epoch %d", resp.GetEpoch())
	}
	from := uint64(0)
	if st.pos.known {
		from = st.pos.Offset
	}
	if resp.GetNextOffset() < from {
		return bad("next offset %d", resp.GetNextOffset())
	}
	events := resp.GetEvents()
	for i, e := range events {
		switch {
		case e.GetPartition() != p:
			return bad("event %d is of partition %d", i, e.GetPartition())
		case e.GetOffset() < from:
			return bad("event %d has offset %d", i, e.GetOffset())
		case i > 0 && e.GetOffset() <= events[i-1].GetOffset():
			return bad("event %d has offset %d after %d", i, e.GetOffset(), events[i-1].GetOffset())
		}
	}
	if n := len(events); n > 0 && resp.GetNextOffset() <= events[n-1].GetOffset() {
		return bad("next offset %d does not pass the last event (%d)", resp.GetNextOffset(), events[n-1].GetOffset())
	}
	if resp.GetHeartbeat() && len(events) > 0 {
		return bad("a heartbeat with %d events", len(events))
	}
	return nil
}

// sendGrants sends the credit the caller gave back on stream gen, until
// the stream's context ends. It is the stream's only sender after start.
func (st *streamer) sendGrants(ctx context.Context, stream heraldpb.Herald_SubscribeClient, gen uint64) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.feed.wake:
		}
		events, bytes := st.feed.take(gen)
		if events == 0 && bytes == 0 {
			continue
		}
		grant := &heraldpb.SubscribeCredit{Events: uint32(min(events, 1<<32-1)), Bytes: uint32(min(bytes, 1<<32-1))}
		if err := stream.Send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Credit{Credit: grant}}); err != nil {
			// The stream is failing; its receiver will see why.
			return
		}
	}
}

// subscribeRetryable reports whether a stream that ended with err may be
// resumed on another node: anything but a Herald answer about the request
// itself (OFFSET_OUT_OF_RANGE, EPOCH_CHANGED, TOPIC_NOT_FOUND, ...) and
// the gRPC codes that say the same.
func subscribeRetryable(err error) bool {
	if errors.Is(err, ErrInconsistentStream) || errors.Is(err, ErrClosed) {
		return false
	}
	switch errorReason(err) {
	case heraldpb.ErrorReason_NO_LEADER, heraldpb.ErrorReason_NOT_LEADER, heraldpb.ErrorReason_QUEUE_FULL,
		heraldpb.ErrorReason_CORRUPTION: // another replica may hold a sound copy
		return true
	case heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED:
	default:
		return false
	}
	switch errorCode(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.Unauthenticated, codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented:
		return false
	}
	return true
}
