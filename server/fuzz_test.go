package server

import (
	"encoding/json"
	"errors"
	"maps"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/server/controller"
)

// Fuzz targets for what a client sends: the gRPC requests' bytes as the
// server unmarshals them and the checks it runs before anything is
// planned or proposed, and the WebSocket gateway's JSON frames
// (docs/operations.md, "Fuzz targets"). Each must end in a typed refusal
// (a *wire.Error with its reason) or in a request whose events store and
// read back unchanged.

// fuzzTopic is the topic the fuzzed events are checked against: no
// contract beyond the event size, three partitions, a TTL default.
var fuzzTopic = &controller.Topic{
	Name: "fuzz", Partitions: []controller.Partition{{Index: 0}, {Index: 1}, {Index: 2}},
	MaxEventBytes: 64 << 10, Contract: controller.Contract{Ordering: controller.Ordering(heraldpb.Ordering_PER_KEY), DefaultTTLMs: 1000},
}

// requireRefusal fails unless err is a typed wire refusal of the client's
// input (never an internal error, never an untyped one).
func requireRefusal(t *testing.T, err error) {
	t.Helper()
	var we *wire.Error
	if !errors.As(err, &we) {
		t.Fatalf("refusal %v (%T) is not a *wire.Error", err, err)
	}
	if we.Reason == heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED || we.Code == codes.Internal || we.Code == codes.Unknown {
		t.Fatalf("refusal %v has reason %v and code %v", err, we.Reason, we.Code)
	}
}

// checkEvents runs what Produce runs on events before planning
// (validateEvent, the partition choice, the stored encoding) and checks
// that each stored event reads back, over gRPC and over WebSocket, as the
// event sent plus the server-assigned fields. It reports whether the
// events were accepted.
func checkEvents(t *testing.T, events []*heraldpb.Event) bool {
	t.Helper()
	if len(events) == 0 || len(events) > produceEventsMax {
		return false
	}
	for i, ev := range events {
		if err := validateEvent(i, ev, fuzzTopic.MaxEventBytes); err != nil {
			requireRefusal(t, err)
			return false
		}
		if ev.TtlMs < 0 {
			return false // checkContract refuses it (with the node's registry)
		}
	}
	sent := make([]*heraldpb.Event, len(events))
	for i, ev := range events {
		sent[i] = proto.Clone(ev).(*heraldpb.Event)
	}
	records := encodeRecords(events, fuzzTopic)
	for i, rec := range records {
		p := wire.PartitionFor(heraldpb.Ordering(fuzzTopic.Ordering), sent[i].TenantId, sent[i].Key, sent[i].EventId, uint32(len(fuzzTopic.Partitions)))
		if p >= uint32(len(fuzzTopic.Partitions)) {
			t.Fatalf("event %d routed to partition %d of %d", i, p, len(fuzzTopic.Partitions))
		}
		stored := heraldlog.Record{Offset: uint64(i) + 40, Sequence: uint64(i) + 1, Tenant: rec.TenantID, TimestampUnixNano: 1_700_000_000_000_000_000 + int64(i), Body: rec.Event}
		want := proto.Clone(sent[i]).(*heraldpb.Event)
		want.Offset, want.Sequence, want.ProducedAtUnixNano, want.Partition = stored.Offset, stored.Sequence, stored.TimestampUnixNano, p
		want.TtlMs, want.ProducerEpoch = effectiveTTL(sent[i].TtlMs, fuzzTopic), 0

		// gRPC: the pre-encoded wire event decodes as FetchResponse.events.
		resp := &heraldpb.FetchResponse{}
		resp.ProtoReflect().SetUnknown(appendWireEvent(nil, &stored, p))
		b, err := proto.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		var got heraldpb.FetchResponse
		if err := proto.Unmarshal(b, &got); err != nil {
			t.Fatalf("wire event does not decode: %v", err)
		}
		if len(got.Events) != 1 || !proto.Equal(got.Events[0], want) {
			t.Fatalf("event %d reads back as %v, want %v", i, got.Events, want)
		}

		// WebSocket: the JSON event object decodes to the same event.
		var ws wire.WSEvent
		if err := json.Unmarshal(wsEncodeEvent(&stored, p), &ws); err != nil {
			t.Fatalf("WebSocket event does not decode: %v", err)
		}
		at, err := time.Parse(time.RFC3339Nano, ws.Time)
		if err != nil || at.UnixNano() != stored.TimestampUnixNano {
			t.Fatalf("WebSocket time %q (%v), want %d", ws.Time, err, stored.TimestampUnixNano)
		}
		fromWS := &heraldpb.Event{EventId: ws.EventID, TenantId: ws.Tenant, Key: ws.Key, Offset: ws.Offset, Sequence: ws.Sequence,
			CausationId: ws.CausationID, CorrelationId: ws.CorrelationID, Traceparent: ws.Traceparent, TtlMs: ws.TTLMs,
			Schema: ws.Schema, SchemaVersion: ws.SchemaVersion, ContentType: ws.ContentType, Headers: ws.Headers, Payload: ws.Payload,
			ProducedAtUnixNano: at.UnixNano(), ProducerId: ws.ProducerID, ProducerSeq: ws.ProducerSeq, Partition: ws.Partition}
		// Fields this version does not know are stored and passed on over
		// gRPC as they came; JSON has no place for them.
		wantWS := proto.Clone(want)
		wantWS.ProtoReflect().SetUnknown(nil)
		if !proto.Equal(fromWS, wantWS) {
			t.Fatalf("event %d reads back over WebSocket as %v, want %v", i, fromWS, want)
		}

		// A subscription's key and header filter agrees with the decoded
		// event (bodyMatches parses the stored body by hand).
		filter := &subscribeFilter{key: want.Key, hasKey: true, headers: maps.Clone(want.Headers)}
		if !bodyMatches(stored.Body, filter) {
			t.Fatalf("event %d does not match a filter on its own key and headers", i)
		}
		filter.key = append(append([]byte(nil), want.Key...), 'x')
		if bodyMatches(stored.Body, filter) {
			t.Fatalf("event %d matches a filter on another key", i)
		}
	}
	return true
}

