package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// wsTestFrame is any server frame, as a test reads it.
type wsTestFrame struct {
	Type          string    `json:"type"`
	ID            string    `json:"id"`
	For           string    `json:"for"`
	Code          string    `json:"code"`
	Message       string    `json:"message"`
	Ended         bool      `json:"ended"`
	Topic         string    `json:"topic"`
	Partition     uint32    `json:"partition"`
	Epoch         uint64    `json:"epoch"`
	CurrentEpoch  uint64    `json:"current_epoch"`
	NextOffset    uint64    `json:"next_offset"`
	HighWatermark uint64    `json:"high_watermark"`
	LowWatermark  uint64    `json:"low_watermark"`
	Offset        uint64    `json:"offset"`
	Sequence      uint64    `json:"sequence"`
	EventID       string    `json:"event_id"`
	Events        []wsEvent `json:"events"`
	// Throttle hints: an ack's throttle_ms, an error's retry_after_ms.
	ThrottleMs   uint32            `json:"throttle_ms"`
	RetryAfterMs uint64            `json:"retry_after_ms"`
	Metadata     map[string]string `json:"metadata"`
}

// wsTestClient is a WebSocket client of one node. Its frames are read by
// one goroutine (started by read), which ends when the connection does.
type wsTestClient struct {
	t      *testing.T
	conn   *websocket.Conn
	frames chan wsTestFrame
	done   chan struct{}
	err    error // why reading ended; set before done is closed
	// pending holds frames next passed over, for later calls (heartbeats
	// passed over are dropped).
	pending []wsTestFrame
}

func wsURL(httpAddr string) string { return "ws://" + httpAddr + wsPath }

// wsDial connects to node i; readBufferBytes, when not zero, shrinks the
// client's socket receive buffer (a client that reads slowly).
func wsDial(t *testing.T, c *testCluster, i int, header http.Header, readBufferBytes int) *wsTestClient {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	if readBufferBytes > 0 {
		d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var nd net.Dialer
			conn, err := nd.DialContext(ctx, network, addr)
			if err == nil {
				err = conn.(*net.TCPConn).SetReadBuffer(readBufferBytes)
			}
			return conn, err
		}
	}
	conn, resp, err := d.Dial(wsURL(c.cfgs[i].HTTPAddr), header)
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", wsURL(c.cfgs[i].HTTPAddr), err, resp)
	}
	w := &wsTestClient{t: t, conn: conn, frames: make(chan wsTestFrame, 1024), done: make(chan struct{})}
	t.Cleanup(func() {
		conn.Close()
		if w.frames != nil {
			<-w.done
		}
	})
	w.frames = nil
	return w
}

// read starts the client's reader.
func (w *wsTestClient) read() *wsTestClient {
	w.frames = make(chan wsTestFrame, 1024)
	go func() {
		defer close(w.done)
		for {
			_, data, err := w.conn.ReadMessage()
			if err != nil {
				w.err = err
				return
			}
			var f wsTestFrame
			if err := json.Unmarshal(data, &f); err != nil {
				w.err = fmt.Errorf("frame %q: %w", data, err)
				return
			}
			select {
			case w.frames <- f:
			case <-time.After(30 * time.Second):
				w.err = errors.New("test reader: nobody took a frame for 30s")
				return
			}
		}
	}()
	return w
}

func (w *wsTestClient) send(v any) {
	w.t.Helper()
	if err := w.conn.WriteJSON(v); err != nil {
		w.t.Fatal(err)
	}
}

// next returns the next frame that keep accepts (others are kept for
// later calls), failing the test after d.
func (w *wsTestClient) next(d time.Duration, keep func(wsTestFrame) bool) wsTestFrame {
	w.t.Helper()
	for i, f := range w.pending {
		if keep == nil || keep(f) {
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
			return f
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case f := <-w.frames:
			if keep == nil || keep(f) {
				return f
			}
			if f.Type != wsTypeHeartbeat {
				w.pending = append(w.pending, f)
			}
		case <-w.done:
			w.t.Fatalf("connection ended: %v", w.err)
		case <-timer.C:
			w.t.Fatalf("no frame in %v", d)
		}
	}
}

// closed waits for the connection to end and returns its close code.
func (w *wsTestClient) closed(d time.Duration) int {
	w.t.Helper()
	select {
	case <-w.done:
	case <-time.After(d):
		w.t.Fatalf("connection still open after %v", d)
	}
	var ce *websocket.CloseError
	if !errors.As(w.err, &ce) {
		w.t.Fatalf("connection ended without a close frame: %v", w.err)
	}
	return ce.Code
}

