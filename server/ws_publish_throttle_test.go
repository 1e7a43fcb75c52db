package server

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldlog/herald/client/wire"
)

// TestWSPublishPausesReadingWhileThrottled: a publish refused at the
// node's produce limit is answered THROTTLED with retry_after_ms, and the
// connection's reader then reads nothing for that long (at most
// PublishPauseMax): the next publish, sent as soon as the refusal
// arrives, is read and acknowledged only after the pause. Pings go on
// meanwhile, and the connection stays open.
func TestWSPublishPausesReadingWhileThrottled(t *testing.T) {
	const pause = 700 * time.Millisecond
	c := startClusterConfig(t, 1, func(cfg *Config) {
		// The refusal's hint (20 s) is above the pause bound: the pause is
		// the bound.
		cfg.Limits = NodeLimits{ProduceBytesMax: 1 << 20, LimitWait: 10 * time.Millisecond, RetryAfter: 20 * time.Second}
		cfg.WebSocket.PublishPauseMax = pause
		cfg.WebSocket.PingInterval = 100 * time.Millisecond
		cfg.WebSocket.PongTimeout = 2 * time.Second
	})
	hc := c.rawClient(0)
	createTopic(t, hc, "wsp", 1, 1)
	createTenant(t, hc, "acme")
	n := c.nodes[0]
	// Take the node's whole produce budget: every produce is refused.
	if !n.limits.produceBytes.acquire(context.Background(), 1<<20, 0) {
		t.Fatal("could not take the produce budget")
	}
	ws := wsDial(t, c, 0, nil, 0).read()
	ws.send(map[string]any{"type": "publish", "id": "p1", "topic": "wsp", "tenant": "acme", "payload": []byte("refused")})
	f := ws.next(20*time.Second, byID("p1"))
	refusedAt := time.Now()
	if f.Type != wsTypeError || f.For != wsTypePublish || f.Code != "THROTTLED" {
		t.Fatalf("publish at the produce limit answered %+v, want a THROTTLED error", f)
	}
	if f.RetryAfterMs != 20_000 || f.Metadata[wire.MetadataWhat] != limitProduceBytes || f.Metadata[wire.MetadataLimit] != wire.LimitNodeLimit {
		t.Fatalf("refusal %+v: want retry_after_ms 20000, limit node_limit, what produce_bytes", f)
	}
	n.limits.produceBytes.release(1 << 20)
	ws.send(map[string]any{"type": "publish", "id": "p2", "topic": "wsp", "tenant": "acme", "payload": []byte("admitted")})
	f = ws.next(20*time.Second, byID("p2"))
	waited := time.Since(refusedAt)
	if f.Type != wsTypeAck || f.Offset != 0 {
		t.Fatalf("publish after the pause answered %+v, want an ack at offset 0 (the refused one wrote nothing)", f)
	}
	// The reader was paused before the refusal was sent: the next frame
	// waited the pause, less the refusal's way to the client.
	if waited < pause-200*time.Millisecond {
		t.Fatalf("the publish after a throttled one was answered %s after the refusal; the reader should have paused %s", waited, pause)
	}
	// Bounded by PublishPauseMax, not the 20 s hint (a wide margin).
	if waited > 10*time.Second {
		t.Fatalf("the reader paused %s: more than PublishPauseMax %s", waited, pause)
	}
	if got := testutil.ToFloat64(n.metrics.wsPublishPauses); got < 1 {
		t.Fatalf("herald_ws_publish_pauses_total %v, want at least 1", got)
	}
}