// fuzzEvents are valid events, the seeds' material.
func fuzzEvents() []*heraldpb.Event {
	return []*heraldpb.Event{
		{TenantId: "acme", Payload: []byte("hello")},
		{TenantId: "acme", EventId: "e-1", Key: []byte("k"), Headers: map[string]string{"a": "1", "b": ""}, Payload: []byte{0, 1, 2},
			CausationId: "c", CorrelationId: "r", Traceparent: "00-01", TtlMs: 60_000, Schema: "s", SchemaVersion: 3, ContentType: "application/json",
			ProducerId: "p1", ProducerSeq: 1, ProducerEpoch: 2},
		{TenantId: "t", Key: []byte{}, Offset: 99, Sequence: 7, Partition: 4, ProducedAtUnixNano: 5},
	}
}

// FuzzProduceRequest: a ProduceRequest's bytes, as the gRPC codec
// unmarshals them, through Produce's checks before planning.
func FuzzProduceRequest(f *testing.F) {
	events := fuzzEvents()
	for i := range events {
		b, err := proto.Marshal(&heraldpb.ProduceRequest{Topic: "fuzz", Events: events[i:]})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	big, _ := proto.Marshal(&heraldpb.ProduceRequest{Topic: "fuzz", Events: []*heraldpb.Event{{TenantId: "a", Payload: make([]byte, 70<<10)}}})
	f.Add(big)
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x00}) // one empty event

	f.Fuzz(func(t *testing.T, data []byte) {
		var req heraldpb.ProduceRequest
		if proto.Unmarshal(data, &req) != nil {
			return // the gRPC codec refuses it before the handler
		}
		checkEvents(t, req.GetEvents())
	})
}

// FuzzSubscribeRequest: a SubscribeRequest's bytes through the checks of
// a stream's first message.
func FuzzSubscribeRequest(f *testing.F) {
	for _, req := range []*heraldpb.SubscribeRequest{
		{Msg: &heraldpb.SubscribeRequest_Start{Start: &heraldpb.SubscribeStart{Topic: "fuzz", Partition: 1, Epoch: 3, TenantId: "acme",
			Key: []byte("k"), Headers: map[string]string{"a": "b"}, HeartbeatMs: 500, Start: &heraldpb.SubscribeStart_Sequence{Sequence: 4}}}},
		{Msg: &heraldpb.SubscribeRequest_Start{Start: &heraldpb.SubscribeStart{Topic: "fuzz", Start: &heraldpb.SubscribeStart_Position{Position: heraldpb.StartPosition_LATEST}}}},
		{Msg: &heraldpb.SubscribeRequest_Start{Start: &heraldpb.SubscribeStart{Topic: "fuzz", Start: &heraldpb.SubscribeStart_TimeUnixNano{TimeUnixNano: -1}}}},
		{Msg: &heraldpb.SubscribeRequest_Credit{Credit: &heraldpb.SubscribeCredit{Events: 10, Bytes: 1 << 20}}},
		{},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		var req heraldpb.SubscribeRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		start, err := subscribeStartError(&req)
		if err != nil {
			requireRefusal(t, err)
			return
		}
		if start.GetStart() == nil {
			t.Fatal("a start without a position passed")
		}
		if d := subscribeHeartbeat(start.GetHeartbeatMs()); d < subscribeHeartbeatMin {
			t.Fatalf("heartbeat %v below the minimum", d)
		}
	})
}

