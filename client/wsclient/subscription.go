package wsclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldlog/herald/client/wire"
)

// Start says where a subscription begins.
type Start string

// Starts, as the gateway spells them.
const (
	StartEarliest Start = "earliest" // the oldest retained event
	StartLatest   Start = "latest"   // the next event produced
	StartOffset   Start = "offset"   // SubscribeOptions.Offset
	StartSequence Start = "sequence" // SubscribeOptions.Sequence of SubscribeOptions.TenantID
	StartTime     Start = "time"     // the first event produced at or after SubscribeOptions.Time
)

// SubscribeOptions says what to read. Topic and Start are required.
type SubscribeOptions struct {
	Topic     string
	Partition uint32
	Start     Start
	Offset    uint64    // for StartOffset
	Sequence  uint64    // for StartSequence
	Time      time.Time // for StartTime
	// Epoch, when not zero, is the partition incarnation Offset belongs
	// to (from an earlier Event.Epoch): a recreated topic then ends the
	// subscription with EpochChangedError instead of reading the new one.
	Epoch uint64
	// Filters: only the events of TenantID, with Key, with every header of
	// Headers equal. The position still passes the events they skip.
	TenantID string
	Key      []byte
	Headers  map[string]string
}

func (o *SubscribeOptions) validate() error {
	var errs []error
	if o.Topic == "" {
		errs = append(errs, errors.New("wsclient: subscribe needs a Topic"))
	}
	switch o.Start {
	case StartEarliest, StartLatest, StartOffset, StartTime:
	case StartSequence:
		if o.TenantID == "" {
			errs = append(errs, errors.New("wsclient: Start sequence needs a TenantID"))
		}
	default:
		errs = append(errs, fmt.Errorf("wsclient: Start %q: want earliest, latest, offset, sequence or time", o.Start))
	}
	return errors.Join(errs...)
}

// Subscription reads one partition over WebSocket, from one node at a
// time. Next (or All) is called by one goroutine at a time; Close, URL,
// Reconnects may be called by any goroutine at any time.
//
// Its state is owned by the goroutine calling Next: it reads frames from
// the connection itself (no goroutine of its own), keeps at most one
// frame's events, and tracks the position after the last event it
// returned. When the connection ends (the node died or stopped, 4008 for a
// slow reader, a network error, silence for three heartbeats), the next
// Next connects to the next node, after a backoff when attempts fail, and
// subscribes at that position with the epoch it saw: the event after the
// last one returned, no gap and no repeat.
type Subscription struct {
	cfg  *Config
	urls []string
	opts SubscribeOptions
	id   string

	// Owned by the goroutine calling Next.
	positioned bool   // next and epoch come from the cluster
	next       uint64 // the offset after the last event returned (or skipped by the filters)
	epoch      uint64
	buffered   []wire.WSEvent // the rest of the current events frame
	frameNext  uint64         // that frame's next_offset
	node       int            // index into urls of the next node to try
	failures   int            // connection attempts failed in a row
	subscribed bool           // subscribed at least once
	progressed bool           // the current connection delivered a frame of the subscription
	err        error          // the error that ended the subscription

	url        atomic.Pointer[string]
	reconnects atomic.Int64

	mu struct {
		sync.Mutex
		conn   *websocket.Conn
		closed bool
	}
}

var subscriptionIDs atomic.Uint64

func newSubscription(cfg *Config, opts SubscribeOptions, firstNode int) *Subscription {
	s := &Subscription{cfg: cfg, urls: cfg.URLs, opts: opts, node: firstNode,
		id: "s" + strconv.FormatUint(subscriptionIDs.Add(1), 10)}
	if opts.Start == StartOffset {
		// A start at an offset is a position already (the epoch, if
		// given, too): a reconnect before the first subscribed keeps it.
		s.positioned, s.next, s.epoch = true, opts.Offset, opts.Epoch
	}
	return s
}

// Next returns the next event, reconnecting as needed: it tries the nodes
// in turn, up to Config.MaxRetries failed attempts in a row. It returns ctx's
// error when ctx ends (the subscription stays usable: the next call
// resumes at the same place), ErrClosed after Close, and a final error
// that ends the subscription: *wire.OffsetOutOfRangeError (the position
// left the retained log; Low says where it begins), *EpochChangedError,
// wire.ErrTopicNotFound, wire.ErrPartitionNotFound, invalid options,
// ErrRetriesExhausted (no node took it), or ErrProtocol.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		if s.err != nil {
			return Event{}, s.err
		}
		if len(s.buffered) > 0 {
			e := &s.buffered[0]
			s.buffered = s.buffered[1:]
			s.next = e.Offset + 1
			if len(s.buffered) == 0 {
				s.buffered, s.next = nil, s.frameNext
			}
			return eventOf(e, s.epoch), nil
		}
		conn, err := s.conn()
		if err != nil {
			return Event{}, s.end(err)
		}
		if conn == nil {
			if err := s.connect(ctx); err != nil {
				if final(err) {
					return Event{}, s.end(err)
				}
				return Event{}, err // ctx ended
			}
			continue
		}
		if err := s.receive(ctx, conn); err != nil {
			s.drop(conn)
			if final(err) {
				return Event{}, s.end(err)
			}
			if ctx.Err() != nil {
				return Event{}, ctx.Err()
			}
			if s.progressed {
				// The connection worked: the next attempt goes to the
				// next node without waiting.
				s.failures = 0
				continue
			}
			// Subscribed, then lost before any frame: a failed attempt,
			// so that a node that takes subscriptions and drops them at
			// once is not retried in a tight loop.
			if s.failures++; s.failures > s.cfg.MaxRetries {
				return Event{}, s.end(fmt.Errorf("%w: %d in a row: %w", ErrRetriesExhausted, s.failures, err))
			}
		}
	}
}

