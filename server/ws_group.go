package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// Consumer groups over WebSocket (docs/protocol.md, "Consumer groups over
// WebSocket"): a group_subscribe makes the gateway a member of the group
// on the connection's behalf. The socket is only transport: the member is
// the Go SDK's group consumer (client.ConsumeGroup), run by the gateway
// through a client.Client of its own that reaches the cluster over gRPC
// like any other member (joining and heartbeating with the group's
// coordinator, one GroupConsume stream per owned partition on that
// partition's leader, following rebalances and leader moves). Reusing it,
// rather than the node's own coordinator and GroupConsume handlers, keeps
// one implementation of a member: those handlers serve only the
// partitions this node leads and forward nothing, so a member on one
// node's socket needs the SDK's routing anyway.
//
// Each group subscription is one goroutine (run), counted in the
// connection's wg, that owns its consumer: it takes the consumer's
// messages, gathers those of one partition and generation into a
// group_events frame and queues it on the connection's send queue. It
// ends when the client sends group_unsubscribe, when the connection ends
// (the client went, the node stops, or a slow client is closed with 4008)
// or when the consumer ends with an error; it then closes the consumer,
// which leaves the group (bounded by 5 s: otherwise the coordinator
// expires the member after its session timeout), so that its partitions
// move to the other members; what it did not acknowledge is redelivered
// to them. A reconnecting client joins again (with the same member id if
// it likes) and gets what was not acknowledged.
//
// A slow socket does not block the member's streams: while run waits for
// room in the send queue (and closes the connection after the
// slow-consumer timeout, as for subscriptions), the consumer's streams go
// on receiving, dropping batches past their small bound (they are
// redelivered after the group's ack wait).
//
// Acks and nacks name offsets of deliveries the subscription holds: each
// is settled through the message that delivered it (GroupMessage.Ack or
// Nack, on the stream that delivered it) by a goroutine per ack frame,
// counted in the connection's wg, at most wsGroupAcksInflightMax per
// connection (the reader waits beyond), which answers ack_result.

// Limits of consumer groups over WebSocket (docs/protocol.md).
const (
	// wsGroupSubscriptionsMax bounds the group subscriptions of one
	// connection (each is a member with its own streams).
	wsGroupSubscriptionsMax = 8
	// wsGroupDeliveredMax bounds the deliveries a group subscription
	// holds unacknowledged; a batch that would pass it is not sent (its
	// events are redelivered after the group's ack wait).
	wsGroupDeliveredMax = 10_000
	// wsGroupAcksInflightMax bounds one connection's unanswered ack and
	// nack frames; the server reads no more frames from it meanwhile.
	wsGroupAcksInflightMax = 64
	// wsGroupAckParallel bounds the offsets of one ack frame settled at
	// once.
	wsGroupAckParallel = 16
	// wsGroupOffsetsMax bounds the offsets one ack or nack frame names
	// (the most one batch carries).
	wsGroupOffsetsMax = 1000
	// wsGroupAckTimeout bounds the settling of one ack frame.
	wsGroupAckTimeout = 30 * time.Second
	// wsGroupNackDelayMsMax is the longest nack delay (24 h).
	wsGroupNackDelayMsMax = 24 * 60 * 60 * 1000
	// wsGroupClientTimeout bounds the gateway's first connection to the
	// cluster (its client's bootstrap).
	wsGroupClientTimeout = 10 * time.Second
	// Bounds of group_subscribe's numbers (the SDK's and the server's).
	wsGroupBatchEventsMax      = 1000
	wsGroupBatchBytesMax       = 4 << 20
	wsGroupSessionTimeoutMsMin = 1000
	wsGroupSessionTimeoutMsMax = 5 * 60 * 1000
)

// wsGroupClient is the gateway's client of the cluster, made on the first
// group_subscribe and closed when the node closes (after every connection
// ended).
type wsGroupClient struct {
	mu struct {
		sync.Mutex
		c      *client.Client
		closed bool
	}
}

