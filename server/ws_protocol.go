package server

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	heraldlog "github.com/heraldlog/herald/log"
)

// The WebSocket gateway's JSON messages (docs/protocol.md, "WebSocket").
// Every frame is one JSON object in a text message with a "type". Bytes
// (key, payload) are standard base64 with padding (RFC 4648 §4) both ways;
// times are RFC 3339 in UTC; integers are JSON numbers (offsets,
// sequences and epochs stay below 2^53). Fields a receiver does not know
// are ignored, so both sides may add fields; types and codes are
// append-only.

// The frame types, names and codes are the wire package's (client/wire/ws.go),
// shared with the Go WebSocket client; the short names below keep the
// gateway's code as it was.

// Client message types.
const (
	wsTypeSubscribe   = wire.WSTypeSubscribe
	wsTypeUnsubscribe = wire.WSTypeUnsubscribe
	wsTypePublish     = wire.WSTypePublish
	// Consumer groups (ws_group.go).
	wsTypeGroupSubscribe   = wire.WSTypeGroupSubscribe
	wsTypeGroupUnsubscribe = wire.WSTypeGroupUnsubscribe
	wsTypeGroupAck         = wire.WSTypeGroupAck
	wsTypeGroupNack        = wire.WSTypeGroupNack
)

// Server message types.
const (
	wsTypeSubscribed   = wire.WSTypeSubscribed
	wsTypeUnsubscribed = wire.WSTypeUnsubscribed
	wsTypeEvents       = wire.WSTypeEvents
	wsTypeHeartbeat    = wire.WSTypeHeartbeat
	wsTypeAck          = wire.WSTypeAck
	wsTypeError        = wire.WSTypeError
	// Consumer groups (ws_group.go).
	wsTypeGroupSubscribed   = wire.WSTypeGroupSubscribed
	wsTypeGroupEvents       = wire.WSTypeGroupEvents
	wsTypeGroupUnsubscribed = wire.WSTypeGroupUnsubscribed
	wsTypeGroupAckResult    = wire.WSTypeGroupAckResult
)

// wsCloseSlowConsumer: the client read too slowly (wire.WSCloseSlowConsumer).
const wsCloseSlowConsumer = wire.WSCloseSlowConsumer

// wsIDBytesMax bounds a client-chosen subscription or request id.
const wsIDBytesMax = wire.WSIDBytesMax

// wsClientMessage is any client frame (wire.WSClientMessage), a type of
// its own here for the translations below.
type wsClientMessage wire.WSClientMessage

// wsClientTypes lists the client frame types, for errors.
const wsClientTypes = "subscribe, unsubscribe, publish, group_subscribe, group_unsubscribe, ack or nack"

// wsParse decodes one client frame. On error the message holds what could
// be read (the id, when present, so that the error can name it).
func wsParse(data []byte) (*wsClientMessage, error) {
	var m wsClientMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return &m, wire.InvalidArgument("frame", "malformed frame: %v", err)
	}
	switch m.Type {
	case wsTypeSubscribe, wsTypeUnsubscribe, wsTypePublish,
		wsTypeGroupSubscribe, wsTypeGroupUnsubscribe, wsTypeGroupAck, wsTypeGroupNack:
	case "":
		return &m, wire.InvalidArgument("type", "a frame needs a type: %s", wsClientTypes)
	default:
		return &m, wire.InvalidArgument("type", "unknown frame type %q: want %s", m.Type, wsClientTypes)
	}
	if m.ID == "" {
		return &m, wire.InvalidArgument("id", "a %s frame needs an id", m.Type)
	}
	if len(m.ID) > wsIDBytesMax {
		return &m, wire.InvalidArgument("id", "id is %d bytes; the limit is %d", len(m.ID), wsIDBytesMax)
	}
	return &m, nil
}

// subscribeStart translates a subscribe frame into the engine's start.
func (m *wsClientMessage) subscribeStart() (*heraldpb.SubscribeStart, error) {
	st := &heraldpb.SubscribeStart{Topic: m.Topic, TenantId: m.Tenant, Key: m.Key, Headers: m.Headers}
	if m.Topic == "" {
		return nil, wire.InvalidArgument("topic", "subscribe needs a topic")
	}
	nonNegative := func(field string, v *int64) (uint64, error) {
		if v == nil {
			return 0, nil
		}
		if *v < 0 {
			return 0, wire.InvalidArgument(field, "%s %d is negative", field, *v)
		}
		return uint64(*v), nil
	}
	p, err := nonNegative("partition", m.Partition)
	if err != nil {
		return nil, err
	}
	if p > 1<<31 {
		return nil, wire.InvalidArgument("partition", "partition %d is out of range", p)
	}
	st.Partition = uint32(p)
	if st.Epoch, err = nonNegative("epoch", m.Epoch); err != nil {
		return nil, err
	}
	hb, err := nonNegative("heartbeat_ms", m.HeartbeatMs)
	if err != nil {
		return nil, err
	}
	st.HeartbeatMs = uint32(min(hb, 1<<31))
	switch m.Start {
	case "earliest":
		st.Start = &heraldpb.SubscribeStart_Position{Position: heraldpb.StartPosition_EARLIEST}
	case "latest":
		st.Start = &heraldpb.SubscribeStart_Position{Position: heraldpb.StartPosition_LATEST}
	case "offset":
		if m.Offset == nil {
			return nil, wire.InvalidArgument("offset", `start "offset" needs offset`)
		}
		off, err := nonNegative("offset", m.Offset)
		if err != nil {
			return nil, err
		}
		st.Start = &heraldpb.SubscribeStart_Offset{Offset: off}
	case "sequence":
		if m.Sequence == nil {
			return nil, wire.InvalidArgument("sequence", `start "sequence" needs sequence`)
		}
		seq, err := nonNegative("sequence", m.Sequence)
		if err != nil {
			return nil, err
		}
		st.Start = &heraldpb.SubscribeStart_Sequence{Sequence: seq}
	case "time":
		t, err := time.Parse(time.RFC3339Nano, m.Time)
		if err != nil {
			return nil, wire.InvalidArgument("time", `start "time" needs time in RFC 3339: %v`, err)
		}
		st.Start = &heraldpb.SubscribeStart_TimeUnixNano{TimeUnixNano: t.UnixNano()}
	case "":
		return nil, wire.InvalidArgument("start", "subscribe needs a start: earliest, latest, offset, sequence or time")
	default:
		return nil, wire.InvalidArgument("start", "unknown start %q: want earliest, latest, offset, sequence or time", m.Start)
	}
	return st, nil
}