// All returns the events of Next as an iterator. It ends after yielding an
// error (a final one, or ctx's), or when the loop breaks; it does not
// close the subscription.
func (s *Subscription) All(ctx context.Context) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			e, err := s.Next(ctx)
			if err != nil {
				yield(Event{}, err)
				return
			}
			if !yield(e, nil) {
				return
			}
		}
	}
}

// Position returns where the subscription stands: the offset after the
// last event returned (or skipped by the filters) and the partition's
// epoch. ok is false before the cluster has told it (a start other than
// an offset, not subscribed yet). Only the goroutine calling Next may ask.
func (s *Subscription) Position() (next, epoch uint64, ok bool) {
	return s.next, s.epoch, s.positioned
}

// URL returns the node the subscription is connected to, or "" between
// connections.
func (s *Subscription) URL() string {
	if p := s.url.Load(); p != nil {
		return *p
	}
	return ""
}

// Reconnects returns how many times the subscription subscribed again
// after its first subscription.
func (s *Subscription) Reconnects() int64 { return s.reconnects.Load() }

// Close ends the subscription and its connection. Next then returns
// ErrClosed. Safe to call more than once, concurrently with Next.
func (s *Subscription) Close() error {
	s.mu.Lock()
	conn := s.mu.conn
	s.mu.conn, s.mu.closed = nil, true
	s.mu.Unlock()
	if conn != nil {
		closeConn(conn)
	}
	s.url.Store(nil)
	return nil
}

func (s *Subscription) conn() (*websocket.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	return s.mu.conn, nil
}

// end records err as the end of the subscription and closes it.
func (s *Subscription) end(err error) error {
	s.err = err
	_ = s.Close()
	return err
}

// drop forgets conn after it failed.
func (s *Subscription) drop(conn *websocket.Conn) {
	s.mu.Lock()
	if s.mu.conn == conn {
		s.mu.conn = nil
	}
	s.mu.Unlock()
	_ = conn.Close()
	s.url.Store(nil)
	s.buffered = nil
}

// subscribeMessage is the subscribe frame at the current position.
func (s *Subscription) subscribeMessage() *wire.WSClientMessage {
	o := &s.opts
	partition, heartbeat := int64(o.Partition), s.cfg.Heartbeat.Milliseconds()
	m := &wire.WSClientMessage{Type: wire.WSTypeSubscribe, ID: s.id, Topic: o.Topic, Partition: &partition,
		Tenant: o.TenantID, Key: o.Key, Headers: o.Headers, HeartbeatMs: &heartbeat}
	if s.positioned {
		offset := int64(s.next)
		m.Start, m.Offset = string(StartOffset), &offset
		if s.epoch != 0 {
			epoch := int64(s.epoch)
			m.Epoch = &epoch
		}
		return m
	}
	m.Start = string(o.Start)
	switch o.Start {
	case StartSequence:
		seq := int64(o.Sequence)
		m.Sequence = &seq
	case StartTime:
		m.Time = o.Time.UTC().Format(time.RFC3339Nano)
	}
	return m
}

