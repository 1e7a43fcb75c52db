package log

import (
	"fmt"
)

// AppendRequest is one record to append with [Batch.AppendRecord], with
// its idempotence and dedupe parameters. Every field is replicated: the
// leader fills them (timestamps from its clock) before Raft, so that every
// replica decides the same.
type AppendRequest struct {
	// Tenant owns the record (1..255 bytes).
	Tenant string
	// TimestampUnixNano is the leader's clock at produce time. The stored
	// timestamp is max(TimestampUnixNano, the partition's last stored
	// timestamp).
	TimestampUnixNano int64
	// ExpireAtUnixNano is when the record's time to live ends; 0: never.
	ExpireAtUnixNano int64
	// Body is opaque (at most 16 MiB).
	Body []byte
	// ProducerID names an idempotent producer within Tenant (1..255
	// bytes); "" appends without producer idempotence.
	ProducerID string
	// ProducerSeq is the producer's sequence number, >= 1 when ProducerID
	// is set: consecutive from 1 under each epoch.
	ProducerSeq uint64
	// ProducerEpoch is the producer's epoch (fencing; see
	// checkProducerLocked); 0 for commands written before epochs.
	ProducerEpoch uint64
	// ProducerFirstSeq is the first sequence of the producer in the
	// request this record belongs to (0: ProducerSeq). The producer's
	// window keeps every position of its last request, whatever its size.
	ProducerFirstSeq uint64
	// ProducerLegacy applies the rules of entries written before producer
	// fencing (no call boundaries in the entry): an unknown producer may
	// start at any sequence. Replaying such an entry must decide as it was
	// decided when first applied.
	ProducerLegacy bool
	// EventID identifies the event within Tenant for dedupe (1..255 bytes)
	// when DedupeUntilUnixNano > 0.
	EventID string
	// DedupeUntilUnixNano is how long EventID is remembered: a later
	// record of Tenant with the same EventID and a stored timestamp below
	// it is a duplicate. 0: no event-id dedupe.
	DedupeUntilUnixNano int64
}

// AppendResult says where a record went. For a duplicate it names the
// original record's position (which may since have been truncated), and
// nothing was appended.
type AppendResult struct {
	Offset    uint64
	Sequence  uint64
	Duplicate bool
}

// validate checks the request's fields against their domains.
func (req *AppendRequest) validate() error {
	if err := checkTenant(req.Tenant); err != nil {
		return err
	}
	if len(req.Body) > recordBodyBytesMax {
		return fmt.Errorf("%w: body is %d bytes, limit %d", ErrRecordTooLarge, len(req.Body), recordBodyBytesMax)
	}
	if len(req.ProducerID) > producerIDBytesMax {
		return fmt.Errorf("%w: producer id is %d bytes, limit %d", ErrInvalidArgument, len(req.ProducerID), producerIDBytesMax)
	}
	if req.ProducerID != "" && req.ProducerSeq == 0 {
		return fmt.Errorf("%w: producer %q sends sequence 0, want >= 1", ErrInvalidArgument, req.ProducerID)
	}
	if req.DedupeUntilUnixNano > 0 && (req.EventID == "" || len(req.EventID) > eventIDBytesMax) {
		return fmt.Errorf("%w: dedupe needs an event id of 1..%d bytes, got %d", ErrInvalidArgument, eventIDBytesMax, len(req.EventID))
	}
	return nil
}

// Append adds one record for tenant and returns the offset and tenant
// sequence it will have once the batch commits: AppendRecord without
// idempotence or dedupe. An invalid tenant or an oversized body is refused
// without changing the batch.
func (b *Batch) Append(tenant string, timestampUnixNano int64, body []byte) (offset, sequence uint64, err error) {
	result, err := b.AppendRecord(AppendRequest{Tenant: tenant, TimestampUnixNano: timestampUnixNano, Body: body})
	return result.Offset, result.Sequence, err
}