// groupClient returns the gateway's client, connecting it to this node
// first (whose metadata names the others).
func (g *wsGateway) groupClient(ctx context.Context) (*client.Client, error) {
	gc := &g.groupsClient
	gc.mu.Lock()
	defer gc.mu.Unlock()
	if gc.mu.closed {
		return nil, wire.NodeStopping(g.n.cfg.NodeID)
	}
	if gc.mu.c != nil {
		return gc.mu.c, nil
	}
	// Under the lock: concurrent first subscribes wait for one bootstrap.
	ctx, cancel := context.WithTimeout(ctx, wsGroupClientTimeout)
	defer cancel()
	c, err := client.New(ctx, client.Config{Servers: []string{g.n.Addr()},
		Logger: g.n.logger.With("component", "ws_group"),
		// A peer's identity (TLS with the node certificate, or the
		// cluster secret): the gateway's client is this node's own.
		DialOptions: append(g.n.peerAuth.dialOptions(), grpc.WithContextDialer(g.n.cfg.dialer()))})
	if err != nil {
		return nil, err
	}
	gc.mu.c = c
	return c, nil
}

// closeGroupClient closes the gateway's client; Node.Close calls it once
// every connection has ended.
func (g *wsGateway) closeGroupClient() {
	gc := &g.groupsClient
	gc.mu.Lock()
	defer gc.mu.Unlock()
	gc.mu.closed = true
	if gc.mu.c != nil {
		_ = gc.mu.c.Close()
		gc.mu.c = nil
	}
}

// wsConnGroups are a connection's group subscriptions.
type wsConnGroups struct {
	// acks is a semaphore of the ack and nack frames being settled.
	acks chan struct{}
	mu   struct {
		sync.Mutex
		subs map[string]*wsGroupSub
	}
}

func newWSConnGroups() *wsConnGroups {
	gs := &wsConnGroups{acks: make(chan struct{}, wsGroupAcksInflightMax)}
	gs.mu.subs = make(map[string]*wsGroupSub)
	return gs
}

// wsGroupKey names a delivery: partition and offset.
type wsGroupKey struct {
	partition uint32
	offset    uint64
}

// wsGroupSub is one group subscription of a connection.
type wsGroupSub struct {
	id, topic, group, member string
	opts                     client.GroupConsumerOptions
	ctx                      context.Context
	cancel                   context.CancelCauseFunc

	mu struct {
		sync.Mutex
		// generation is the newest generation delivered under; deliveries
		// of older ones are forgotten (their partitions were handed on).
		generation uint64
		// delivered are the deliveries not yet acknowledged, by offset:
		// the newest delivery of each (a redelivery replaces it).
		delivered map[wsGroupKey]*client.GroupMessage
	}
}

// groupSubscribe starts a group subscription (see the file's comment).
func (c *wsConn) groupSubscribe(msg *wsClientMessage) {
	opts, err := msg.groupOptions()
	if err != nil {
		c.sendError(wsErrorOf(msg.ID, wsTypeGroupSubscribe, err))
		return
	}
	if !c.authorize("JoinGroup", &heraldpb.JoinGroupRequest{Topic: msg.Topic, Group: msg.Group}, msg.ID, wsTypeGroupSubscribe) {
		return
	}
	groups := c.groups
	groups.mu.Lock()
	if _, dup := groups.mu.subs[msg.ID]; dup {
		groups.mu.Unlock()
		c.sendError(wsErrorOf(msg.ID, wsTypeGroupSubscribe, wire.InvalidArgument("id",
			"group subscription id %q is in use on this connection (the running one goes on)", msg.ID)))
		return
	}
	if len(groups.mu.subs) >= wsGroupSubscriptionsMax {
		groups.mu.Unlock()
		c.sendError(wsErrorOf(msg.ID, wsTypeGroupSubscribe, wire.InvalidArgument("id",
			"a connection holds at most %d group subscriptions", wsGroupSubscriptionsMax)))
		return
	}
	ctx, cancel := context.WithCancelCause(c.ctx)
	gs := &wsGroupSub{id: msg.ID, topic: msg.Topic, group: msg.Group, member: opts.MemberID, opts: opts, ctx: ctx, cancel: cancel}
	c.groupCallContext(gs)
	gs.mu.delivered = make(map[wsGroupKey]*client.GroupMessage)
	groups.mu.subs[msg.ID] = gs
	groups.mu.Unlock()
	c.wg.Add(1)
	go c.runGroup(gs)
}

