package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition"
)

// Subscription limits and defaults (herald.proto, SubscribeStart).
const (
	subscribeCreditEventsDefault = 1000
	subscribeCreditBytesDefault  = 4 << 20
	subscribeHeartbeatDefault    = 5 * time.Second
	subscribeHeartbeatMin        = 100 * time.Millisecond
	subscribeBatchEventsMax      = 500
)

// subscribeEventsField is SubscribeResponse.events: the same number as
// FetchResponse.events, so the encodings appendWireEvent makes (once per
// record, in the partition's Tail) serve both.
var subscribeEventsField = fieldNumber((&heraldpb.SubscribeResponse{}).ProtoReflect().Descriptor(), "events", protoreflect.MessageKind)

func init() {
	if subscribeEventsField != fetchEventsField {
		panic("server: SubscribeResponse.events and FetchResponse.events must share a field number")
	}
}

// tails keeps one partition.Tail per open replica that has subscribers,
// shared by all of them; the last subscriber to leave drops it.
type tails struct {
	mu   sync.Mutex
	byID map[*partition.Replica]*tailRef
}

type tailRef struct {
	tail *partition.Tail
	refs int
}

// acquire returns r's tail (made on first use); release it when done.
func (ts *tails) acquire(r *partition.Replica, index uint32) (*partition.Tail, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.byID == nil {
		ts.byID = make(map[*partition.Replica]*tailRef)
	}
	if ref, ok := ts.byID[r]; ok {
		ref.refs++
		return ref.tail, nil
	}
	t, err := partition.NewTail(r, partition.TailOptions{Encode: func(rec *heraldlog.Record) []byte {
		return appendWireEvent(nil, rec, index)
	}})
	if err != nil {
		return nil, err
	}
	ts.byID[r] = &tailRef{tail: t, refs: 1}
	return t, nil
}