func byID(id string) func(wsTestFrame) bool {
	return func(f wsTestFrame) bool { return f.ID == id && f.Type != wsTypeHeartbeat }
}

// events collects the events of subscription id until n have arrived
// (passing over its subscribed frame).
func (w *wsTestClient) events(id string, n int) []wsEvent {
	w.t.Helper()
	var got []wsEvent
	for len(got) < n {
		f := w.next(20*time.Second, byID(id))
		if f.Type == wsTypeSubscribed {
			continue
		}
		if f.Type != wsTypeEvents {
			w.t.Fatalf("subscription %s: want events, got %+v", id, f)
		}
		got = append(got, f.Events...)
	}
	if len(got) != n {
		w.t.Fatalf("subscription %s: %d events, want %d", id, len(got), n)
	}
	return got
}

func checkOffsets(t *testing.T, evs []wsEvent, from uint64) {
	t.Helper()
	for i, ev := range evs {
		if ev.Offset != from+uint64(i) {
			t.Fatalf("event %d has offset %d, want %d (no gap, no repeat)", i, ev.Offset, from+uint64(i))
		}
	}
}

// Subscriptions from earliest and from an offset get the partition in
// offset order; a publish is acknowledged with its position and arrives
// on them; a subscription resumed on another node from the last position
// gets exactly the next event; bad subscribes fail alone.
func TestWSSubscribePublishResume(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	info := createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "ws", Partitions: 1, ReplicationFactor: 3, AutoTenants: true})
	epoch := info.GetPartitions()[0].GetGroupId()
	for i := range 20 {
		produceRetry(t, hc, "ws", &heraldpb.Event{TenantId: "acme", Key: []byte{byte(i)},
			Headers: map[string]string{"i": fmt.Sprint(i)}, Payload: []byte(fmt.Sprintf("event %d", i))})
	}

	a := wsDial(t, c, 1, nil, 0).read()
	a.send(map[string]any{"type": "subscribe", "id": "all", "topic": "ws", "start": "earliest"})
	a.send(map[string]any{"type": "subscribe", "id": "from5", "topic": "ws", "partition": 0, "start": "offset", "offset": 5, "epoch": epoch})
	// Bad starts fail alone, with their codes; the others go on.
	a.send(map[string]any{"type": "subscribe", "id": "neg", "topic": "ws", "start": "offset", "offset": -1})
	a.send(map[string]any{"type": "subscribe", "id": "nope", "topic": "no-such-topic", "start": "earliest"})
	a.send(map[string]any{"type": "subscribe", "id": "far", "topic": "ws", "start": "offset", "offset": int64(1) << 50})
	a.send(map[string]any{"type": "subscribe", "id": "old", "topic": "ws", "start": "offset", "offset": 0, "epoch": epoch + 1000})
	a.send(map[string]any{"type": "subscribe", "id": "all", "topic": "ws", "start": "latest"})
	if err := a.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe",`)); err != nil {
		t.Fatal(err)
	}
	a.send(map[string]any{"type": "rewind", "id": "x"})

	wantErr := map[string]string{"neg": "INVALID_ARGUMENT", "nope": "TOPIC_NOT_FOUND", "far": "OFFSET_OUT_OF_RANGE",
		"old": "EPOCH_CHANGED", "all": "INVALID_ARGUMENT", "": "INVALID_ARGUMENT", "x": "INVALID_ARGUMENT"}
	var all, from5 []wsEvent
	for len(wantErr) > 0 || len(all) < 20 || len(from5) < 15 {
		f := a.next(20*time.Second, func(f wsTestFrame) bool { return f.Type != wsTypeHeartbeat })
		switch f.Type {
		case wsTypeError:
			want, ok := wantErr[f.ID]
			if !ok || f.Code != want {
				t.Fatalf("unexpected error frame %+v", f)
			}
			delete(wantErr, f.ID)
			switch f.ID {
			case "old":
				if f.Epoch != epoch+1000 || f.CurrentEpoch != epoch || f.HighWatermark == 0 || !f.Ended {
					t.Fatalf("EPOCH_CHANGED without its bounds: %+v", f)
				}
			case "far":
				if f.HighWatermark == 0 || !f.Ended {
					t.Fatalf("OFFSET_OUT_OF_RANGE without its bounds: %+v", f)
				}
			case "all":
				if f.Ended {
					t.Fatalf("a duplicate id must not end the running subscription: %+v", f)
				}
			case "":
				if f.For != "frame" {
					t.Fatalf("malformed frame answered for %q", f.For)
				}
			}
		case wsTypeSubscribed:
			if f.Epoch != epoch || (f.ID == "from5" && f.NextOffset != 5) || (f.ID == "all" && f.NextOffset != 0) {
				t.Fatalf("subscribed %+v", f)
			}
		case wsTypeEvents:
			if f.Epoch != epoch || f.Partition != 0 {
				t.Fatalf("events frame %+v", f)
			}
			switch f.ID {
			case "all":
				all = append(all, f.Events...)
			case "from5":
				from5 = append(from5, f.Events...)
			default:
				t.Fatalf("events for %q", f.ID)
			}
		default:
			t.Fatalf("unexpected frame %+v", f)
		}
	}
	checkOffsets(t, all, 0)
	checkOffsets(t, from5, 5)
	for i, ev := range all {
		if string(ev.Payload) != fmt.Sprintf("event %d", i) || ev.Tenant != "acme" || ev.Sequence != uint64(i+1) ||
			!bytes.Equal(ev.Key, []byte{byte(i)}) || ev.Headers["i"] != fmt.Sprint(i) || ev.EventID == "" || ev.Time == "" {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}

	// Publish through a third node (forwarded to the leader if need be):
	// acknowledged with its position, then delivered to both.
	p := wsDial(t, c, 2, nil, 0).read()
	p.send(map[string]any{"type": "publish", "id": "r1", "topic": "ws", "tenant": "acme", "key": []byte("k"),
		"headers": map[string]string{"via": "ws"}, "payload": []byte("published")})
	ack := p.next(20*time.Second, byID("r1"))
	if ack.Type != wsTypeAck || ack.Partition != 0 || ack.Offset != 20 || ack.Sequence != 21 || ack.EventID == "" {
		t.Fatalf("ack %+v", ack)
	}
	p.send(map[string]any{"type": "publish", "id": "r2", "topic": "no-such-topic", "tenant": "acme", "payload": []byte("x")})
	if f := p.next(20*time.Second, byID("r2")); f.Type != wsTypeError || f.Code != "TOPIC_NOT_FOUND" || f.For != wsTypePublish {
		t.Fatalf("publish to a missing topic: %+v", f)
	}
	for _, id := range []string{"all", "from5"} {
		ev := a.events(id, 1)[0]
		if ev.Offset != 20 || ev.Sequence != 21 || string(ev.Payload) != "published" || string(ev.Key) != "k" ||
			ev.Headers["via"] != "ws" || ev.EventID != ack.EventID {
			t.Fatalf("%s: published event arrived as %+v", id, ev)
		}
	}

	// Unsubscribe: answered with the position; the id is free again.
	a.send(map[string]any{"type": "unsubscribe", "id": "from5"})
	if f := a.next(20*time.Second, byID("from5")); f.Type != wsTypeUnsubscribed || f.NextOffset != 21 {
		t.Fatalf("unsubscribe: %+v", f)
	}
	a.send(map[string]any{"type": "unsubscribe", "id": "from5"})
	if f := a.next(20*time.Second, byID("from5")); f.Type != wsTypeError || f.For != wsTypeUnsubscribe {
		t.Fatalf("unsubscribe twice: %+v", f)
	}

	// Resume on another node from the last position and the epoch: the
	// next event, nothing before it, nothing twice.
	last := all[len(all)-1]
	if err := a.conn.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		produceRetry(t, hc, "ws", &heraldpb.Event{TenantId: "acme", Payload: []byte(fmt.Sprintf("after %d", i))})
	}
	b := wsDial(t, c, 2, nil, 0).read()
	b.send(map[string]any{"type": "subscribe", "id": "resume", "topic": "ws", "start": "offset", "offset": 21, "epoch": epoch, "heartbeat_ms": 100})
	if f := b.next(20*time.Second, byID("resume")); f.Type != wsTypeSubscribed || f.NextOffset != 21 {
		t.Fatalf("resume: %+v", f)
	}
	resumed := b.events("resume", 3)
	checkOffsets(t, resumed, 21)
	if resumed[0].Sequence != 22 || string(resumed[0].Payload) != "after 0" {
		t.Fatalf("resumed at %+v after %+v", resumed[0], last)
	}
	// An idle subscription heartbeats the high watermark.
	hb := b.next(20*time.Second, func(f wsTestFrame) bool { return f.Type == wsTypeHeartbeat })
	if hb.ID != "resume" || hb.NextOffset != 24 || hb.HighWatermark != 24 || hb.Epoch != epoch {
		t.Fatalf("heartbeat %+v", hb)
	}
	// And keeps doing so (the hub's next scan is due by then).
	if hb := b.next(20*time.Second, func(f wsTestFrame) bool { return f.Type == wsTypeHeartbeat }); hb.ID != "resume" {
		t.Fatalf("second heartbeat %+v", hb)
	}

	// Starts by tenant sequence and by time, and the filters, as in gRPC.
	b.send(map[string]any{"type": "subscribe", "id": "seq", "topic": "ws", "start": "sequence", "sequence": 23, "tenant": "acme"})
	if ev := b.events("seq", 2); ev[0].Offset != 22 || ev[0].Sequence != 23 || ev[1].Offset != 23 {
		t.Fatalf("from sequence 23: %+v", ev)
	}
	b.send(map[string]any{"type": "subscribe", "id": "time", "topic": "ws", "start": "time", "time": resumed[1].Time})
	if ev := b.events("time", 2); ev[0].Offset != 22 {
		t.Fatalf("from the time of offset 22: %+v", ev)
	}
	b.send(map[string]any{"type": "subscribe", "id": "flt", "topic": "ws", "start": "earliest", "heartbeat_ms": 100,
		"tenant": "acme", "key": []byte{13}, "headers": map[string]string{"i": "13"}})
	if ev := b.events("flt", 1); ev[0].Offset != 13 {
		t.Fatalf("filtered: %+v", ev)
	}
	if hb := b.next(20*time.Second, func(f wsTestFrame) bool { return f.Type == wsTypeHeartbeat && f.ID == "flt" }); hb.NextOffset != 24 {
		t.Fatalf("a filtered subscription moves past what it skips: %+v", hb)
	}

	// A node that stops closes its connections with 1001, promptly.
	began := time.Now()
	c.stop(2)
	if code := b.closed(10 * time.Second); code != websocket.CloseGoingAway {
		t.Fatalf("node stop closed the connection with %d, want %d", code, websocket.CloseGoingAway)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("stopping a node with a WebSocket client took %v", d)
	}
}

