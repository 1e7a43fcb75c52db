package server

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
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

// subscribeStartError checks the first message of a Subscribe stream.
func subscribeStartError(req *heraldpb.SubscribeRequest) (*heraldpb.SubscribeStart, error) {
	start := req.GetStart()
	if start == nil {
		return nil, wire.InvalidArgument("start", "the first message of a subscription must be start")
	}
	return start, checkSubscribeStart(start)
}

// Subscribe serves one partition's events in offset order from this
// node's replica of it (docs/protocol.md, "Subscriptions"). Everything a
// replica has applied is committed, so any replica serves; only a LATEST
// start and an offset above this replica's high watermark ask the leader.
// The stream keeps no state but its position, credit and filters: a client
// resumes anywhere with next_offset and the epoch. The engine is shared
// with the WebSocket gateway (subscribe_core.go); this is its gRPC sink.
func (s *heraldService) Subscribe(stream heraldpb.Herald_SubscribeServer) error {
	n := s.node
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start, err := subscribeStartError(first)
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
	sub, err := n.openSubscription(ctx, start, tailProto)
	if err != nil {
		return err
	}
	defer sub.close()

	credit := newSubscribeCredit(start.GetCreditEvents(), start.GetCreditBytes())
	// The receiver is owned by this handler's stream: it ends when the
	// client closes its side or the stream ends (gRPC cancels the stream
	// when the handler returns, and Recv returns). A client that closes
	// its side sends no more credit and is still served; any other
	// receive error ends the subscription with it.
	go func() {
		if err := credit.receive(stream); !errors.Is(err, io.EOF) {
			cancel(err)
		}
	}()
	n.logger.Debug("subscribe: start", "topic", sub.topic, "partition", sub.index, "from", sub.next, "tenant", sub.filter.tenant)
	sink := &grpcSubscribeSink{stream: stream, sub: sub, credit: credit}
	defer sink.releaseSent()
	return sub.run(ctx, sink, nil)
}

// grpcSubscribeSink sends a subscription as SubscribeResponse messages,
// within the client's credit. It belongs to the Subscribe handler's
// goroutine (run's).
type grpcSubscribeSink struct {
	stream heraldpb.Herald_SubscribeServer
	sub    *subscription
	credit *subscribeCredit
	// sent gives back the fetch-budget reservation of the last batch
	// sent: Send returns once gRPC has queued the message, which it
	// holds until the client's flow control lets it out, so the batch
	// stays counted until the next Send returns (gRPC lets a stream's
	// next message through only once the previous one is written) or the
	// stream ends. A client that stops reading keeps its last batch
	// counted against the node: the budget, not the number of streams,
	// bounds what such clients hold.
	sent *budgetShare
}

// releaseSent gives back the last batch's reservation, if held.
func (g *grpcSubscribeSink) releaseSent() {
	if g.sent != nil {
		g.sent.release()
		g.sent = nil
	}
}

func (g *grpcSubscribeSink) room() (int64, int64)  { return g.credit.left() }
func (g *grpcSubscribeSink) wake() <-chan struct{} { return g.credit.wake }

func (g *grpcSubscribeSink) sendEvents(b *subscribeBatch) error {
	frame := make([]byte, 0, b.bytes)
	for _, e := range b.entries {
		frame = append(frame, e.Wire...)
	}
	resp := &heraldpb.SubscribeResponse{Partition: g.sub.index, Epoch: g.sub.epoch,
		HighWatermark: b.highWatermark, LowWatermark: b.lowWatermark, NextOffset: b.next}
	resp.ProtoReflect().SetUnknown(frame)
	err := g.stream.Send(resp)
	g.releaseSent()
	if err != nil {
		return err
	}
	if b.reservation != nil {
		// What gRPC holds now is the message: about the frame's bytes.
		b.reservation.shrink(int64(len(frame)))
		g.sent, b.kept = b.reservation, true
	}
	g.credit.take(int64(len(b.entries)), b.bytes)
	return nil
}

func (g *grpcSubscribeSink) sendHeartbeat(next, high, low uint64) error {
	err := g.stream.Send(&heraldpb.SubscribeResponse{Partition: g.sub.index, Epoch: g.sub.epoch, Heartbeat: true,
		HighWatermark: high, LowWatermark: low, NextOffset: next})
	g.releaseSent()
	return err
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