func (ts *tails) release(r *partition.Replica) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ref, ok := ts.byID[r]; ok {
		if ref.refs--; ref.refs == 0 {
			delete(ts.byID, r)
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

// subscribeStartError checks the first message of a Subscribe stream.
func subscribeStartError(req *heraldpb.SubscribeRequest) (*heraldpb.SubscribeStart, error) {
	start := req.GetStart()
	if start == nil {
		return nil, wire.InvalidArgument("start", "the first message of a subscription must be start")
	}
	if start.GetStart() == nil {
		return nil, wire.InvalidArgument("start", "a subscription needs a start: offset, sequence, position or time")
	}
	if _, ok := start.GetStart().(*heraldpb.SubscribeStart_Sequence); ok && start.GetTenantId() == "" {
		return nil, wire.InvalidArgument("tenant_id", "a subscription from a tenant sequence needs tenant_id")
	}
	if p, ok := start.GetStart().(*heraldpb.SubscribeStart_Position); ok &&
		p.Position != heraldpb.StartPosition_EARLIEST && p.Position != heraldpb.StartPosition_LATEST {
		return nil, wire.InvalidArgument("position", "unknown start position %v", p.Position)
	}
	return start, nil
}

// subscribeHeartbeat returns the stream's heartbeat interval.
func subscribeHeartbeat(ms uint32) time.Duration {
	if ms == 0 {
		return subscribeHeartbeatDefault
	}
	return max(time.Duration(ms)*time.Millisecond, subscribeHeartbeatMin)
}

// frameEntries appends the entries that pass f (and have not expired) to
// dst as SubscribeResponse.events, within the credit left; it returns the
// frame, how many entries it examined (the position moves past them all)
// and how many events and bytes it took.
func frameEntries(dst []byte, entries []partition.TailEntry, f *subscribeFilter, events, bytes int64, now int64) ([]byte, int, int64, int64) {
	var sentEvents, sentBytes int64
	for i := range entries {
		e := &entries[i]
		rec := &e.Record
		if (rec.ExpireAtUnixNano != 0 && rec.ExpireAtUnixNano <= now) || !f.matches(rec) {
			continue
		}
		if sentEvents == events || (sentEvents > 0 && sentBytes+int64(len(e.Wire)) > bytes) {
			return dst, i, sentEvents, sentBytes
		}
		dst = append(dst, e.Wire...)
		sentEvents++
		sentBytes += int64(len(e.Wire))
	}
	return dst, len(entries), sentEvents, sentBytes
}

// Subscribe serves one partition's events in offset order from this
// node's replica of it (docs/protocol.md, "Subscriptions"). Everything a
// replica has applied is committed, so any replica serves; only a LATEST
// start and an offset above this replica's high watermark ask the leader.
// The stream keeps no state but its position, credit and filters: a client
// resumes anywhere with next_offset and the epoch.
func (s *heraldService) Subscribe(stream heraldpb.Herald_SubscribeServer) error {
	n := s.node
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start, err := subscribeStartError(first)
	if err != nil {
		return err
	}
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
		return wire.NoLeader(fmt.Sprintf("partition %d of %s on node %s (no replica here; subscribe on one of %v)",
			p.Index, t.Name, n.cfg.NodeID, p.Replicas))
	}
	if e := start.GetEpoch(); e != 0 && e != p.GroupID {
		return wire.EpochChanged(e, p.GroupID, r.LowWatermark(), r.HighWatermark())
	}
	filter := &subscribeFilter{tenant: start.GetTenantId(), key: start.GetKey(), hasKey: start.Key != nil, headers: start.GetHeaders()}
	from, err := s.subscribeFrom(ctx, r, p.Index, t.Name, start, filter)
	if err != nil {
		return err
	}
	tail, err := n.tails.acquire(r, p.Index)
	if err != nil {
		return err
	}
	defer n.tails.release(r)

	credit := newSubscribeCredit(start.GetCreditEvents(), start.GetCreditBytes())
	// The receiver is owned by this handler's stream: it ends when the
	// client closes its side or the stream ends (gRPC cancels the stream
	// when the handler returns, and Recv returns).
	recvErr := make(chan error, 1)
	go func() { recvErr <- credit.receive(stream) }()

	n.metrics.subscriptions.Inc()
	defer n.metrics.subscriptions.Dec()
	n.logger.Debug("subscribe: start", "topic", t.Name, "partition", p.Index, "from", from, "tenant", filter.tenant)

	heartbeat := subscribeHeartbeat(start.GetHeartbeatMs())
	timer := time.NewTimer(heartbeat)
	defer timer.Stop()
	next := from
	for {
		if n.replica(p.GroupID) != r {
			// The replica closed or was reopened under the stream: the
			// client resumes from its position, here or elsewhere.
			return wire.NoLeader(fmt.Sprintf("partition %d of %s on node %s (its replica here closed; resume the subscription)",
				p.Index, t.Name, n.cfg.NodeID))
		}
		changed := r.Changed()
		events, bytes := credit.left()
		sent := false
		if events > 0 && bytes > 0 {
			pageBytes := int(min(bytes, subscribeCreditBytesDefault))
			entries, held, err := tail.Since(next, subscribeBatchEventsMax, pageBytes)
			if err == nil && !held {
				n.metrics.subscribeReads.WithLabelValues("own").Inc()
				entries, err = tail.ReadPage(next, subscribeBatchEventsMax, pageBytes)
			} else if err == nil && len(entries) > 0 {
				n.metrics.subscribeReads.WithLabelValues("tail").Inc()
			}
			if err != nil {
				return readError(err)
			}
			if len(entries) > 0 {
				frame, examined, nEvents, nBytes := frameEntries(nil, entries, filter, events, bytes, time.Now().UnixNano())
				next = entries[examined-1].Record.Offset + 1
				if nEvents > 0 {
					resp := &heraldpb.SubscribeResponse{Partition: p.Index, Epoch: p.GroupID,
						HighWatermark: r.HighWatermark(), LowWatermark: r.LowWatermark(), NextOffset: next}
					resp.ProtoReflect().SetUnknown(frame)
					if err := stream.Send(resp); err != nil {
						return err
					}
					credit.take(nEvents, nBytes)
					n.metrics.subscribeEvents.WithLabelValues(t.Name).Add(float64(nEvents))
					timer.Reset(heartbeat)
				}
				sent = true
			}
		}
		if sent {
			continue
		}
		select {
		case <-changed:
		case <-credit.wake:
		case <-timer.C:
			hb := &heraldpb.SubscribeResponse{Partition: p.Index, Epoch: p.GroupID, Heartbeat: true,
				HighWatermark: r.HighWatermark(), LowWatermark: r.LowWatermark(), NextOffset: next}
			if err := stream.Send(hb); err != nil {
				return err
			}
			n.metrics.subscribeHeartbeats.Inc()
			timer.Reset(heartbeat)
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				recvErr = nil // the client sends no more credit; keep serving it
				continue
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stop:
			return wire.NodeStopping(n.cfg.NodeID)
		}
	}
}

// subscribeFrom resolves a subscription's start to an offset on the local
// replica r, checking it the way Fetch would.
func (s *heraldService) subscribeFrom(ctx context.Context, r *partition.Replica, index uint32, topic string, start *heraldpb.SubscribeStart, f *subscribeFilter) (uint64, error) {
	n := s.node
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
		resp, err := s.Fetch(ctx, &heraldpb.FetchRequest{Topic: topic, Partition: index,
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
		if _, err := s.Fetch(ctx, &heraldpb.FetchRequest{Topic: topic, Partition: index,
			Start: &heraldpb.FetchRequest_Offset{Offset: off}, MaxEvents: 1}); err != nil {
			return 0, err
		}
		return off, nil
	}
	return 0, wire.InvalidArgument("start", "a subscription needs a start")
}

// subscribeCredit is a subscription's credit: what the client granted and
// the server has not used yet.
type subscribeCredit struct {
	mu     sync.Mutex
	events int64
	bytes  int64
	wake   chan struct{} // one pending wake-up at most
}

func newSubscribeCredit(events, bytes uint32) *subscribeCredit {
	c := &subscribeCredit{events: int64(events), bytes: int64(bytes), wake: make(chan struct{}, 1)}
	if c.events == 0 {
		c.events = subscribeCreditEventsDefault
	}
	if c.bytes == 0 {
		c.bytes = subscribeCreditBytesDefault
	}
	return c
}

func (c *subscribeCredit) left() (events, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.events, c.bytes
}

func (c *subscribeCredit) take(events, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events -= events
	c.bytes = max(c.bytes-bytes, 0)
}

// receive adds the client's grants until the stream ends; any message but
// a credit grant is an error.
func (c *subscribeCredit) receive(stream heraldpb.Herald_SubscribeServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		g := req.GetCredit()
		if g == nil {
			return wire.InvalidArgument("credit", "after start, a subscription takes only credit messages")
		}
		c.mu.Lock()
		c.events = min(c.events+int64(g.GetEvents()), 1<<31)
		c.bytes = min(c.bytes+int64(g.GetBytes()), 1<<40)
		c.mu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}