// A frame above the read limit closes the connection with 1009; origins
// other than the node's own and the configured ones are refused; binary
// frames are answered with an error.
func TestWSLimitsAndOrigins(t *testing.T) {
	c := startClusterConfig(t, 3, func(cfg *Config) {
		cfg.WebSocket.ReadBytesMax = 64 << 10
		cfg.WebSocket.AllowedOrigins = []string{"https://console.example"}
	})
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	url := wsURL(c.cfgs[0].HTTPAddr)
	_, resp, err := d.Dial(url, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err %v, response %v; want 403", err, resp)
	}
	if got := testutil.ToFloat64(c.nodes[0].metrics.wsRefused.WithLabelValues("origin")); got != 1 {
		t.Fatalf("origin refusals counted %v", got)
	}
	for _, origin := range []string{"https://console.example", "http://" + c.cfgs[0].HTTPAddr} {
		w := wsDial(t, c, 0, http.Header{"Origin": {origin}}, 0)
		w.conn.Close()
	}

	w := wsDial(t, c, 0, nil, 0).read()
	if err := w.conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if f := w.next(20*time.Second, nil); f.Type != wsTypeError || f.Code != "INVALID_ARGUMENT" || f.For != "frame" {
		t.Fatalf("binary frame: %+v", f)
	}
	big := `{"type":"publish","id":"big","topic":"t","payload":"` + strings.Repeat("A", 100<<10) + `"}`
	// The server may close before the client has written the whole frame
	// (the library sends it in fragments): the write's error is not the
	// test's, the close code is.
	_ = w.conn.WriteMessage(websocket.TextMessage, []byte(big))
	if code := w.closed(20 * time.Second); code != websocket.CloseMessageTooBig {
		t.Fatalf("oversized frame closed with %d, want %d", code, websocket.CloseMessageTooBig)
	}
	eventually(t, 10*time.Second, func() error {
		if got := testutil.ToFloat64(c.nodes[0].metrics.wsCloses.WithLabelValues("1009")); got != 1 {
			return fmt.Errorf("closes{code=1009} = %v", got)
		}
		return nil
	})
}