// AppendRecord adds one record unless it is a duplicate, checking in order:
//
//  1. Producer idempotence (ProducerID set), against the producer's state
//     (last sequence, last seen, epoch) and its window (the last
//     ProducerWindow sequences and every sequence of its last request):
//     an unknown producer (new, or forgotten by ExpireDedupe) must start
//     at 1 (ErrUnknownProducer); an older epoch is fenced
//     (*ProducerFencedError); a newer epoch restarts at 1; last+1 is
//     appended; a sequence at or below the last and inside the window is a
//     duplicate of the original; an older one is an error matching
//     ErrSequenceTooOld; one above last+1 is an *OutOfOrderError. See
//     CheckProducerRequest for deciding this for a whole request first.
//  2. Event-id dedupe (DedupeUntilUnixNano > 0): an EventID of Tenant
//     remembered with an until above the record's stored timestamp is a
//     duplicate of the original. If the producer check accepted the
//     record, the producer's state still advances to this sequence (with
//     the original's position in its window), so that its next sequence
//     is accepted and a retry gets the same answer.
//
// A duplicate appends nothing and returns the original's position with
// Duplicate set. Errors (invalid request, out of order, too old) change
// nothing. Otherwise the record is appended (see Batch.Append) with the
// stored timestamp max(TimestampUnixNano, last stored timestamp), and the
// producer state, window and event-id entry are written in the same batch.
// Writer only.
func (b *Batch) AppendRecord(req AppendRequest) (AppendResult, error) {
	if err := b.begin(); err != nil {
		return AppendResult{}, err
	}
	defer b.end()
	if err := req.validate(); err != nil {
		return AppendResult{}, err
	}
	timestamp := max(req.TimestampUnixNano, b.lastTimestamp)

	var state producerState
	var known bool
	if req.ProducerID != "" {
		original, duplicate, previous, found, err := b.checkProducerLocked(&req)
		if err != nil || duplicate {
			return original, err
		}
		state, known = previous, found
	}
	var previous eventEntry
	var remembered bool
	if req.DedupeUntilUnixNano > 0 {
		var err error
		if previous, remembered, err = b.eventEntryLocked(req.Tenant, req.EventID); err != nil {
			return AppendResult{}, err
		}
		if remembered && timestamp < previous.untilUnixNano {
			original := AppendResult{Offset: previous.offset, Sequence: previous.sequence, Duplicate: true}
			if req.ProducerID != "" {
				if err := b.rememberProducer(&req, original, timestamp, state, known); err != nil {
					return AppendResult{}, err
				}
			}
			return original, nil
		}
	}

	result, err := b.appendLocked(&req, timestamp)
	if err != nil {
		return AppendResult{}, err
	}
	if req.ProducerID != "" {
		if err := b.rememberProducer(&req, result, timestamp, state, known); err != nil {
			return AppendResult{}, err
		}
	}
	if req.DedupeUntilUnixNano > 0 {
		if err := b.rememberEvent(&req, result, previous, remembered); err != nil {
			return AppendResult{}, err
		}
	}
	return result, nil
}

// appendLocked adds the record to the batch's pending chunk (sealing it
// into the Pebble batch when full) and, if due, writes a time index point.
// db.lifecycle must be read-held.
func (b *Batch) appendLocked(req *AppendRequest, timestamp int64) (AppendResult, error) {
	p := b.partition
	sequence, ok := b.tenantNext[req.Tenant]
	if !ok {
		var err error
		if sequence, err = p.nextSequenceLocked(req.Tenant); err != nil {
			return AppendResult{}, err
		}
	}
	offset := b.nextOffset
	indexPoint, err := b.timeIndex.dueLocked(b, offset, timestamp)
	if err != nil {
		return AppendResult{}, err
	}
	recordBytes := chunkRecordBytes(len(req.Tenant), len(req.Body))
	if !b.chunk.fits(recordBytes) {
		if err := b.flushChunk(); err != nil {
			return AppendResult{}, err
		}
	}
	if indexPoint {
		if err := b.set(appendTimeIndexKey(b.scratch[:0], p.id, timestamp, offset), nil, "time index"); err != nil {
			return AppendResult{}, err
		}
		b.timeIndex.wrote(timestamp)
	}

	// The chunk header is accounted with the chunk's first record.
	size := uint64(recordBytes)
	if b.chunk.count == 0 {
		size += chunkHeaderBytes
	}
	b.chunk.add(&Record{Offset: offset, Sequence: sequence, Tenant: req.Tenant,
		TimestampUnixNano: timestamp, ExpireAtUnixNano: req.ExpireAtUnixNano, Body: req.Body})
	if b.tenantNext == nil {
		b.tenantNext = make(map[string]uint64)
	}
	b.tenantNext[req.Tenant] = sequence + 1
	b.nextOffset++
	b.lastTimestamp = timestamp
	b.bytes += size
	if b.chunk.full() {
		if err := b.flushChunk(); err != nil {
			return AppendResult{}, err
		}
	}
	return AppendResult{Offset: offset, Sequence: sequence}, nil
}
