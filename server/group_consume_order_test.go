package server

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldlog/herald/client/heraldpb"
)

// nextBatch returns the next batch of the stream, passing over ack
// results (each must have applied).
func nextBatch(t *testing.T, stream heraldpb.Herald_GroupConsumeClient) *heraldpb.GroupConsumeBatch {
	t.Helper()
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if r := resp.GetAckResult(); r != nil {
			if r.GetRefused() || r.GetUnknownOutcome() {
				t.Fatalf("ack result %v", r)
			}
			continue
		}
		if b := resp.GetBatch(); b != nil {
			return b
		}
		t.Fatalf("got %v, want a batch or an ack result", resp)
	}
}

// batchOffsets returns a batch's offsets and delivery counts.
func batchOffsets(b *heraldpb.GroupConsumeBatch) (offsets []uint64, counts []uint32) {
	for _, e := range b.GetEvents() {
		offsets = append(offsets, e.GetOffset())
	}
	return offsets, b.GetDeliveryCounts()
}

// A group created with key_order delivers no event while an earlier event
// of its tenant and key is pending: new offsets stop at the first held
// key (head of line), a nacked event comes back before the later event of
// its key, and events without a key are never held. Without key order the
// first batch would carry all seven events.
func TestGroupConsumeKeepsPerKeyOrder(t *testing.T) {
	f := newConsumeFixture(t, 0, &heraldpb.ConsumerGroupConfig{AckWaitMs: 60_000, KeyOrder: true}, "")
	keyed := func(key string) *heraldpb.Event {
		e := &heraldpb.Event{TenantId: "acme", Payload: []byte(key)}
		if key != "" {
			e.Key = []byte(key)
		}
		return e
	}
	// Offsets 0..6: A B C A D B (none).
	produceRetry(t, f.hc, f.topic, keyed("A"), keyed("B"), keyed("C"), keyed("A"), keyed("D"), keyed("B"), keyed(""))
	if got := f.describe(t); !got.GetPresent() {
		t.Fatalf("group not on the partition: %v", got)
	}

	stream := f.open(t, 1, "m1", 100)
	want := func(step string, b *heraldpb.GroupConsumeBatch, offsets []uint64, counts []uint32) {
		t.Helper()
		gotOffsets, gotCounts := batchOffsets(b)
		if !slices.Equal(gotOffsets, offsets) || !slices.Equal(gotCounts, counts) {
			t.Fatalf("%s: batch offsets %v counts %v, want %v %v", step, gotOffsets, gotCounts, offsets, counts)
		}
	}
	want("first batch", nextBatch(t, stream), []uint64{0, 1, 2}, []uint32{1, 1, 1}) // 3 is A's second

	sendAck(t, stream, 1, 0, 0) // A done: 3 may go; 5 waits for B (1)
	want("after A's ack", nextBatch(t, stream), []uint64{3, 4}, []uint32{1, 1})

	sendAck(t, stream, 2, 0, 1, 2) // B and C done
	want("after B's ack", nextBatch(t, stream), []uint64{5, 6}, []uint32{1, 1})

	// A nacked event of A comes back, and a new A waits behind it.
	// (4 is acknowledged first so that the stream has room for a batch:
	// at most two are in flight, and [5 6] is one.)
	produceRetry(t, f.hc, f.topic, keyed("A"), keyed("E")) // 7, 8
	sendAck(t, stream, 3, 0, 4)
	if err := stream.Send(&heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Nack{Nack: &heraldpb.GroupConsumeNack{
		Id: 4, Offsets: []uint64{3}}}}); err != nil {
		t.Fatalf("nack: %v", err)
	}
	want("after the nack", nextBatch(t, stream), []uint64{3}, []uint32{2}) // 7 held by 3, 8 behind it
	sendAck(t, stream, 5, 0, 3, 5, 6)
	want("after the redelivery's ack", nextBatch(t, stream), []uint64{7, 8}, []uint32{1, 1})
	sendAck(t, stream, 6, 0, 7, 8)

	eventually(t, 20*time.Second, func() error {
		if got := f.describe(t); got.GetFloor() != 9 || got.GetPending() != 0 {
			return fmt.Errorf("floor %d pending %d, want 9 and 0", got.GetFloor(), got.GetPending())
		}
		return nil
	})
	holds := f.c.nodes[f.leader(t)].metrics.groupConsume.keyOrderHolds.WithLabelValues(f.topic, f.group)
	if got := testutil.ToFloat64(holds); got < 3 {
		t.Fatalf("herald_group_key_order_holds_total %v, want at least 3", got)
	}
}
