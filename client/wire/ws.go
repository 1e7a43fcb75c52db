package wire

import (
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"
)

// The WebSocket gateway's JSON frames (docs/protocol.md, "WebSocket"), shared
// by the nodes' gateway (package server) and the Go WebSocket client
// (package wsclient), so both read and write one definition.
//
// Every frame is one JSON object in a text message with a "type". Bytes
// (key, payload) are standard base64 with padding (RFC 4648 §4) both ways;
// times are RFC 3339 in UTC; integers are JSON numbers (offsets, sequences
// and epochs stay below 2^53). Fields a receiver does not know are ignored,
// so both sides may add fields; types, codes and close codes are
// append-only, and no field is ever renamed (this is herald.v1).

// Client message types.
const (
	WSTypeSubscribe   = "subscribe"
	WSTypeUnsubscribe = "unsubscribe"
	WSTypePublish     = "publish"
	// Consumer groups over WebSocket (docs/protocol.md, "Consumer groups
	// over WebSocket").
	WSTypeGroupSubscribe   = "group_subscribe"
	WSTypeGroupUnsubscribe = "group_unsubscribe"
	WSTypeGroupAck         = "ack"
	WSTypeGroupNack        = "nack"
)

// Server message types.
const (
	WSTypeSubscribed   = "subscribed"
	WSTypeUnsubscribed = "unsubscribed"
	WSTypeEvents       = "events"
	WSTypeHeartbeat    = "heartbeat"
	WSTypeAck          = "ack"
	WSTypeError        = "error"
	// Consumer groups over WebSocket.
	WSTypeGroupSubscribed   = "group_subscribed"
	WSTypeGroupEvents       = "group_events"
	WSTypeGroupUnsubscribed = "group_unsubscribed"
	WSTypeGroupAckResult    = "ack_result"
)

// WSErrorForFrame is the For of an error frame that answers a frame the
// server could not take as any client message type.
const WSErrorForFrame = "frame"

// Close codes the gateway sends besides the standard ones (1000 normal,
// 1001 node stopping, 1009 frame above the read limit, 1011 server error).
const (
	// WSCloseSlowConsumer: the client read too slowly; its send queue
	// stayed full for the slow-consumer timeout. Resume by reconnecting
	// from the last position received.
	WSCloseSlowConsumer = 4008
	// WSCloseTokenExpired: the connection's token expired (on a cluster
	// that checks credentials). Reconnect with a new token and resume from
	// the last position received; the old token is refused (HTTP 401).
	WSCloseTokenExpired = 4001
)

// WSIDBytesMax bounds a client-chosen subscription or request id.
const WSIDBytesMax = 128

// WSClientMessage is any client frame; which fields matter depends on Type.
// Numbers the client may get wrong (negative, absurd) are signed pointers,
// so that the server can tell a missing field from zero and name a bad one.
type WSClientMessage struct {
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

	// group_subscribe (topic above)
	// (omitempty: a publish or subscribe frame does not carry them).
	Group            string `json:"group,omitempty"`
	Member           string `json:"member,omitempty"`
	MaxBatchEvents   *int64 `json:"max_batch_events,omitempty"`
	MaxBatchBytes    *int64 `json:"max_batch_bytes,omitempty"`
	SessionTimeoutMs *int64 `json:"session_timeout_ms,omitempty"`
	// ack and nack (partition above): the group subscription's id, the
	// offsets, or every offset delivered below before; nack's delay.
	Sub     string  `json:"sub,omitempty"`
	Offsets []int64 `json:"offsets,omitempty"`
	Before  *int64  `json:"before,omitempty"`
	DelayMs *int64  `json:"delay_ms,omitempty"`
}

// WSEvent is one event object of an events frame. Time is RFC 3339 with
// nanoseconds, UTC: the leader's produce time.
type WSEvent struct {
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

// WSPosition is the frame of subscribed, unsubscribed and heartbeat: where
// the subscription stands. Topic is set on subscribed only.
type WSPosition struct {
	Type          string `json:"type"`
	ID            string `json:"id"`
	Topic         string `json:"topic,omitempty"`
	Partition     uint32 `json:"partition"`
	Epoch         uint64 `json:"epoch"`
	NextOffset    uint64 `json:"next_offset"`
	HighWatermark uint64 `json:"high_watermark"`
	LowWatermark  uint64 `json:"low_watermark"`
}

// WSEvents is an events frame as a client reads it. The server writes it
// by hand around pre-encoded event objects (the same fields in this order).
type WSEvents struct {
	Type          string    `json:"type"`
	ID            string    `json:"id"`
	Partition     uint32    `json:"partition"`
	Epoch         uint64    `json:"epoch"`
	NextOffset    uint64    `json:"next_offset"`
	HighWatermark uint64    `json:"high_watermark"`
	LowWatermark  uint64    `json:"low_watermark"`
	Events        []WSEvent `json:"events"`
}

// WSAck answers a publish.
type WSAck struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Partition uint32 `json:"partition"`
	Offset    uint64 `json:"offset"`
	Sequence  uint64 `json:"sequence"`
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// ThrottleMs, when set, asks the client to wait that long before its
	// next publish (ProduceResponse.throttle_ms); the event was admitted.
	// The gateway reads nothing more from the connection meanwhile.
	ThrottleMs uint32 `json:"throttle_ms,omitempty"`
}

