package wsclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldlog/herald/client/wire"
)

// Consumer groups over WebSocket (docs/protocol.md, "Consumer groups over
// WebSocket"): the node's gateway is the group's member on the
// connection's behalf; the connection carries its batches and the acks.

// Limits of a GroupSubscription.
const (
	// groupBatchesMax bounds the batches received and not yet taken by
	// Next. A batch past it is dropped (Dropped counts them): its events
	// are redelivered after the group's ack wait. The reader never waits
	// for Next, so ack results keep flowing.
	groupBatchesMax = 16
	// groupSubscribeTimeout bounds the wait for group_subscribed (the node
	// checks the group and may connect to the cluster first).
	groupSubscribeTimeout = 30 * time.Second
	// groupCloseTimeout bounds Close's wait for group_unsubscribed (the
	// node leaves the group first, for 5 s at most).
	groupCloseTimeout = 10 * time.Second
	// groupWriteTimeout bounds one frame's write.
	groupWriteTimeout = 10 * time.Second
	// groupSilenceMax is how long the connection may hear nothing, not
	// even the node's ping (every 20 s), before it is taken for dead.
	groupSilenceMax = 60 * time.Second
)

// GroupSubscribeOptions say which group to join. Topic and Group are
// required; zero fields take the server's defaults.
type GroupSubscribeOptions struct {
	Topic string
	Group string
	// MemberID is the member's id (1-200 letters, digits, '.', '_', '-');
	// "": the node makes one ("ws-" and 16 hex digits). Reusing an id
	// after a reconnect takes the member's place at once.
	MemberID string
	// MaxBatchEvents and MaxBatchBytes bound a batch (0: 100 events,
	// 1 MiB; at most 1,000 and 4 MiB).
	MaxBatchEvents uint32
	MaxBatchBytes  uint32
	// SessionTimeout is how long the coordinator keeps the member after
	// the connection is lost without a leave (0: the server's 10 s; 1 s
	// to 5 min).
	SessionTimeout time.Duration
}

// GroupEvent is one delivery: the event and how often it was delivered
// (1 the first time).
type GroupEvent struct {
	Event
	DeliveryCount uint32
}

// GroupBatch is one group_events frame: events of one partition,
// delivered to the member under Generation, in offset order.
type GroupBatch struct {
	Partition  uint32
	Generation uint64
	Events     []GroupEvent
}

// OffsetOutcome is the outcome of one offset of an Ack or Nack:
// wire.WSAckAcked, WSAckFenced (nothing written: the partition moved to
// another member, which gets the event), WSAckUnknown (ack again) or
// WSAckFailed (Message says why; redelivered after the ack wait).
type OffsetOutcome = wire.WSGroupOffsetResult

// GroupSubscription is a membership of a consumer group over one
// WebSocket connection of its own. Its reader goroutine (ended by Close,
// or when the connection ends) routes the node's frames. Next is for one
// goroutine; Ack, AckBefore and Nack may be called from any goroutine;
// Close from any goroutine, more than once.
//
// It does not reconnect: when the connection ends (Next returns why), the
// node's member leaves the group or expires after its session timeout,
// and what it did not acknowledge is redelivered to the group's other
// members. Subscribe again (with the same MemberID if you like) to take
// part again; what was not acknowledged comes again.
type GroupSubscription struct {
	conn    *websocket.Conn
	url     string
	id      string
	member  string
	batches chan GroupBatch
	done    chan struct{} // closed when the reader ends
	dropped atomic.Int64
	nextReq atomic.Uint64

	writeMu sync.Mutex // one writer at a time (gorilla)

	mu struct {
		sync.Mutex
		err     error // why the subscription ended
		waiters map[string]chan groupAnswer
		closing bool
	}
}

type groupAnswer struct {
	results []OffsetOutcome
	err     error
}

var groupSubscriptionIDs atomic.Uint64