// groupOptions checks a group_subscribe frame and translates it into the
// consumer's options (a member id made when the frame has none).
func (m *wsClientMessage) groupOptions() (client.GroupConsumerOptions, error) {
	var o client.GroupConsumerOptions
	if m.Topic == "" {
		return o, wire.InvalidArgument("topic", "group_subscribe needs a topic")
	}
	if m.Group == "" {
		return o, wire.InvalidArgument("group", "group_subscribe needs a group")
	}
	bounded := func(field string, v *int64, lo, hi int64) (int64, error) {
		if v == nil || *v == 0 {
			return 0, nil
		}
		if *v < lo || *v > hi {
			return 0, wire.InvalidArgument(field, "%s %d: want 0 (the default) or %d to %d", field, *v, lo, hi)
		}
		return *v, nil
	}
	events, err := bounded("max_batch_events", m.MaxBatchEvents, 1, wsGroupBatchEventsMax)
	if err != nil {
		return o, err
	}
	bytes, err := bounded("max_batch_bytes", m.MaxBatchBytes, 1, wsGroupBatchBytesMax)
	if err != nil {
		return o, err
	}
	session, err := bounded("session_timeout_ms", m.SessionTimeoutMs, wsGroupSessionTimeoutMsMin, wsGroupSessionTimeoutMsMax)
	if err != nil {
		return o, err
	}
	o.MaxBatchEvents, o.MaxBatchBytes = uint32(events), uint32(bytes)
	o.SessionTimeout = time.Duration(session) * time.Millisecond
	o.MemberID = m.Member
	if o.MemberID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.MemberID = "ws-" + hex.EncodeToString(b[:])
	}
	return o, nil
}

// runGroup serves gs until it ends and says why: group_unsubscribed, or
// an error frame (unless the connection is closing).
func (c *wsConn) runGroup(gs *wsGroupSub) {
	defer c.wg.Done()
	m := c.n.metrics.wsGroup
	log := c.logger.With("group_sub", gs.id, "topic", gs.topic, "group", gs.group, "member", gs.member)
	err := c.serveGroup(gs, log)
	gs.cancel(nil)
	c.groups.mu.Lock()
	if c.groups.mu.subs[gs.id] == gs {
		delete(c.groups.mu.subs, gs.id)
	}
	c.groups.mu.Unlock()
	switch {
	case c.ctx.Err() != nil:
		log.Info("websocket: group subscription ended with the connection")
	case errors.Is(context.Cause(gs.ctx), errWSUnsubscribed):
		log.Info("websocket: group subscription unsubscribed")
		_ = c.sendJSON(c.ctx, wsTypeGroupUnsubscribed, &wire.WSGroupUnsubscribed{Type: wsTypeGroupUnsubscribed, ID: gs.id})
	default:
		log.Warn("websocket: group subscription ended", "err", err)
		m.ended.Inc()
		e := wsErrorOf(gs.id, wsTypeGroupSubscribe, err)
		e.Ended = true
		c.sendError(e)
	}
}