// WSError is an error frame. For says what it answers: "subscribe",
// "unsubscribe", "publish", "group_subscribe", "group_unsubscribe",
// "ack", "nack", or "frame" (a frame the server could not take as any of
// them). Code is the Herald reason's name (ErrorReason), or for
// an error without one the gRPC code in upper snake case (UNAVAILABLE).
// Ended is set when a subscription ended with it; the numbers are set
// where they apply (OFFSET_OUT_OF_RANGE, EPOCH_CHANGED).
type WSError struct {
	Type          string  `json:"type"`
	ID            string  `json:"id,omitempty"`
	For           string  `json:"for"`
	Code          string  `json:"code"`
	Message       string  `json:"message"`
	Ended         bool    `json:"ended,omitempty"`
	LowWatermark  *uint64 `json:"low_watermark,omitempty"`
	HighWatermark *uint64 `json:"high_watermark,omitempty"`
	Epoch         *uint64 `json:"epoch,omitempty"`
	CurrentEpoch  *uint64 `json:"current_epoch,omitempty"`
	// RetryAfterMs is the retry hint of a THROTTLED or QUEUE_FULL refusal
	// (nothing was written); after a publish's, the gateway reads nothing
	// more from the connection for that long.
	RetryAfterMs *uint64           `json:"retry_after_ms,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

// WSCodeName spells a gRPC code as an error frame's code does when the
// error has no Herald reason: DeadlineExceeded as DEADLINE_EXCEEDED.
func WSCodeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// WSCodeFromName is WSCodeName's inverse; a name that is no gRPC code (one
// newer than this package) is codes.Unknown.
func WSCodeFromName(name string) codes.Code {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if WSCodeName(c) == name {
			return c
		}
	}
	return codes.Unknown
}

// WSGroupSubscribed answers a group_subscribe: the gateway joined the
// group as Member on the connection's behalf.
type WSGroupSubscribed struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Topic  string `json:"topic"`
	Group  string `json:"group"`
	Member string `json:"member"`
}

// WSGroupEvent is one event of a group_events frame: the event as an
// events frame carries it, with how often it was delivered (1 the first
// time).
type WSGroupEvent struct {
	WSEvent
	DeliveryCount uint32 `json:"delivery_count"`
}

// WSGroupEvents is a group_events frame: a batch of one partition,
// delivered to the member under Generation.
type WSGroupEvents struct {
	Type       string         `json:"type"`
	ID         string         `json:"id"`
	Partition  uint32         `json:"partition"`
	Generation uint64         `json:"generation"`
	Events     []WSGroupEvent `json:"events"`
}

// WSGroupUnsubscribed answers a group_unsubscribe once the member left.
type WSGroupUnsubscribed struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Per-offset outcomes of an ack_result.
const (
	// WSAckAcked: acknowledged (or nacked), now or before.
	WSAckAcked = "acked"
	// WSAckFenced: the partition moved to another member or generation
	// before the ack was sent; nothing was written, and the event is
	// redelivered to its new owner.
	WSAckFenced = "fenced"
	// WSAckUnknown: the outcome is unknown (the stream ended after the
	// ack was sent); acknowledging it again is safe.
	WSAckUnknown = "unknown"
	// WSAckFailed: not recorded (Message says why): the partition's
	// stream ended before the ack left (a leader move: the new stream
	// redelivers the event), or the leader refused it (redelivered after
	// the group's ack wait).
	WSAckFailed = "failed"
)

// WSGroupOffsetResult is one offset's outcome in an ack_result.
type WSGroupOffsetResult struct {
	Offset  uint64 `json:"offset"`
	Outcome string `json:"outcome"`
	Message string `json:"message,omitempty"`
}

// WSGroupAckResult answers an ack or a nack: the outcome of each offset it
// named (with before: each delivered offset below it), in offset order.
type WSGroupAckResult struct {
	Type      string                `json:"type"`
	ID        string                `json:"id"`
	Sub       string                `json:"sub"`
	Partition uint32                `json:"partition"`
	Nack      bool                  `json:"nack,omitempty"`
	Results   []WSGroupOffsetResult `json:"results"`
}
