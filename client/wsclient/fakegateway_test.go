package wsclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/client/wsclient"
)

// fakeGateway serves one partition of events 0..events-1 in epoch 7 over
// the gateway's frames, ten events a frame, and closes a connection with
// closeCode after it sent closeAfter events (0: never), or with closeCode
// 0 falls silent (no heartbeat) until the client leaves. It records the
// subscribe frames it got.
type fakeGateway struct {
	t          *testing.T
	events     uint64
	closeAfter uint64
	closeCode  int
	dropAtOnce bool // close with 1001 right after subscribed

	mu         sync.Mutex
	subscribes []wire.WSClientMessage
}

const fakeEpoch = 7

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	send := func(v any) bool { return conn.WriteJSON(v) == nil }
	for {
		var m wire.WSClientMessage
		if err := conn.ReadJSON(&m); err != nil {
			return
		}
		switch m.Type {
		case wire.WSTypePublish:
			if m.Topic == "vanish" {
				return // the node dies with the publish in flight
			}
			if m.Topic != "orders" {
				high := uint64(0)
				send(&wire.WSError{Type: wire.WSTypeError, ID: m.ID, For: wire.WSTypePublish, Code: "TOPIC_NOT_FOUND", Message: "no topic", HighWatermark: &high})
				continue
			}
			send(&wire.WSAck{Type: wire.WSTypeAck, ID: m.ID, Partition: 0, Offset: g.events, Sequence: 3, EventID: m.EventID})
			continue
		case wire.WSTypeSubscribe:
		default:
			continue
		}
		g.mu.Lock()
		g.subscribes = append(g.subscribes, m)
		g.mu.Unlock()
		low, high := uint64(0), g.events
		next := uint64(0)
		switch m.Start {
		case "latest":
			next = g.events
		case "offset":
			next = uint64(*m.Offset)
		}
		if m.Epoch != nil && *m.Epoch != fakeEpoch {
			e, cur := uint64(*m.Epoch), uint64(fakeEpoch)
			send(&wire.WSError{Type: wire.WSTypeError, ID: m.ID, For: wire.WSTypeSubscribe, Code: "EPOCH_CHANGED", Message: "epoch",
				Ended: true, LowWatermark: &low, HighWatermark: &high, Epoch: &e, CurrentEpoch: &cur})
			continue
		}
		if next > g.events {
			send(&wire.WSError{Type: wire.WSTypeError, ID: m.ID, For: wire.WSTypeSubscribe, Code: "OFFSET_OUT_OF_RANGE", Message: "range",
				Ended: true, LowWatermark: &low, HighWatermark: &high, Metadata: map[string]string{wire.MetadataRequested: fmt.Sprint(next)}})
			continue
		}
		send(&wire.WSPosition{Type: wire.WSTypeSubscribed, ID: m.ID, Topic: m.Topic, Epoch: fakeEpoch, NextOffset: next, HighWatermark: high})
		if g.dropAtOnce {
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "stopping"), time.Now().Add(time.Second))
			return
		}
		sent := uint64(0)
		for next < g.events {
			f := wire.WSEvents{Type: wire.WSTypeEvents, ID: m.ID, Epoch: fakeEpoch, HighWatermark: high}
			for ; next < g.events && len(f.Events) < 10; next++ {
				f.Events = append(f.Events, wire.WSEvent{Offset: next, Sequence: next + 1, Tenant: "acme",
					EventID: fmt.Sprint("e", next), Time: time.Unix(0, int64(next)).UTC().Format(time.RFC3339Nano), Payload: []byte{byte(next)}})
			}
			f.NextOffset = next
			if !send(&f) {
				return
			}
			sent += uint64(len(f.Events))
			if g.closeAfter > 0 && sent >= g.closeAfter && g.closeCode == 0 {
				for {
					if _, _, err := conn.ReadMessage(); err != nil {
						return
					}
				}
			}
			if g.closeAfter > 0 && sent >= g.closeAfter {
				_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(g.closeCode, "slow consumer: test"), time.Now().Add(time.Second))
				return
			}
		}
		send(&wire.WSPosition{Type: wire.WSTypeHeartbeat, ID: m.ID, Epoch: fakeEpoch, NextOffset: next, HighWatermark: high})
	}
}