// serveGroup joins the group and forwards its batches until gs's context
// ends (nil) or the member ends with an error; it leaves the group before
// it returns.
func (c *wsConn) serveGroup(gs *wsGroupSub, log *slog.Logger) error {
	cl, err := c.g.groupClient(gs.ctx)
	if err != nil {
		return err
	}
	// The group must exist: refused here, before anything is joined.
	if _, err := cl.DescribeGroup(gs.ctx, gs.topic, gs.group); err != nil {
		return err
	}
	consumer, err := cl.ConsumeGroup(gs.ctx, gs.topic, gs.group, gs.opts)
	if err != nil {
		return err
	}
	m := c.n.metrics.wsGroup
	m.subscriptions.Inc()
	defer m.subscriptions.Dec()
	defer func() {
		// Leaves the group (bounded by the SDK's 5 s).
		if err := consumer.Close(); err != nil {
			log.Debug("websocket: group consumer ended", "err", err)
		}
	}()
	log.Info("websocket: group subscription joining")
	if err := c.sendJSON(gs.ctx, wsTypeGroupSubscribed, &wire.WSGroupSubscribed{Type: wsTypeGroupSubscribed, ID: gs.id,
		Topic: gs.topic, Group: gs.group, Member: gs.member}); err != nil {
		return err
	}
	maxEvents := int(gs.opts.MaxBatchEvents)
	if maxEvents == 0 {
		maxEvents = 100
	}
	maxBytes := int(gs.opts.MaxBatchBytes)
	if maxBytes == 0 {
		maxBytes = 1 << 20
	}
	// now is a context that has ended: Next with it takes only what is
	// at hand.
	now, cancel := context.WithCancel(context.Background())
	cancel()
	var held *client.GroupMessage
	for {
		first := held
		held = nil
		if first == nil {
			if first, err = consumer.Next(gs.ctx); err != nil {
				if gs.ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		batch := []*client.GroupMessage{first}
		size := proto.Size(first.Event)
		for len(batch) < maxEvents {
			next, err := consumer.Next(now)
			if err != nil {
				break // nothing at hand, or the consumer ended (the blocking Next says so)
			}
			if s := proto.Size(next.Event); next.Partition != first.Partition || next.Generation != first.Generation || size+s > maxBytes {
				held = next
				break
			}
			size += proto.Size(next.Event)
			batch = append(batch, next)
		}
		if !gs.record(batch) {
			m.dropped.Add(float64(len(batch)))
			log.Debug("websocket: group batch not sent: the subscription holds the most unacknowledged deliveries; redelivered after the ack wait",
				"partition", first.Partition, "events", len(batch))
			continue
		}
		data, err := json.Marshal(wsGroupEventsFrame(gs.id, batch))
		if err != nil {
			return err
		}
		if err := c.send(gs.ctx, wsTypeGroupEvents, data); err != nil {
			if gs.ctx.Err() != nil {
				return nil
			}
			return err
		}
		m.events.Add(float64(len(batch)))
	}
}

// record adds batch to the deliveries held (forgetting those of older
// generations); false, and nothing recorded, if it would pass
// wsGroupDeliveredMax.
func (gs *wsGroupSub) record(batch []*client.GroupMessage) bool {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if g := batch[0].Generation; g > gs.mu.generation {
		gs.mu.generation = g
		for k, m := range gs.mu.delivered {
			if m.Generation < g {
				delete(gs.mu.delivered, k)
			}
		}
	}
	added := 0
	for _, m := range batch {
		if _, ok := gs.mu.delivered[wsGroupKey{m.Partition, m.Offset}]; !ok {
			added++
		}
	}
	if len(gs.mu.delivered)+added > wsGroupDeliveredMax {
		return false
	}
	for _, m := range batch {
		gs.mu.delivered[wsGroupKey{m.Partition, m.Offset}] = m
	}
	return true
}

// wsGroupEventsFrame builds the group_events frame of batch (one
// partition, one generation).
func wsGroupEventsFrame(id string, batch []*client.GroupMessage) *wire.WSGroupEvents {
	f := &wire.WSGroupEvents{Type: wsTypeGroupEvents, ID: id, Partition: batch[0].Partition, Generation: batch[0].Generation,
		Events: make([]wire.WSGroupEvent, len(batch))}
	for i, m := range batch {
		ev := m.Event
		out := wire.WSEvent{Offset: m.Offset, Sequence: ev.GetSequence(), Partition: m.Partition, Tenant: ev.GetTenantId(),
			EventID: ev.GetEventId(), Time: time.Unix(0, ev.GetProducedAtUnixNano()).UTC().Format(time.RFC3339Nano),
			Key: ev.GetKey(), Headers: ev.GetHeaders(), Payload: ev.GetPayload(), CausationID: ev.GetCausationId(),
			CorrelationID: ev.GetCorrelationId(), Traceparent: ev.GetTraceparent(), ContentType: ev.GetContentType(),
			Schema: ev.GetSchema(), SchemaVersion: ev.GetSchemaVersion(), TTLMs: ev.GetTtlMs(), ProducerID: ev.GetProducerId(),
			ProducerSeq: ev.GetProducerSeq()}
		if out.Payload == nil {
			out.Payload = []byte{}
		}
		f.Events[i] = wire.WSGroupEvent{WSEvent: out, DeliveryCount: m.DeliveryCount}
	}
	return f
}

// groupUnsubscribe ends a group subscription: it leaves the group, then
// answers group_unsubscribed.
func (c *wsConn) groupUnsubscribe(msg *wsClientMessage) {
	c.groups.mu.Lock()
	gs, ok := c.groups.mu.subs[msg.ID]
	c.groups.mu.Unlock()
	if !ok {
		c.sendError(wsErrorOf(msg.ID, wsTypeGroupUnsubscribe, wire.InvalidArgument("id", "no group subscription %q on this connection", msg.ID)))
		return
	}
	gs.cancel(errWSUnsubscribed)
}

// String names a group subscription in logs and errors.
func (gs *wsGroupSub) String() string {
	return fmt.Sprintf("group subscription %s (member %s of group %s of %s)", gs.id, gs.member, gs.group, gs.topic)
}
