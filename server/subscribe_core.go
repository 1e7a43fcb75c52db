package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition"
)

// The subscription engine, shared by the transports that serve
// subscriptions (gRPC Subscribe in service_subscribe.go, the WebSocket
// gateway in ws_gateway.go): start resolution and the epoch check
// (openSubscription), the shared partition.Tail of each replica, filters
// and TTL skipping (selectEntries), and the serving loop (run). A
// transport supplies a subscriptionSink: how much it may send now, and how
// to send a batch or a heartbeat in its own encoding.

// tailFormat names the encoding a tail holds: each transport's tail
// encodes every record once, for all of its subscribers.
type tailFormat uint8

const (
	// tailProto holds SubscribeResponse.events entries (appendWireEvent).
	tailProto tailFormat = iota
	// tailJSON holds the WebSocket gateway's JSON event objects (wsEncodeEvent).
	tailJSON
)

// tails keeps one partition.Tail per open replica and format that has
// subscribers, shared by all of them; the last subscriber to leave drops it.
type tails struct {
	mu   sync.Mutex
	byID map[tailKey]*tailRef
}

type tailKey struct {
	r      *partition.Replica
	format tailFormat
}

type tailRef struct {
	tail *partition.Tail
	refs int
}

// acquire returns r's tail in format (made on first use); release it when done.
func (ts *tails) acquire(r *partition.Replica, index uint32, format tailFormat) (*partition.Tail, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.byID == nil {
		ts.byID = make(map[tailKey]*tailRef)
	}
	k := tailKey{r, format}
	if ref, ok := ts.byID[k]; ok {
		ref.refs++
		return ref.tail, nil
	}
	encode := func(rec *heraldlog.Record) []byte { return appendWireEvent(nil, rec, index) }
	if format == tailJSON {
		encode = func(rec *heraldlog.Record) []byte { return wsEncodeEvent(rec, index) }
	}
	t, err := partition.NewTail(r, partition.TailOptions{Encode: encode})
	if err != nil {
		return nil, err
	}
	ts.byID[k] = &tailRef{tail: t, refs: 1}
	return t, nil
}

func (ts *tails) release(r *partition.Replica, format tailFormat) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	k := tailKey{r, format}
	if ref, ok := ts.byID[k]; ok {
		if ref.refs--; ref.refs == 0 {
			delete(ts.byID, k)
		}
	}
}

// subscribeFilter is what a subscription keeps of the events it reads.
type subscribeFilter struct {
	tenant string
	// minSeq drops tenant's events below it (a start from a tenant
	// sequence begins at an offset that may precede it).
	minSeq  uint64
	key     []byte
	hasKey  bool
	headers map[string]string
}

// matches reports whether rec passes the filter.
func (f *subscribeFilter) matches(rec *heraldlog.Record) bool {
	if f.tenant != "" && (rec.Tenant != f.tenant || rec.Sequence < f.minSeq) {
		return false
	}
	if !f.hasKey && len(f.headers) == 0 {
		return true
	}
	return bodyMatches(rec.Body, f)
}

// Field numbers of the stored event body read by the filters.
var (
	eventKeyField     = fieldNumber(eventDescriptor, "key", protoreflect.BytesKind)
	eventHeadersField = eventDescriptor.Fields().ByName("headers").Number()
)

// bodyMatches scans a stored event body for its key and headers without
// decoding it. A body it cannot parse matches nothing.
func bodyMatches(body []byte, f *subscribeFilter) bool {
	keyOK := !f.hasKey
	var key []byte
	seen := 0
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return false
		}
		body = body[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, body)
			if m < 0 {
				return false
			}
			body = body[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(body)
		if m < 0 {
			return false
		}
		body = body[m:]
		switch num {
		case eventKeyField:
			key = v
		case eventHeadersField:
			k, val, ok := mapEntry(v)
			if !ok {
				return false
			}
			if want, named := f.headers[k]; named && want == val {
				seen++
			}
		}
	}
	if f.hasKey {
		keyOK = string(key) == string(f.key)
	}
	return keyOK && seen == len(f.headers)
}

// mapEntry decodes one map<string,string> entry.
func mapEntry(b []byte) (k, v string, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return "", "", false
		}
		b = b[n:]
		s, m := protowire.ConsumeString(b)
		if m < 0 {
			return "", "", false
		}
		b = b[m:]
		switch num {
		case 1:
			k = s
		case 2:
			v = s
		}
	}
	return k, v, true
}

