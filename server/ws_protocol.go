package server

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
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

// Client message types.
const (
	wsTypeSubscribe   = "subscribe"
	wsTypeUnsubscribe = "unsubscribe"
	wsTypePublish     = "publish"
)

// Server message types.
const (
	wsTypeSubscribed   = "subscribed"
	wsTypeUnsubscribed = "unsubscribed"
	wsTypeEvents       = "events"
	wsTypeHeartbeat    = "heartbeat"
	wsTypeAck          = "ack"
	wsTypeError        = "error"
)

// Close codes the gateway sends besides the standard ones (1000 normal,
// 1001 node stopping, 1009 frame above the read limit, 1011 server error).
const (
	// wsCloseSlowConsumer: the client read too slowly; its send queue
	// stayed full for the slow-consumer timeout. Resume by reconnecting
	// from the last position received.
	wsCloseSlowConsumer = 4008
)

// wsIDBytesMax bounds a client-chosen subscription or request id.
const wsIDBytesMax = 128

// wsClientMessage is any client frame; which fields matter depends on Type.
// Numbers the client may get wrong (negative, absurd) are decoded signed
// and checked, so the error names them.
type wsClientMessage struct {
	Type string `json:"type"`
	ID   string `json:"id"`

	// subscribe and publish
	Topic string `json:"topic"`
	// subscribe
	Partition   *int64            `json:"partition"`
	Start       string            `json:"start"` // earliest | latest | offset | sequence | time
	Offset      *int64            `json:"offset"`
	Sequence    *int64            `json:"sequence"`
	Time        string            `json:"time"`
	Epoch       *int64            `json:"epoch"`
	Tenant      string            `json:"tenant"`
	Key         []byte            `json:"key"`
	Headers     map[string]string `json:"headers"`
	HeartbeatMs *int64            `json:"heartbeat_ms"`
	// publish (tenant, key, headers above)
	Payload       []byte `json:"payload"`
	EventID       string `json:"event_id"`
	CausationID   string `json:"causation_id"`
	CorrelationID string `json:"correlation_id"`
	Traceparent   string `json:"traceparent"`
	ContentType   string `json:"content_type"`
	Schema        string `json:"schema"`
	SchemaVersion uint32 `json:"schema_version"`
	TTLMs         int64  `json:"ttl_ms"`
	ProducerID    string `json:"producer_id"`
	ProducerSeq   uint64 `json:"producer_seq"`
	ProducerEpoch uint64 `json:"producer_epoch"`
}

// wsParse decodes one client frame. On error the message holds what could
// be read (the id, when present, so that the error can name it).
func wsParse(data []byte) (*wsClientMessage, error) {
	var m wsClientMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return &m, wire.InvalidArgument("frame", "malformed frame: %v", err)
	}
	switch m.Type {
	case wsTypeSubscribe, wsTypeUnsubscribe, wsTypePublish:
	case "":
		return &m, wire.InvalidArgument("type", "a frame needs a type: subscribe, unsubscribe or publish")
	default:
		return &m, wire.InvalidArgument("type", "unknown frame type %q: want subscribe, unsubscribe or publish", m.Type)
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
type wsEvent struct {
	Offset        uint64            `json:"offset"`
	Sequence      uint64            `json:"sequence"`
	Partition     uint32            `json:"partition"`
	Tenant        string            `json:"tenant"`
	EventID       string            `json:"event_id"`
	Time          string            `json:"time"`
	Key           []byte            `json:"key,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	Payload       []byte            `json:"payload"`
	CausationID   string            `json:"causation_id,omitempty"`
	CorrelationID string            `json:"correlation_id,omitempty"`
	Traceparent   string            `json:"traceparent,omitempty"`
	ContentType   string            `json:"content_type,omitempty"`
	Schema        string            `json:"schema,omitempty"`
	SchemaVersion uint32            `json:"schema_version,omitempty"`
	TTLMs         int64             `json:"ttl_ms,omitempty"`
	ProducerID    string            `json:"producer_id,omitempty"`
	ProducerSeq   uint64            `json:"producer_seq,omitempty"`
}

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

// wsPosition is the frame of subscribed, unsubscribed and heartbeat: where
// the subscription stands.
type wsPosition struct {
	Type          string `json:"type"`
	ID            string `json:"id"`
	Topic         string `json:"topic,omitempty"`
	Partition     uint32 `json:"partition"`
	Epoch         uint64 `json:"epoch"`
	NextOffset    uint64 `json:"next_offset"`
	HighWatermark uint64 `json:"high_watermark"`
	LowWatermark  uint64 `json:"low_watermark"`
}

// wsAck answers a publish.
type wsAck struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Partition uint32 `json:"partition"`
	Offset    uint64 `json:"offset"`
	Sequence  uint64 `json:"sequence"`
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// wsError is an error frame. For says what it answers: "subscribe",
// "unsubscribe", "publish", or "frame" (a frame the server could not take
// as any of them). Ended is set when a subscription ended with it.
type wsError struct {
	Type          string            `json:"type"`
	ID            string            `json:"id,omitempty"`
	For           string            `json:"for"`
	Code          string            `json:"code"`
	Message       string            `json:"message"`
	Ended         bool              `json:"ended,omitempty"`
	LowWatermark  *uint64           `json:"low_watermark,omitempty"`
	HighWatermark *uint64           `json:"high_watermark,omitempty"`
	Epoch         *uint64           `json:"epoch,omitempty"`
	CurrentEpoch  *uint64           `json:"current_epoch,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
}

// wsErrorOf describes err as an error frame: the code is the Herald
// reason (the ErrorReason name, as gRPC's ErrorInfo carries it), or for
// an error without one the gRPC code in upper snake case (UNAVAILABLE,
// DEADLINE_EXCEEDED, INTERNAL, ...); the bounds come from its metadata.
func wsErrorOf(id, forType string, err error) *wsError {
	st := wire.Status(err)
	e := &wsError{Type: wsTypeError, ID: id, For: forType, Code: upperSnake(st.Code()), Message: st.Message()}
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
	return e
}

// upperSnake spells a gRPC code as the error frames do: DeadlineExceeded
// as DEADLINE_EXCEEDED.
func upperSnake(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}
