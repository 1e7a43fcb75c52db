package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/client/wsclient"
)

// A group member on a socket that stops reading is closed with 4008 like
// a subscriber; its member leaves the group, and the same member id,
// subscribing again on another socket, gets every event that was not
// acknowledged, those delivered before with a higher delivery count.
func TestWSGroupSlowSocketClosedAndRejoined(t *testing.T) {
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
	t.Cleanup(c.close)
	hc := c.rawClient(0)
	// Eight partitions: each sends a member at most two batches not
	// settled, so a slow socket's queue overflows only with several.
	createAutoTopic(t, hc, "slowg", 8, 3)
	var perPartition [8]uint64
	for i := range 64 {
		// One event per call; one of unknown outcome (an election under
		// load) may be written or not: the counts are read back below.
		ev := &heraldpb.Event{TenantId: fmt.Sprintf("t%d", i%8), Payload: bytes.Repeat([]byte("x"), 16<<10)}
		if _, err := produceAnswered(t, hc, &heraldpb.ProduceRequest{Topic: "slowg", Events: []*heraldpb.Event{ev}}); err != nil &&
			!errors.Is(err, wire.ErrUnknownOutcome) {
			t.Fatalf("produce: %v", err)
		}
	}
	if _, err := hc.CreateGroup(ctxTimeout(t, 20*time.Second), &heraldpb.CreateGroupRequest{Topic: "slowg", Group: "g",
		Config: &heraldpb.ConsumerGroupConfig{AckWaitMs: 120_000}}); err != nil {
		t.Fatalf("create group: %v", err)
	}
	events := 0
	created, err := hc.DescribeGroup(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeGroupRequest{Topic: "slowg", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range created.GetGroup().GetPartitions() {
		perPartition[p.GetPartition()] = p.GetHighWatermark()
		events += int(p.GetHighWatermark())
	}
	slow := wsDial(t, c, 0, nil, 4<<10)
	slow.send(map[string]any{"type": "group_subscribe", "id": "s", "topic": "slowg", "group": "g", "member": "m",
		"max_batch_events": 4})
	drops := c.nodes[0].metrics.wsQueueDrops.WithLabelValues("slow_consumer")
	eventually(t, 30*time.Second, func() error {
		if testutil.ToFloat64(drops) == 0 {
			return errors.New("the slow client is not closed yet")
		}
		return nil
	})
	// Its member left: no node runs a WebSocket member any more.
	eventually(t, 30*time.Second, func() error {
		for i := range c.nodes {
			if v := testutil.ToFloat64(c.nodes[i].metrics.wsGroup.subscriptions); v != 0 {
				return fmt.Errorf("node %d runs %v group subscriptions", i, v)
			}
		}
		return nil
	})
	slow.read()
	for {
		select {
		case <-slow.frames:
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

	// The same member, reading this time, gets everything: nothing was
	// acknowledged.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var urls []string
	for i := range c.cfgs {
		urls = append(urls, wsURL(c.cfgs[i].HTTPAddr))
	}
	wc, err := wsclient.Dial(ctx, wsclient.Config{URLs: urls})
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	sub, err := wc.GroupSubscribe(ctx, wsclient.GroupSubscribeOptions{Topic: "slowg", Group: "g", MemberID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// A rebalance or a leader move (elections happen on a loaded test
	// machine) may end a partition's stream before an ack leaves: the
	// offset comes again, so the count is of offsets acked.
	acked := map[wsGroupTestKey]bool{}
	var ackedPer [8]uint64
	redelivered := 0
	for len(acked) < events {
		b, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("after %d events acknowledged: %v", len(acked), err)
		}
		for i, e := range b.Events {
			if i > 0 && e.Offset <= b.Events[i-1].Offset {
				t.Fatalf("partition %d: offset %d after %d in a batch", b.Partition, e.Offset, b.Events[i-1].Offset)
			}
			if e.DeliveryCount > 1 {
				redelivered++
			}
		}
		res, err := sub.AckBefore(ctx, b.Partition, b.Events[len(b.Events)-1].Offset+1)
		if err != nil {
			t.Fatal(err)
		}
		if res, err = ackUnknownAgain(ctx, sub, b.Partition, res); err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			switch r.Outcome {
			case wire.WSAckAcked:
				k := wsGroupTestKey{b.Partition, r.Offset}
				if acked[k] {
					t.Fatalf("offset %d of partition %d acknowledged twice", r.Offset, b.Partition)
				}
				acked[k] = true
				ackedPer[b.Partition]++
			case wire.WSAckFenced, wire.WSAckFailed:
				// Not recorded (a rebalance, or a leader move that ended
				// the stream before the ack left): it comes again.
			default:
				t.Fatalf("ack result %+v", r)
			}
		}
	}
	if ackedPer != perPartition {
		t.Fatalf("acknowledged %v per partition, want %v", ackedPer, perPartition)
	}
	if redelivered == 0 {
		t.Fatal("no event came with a delivery count above 1: the slow socket was sent none")
	}
	info, err := hc.DescribeGroup(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeGroupRequest{Topic: "slowg", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetGroup().GetPending() != 0 || info.GetGroup().GetLagEvents() != 0 {
		t.Fatalf("pending %d, lag %d after every ack; want 0 and 0", info.GetGroup().GetPending(), info.GetGroup().GetLagEvents())
	}
}