// checkSubscribeStart checks a subscription's start as either transport
// received it (the WebSocket gateway translates its JSON into a
// SubscribeStart first).
func checkSubscribeStart(start *heraldpb.SubscribeStart) error {
	if start.GetStart() == nil {
		return wire.InvalidArgument("start", "a subscription needs a start: offset, sequence, position or time")
	}
	if _, ok := start.GetStart().(*heraldpb.SubscribeStart_Sequence); ok && start.GetTenantId() == "" {
		return wire.InvalidArgument("tenant_id", "a subscription from a tenant sequence needs tenant_id")
	}
	if p, ok := start.GetStart().(*heraldpb.SubscribeStart_Position); ok &&
		p.Position != heraldpb.StartPosition_EARLIEST && p.Position != heraldpb.StartPosition_LATEST {
		return wire.InvalidArgument("position", "unknown start position %v", p.Position)
	}
	return nil
}

// subscribeHeartbeat returns a subscription's heartbeat interval.
func subscribeHeartbeat(ms uint32) time.Duration {
	if ms == 0 {
		return subscribeHeartbeatDefault
	}
	return max(time.Duration(ms)*time.Millisecond, subscribeHeartbeatMin)
}

// subscription is one open subscription on this node: the replica it
// reads, the shared tail, its filter and its position. It belongs to the
// goroutine that opened it (one run at a time), which closes it.
type subscription struct {
	n         *Node
	topic     string
	index     uint32
	epoch     uint64 // the partition's group id
	r         *partition.Replica
	tail      *partition.Tail
	format    tailFormat
	filter    *subscribeFilter
	heartbeat time.Duration
	// next is the offset the subscription reads from next.
	next uint64
}

// openSubscription checks start (see checkSubscribeStart), finds the
// local replica, checks the epoch, resolves the start to an offset and
// takes the replica's tail in format. The caller closes what it returns.
func (n *Node) openSubscription(ctx context.Context, start *heraldpb.SubscribeStart, format tailFormat) (*subscription, error) {
	if err := checkSubscribeStart(start); err != nil {
		return nil, err
	}
	t, err := n.lookupTopic(ctx, start.GetTopic())
	if err != nil {
		return nil, err
	}
	if int(start.GetPartition()) >= len(t.Partitions) {
		return nil, wire.PartitionNotFound(t.Name, start.GetPartition())
	}
	p := t.Partitions[start.GetPartition()]
	r := n.replica(p.GroupID)
	if r == nil {
		return nil, wire.NoLeader(fmt.Sprintf("partition %d of %s on node %s (no replica here; subscribe on one of %v)",
			p.Index, t.Name, n.cfg.NodeID, p.Replicas))
	}
	if e := start.GetEpoch(); e != 0 && e != p.GroupID {
		return nil, wire.EpochChanged(e, p.GroupID, r.LowWatermark(), r.HighWatermark())
	}
	filter := &subscribeFilter{tenant: start.GetTenantId(), key: start.GetKey(), hasKey: start.Key != nil, headers: start.GetHeaders()}
	from, err := n.subscribeFrom(ctx, r, p.Index, t.Name, start, filter)
	if err != nil {
		return nil, err
	}
	tail, err := n.tails.acquire(r, p.Index, format)
	if err != nil {
		return nil, err
	}
	n.metrics.subscriptions.Inc()
	return &subscription{n: n, topic: t.Name, index: p.Index, epoch: p.GroupID, r: r, tail: tail, format: format,
		filter: filter, heartbeat: subscribeHeartbeat(start.GetHeartbeatMs()), next: from}, nil
}

// close releases the subscription's tail.
func (s *subscription) close() {
	s.n.tails.release(s.r, s.format)
	s.n.metrics.subscriptions.Dec()
}