// event translates a publish frame into the event Produce takes.
func (m *wsClientMessage) event() *heraldpb.Event {
	return &heraldpb.Event{EventId: m.EventID, TenantId: m.Tenant, Key: m.Key, Headers: m.Headers, Payload: m.Payload,
		CausationId: m.CausationID, CorrelationId: m.CorrelationID, Traceparent: m.Traceparent,
		ContentType: m.ContentType, Schema: m.Schema, SchemaVersion: m.SchemaVersion, TtlMs: m.TTLMs,
		ProducerId: m.ProducerID, ProducerSeq: m.ProducerSeq, ProducerEpoch: m.ProducerEpoch}
}

// wsEvent is one event as the gateway sends it.
type wsEvent = wire.WSEvent

// wsEncodeEvent encodes rec as a JSON event object: the tail's Encode for
// the gateway, called once per record however many subscribers take it.
// A body that does not decode (the log checked its checksum, so only a
// bug makes one) is sent with what the record header says and no payload.
func wsEncodeEvent(rec *heraldlog.Record, partitionIndex uint32) []byte {
	var ev heraldpb.Event
	_ = proto.Unmarshal(rec.Body, &ev)
	out := wsEvent{Offset: rec.Offset, Sequence: rec.Sequence, Partition: partitionIndex, Tenant: rec.Tenant,
		EventID: ev.EventId, Time: time.Unix(0, rec.TimestampUnixNano).UTC().Format(time.RFC3339Nano),
		Key: ev.Key, Headers: ev.Headers, Payload: ev.Payload, CausationID: ev.CausationId,
		CorrelationID: ev.CorrelationId, Traceparent: ev.Traceparent, ContentType: ev.ContentType,
		Schema: ev.Schema, SchemaVersion: ev.SchemaVersion, TTLMs: ev.TtlMs, ProducerID: ev.ProducerId, ProducerSeq: ev.ProducerSeq}
	if out.Payload == nil {
		out.Payload = []byte{}
	}
	b, err := json.Marshal(&out)
	if err != nil {
		// Every field marshals; strings with invalid UTF-8 are coerced.
		panic(fmt.Sprintf("server: encode event %d as JSON: %v", rec.Offset, err))
	}
	return b
}

// wsEventsFrame builds an events frame around the batch's pre-encoded
// event objects.
func wsEventsFrame(id string, partitionIndex uint32, epoch uint64, b *subscribeBatch) []byte {
	idJSON, _ := json.Marshal(id)
	out := make([]byte, 0, int(b.bytes)+len(b.entries)+160+len(idJSON))
	out = append(out, `{"type":"events","id":`...)
	out = append(out, idJSON...)
	out = append(out, `,"partition":`...)
	out = strconv.AppendUint(out, uint64(partitionIndex), 10)
	out = append(out, `,"epoch":`...)
	out = strconv.AppendUint(out, epoch, 10)
	out = append(out, `,"next_offset":`...)
	out = strconv.AppendUint(out, b.next, 10)
	out = append(out, `,"high_watermark":`...)
	out = strconv.AppendUint(out, b.highWatermark, 10)
	out = append(out, `,"low_watermark":`...)
	out = strconv.AppendUint(out, b.lowWatermark, 10)
	out = append(out, `,"events":[`...)
	for i, e := range b.entries {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e.Wire...)
	}
	return append(out, "]}"...)
}

// wsPosition is the frame of subscribed, unsubscribed and heartbeat.
type wsPosition = wire.WSPosition

// wsAck answers a publish.
type wsAck = wire.WSAck

// wsError is an error frame.
type wsError = wire.WSError

// wsErrorOf describes err as an error frame: the code is the Herald
// reason (the ErrorReason name, as gRPC's ErrorInfo carries it), or for
// an error without one the gRPC code in upper snake case (UNAVAILABLE,
// DEADLINE_EXCEEDED, INTERNAL, ...); the bounds come from its metadata.
func wsErrorOf(id, forType string, err error) *wsError {
	st := wire.Status(err)
	e := &wsError{Type: wsTypeError, ID: id, For: forType, Code: wire.WSCodeName(st.Code()), Message: st.Message()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() != "" {
			e.Code, e.Metadata = info.GetReason(), info.GetMetadata()
		}
	}
	num := func(key string) *uint64 {
		s, ok := e.Metadata[key]
		if !ok {
			return nil
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil
		}
		return &v
	}
	e.LowWatermark = num(wire.MetadataLowWatermark)
	e.HighWatermark = num(wire.MetadataHighWatermark)
	e.Epoch = num(wire.MetadataEpoch)
	e.CurrentEpoch = num(wire.MetadataCurrentEpoch)
	e.RetryAfterMs = num(wire.MetadataRetryAfterMs)
	return e
}
