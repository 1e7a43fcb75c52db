package wsclient

import (
	"time"

	"github.com/heraldlog/herald/client/wire"
)

// Event is one event a subscription delivers: its position (Partition,
// Offset, and the partition's Epoch when it was read), its tenant
// sequence, and the envelope as produced. Time is the leader's produce
// time.
type Event struct {
	Partition     uint32
	Offset        uint64
	Epoch         uint64
	Sequence      uint64
	TenantID      string
	EventID       string
	Time          time.Time
	Key           []byte
	Headers       map[string]string
	Payload       []byte
	CausationID   string
	CorrelationID string
	Traceparent   string
	ContentType   string
	Schema        string
	SchemaVersion uint32
	TTLMs         int64
	ProducerID    string
	ProducerSeq   uint64
}

// eventOf converts an event object of an events frame of epoch.
func eventOf(e *wire.WSEvent, epoch uint64) Event {
	t, _ := time.Parse(time.RFC3339Nano, e.Time) // the gateway writes RFC 3339; a bad one is the zero time
	return Event{Partition: e.Partition, Offset: e.Offset, Epoch: epoch, Sequence: e.Sequence, TenantID: e.Tenant,
		EventID: e.EventID, Time: t, Key: e.Key, Headers: e.Headers, Payload: e.Payload, CausationID: e.CausationID,
		CorrelationID: e.CorrelationID, Traceparent: e.Traceparent, ContentType: e.ContentType, Schema: e.Schema,
		SchemaVersion: e.SchemaVersion, TTLMs: e.TTLMs, ProducerID: e.ProducerID, ProducerSeq: e.ProducerSeq}
}

// Ack is the answer to a publish: where the event is, and its id (made by
// the node when the event had none). Duplicate is set when the node found
// an earlier copy (same event id in the topic's dedupe window, or an
// idempotent producer's retry): the positions are the original's.
type Ack struct {
	Partition uint32
	Offset    uint64
	Sequence  uint64
	EventID   string
	Duplicate bool
}