// subscribeFrom resolves a subscription's start to an offset on the local
// replica r, checking it the way Fetch would.
func (n *Node) subscribeFrom(ctx context.Context, r *partition.Replica, index uint32, topic string, start *heraldpb.SubscribeStart, f *subscribeFilter) (uint64, error) {
	svc := &heraldService{node: n}
	switch st := start.GetStart().(type) {
	case *heraldpb.SubscribeStart_Position:
		if st.Position == heraldpb.StartPosition_EARLIEST {
			return r.LowWatermark(), nil
		}
		if r.IsLeader() {
			if err := n.leaderCatchUp(ctx, r); err == nil {
				return r.HighWatermark(), nil
			}
		}
		resp, err := svc.Fetch(ctx, &heraldpb.FetchRequest{Topic: topic, Partition: index,
			Start: &heraldpb.FetchRequest_Position{Position: heraldpb.StartPosition_LATEST}})
		if err != nil {
			return 0, err
		}
		return resp.GetNextOffset(), nil
	case *heraldpb.SubscribeStart_TimeUnixNano:
		off, err := r.OffsetForTime(st.TimeUnixNano)
		return off, readError(err)
	case *heraldpb.SubscribeStart_Sequence:
		hw := r.HighWatermark()
		recs, err := r.ReadTenant(f.tenant, max(st.Sequence, 1), 1, 1)
		if err != nil {
			return 0, readError(err)
		}
		f.minSeq = max(st.Sequence, 1)
		if len(recs) > 0 {
			return recs[0].Offset, nil
		}
		return hw, nil
	case *heraldpb.SubscribeStart_Offset:
		off := st.Offset
		if off < r.LowWatermark() {
			return 0, wire.OffsetOutOfRange(off, r.LowWatermark(), r.HighWatermark())
		}
		if off <= r.HighWatermark() {
			return off, nil
		}
		// Above what this replica applied: the leader says whether it
		// exists (Fetch forwards, and a caught-up leader answers).
		if _, err := svc.Fetch(ctx, &heraldpb.FetchRequest{Topic: topic, Partition: index,
			Start: &heraldpb.FetchRequest_Offset{Offset: off}, MaxEvents: 1}); err != nil {
			var oor *wire.OffsetOutOfRangeError
			if errors.As(err, &oor) || errors.Is(err, wire.ErrEpochChanged) || errors.Is(err, wire.ErrInvalidArgument) {
				return 0, err
			}
			// The leader could not be asked (it changed, or was just
			// killed): the subscription answers as documented for a
			// stream to resume, here later or elsewhere.
			return 0, wire.NoLeader(fmt.Sprintf("partition %d of %s (checking offset %d with its leader: %v)", index, topic, off, err))
		}
		return off, nil
	}
	return 0, wire.InvalidArgument("start", "a subscription needs a start")
}

// subscribeBatch is what one step of a subscription sends: the entries
// that passed its filter (shared with the tail: read-only), the offset the
// subscription moved to, and the replica's watermarks.
type subscribeBatch struct {
	entries       []*partition.TailEntry
	bytes         int64 // of the entries' encodings
	next          uint64
	highWatermark uint64
	lowWatermark  uint64
	// reservation is the step's share of the node's fetch budget
	// (limits.go). run gives it back once sendEvents returns, unless the
	// sink took it over (kept): a sink whose transport still holds the
	// batch after sending it gives it back when that is gone.
	reservation *budgetShare
	kept        bool
}

// subscriptionSink is a transport's side of a subscription's run loop.
// The loop calls its methods from one goroutine, in order.
type subscriptionSink interface {
	// room is how many events and bytes (of encodings) the sink takes now;
	// when either is zero the loop waits on wake.
	room() (events, bytes int64)
	// wake is signalled when room may have grown (nil: never).
	wake() <-chan struct{}
	// sendEvents sends a non-empty batch.
	sendEvents(b *subscribeBatch) error
	// sendHeartbeat tells an idle subscriber its position and the
	// replica's watermarks.
	sendHeartbeat(next, high, low uint64) error
}

// selectEntries picks the entries that pass f (and have not expired), within
// events and bytes (the first one goes whatever its size, so a large event
// cannot stall a subscription); it returns them, how many entries it
// examined (the position moves past them all) and the bytes it took.
func selectEntries(entries []partition.TailEntry, f *subscribeFilter, events, bytes int64, now int64) ([]*partition.TailEntry, int, int64) {
	var picked []*partition.TailEntry
	var sentBytes int64
	for i := range entries {
		e := &entries[i]
		rec := &e.Record
		if (rec.ExpireAtUnixNano != 0 && rec.ExpireAtUnixNano <= now) || !f.matches(rec) {
			continue
		}
		if int64(len(picked)) == events || (len(picked) > 0 && sentBytes+int64(len(e.Wire)) > bytes) {
			return picked, i, sentBytes
		}
		picked = append(picked, e)
		sentBytes += int64(len(e.Wire))
	}
	return picked, len(entries), sentBytes
}