// connect subscribes on the next node that takes the subscription,
// waiting the backoff between failed attempts. It returns nil once
// subscribed, a final error (ErrClosed after Close), or ctx's.
func (s *Subscription) connect(ctx context.Context) error {
	for {
		if _, err := s.conn(); err != nil {
			return err // closed
		}
		if err := sleep(ctx, backoff(s.cfg, s.failures)); err != nil {
			return err
		}
		url := s.urls[s.node%len(s.urls)]
		s.node++
		err := s.subscribeAt(ctx, url)
		if err == nil {
			s.progressed = false
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if final(err) {
			return err
		}
		if s.failures++; s.failures > s.cfg.MaxRetries {
			return fmt.Errorf("%w: %d in a row, the last at %s: %w", ErrRetriesExhausted, s.failures, url, err)
		}
	}
}

// subscribeAt dials url and subscribes there.
func (s *Subscription) subscribeAt(ctx context.Context, url string) error {
	conn, err := dial(ctx, s.cfg, url)
	if err != nil {
		return err
	}
	if err := writeJSON(conn, s.cfg.HandshakeTimeout, s.subscribeMessage()); err != nil {
		_ = conn.Close()
		return err
	}
	deadline := time.Now().Add(s.cfg.HandshakeTimeout)
	for {
		data, err := readFrame(ctx, conn, deadline)
		if err != nil {
			_ = conn.Close()
			return err
		}
		var head struct {
			wire.WSPosition
			Code    string `json:"code"`
			For     string `json:"for"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			_ = conn.Close()
			return fmt.Errorf("%w: %s sent a frame that does not decode: %v", ErrProtocol, url, err)
		}
		if head.ID != s.id {
			continue
		}
		switch head.Type {
		case wire.WSTypeSubscribed:
			if s.positioned && head.NextOffset != s.next {
				_ = conn.Close()
				return fmt.Errorf("%w: %s subscribed at offset %d, asked %d", ErrProtocol, url, head.NextOffset, s.next)
			}
			if s.positioned && s.epoch != 0 && head.Epoch != s.epoch {
				_ = conn.Close()
				return fmt.Errorf("%w: %s subscribed in epoch %d, asked %d", ErrProtocol, url, head.Epoch, s.epoch)
			}
			if !s.positioned {
				s.positioned, s.next = true, head.NextOffset
			}
			s.epoch = head.Epoch
			s.mu.Lock()
			closed := s.mu.closed
			if !closed {
				s.mu.conn = conn
			}
			s.mu.Unlock()
			if closed {
				_ = conn.Close()
				return ErrClosed
			}
			s.url.Store(&url)
			if s.subscribedOnce() {
				s.reconnects.Add(1)
			}
			return nil
		case wire.WSTypeError:
			var f wire.WSError
			_ = json.Unmarshal(data, &f)
			_ = conn.Close()
			return fmt.Errorf("wsclient: subscribe at %s: %w", url, errorOf(&f))
		}
	}
}

// subscribedOnce reports whether the subscription had subscribed before
// (and marks that it has now).
func (s *Subscription) subscribedOnce() bool {
	before := s.subscribed
	s.subscribed = true
	return before
}

// receive reads frames until one leaves events to return, or the
// connection fails.
func (s *Subscription) receive(ctx context.Context, conn *websocket.Conn) error {
	silence := 3*s.cfg.Heartbeat + s.cfg.HandshakeTimeout
	for {
		data, err := readFrame(ctx, conn, time.Now().Add(silence))
		if err != nil {
			return err
		}
		var head struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			return fmt.Errorf("%w: a frame that does not decode: %v", ErrProtocol, err)
		}
		if head.ID != s.id {
			continue
		}
		switch head.Type {
		case wire.WSTypeEvents:
			var f wire.WSEvents
			if err := json.Unmarshal(data, &f); err != nil {
				return fmt.Errorf("%w: an events frame that does not decode: %v", ErrProtocol, err)
			}
			if err := s.check(&f); err != nil {
				return err
			}
			s.progressed = true
			if len(f.Events) == 0 {
				s.next = f.NextOffset
				continue
			}
			s.buffered, s.frameNext = f.Events, f.NextOffset
			return nil
		case wire.WSTypeHeartbeat:
			var f wire.WSPosition
			if err := json.Unmarshal(data, &f); err != nil {
				return fmt.Errorf("%w: a heartbeat that does not decode: %v", ErrProtocol, err)
			}
			if f.NextOffset > s.next {
				s.next = f.NextOffset // the filters skipped up to there
			}
			s.progressed = true
		case wire.WSTypeError:
			var f wire.WSError
			if err := json.Unmarshal(data, &f); err != nil {
				return fmt.Errorf("%w: an error frame that does not decode: %v", ErrProtocol, err)
			}
			return fmt.Errorf("wsclient: subscription at %s: %w", s.URL(), errorOf(&f))
		}
	}
}

// check asserts an events frame continues the subscription: same epoch,
// offsets rising from the position, next_offset past the last.
func (s *Subscription) check(f *wire.WSEvents) error {
	if f.Epoch != s.epoch {
		return fmt.Errorf("%w: events of epoch %d on a subscription of epoch %d", ErrProtocol, f.Epoch, s.epoch)
	}
	next := s.next
	for i := range f.Events {
		if f.Events[i].Offset < next {
			return fmt.Errorf("%w: event at offset %d, expected %d or later", ErrProtocol, f.Events[i].Offset, next)
		}
		next = f.Events[i].Offset + 1
	}
	if f.NextOffset < next {
		return fmt.Errorf("%w: next_offset %d is behind the frame's last event %d", ErrProtocol, f.NextOffset, next-1)
	}
	return nil
}
