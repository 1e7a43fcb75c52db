package server

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
	heraldlog "github.com/heraldlog/herald/log"
)

// TestWireEventsDecodeAsEvents: records passed through as pre-encoded
// unknown fields decode on the client as FetchResponse.events, with the
// header's server-assigned fields winning over anything in the body.
func TestWireEventsDecodeAsEvents(t *testing.T) {
	stored := &heraldpb.Event{
		TenantId: "acme", EventId: "e-1", CausationId: "c-0", Key: []byte("k"),
		Payload: []byte("hello"), TtlMs: 60_000, SchemaVersion: 3,
		Offset: 999, // never in a stored body; must lose to the header anyway
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(stored)
	if err != nil {
		t.Fatal(err)
	}
	recs := []heraldlog.Record{
		{Offset: 41, Sequence: 7, Tenant: "acme", TimestampUnixNano: 1_700_000_000_123_456_789, Body: body},
		{Offset: 0, Sequence: 1, Tenant: "acme", TimestampUnixNano: -5, Body: nil}, // empty body, negative time
	}
	var raw []byte
	for i := range recs {
		raw = appendWireEvent(raw, &recs[i], 2)
	}
	resp := &heraldpb.FetchResponse{HighWatermark: 42, NextOffset: 42}
	resp.ProtoReflect().SetUnknown(raw)
	wire, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var got heraldpb.FetchResponse
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("client side left unknown bytes: %x", got.ProtoReflect().GetUnknown())
	}
	want0 := proto.Clone(stored).(*heraldpb.Event)
	want0.Offset, want0.Sequence, want0.ProducedAtUnixNano, want0.Partition = 41, 7, 1_700_000_000_123_456_789, 2
	want1 := &heraldpb.Event{TenantId: "acme", Offset: 0, Sequence: 1, ProducedAtUnixNano: -5, Partition: 2}
	if len(got.Events) != 2 || !proto.Equal(got.Events[0], want0) || !proto.Equal(got.Events[1], want1) {
		t.Fatalf("decoded events:\n got %v\nwant %v, %v", got.Events, want0, want1)
	}
	if got.HighWatermark != 42 || got.NextOffset != 42 {
		t.Fatalf("known fields lost: %v", &got)
	}
}