// FuzzGroupConsumeRequest: a GroupConsumeRequest's bytes through the
// checks of a stream's first message.
func FuzzGroupConsumeRequest(f *testing.F) {
	for _, req := range []*heraldpb.GroupConsumeRequest{
		{Msg: &heraldpb.GroupConsumeRequest_Start{Start: &heraldpb.GroupConsumeStart{Topic: "fuzz", Group: "g", MemberId: "m1", Generation: 1,
			Partition: 2, MaxBatchEvents: 100, MaxBatchBytes: 1 << 20, MaxBatchesInFlight: 2}}},
		{Msg: &heraldpb.GroupConsumeRequest_Start{Start: &heraldpb.GroupConsumeStart{Group: "g", MemberId: "m", MaxBatchEvents: groupConsumeBatchEventsMax + 1}}},
		{},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		var req heraldpb.GroupConsumeRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		start, err := checkGroupConsumeStart(&req)
		if err != nil {
			requireRefusal(t, err)
			return
		}
		if start.GetGeneration() == 0 || start.GetMemberId() == "" || start.GetMaxBatchEvents() > groupConsumeBatchEventsMax ||
			start.GetMaxBatchBytes() > groupConsumeBatchBytesMax || start.GetMaxBatchesInFlight() > groupConsumeBatchesInFlightMax {
			t.Fatalf("start %v passed", start)
		}
	})
}

// FuzzWSFrame: a WebSocket client frame through the gateway's decoder and
// the translation and checks of its type.
func FuzzWSFrame(f *testing.F) {
	for _, frame := range []string{
		`{"type":"subscribe","id":"s1","topic":"fuzz","partition":1,"start":"earliest"}`,
		`{"type":"subscribe","id":"s2","topic":"fuzz","start":"sequence","sequence":4,"tenant":"acme","key":"aw==","headers":{"a":"b"},"heartbeat_ms":500,"epoch":2}`,
		`{"type":"subscribe","id":"s3","topic":"fuzz","start":"time","time":"2026-01-02T03:04:05.123456789Z"}`,
		`{"type":"subscribe","id":"s4","topic":"fuzz","start":"offset","offset":-1}`,
		`{"type":"unsubscribe","id":"s1"}`,
		`{"type":"publish","id":"p1","topic":"fuzz","tenant":"acme","payload":"aGVsbG8=","key":"aw==","headers":{"h":"v"},"ttl_ms":5000,"producer_id":"p","producer_seq":1}`,
		`{"type":"publish","id":"p2","topic":"fuzz","tenant":"acme"}`,
		`{"type":"group_subscribe","id":"g1","topic":"fuzz","group":"g","member":"m","max_batch_events":10,"session_timeout_ms":10000}`,
		`{"type":"ack","id":"a1","sub":"g1","partition":0,"offsets":[1,2],"before":3}`,
		`{"type":"nack","id":"n1","sub":"g1","partition":0,"offsets":[1],"delay_ms":100}`,
		`{"type":"nope","id":"x"}`,
		`{"type":"subscribe"}`,
		`[]`,
		``,
	} {
		f.Add([]byte(frame))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := wsParse(data)
		if m == nil {
			t.Fatal("wsParse returned no message")
		}
		if err != nil {
			requireRefusal(t, err)
			return
		}
		if m.ID == "" || len(m.ID) > wsIDBytesMax {
			t.Fatalf("frame id %q passed", m.ID)
		}
		switch m.Type {
		case wsTypeSubscribe:
			st, err := m.subscribeStart()
			if err != nil {
				requireRefusal(t, err)
				return
			}
			if err := checkSubscribeStart(st); err != nil {
				requireRefusal(t, err)
			}
		case wsTypePublish:
			checkEvents(t, []*heraldpb.Event{m.event()})
		case wsTypeGroupSubscribe:
			o, err := m.groupOptions()
			if err != nil {
				requireRefusal(t, err)
				return
			}
			if o.MemberID == "" || o.MaxBatchEvents > wsGroupBatchEventsMax || o.MaxBatchBytes > wsGroupBatchBytesMax {
				t.Fatalf("group options %+v passed", o)
			}
		}
	})
}
