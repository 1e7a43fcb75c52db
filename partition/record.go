package partition

import "github.com/heraldlog/herald/partition/partitionpb"

// Record is one event of a produce call, as the node hands it to
// Replica.Produce: already validated against its topic, and encoded.
// Replica.Produce builds the Raft command from it; the caller never sees
// partitionpb.
type Record struct {
	TenantID string
	// Event is the encoded herald.v1.Event without the server-assigned
	// fields (offset, sequence, produced_at, partition), which a read adds
	// back from the stored record's header. It is stored as is, never
	// copied or changed here: the caller must not change it after handing
	// it to Produce, even once Produce returned (a call whose context ended
	// may still be in the batcher's queue).
	Event   []byte
	EventID string
	// ProducerID and ProducerSeq identify an idempotent producer's event
	// (both empty for a plain one); ProducerEpoch is its fencing token
	// (checked, not stored).
	ProducerID    string
	ProducerSeq   uint64
	ProducerEpoch uint64
	// TTLMs is the event's time to live from its produce time, as the
	// topic's contract makes it; 0: it never expires.
	TTLMs int64
	// DedupeWindowMs is the topic's event-id dedupe window; 0: off.
	DedupeWindowMs int64
}

// appendRecords builds the records of one produce call as the Raft command
// carries them. The first record says how many records the call has and
// which contract version of the topic they were checked against, so that
// the state machine decides the producer rules and the contract fence for
// the whole call at once. Event bytes are shared with records, not copied.
func appendRecords(contractVersion uint64, records []Record) []*partitionpb.AppendRecord {
	// One allocation for the call's messages; they are only ever used
	// through pointers, never copied.
	backing := make([]partitionpb.AppendRecord, len(records))
	out := make([]*partitionpb.AppendRecord, len(records))
	for i := range records {
		rec := &records[i]
		ar := &backing[i]
		ar.TenantId = rec.TenantID
		ar.Event = rec.Event
		ar.ProducerId = rec.ProducerID
		ar.ProducerSeq = rec.ProducerSeq
		ar.EventId = rec.EventID
		ar.TtlMs = rec.TTLMs
		ar.DedupeWindowMs = rec.DedupeWindowMs
		ar.ProducerEpoch = rec.ProducerEpoch
		out[i] = ar
	}
	if len(out) > 0 {
		out[0].RequestRecords = uint32(len(out))
		out[0].ContractVersion = contractVersion
	}
	return out
}