func startFake(t *testing.T, g *fakeGateway, nodes int) []string {
	t.Helper()
	var urls []string
	for range nodes {
		s := httptest.NewServer(http.HandlerFunc(g.serve))
		t.Cleanup(s.Close)
		urls = append(urls, "ws"+strings.TrimPrefix(s.URL, "http")+"/v1/ws")
	}
	return urls
}

// A connection closed with 4008 (slow consumer) or 1001, or silent for
// three heartbeats (0), is resumed on the next node at the offset after
// the last event returned, with the epoch: the subscriber sees every
// offset once.
func TestResumeAfterClose(t *testing.T) {
	for _, code := range []int{wire.WSCloseSlowConsumer, websocket.CloseGoingAway, 0} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			g := &fakeGateway{t: t, events: 95, closeAfter: 30, closeCode: code}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := wsclient.Dial(ctx, wsclient.Config{URLs: startFake(t, g, 2), BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond,
				Heartbeat: 100 * time.Millisecond, HandshakeTimeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := c.Subscribe(ctx, wsclient.SubscribeOptions{Topic: "orders", Start: wsclient.StartEarliest})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for want := uint64(0); want < g.events; want++ {
				e, err := s.Next(ctx)
				if err != nil {
					t.Fatalf("event %d: %v", want, err)
				}
				if e.Offset != want || e.Epoch != fakeEpoch || e.EventID != fmt.Sprint("e", want) {
					t.Fatalf("event %d: got offset %d epoch %d id %s", want, e.Offset, e.Epoch, e.EventID)
				}
			}
			if next, epoch, ok := s.Position(); !ok || next != g.events || epoch != fakeEpoch {
				t.Fatalf("position %d/%d/%v, want %d/%d", next, epoch, ok, g.events, fakeEpoch)
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			if len(g.subscribes) != 4 { // 95 events, 30 a connection
				t.Fatalf("%d subscribes, want 4", len(g.subscribes))
			}
			for i, m := range g.subscribes[1:] {
				if m.Start != "offset" || *m.Offset != int64(30*(i+1)) || m.Epoch == nil || *m.Epoch != fakeEpoch {
					t.Fatalf("resume %d: start %s offset %v epoch %v", i, m.Start, *m.Offset, m.Epoch)
				}
			}
		})
	}
}