// step reads what follows the subscription's position, within events and
// bytes: from the shared tail when the subscription is at it, else a page
// of its own. It returns nil when nothing new was applied; a batch with no
// entries means the position moved past events the filter skipped.
func (s *subscription) step(events, bytes int64) (*subscribeBatch, error) {
	m := s.n.metrics
	pageBytes := int(stepPageBytes(bytes))
	entries, held, err := s.tail.Since(s.next, subscribeBatchEventsMax, pageBytes)
	if err == nil && !held {
		m.subscribeReads.WithLabelValues("own").Inc()
		entries, err = s.tail.ReadPage(s.next, subscribeBatchEventsMax, pageBytes)
	} else if err == nil && len(entries) > 0 {
		m.subscribeReads.WithLabelValues("tail").Inc()
	}
	if err != nil {
		var oor *partition.OffsetOutOfRangeError
		if errors.As(err, &oor) && oor.Requested > oor.High {
			// The subscription has read past where this replica's log now
			// ends: the log went back (a snapshot being restored shows it
			// empty; a rebuilt log refills). The events are committed; wait
			// for the replica to come back (run sends no heartbeat
			// meanwhile, so a client may resume elsewhere), never answer a
			// live stream out of range for them.
			s.n.metrics.subscribeReads.WithLabelValues("behind").Inc()
			return nil, nil
		}
		return nil, readError(err)
	}
	if len(entries) == 0 {
		return nil, nil
	}
	picked, examined, nBytes := selectEntries(entries, s.filter, events, bytes, time.Now().UnixNano())
	s.next = entries[examined-1].Record.Offset + 1
	return &subscribeBatch{entries: picked, bytes: nBytes, next: s.next,
		highWatermark: s.r.HighWatermark(), lowWatermark: s.r.LowWatermark()}, nil
}

// stepPageBytes is the most a step reads for a sink with room for bytes:
// what it reserves of the node's fetch budget.
func stepPageBytes(bytes int64) int64 { return min(bytes, subscribeCreditBytesDefault) }

// sendStep reads one step within events and bytes and sends what it
// found; sent reports a step that moved the position, caughtUp one that
// found nothing new. A batch sent resets the heartbeat timer. It gives
// back the step's reservation (share) unless the sink kept it.
func (s *subscription) sendStep(sink subscriptionSink, events, bytes int64, timer *time.Timer, share *budgetShare) (sent, caughtUp bool, err error) {
	b, err := s.step(events, bytes)
	defer func() {
		if b == nil || !b.kept {
			share.release()
		}
	}()
	if err != nil {
		return false, false, err
	}
	if b == nil {
		return false, true, nil
	}
	b.reservation = share
	if len(b.entries) > 0 {
		if err := sink.sendEvents(b); err != nil {
			return false, false, err
		}
		s.n.metrics.subscribeEvents.WithLabelValues(s.topic).Add(float64(len(b.entries)))
		timer.Reset(s.heartbeat)
	}
	return true, false, nil
}

// errHandedOver: run's caller passed the subscription on (idle said so).
var errHandedOver = errors.New("server: subscription handed over")

// run serves the subscription into sink until ctx ends (it returns
// context.Cause(ctx)), the node stops, the replica closes under it, a
// read fails or the sink does. Offset order, no gap, no repeat: the
// position moves only past what was sent or skipped by the filter.
// When the subscription has caught up (nothing new to read, room to send
// it) and idle (optional) returns true, run returns errHandedOver: idle
// has passed the subscription on, and the caller must not touch it.
func (s *subscription) run(ctx context.Context, sink subscriptionSink, idle func() bool) error {
	n := s.n
	timer := time.NewTimer(s.heartbeat)
	defer timer.Stop()
	for {
		if n.replica(s.epoch) != s.r {
			// The replica closed or was reopened under the subscription:
			// the client resumes from its position, here or elsewhere.
			return wire.NoLeader(fmt.Sprintf("partition %d of %s on node %s (its replica here closed; resume the subscription)",
				s.index, s.topic, n.cfg.NodeID))
		}
		changed := s.r.Changed()
		wake := sink.wake()
		sent, caughtUp := false, false
		if events, bytes := sink.room(); events > 0 && bytes > 0 {
			// The page read and the batch encoded for it hold memory until
			// sent: reserve it of the node's fetch budget first. Without
			// room within a heartbeat, wait below as if the sink had none
			// (the heartbeat goes on; the next turn asks again).
			if share := n.limits.reserveStreamBytes(ctx, stepPageBytes(bytes), s.heartbeat); share != nil {
				var err error
				sent, caughtUp, err = s.sendStep(sink, events, bytes, timer, share)
				if err != nil {
					return err
				}
			}
		}
		if sent {
			continue
		}
		if caughtUp && idle != nil && idle() {
			return errHandedOver
		}
		select {
		case <-changed:
		case <-wake:
		case <-timer.C:
			// A replica whose log is behind the subscription (restoring a
			// snapshot) has no position to report: no heartbeat, so that
			// the client may resume elsewhere.
			if high := s.r.HighWatermark(); high >= s.next {
				if err := sink.sendHeartbeat(s.next, high, s.r.LowWatermark()); err != nil {
					return err
				}
				n.metrics.subscribeHeartbeats.Inc()
			}
			timer.Reset(s.heartbeat)
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-n.stop:
			return wire.NodeStopping(n.cfg.NodeID)
		}
	}
}
