package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Limits on what one client sends that had no test of their own (issue
// 14, hostile input); the WebSocket frame size (TestWSLimitsAndOrigins),
// the node's streams per connection (TestNodeLimitStreams) and the
// connections per address (TestConnLimitsPerAddressOnNode) are tested
// beside their code.

// TestWSSubscriptionsPerConnection: a WebSocket connection holds at most
// WebSocketConfig.SubscriptionsMax subscriptions; the one past it is
// refused alone (INVALID_ARGUMENT) and the others go on; one ended makes
// room.
func TestWSSubscriptionsPerConnection(t *testing.T) {
	c := startClusterConfig(t, 1, func(cfg *Config) { cfg.WebSocket.SubscriptionsMax = 2 })
	hc := c.rawClient(0)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "subs", Partitions: 1, ReplicationFactor: 1, AutoTenants: true})

	w := wsDial(t, c, 0, nil, 0).read()
	notHeartbeat := func(f wsTestFrame) bool { return f.Type != wsTypeHeartbeat }
	for _, id := range []string{"a", "b"} {
		w.send(map[string]any{"type": "subscribe", "id": id, "topic": "subs", "start": "earliest"})
		if f := w.next(20*time.Second, notHeartbeat); f.Type != wsTypeSubscribed || f.ID != id {
			t.Fatalf("subscribe %s: %+v", id, f)
		}
	}
	w.send(map[string]any{"type": "subscribe", "id": "c", "topic": "subs", "start": "earliest"})
	if f := w.next(20*time.Second, notHeartbeat); f.Type != wsTypeError || f.ID != "c" || f.Code != "INVALID_ARGUMENT" {
		t.Fatalf("third subscription: %+v, want an INVALID_ARGUMENT error", f)
	}
	w.send(map[string]any{"type": "unsubscribe", "id": "a"})
	if f := w.next(20*time.Second, notHeartbeat); f.Type != wsTypeUnsubscribed || f.ID != "a" {
		t.Fatalf("unsubscribe a: %+v", f)
	}
	w.send(map[string]any{"type": "subscribe", "id": "c", "topic": "subs", "start": "earliest"})
	if f := w.next(20*time.Second, notHeartbeat); f.Type != wsTypeSubscribed || f.ID != "c" {
		t.Fatalf("subscribe c after a ended: %+v", f)
	}
}

// TestGRPCMessageBytesMax: a gRPC request above grpcMessageBytesMax is
// refused ResourceExhausted before the handler runs (nothing written),
// and the node serves the next request.
func TestGRPCMessageBytesMax(t *testing.T) {
	c := startCluster(t, 1)
	hc := c.rawClient(0)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "big", Partitions: 1, ReplicationFactor: 1, AutoTenants: true, MaxEventBytes: 1 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := hc.Produce(ctx, &heraldpb.ProduceRequest{Topic: "big", Events: []*heraldpb.Event{{TenantId: "acme", Payload: make([]byte, grpcMessageBytesMax+1)}}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("request of %d bytes: %v, want ResourceExhausted", grpcMessageBytesMax+1, err)
	}
	results := produceRetry(t, hc, "big", &heraldpb.Event{TenantId: "acme", Payload: []byte("small")})
	if got := results[0].GetOffset(); got != 0 {
		t.Fatalf("first event written at offset %d: the refused request wrote something", got)
	}
}