// GroupSubscribe connects to the next node, joins the group through it
// and waits until it has: errors such as wire.ErrGroupNotFound come back
// here. ctx bounds this call only. Close the subscription when done.
func (c *Client) GroupSubscribe(ctx context.Context, opts GroupSubscribeOptions) (*GroupSubscription, error) {
	if opts.Topic == "" || opts.Group == "" {
		return nil, errors.New("wsclient: group subscribe needs a Topic and a Group")
	}
	c.mu.Lock()
	closed, node := c.mu.closed, c.mu.node
	c.mu.node++
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	url := c.cfg.URLs[node%len(c.cfg.URLs)]
	conn, err := dial(ctx, &c.cfg, url)
	if err != nil {
		return nil, err
	}
	s := &GroupSubscription{conn: conn, url: url, id: "g" + strconv.FormatUint(groupSubscriptionIDs.Add(1), 10),
		batches: make(chan GroupBatch, groupBatchesMax), done: make(chan struct{})}
	s.mu.waiters = map[string]chan groupAnswer{}
	num := func(v uint64) *int64 {
		if v == 0 {
			return nil
		}
		n := int64(v)
		return &n
	}
	m := &wire.WSClientMessage{Type: wire.WSTypeGroupSubscribe, ID: s.id, Topic: opts.Topic, Group: opts.Group,
		Member: opts.MemberID, MaxBatchEvents: num(uint64(opts.MaxBatchEvents)), MaxBatchBytes: num(uint64(opts.MaxBatchBytes)),
		SessionTimeoutMs: num(uint64(opts.SessionTimeout.Milliseconds()))}
	if err := writeJSON(conn, groupWriteTimeout, m); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("wsclient: group subscribe at %s: %w", url, err)
	}
	deadline := time.Now().Add(groupSubscribeTimeout)
	for {
		data, err := readFrame(ctx, conn, deadline)
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("wsclient: group subscribe at %s: %w", url, err)
		}
		var f struct {
			wire.WSError
			Member string `json:"member"`
		}
		if err := json.Unmarshal(data, &f); err != nil || f.ID != s.id {
			continue
		}
		switch f.Type {
		case wire.WSTypeGroupSubscribed:
			s.member = f.Member
			go s.read()
			return s, nil
		case wire.WSTypeError:
			closeConn(conn)
			return nil, fmt.Errorf("wsclient: group subscribe at %s: %w", url, errorOf(&f.WSError))
		}
	}
}

// MemberID is the member's id in the group.
func (s *GroupSubscription) MemberID() string { return s.member }

// URL is the node the subscription is connected to.
func (s *GroupSubscription) URL() string { return s.url }

// Dropped counts the batches dropped because Next had not taken the
// earlier ones (redelivered after the group's ack wait).
func (s *GroupSubscription) Dropped() int64 { return s.dropped.Load() }

// Next returns the next batch, waiting for one. Once the subscription
// ended it returns why: ErrClosed after Close, an error of the node (such
// as wire.ErrGroupNotFound when the group was deleted), or the
// connection's.
func (s *GroupSubscription) Next(ctx context.Context) (GroupBatch, error) {
	select {
	case b := <-s.batches:
		return b, nil
	default:
	}
	select {
	case b := <-s.batches:
		return b, nil
	case <-s.done:
		return GroupBatch{}, s.endErr()
	case <-ctx.Done():
		return GroupBatch{}, ctx.Err()
	}
}

// Ack acknowledges offsets of partition, each delivered to this
// subscription, and returns each one's outcome in offset order. An error
// frame (an offset the subscription holds no delivery of, say) is
// returned as an error, and then nothing was acknowledged; a connection
// lost before the answer is an error matching wire.ErrUnknownOutcome.
func (s *GroupSubscription) Ack(ctx context.Context, partition uint32, offsets ...uint64) ([]OffsetOutcome, error) {
	return s.settle(ctx, wire.WSTypeGroupAck, partition, offsets, nil, nil)
}

// AckBefore acknowledges every offset of partition delivered to this
// subscription below before.
func (s *GroupSubscription) AckBefore(ctx context.Context, partition uint32, before uint64) ([]OffsetOutcome, error) {
	b := int64(before)
	return s.settle(ctx, wire.WSTypeGroupAck, partition, nil, &b, nil)
}

// Nack asks for offsets of partition to be redelivered after delay (0:
// at once; at most 24 h) rather than after the group's ack wait.
func (s *GroupSubscription) Nack(ctx context.Context, partition uint32, delay time.Duration, offsets ...uint64) ([]OffsetOutcome, error) {
	if delay < 0 || delay > 24*time.Hour {
		return nil, wire.InvalidArgument("delay_ms", "a nack delay is 0 to 24 h")
	}
	d := delay.Milliseconds()
	return s.settle(ctx, wire.WSTypeGroupNack, partition, offsets, nil, &d)
}

func (s *GroupSubscription) settle(ctx context.Context, typ string, partition uint32, offsets []uint64, before, delayMs *int64) ([]OffsetOutcome, error) {
	id := "r" + strconv.FormatUint(s.nextReq.Add(1), 10)
	p := int64(partition)
	m := &wire.WSClientMessage{Type: typ, ID: id, Sub: s.id, Partition: &p, Before: before, DelayMs: delayMs}
	for _, o := range offsets {
		m.Offsets = append(m.Offsets, int64(o))
	}
	ch := make(chan groupAnswer, 1)
	s.mu.Lock()
	if s.mu.err != nil {
		err := s.mu.err
		s.mu.Unlock()
		return nil, err
	}
	s.mu.waiters[id] = ch
	s.mu.Unlock()
	s.writeMu.Lock()
	err := writeJSON(s.conn, groupWriteTimeout, m)
	s.writeMu.Unlock()
	if err != nil {
		s.mu.Lock()
		delete(s.mu.waiters, id)
		s.mu.Unlock()
		return nil, wire.UnknownOutcome("wsclient: %s at %s: %v", typ, s.url, err)
	}
	select {
	case a := <-ch:
		return a.results, a.err
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.mu.waiters, id)
		s.mu.Unlock()
		return nil, wire.UnknownOutcome("wsclient: %s at %s: %v", typ, s.url, ctx.Err())
	}
}