// A client that stops reading is closed with 4008 once its send queue has
// stayed full for the slow-consumer timeout, while another client of the
// same node keeps receiving.
func TestWSSlowConsumerClosed(t *testing.T) {
	// Registered first, so it runs last: once the cluster has closed, no
	// connection, writer, subscription or publish goroutine is left.
	t.Cleanup(func() {
		goleak.VerifyNone(t, goleak.IgnoreCurrent(),
			goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).releaseLoop"),
			goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"))
	})
	c := startClusterConfig(t, 3, func(cfg *Config) {
		cfg.WebSocket.SendQueueBytesMax = 64 << 10
		cfg.WebSocket.SendQueueFramesMax = 8
		cfg.WebSocket.SlowConsumerTimeout = time.Second
		cfg.WebSocket.WriteTimeout = time.Minute
		cfg.WebSocket.SocketSendBufferBytes = 16 << 10
	})
	hc := c.rawClient(0)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "slow", Partitions: 1, ReplicationFactor: 3, AutoTenants: true})

	slow := wsDial(t, c, 0, nil, 4<<10)
	slow.send(map[string]any{"type": "subscribe", "id": "s", "topic": "slow", "start": "earliest"})
	fast := wsDial(t, c, 0, nil, 0).read()
	fast.send(map[string]any{"type": "subscribe", "id": "f", "topic": "slow", "start": "earliest"})
	if f := fast.next(20*time.Second, byID("f")); f.Type != wsTypeSubscribed {
		t.Fatalf("fast: %+v", f)
	}

	// 1 MiB of events, one per call (the cluster stays responsive on a
	// loaded machine): more than the slow client's socket buffers and its
	// send queue hold.
	events := produceUntil(t, hc, "slow", 64, bytes.Repeat([]byte("x"), 16<<10))
	checkOffsets(t, fast.events("f", events), 0)

	drops := c.nodes[0].metrics.wsQueueDrops.WithLabelValues("slow_consumer")
	eventually(t, 30*time.Second, func() error {
		if testutil.ToFloat64(drops) == 0 {
			return errors.New("the slow client is not closed yet")
		}
		return nil
	})
	// The fast client still receives.
	produceRetry(t, hc, "slow", &heraldpb.Event{TenantId: "acme", Payload: []byte("later")})
	if ev := fast.events("f", 1)[0]; ev.Offset != uint64(events) || string(ev.Payload) != "later" {
		t.Fatalf("fast client after the slow one was closed: %+v", ev)
	}
	// The slow client, reading at last, finds what was sent, then 4008.
	slow.read()
	var got uint64
	for {
		select {
		case f := <-slow.frames:
			if f.Type == wsTypeEvents {
				if len(f.Events) > 0 && f.Events[0].Offset != got {
					t.Fatalf("slow client: events from %d, want %d", f.Events[0].Offset, got)
				}
				got = f.NextOffset
			}
			continue
		case <-slow.done:
		case <-time.After(30 * time.Second):
			t.Fatal("slow client: no close")
		}
		break
	}
	if code := slow.closed(time.Second); code != wsCloseSlowConsumer {
		t.Fatalf("slow client closed with %d, want %d", code, wsCloseSlowConsumer)
	}
	if got >= uint64(events) {
		t.Fatalf("the slow client got everything (%d events): it was not slow", got)
	}
}

// produceUntil produces events of payload to a one-partition topic, one
// per call, until the partition holds at least n; a call whose outcome is
// unknown (an election under load) may have written its event, so the
// count is the partition's: it returns it.
func produceUntil(t *testing.T, hc heraldpb.HeraldClient, topic string, n int, payload []byte) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := produceAnswered(t, hc, &heraldpb.ProduceRequest{Topic: topic,
			Events: []*heraldpb.Event{{TenantId: "acme", Payload: payload}}})
		if errors.Is(err, wire.ErrUnknownOutcome) {
			continue
		}
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
		if off := resp.GetResults()[0].GetOffset(); off+1 >= uint64(n) {
			return int(off + 1)
		}
	}
	t.Fatalf("could not produce %d events in 60s", n)
	return 0
}
