package log

import (
	"encoding/binary"
	"fmt"
)

// ProducerWindow is how many of an idempotent producer's latest sequences
// the partition remembers with their positions: a retry of one of them is
// answered as a duplicate, an older one fails with ErrSequenceTooOld. It
// is persisted state (window entries are deleted as the window moves), so
// changing it changes replicated behaviour.
const ProducerWindow = 1024

// Producer state value: last_seq(8) | last_seen_unix_nano(8).
// Producer window value: offset(8) | sequence(8).
const (
	producerValueBytes       = 8 + 8
	producerWindowValueBytes = 8 + 8
)

// producerState is what the partition remembers of an idempotent producer.
type producerState struct {
	lastSeq          uint64
	lastSeenUnixNano int64
}

func (s producerState) encode() []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, producerValueBytes), s.lastSeq)
	return binary.BigEndian.AppendUint64(v, uint64(s.lastSeenUnixNano))
}

// decodeProducerState decodes a producer value; ok is false when it is
// malformed.
func decodeProducerState(value []byte) (producerState, bool) {
	if len(value) != producerValueBytes {
		return producerState{}, false
	}
	s := producerState{lastSeq: binary.BigEndian.Uint64(value), lastSeenUnixNano: int64(binary.BigEndian.Uint64(value[8:]))}
	return s, s.lastSeq != 0
}

// encodePosition encodes offset(8) | sequence(8).
func encodePosition(r AppendResult) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), r.Offset)
	return binary.BigEndian.AppendUint64(v, r.Sequence)
}

// producerKey names an idempotent producer within a partition.
type producerKey struct{ tenant, producer string }

// producerStateLocked returns the producer's state as this batch sees it:
// the batch's buffered state, else the stored one. found is false for an
// unknown producer. db.lifecycle must be read-held.
func (b *Batch) producerStateLocked(req *AppendRequest) (state producerState, found bool, err error) {
	if state, ok := b.producers[producerKey{req.Tenant, req.ProducerID}]; ok {
		return state, true, nil
	}
	value, found, err := b.getLocked(appendProducerKey(nil, b.partition.id, req.Tenant, req.ProducerID), "producer state")
	if err != nil || !found {
		return producerState{}, false, err
	}
	state, ok := decodeProducerState(value)
	if !ok {
		return producerState{}, false, b.corrupt("producer %q of tenant %q: malformed state %x", req.ProducerID, req.Tenant, value)
	}
	return state, true, nil
}

// flushProducers writes the buffered producer states into the Pebble batch
// and forgets them (the Pebble batch then holds them). Failures are
// sticky.
func (b *Batch) flushProducers() error {
	for key, state := range b.producers {
		if err := b.set(appendProducerKey(nil, b.partition.id, key.tenant, key.producer), state.encode(), "producer state"); err != nil {
			return err
		}
	}
	clear(b.producers)
	return nil
}

// checkProducerLocked applies the producer rules to req (ProducerID set):
// duplicate is true with the original's position for a remembered retry;
// an error for a sequence out of order or too old; neither for a sequence
// to append. It writes nothing. db.lifecycle must be read-held.
func (b *Batch) checkProducerLocked(req *AppendRequest) (original AppendResult, duplicate bool, err error) {
	p := b.partition
	state, found, err := b.producerStateLocked(req)
	if err != nil || !found {
		// Unknown producer (new or forgotten): any sequence starts it.
		return AppendResult{}, false, err
	}
	seq := req.ProducerSeq
	switch {
	case seq == state.lastSeq+1:
		return AppendResult{}, false, nil
	case seq > state.lastSeq:
		return AppendResult{}, false, &OutOfOrderError{Tenant: req.Tenant, ProducerID: req.ProducerID, Expected: state.lastSeq + 1, Got: seq}
	case state.lastSeq-seq >= ProducerWindow:
		return AppendResult{}, false, fmt.Errorf("%w: producer %q of tenant %q: sequence %d, last %d, window %d",
			ErrSequenceTooOld, req.ProducerID, req.Tenant, seq, state.lastSeq, ProducerWindow)
	}
	value, found, err := b.getLocked(appendProducerWindowKey(nil, p.id, req.Tenant, req.ProducerID, seq), "producer window")
	if err != nil {
		return AppendResult{}, false, err
	}
	if !found {
		// Inside the window but before the producer's first sequence (it
		// started above it): never appended, and too old to be now.
		return AppendResult{}, false, fmt.Errorf("%w: producer %q of tenant %q: sequence %d precedes its first remembered one (last %d)",
			ErrSequenceTooOld, req.ProducerID, req.Tenant, seq, state.lastSeq)
	}
	if len(value) != producerWindowValueBytes {
		return AppendResult{}, false, b.corrupt("producer %q of tenant %q: malformed window entry %d: %x", req.ProducerID, req.Tenant, seq, value)
	}
	return AppendResult{Offset: binary.BigEndian.Uint64(value), Sequence: binary.BigEndian.Uint64(value[8:]), Duplicate: true}, true, nil
}

// rememberProducer records req.ProducerSeq as the producer's last
// sequence, seen at timestamp (buffered in the batch, written once at
// Commit), with position in its window, and forgets the sequence that
// leaves the window. Failures are sticky.
func (b *Batch) rememberProducer(req *AppendRequest, position AppendResult, timestamp int64) error {
	p := b.partition
	seq := req.ProducerSeq
	if b.producers == nil {
		b.producers = make(map[producerKey]producerState)
	}
	b.producers[producerKey{req.Tenant, req.ProducerID}] = producerState{lastSeq: seq, lastSeenUnixNano: timestamp}
	if err := b.set(appendProducerWindowKey(nil, p.id, req.Tenant, req.ProducerID, seq), encodePosition(position), "producer window"); err != nil {
		return err
	}
	if seq > ProducerWindow {
		return b.delete(appendProducerWindowKey(nil, p.id, req.Tenant, req.ProducerID, seq-ProducerWindow), "producer window")
	}
	return nil
}