// Close leaves the group (the node's member leaves, and what was not
// acknowledged goes to the other members), closes the connection and
// waits for the reader.
func (s *GroupSubscription) Close() error {
	s.mu.Lock()
	closing := s.mu.closing
	s.mu.closing = true
	s.mu.Unlock()
	if !closing {
		s.writeMu.Lock()
		err := writeJSON(s.conn, groupWriteTimeout, &wire.WSClientMessage{Type: wire.WSTypeGroupUnsubscribe, ID: s.id})
		s.writeMu.Unlock()
		if err == nil {
			t := time.NewTimer(groupCloseTimeout)
			select {
			case <-s.done: // group_unsubscribed (or the connection ended)
			case <-t.C:
			}
			t.Stop()
		}
		s.writeMu.Lock()
		closeConn(s.conn)
		s.writeMu.Unlock()
	}
	<-s.done
	return nil
}

// read routes the node's frames until the connection ends or the
// subscription ends.
func (s *GroupSubscription) read() {
	defer close(s.done)
	s.conn.SetPingHandler(func(data string) error {
		_ = s.conn.SetReadDeadline(time.Now().Add(groupSilenceMax))
		err := s.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		if err == websocket.ErrCloseSent {
			return nil
		}
		return err
	})
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(groupSilenceMax))
		_, data, err := s.conn.ReadMessage()
		if err != nil {
			s.end(fmt.Errorf("wsclient: group subscription at %s: %w", s.url, err))
			return
		}
		var head struct {
			Type  string `json:"type"`
			ID    string `json:"id"`
			Ended bool   `json:"ended"`
		}
		if json.Unmarshal(data, &head) != nil {
			continue
		}
		switch head.Type {
		case wire.WSTypeGroupEvents:
			var f wire.WSGroupEvents
			if err := json.Unmarshal(data, &f); err != nil {
				s.end(fmt.Errorf("%w: a group_events frame that does not decode: %v", ErrProtocol, err))
				return
			}
			if f.ID != s.id {
				continue
			}
			b := GroupBatch{Partition: f.Partition, Generation: f.Generation, Events: make([]GroupEvent, len(f.Events))}
			for i := range f.Events {
				b.Events[i] = GroupEvent{Event: eventOf(&f.Events[i].WSEvent, 0), DeliveryCount: f.Events[i].DeliveryCount}
			}
			select {
			case s.batches <- b:
			default:
				s.dropped.Add(1)
			}
		case wire.WSTypeGroupAckResult:
			var f wire.WSGroupAckResult
			if err := json.Unmarshal(data, &f); err != nil {
				s.end(fmt.Errorf("%w: an ack_result frame that does not decode: %v", ErrProtocol, err))
				return
			}
			s.answer(f.ID, groupAnswer{results: f.Results})
		case wire.WSTypeError:
			var f wire.WSError
			if err := json.Unmarshal(data, &f); err != nil {
				s.end(fmt.Errorf("%w: an error frame that does not decode: %v", ErrProtocol, err))
				return
			}
			err := fmt.Errorf("wsclient: %s at %s: %w", f.For, s.url, errorOf(&f))
			if f.ID == s.id && f.Ended {
				s.end(err)
				return
			}
			s.answer(f.ID, groupAnswer{err: err})
		case wire.WSTypeGroupUnsubscribed:
			if head.ID == s.id {
				s.end(ErrClosed)
				return
			}
		}
	}
}

// answer hands a to the call waiting for request id (none: dropped).
func (s *GroupSubscription) answer(id string, a groupAnswer) {
	s.mu.Lock()
	ch := s.mu.waiters[id]
	delete(s.mu.waiters, id)
	s.mu.Unlock()
	if ch != nil {
		ch <- a // buffered: never blocks
	}
}

// end records why the subscription ended and fails the calls waiting:
// their frames were sent, so their outcome is unknown.
func (s *GroupSubscription) end(err error) {
	s.mu.Lock()
	if s.mu.err == nil {
		if s.mu.closing {
			err = ErrClosed
		}
		s.mu.err = err
	}
	waiters := s.mu.waiters
	s.mu.waiters = map[string]chan groupAnswer{}
	s.mu.Unlock()
	for _, ch := range waiters {
		ch <- groupAnswer{err: wire.UnknownOutcome("wsclient: group subscription at %s ended before the answer: %v", s.url, err)}
	}
}

func (s *GroupSubscription) endErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.err
}