// What no node would take ends the subscription with a typed error
// carrying the bounds.
func TestFinalErrors(t *testing.T) {
	g := &fakeGateway{t: t, events: 20}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := wsclient.Dial(ctx, wsclient.Config{URLs: startFake(t, g, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	_, err = c.Subscribe(ctx, wsclient.SubscribeOptions{Topic: "orders", Start: wsclient.StartOffset, Offset: 50})
	var outOfRange *wire.OffsetOutOfRangeError
	if !errors.As(err, &outOfRange) || !errors.Is(err, wire.ErrOffsetOutOfRange) || outOfRange.Requested != 50 || outOfRange.High != 20 {
		t.Fatalf("subscribe beyond the end: %v, want OffsetOutOfRangeError{50, 0, 20}", err)
	}
	_, err = c.Subscribe(ctx, wsclient.SubscribeOptions{Topic: "orders", Start: wsclient.StartOffset, Offset: 3, Epoch: 2})
	var epochChanged *wsclient.EpochChangedError
	if !errors.As(err, &epochChanged) || !errors.Is(err, wire.ErrEpochChanged) || *epochChanged != (wsclient.EpochChangedError{Epoch: 2, CurrentEpoch: fakeEpoch, High: 20}) {
		t.Fatalf("subscribe in an old epoch: %v, want EpochChangedError", err)
	}
	if _, err := c.Subscribe(ctx, wsclient.SubscribeOptions{Start: "soon"}); err == nil {
		t.Fatal("subscribe without a topic and with a bad start: no error")
	}

	ack, err := c.Publish(ctx, "orders", &heraldpb.Event{TenantId: "acme", EventId: "x1"})
	if err != nil || ack.Offset != 20 || ack.EventID != "x1" {
		t.Fatalf("publish: %+v, %v", ack, err)
	}
	if _, err := c.Publish(ctx, "missing", &heraldpb.Event{TenantId: "acme"}); !errors.Is(err, wire.ErrTopicNotFound) {
		t.Fatalf("publish to a missing topic: %v, want ErrTopicNotFound", err)
	}
	// A connection lost with the publish in flight is an unknown outcome;
	// the next publish goes on a new connection.
	if _, err := c.Publish(ctx, "vanish", &heraldpb.Event{TenantId: "acme", EventId: "x2"}); !errors.Is(err, wire.ErrUnknownOutcome) {
		t.Fatalf("publish cut by the connection: %v, want ErrUnknownOutcome", err)
	}
	if ack, err := c.Publish(ctx, "orders", &heraldpb.Event{TenantId: "acme", EventId: "x3"}); err != nil || ack.EventID != "x3" {
		t.Fatalf("publish after a lost connection: %+v, %v", ack, err)
	}
}

func TestConfigValidate(t *testing.T) {
	err := wsclient.Config{URLs: []string{"http://x/v1/ws", "ws:///v1/ws"}, BackoffMin: time.Second, BackoffMax: time.Millisecond,
		Heartbeat: time.Millisecond, HandshakeTimeout: -1}.Validate()
	for _, want := range []string{"scheme", "no host", "above BackoffMax", "below", "HandshakeTimeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want a problem with %q", err, want)
		}
	}
	if err := (wsclient.Config{}).Validate(); err == nil {
		t.Error("Validate of no URLs: no error")
	}
}

// A subscription whose nodes all stopped answering ends after MaxRetries
// failed attempts in a row, with ErrRetriesExhausted and the last cause.
func TestRetriesExhausted(t *testing.T) {
	g := &fakeGateway{t: t, events: 10, closeAfter: 10, closeCode: websocket.CloseGoingAway}
	srv := httptest.NewServer(http.HandlerFunc(g.serve))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := wsclient.Dial(ctx, wsclient.Config{URLs: []string{"ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/ws"},
		BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, MaxRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Subscribe(ctx, wsclient.SubscribeOptions{Topic: "orders", Start: wsclient.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range g.events {
		if _, err := s.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	srv.Listener.Close() // the node is gone: every attempt is refused
	_, err = s.Next(ctx)
	if !errors.Is(err, wsclient.ErrRetriesExhausted) || !strings.Contains(err.Error(), "3 in a row") {
		t.Fatalf("Next with no node: %v, want ErrRetriesExhausted after 3 attempts", err)
	}
	if _, again := s.Next(ctx); again != err {
		t.Fatalf("Next after the end: %v, want the same error", again)
	}
}

// A node that takes the subscription and drops it before any frame counts
// as a failed attempt: the subscription backs off and ends after
// MaxRetries, rather than spin.
func TestDroppedAtOnceCountsAsFailure(t *testing.T) {
	g := &fakeGateway{t: t, events: 10, dropAtOnce: true}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := wsclient.Dial(ctx, wsclient.Config{URLs: startFake(t, g, 2), BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Subscribe(ctx, wsclient.SubscribeOptions{Topic: "orders", Start: wsclient.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Next(ctx); !errors.Is(err, wsclient.ErrRetriesExhausted) {
		t.Fatalf("Next: %v, want ErrRetriesExhausted", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.subscribes) != 4 {
		t.Fatalf("%d subscribes, want 4 (the first and 3 retries)", len(g.subscribes))
	}
}
