package log

import (
	"encoding/binary"
	"fmt"
)

// ProducerWindow is how many of an idempotent producer's latest sequences
// the partition remembers with their positions, besides every sequence of
// its last request: a retry of one of them is answered as a duplicate, an
// older one fails with ErrSequenceTooOld. It is persisted state (window
// entries are deleted as the window moves), so changing it changes
// replicated behaviour.
const ProducerWindow = 1024

// Producer state value, version 2 (32 bytes): last_seq(8) |
// last_seen_unix_nano(8) | epoch(8) | window_first_seq(8). Version 1 (16
// bytes, before producer epochs): last_seq(8) | last_seen_unix_nano(8),
// read as epoch 0 with the window of the last ProducerWindow sequences.
// Producer window value: offset(8) | sequence(8).
const (
	producerValueBytesV1     = 8 + 8
	producerValueBytes       = 8 + 8 + 8 + 8
	producerWindowValueBytes = 8 + 8
)

// producerState is what the partition remembers of an idempotent producer.
type producerState struct {
	lastSeq          uint64
	lastSeenUnixNano int64
	// epoch is the producer's epoch (fencing): requests of an older one
	// are refused, a newer one restarts the sequences at 1.
	epoch uint64
	// windowFirstSeq is the lowest sequence whose window entry is kept:
	// at most lastSeq-ProducerWindow+1, and never above the first sequence
	// of the producer's last request, so that a resend of the whole last
	// request, however large, is answered with its original positions.
	windowFirstSeq uint64
}

func (s producerState) encode() []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, producerValueBytes), s.lastSeq)
	v = binary.BigEndian.AppendUint64(v, uint64(s.lastSeenUnixNano))
	v = binary.BigEndian.AppendUint64(v, s.epoch)
	return binary.BigEndian.AppendUint64(v, s.windowFirstSeq)
}

// decodeProducerState decodes a producer value of either version; ok is
// false when it is malformed.
func decodeProducerState(value []byte) (producerState, bool) {
	if len(value) != producerValueBytes && len(value) != producerValueBytesV1 {
		return producerState{}, false
	}
	s := producerState{lastSeq: binary.BigEndian.Uint64(value), lastSeenUnixNano: int64(binary.BigEndian.Uint64(value[8:]))}
	if len(value) == producerValueBytesV1 {
		s.windowFirstSeq = windowFloor(s.lastSeq)
		return s, s.lastSeq != 0
	}
	s.epoch = binary.BigEndian.Uint64(value[16:])
	s.windowFirstSeq = binary.BigEndian.Uint64(value[24:])
	return s, s.lastSeq != 0 && s.windowFirstSeq >= 1 && s.windowFirstSeq <= s.lastSeq
}

// windowFloor is the lowest sequence of the last ProducerWindow ones up to
// last (at least 1).
func windowFloor(last uint64) uint64 {
	if last < ProducerWindow {
		return 1
	}
	return last - ProducerWindow + 1
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
// an error for a sequence refused; neither for a sequence to append. It
// also returns the producer's state (found false: unknown) for
// rememberProducer. It writes nothing. db.lifecycle must be read-held.
//
// The rules, in order: an unknown producer must start at sequence 1
// (ErrUnknownProducer otherwise); an epoch below the remembered one is
// fenced (ErrProducerFenced); a newer epoch must start at 1
// (*OutOfOrderError otherwise); within the epoch, last+1 is appended, a
// sequence above it is out of order, one at or below it is a duplicate
// of the original when its position is remembered and ErrSequenceTooOld
// otherwise.
func (b *Batch) checkProducerLocked(req *AppendRequest) (original AppendResult, duplicate bool, state producerState, found bool, err error) {
	p := b.partition
	state, found, err = b.producerStateLocked(req)
	if err != nil {
		return AppendResult{}, false, state, found, err
	}
	seq := req.ProducerSeq
	switch {
	case !found && seq != 1 && !req.ProducerLegacy:
		return AppendResult{}, false, state, found, fmt.Errorf("%w: producer %q of tenant %q: sequence %d, a producer the partition does not know starts at 1",
			ErrUnknownProducer, req.ProducerID, req.Tenant, seq)
	case !found:
		return AppendResult{}, false, state, found, nil
	case req.ProducerEpoch < state.epoch:
		return AppendResult{}, false, state, found, &ProducerFencedError{Tenant: req.Tenant, ProducerID: req.ProducerID, Epoch: req.ProducerEpoch, CurrentEpoch: state.epoch}
	case req.ProducerEpoch > state.epoch && seq != 1:
		return AppendResult{}, false, state, found, &OutOfOrderError{Tenant: req.Tenant, ProducerID: req.ProducerID, Expected: 1, Got: seq}
	case req.ProducerEpoch > state.epoch:
		return AppendResult{}, false, state, found, nil
	case seq == state.lastSeq+1:
		return AppendResult{}, false, state, found, nil
	case seq > state.lastSeq:
		return AppendResult{}, false, state, found, &OutOfOrderError{Tenant: req.Tenant, ProducerID: req.ProducerID, Expected: state.lastSeq + 1, Got: seq}
	case seq < state.windowFirstSeq:
		return AppendResult{}, false, state, found, fmt.Errorf("%w: producer %q of tenant %q: sequence %d, last %d, positions remembered from %d",
			ErrSequenceTooOld, req.ProducerID, req.Tenant, seq, state.lastSeq, state.windowFirstSeq)
	}
	value, ok, err := b.getLocked(appendProducerWindowKey(nil, p.id, req.Tenant, req.ProducerID, seq), "producer window")
	if err != nil {
		return AppendResult{}, false, state, found, err
	}
	if !ok {
		// Inside the window but before the producer's first sequence (a
		// version 1 producer that started above 1): never appended, and
		// too old to be now.
		return AppendResult{}, false, state, found, fmt.Errorf("%w: producer %q of tenant %q: sequence %d precedes its first remembered one (last %d)",
			ErrSequenceTooOld, req.ProducerID, req.Tenant, seq, state.lastSeq)
	}
	if len(value) != producerWindowValueBytes {
		return AppendResult{}, false, state, found, b.corrupt("producer %q of tenant %q: malformed window entry %d: %x", req.ProducerID, req.Tenant, seq, value)
	}
	return AppendResult{Offset: binary.BigEndian.Uint64(value), Sequence: binary.BigEndian.Uint64(value[8:]), Duplicate: true}, true, state, found, nil
}

// rememberProducer records req.ProducerSeq (appended, or taken by an
// event-id duplicate) as the producer's last sequence under req's epoch,
// seen at timestamp (buffered in the batch, written once at Commit), with
// position in its window. previous is the state checkProducerLocked
// found (found false: none). A new epoch forgets the old epoch's window;
// otherwise the window keeps the last ProducerWindow sequences and every
// sequence of the current request (from req.ProducerFirstSeq), and the
// entries below that are deleted. Failures are sticky.
func (b *Batch) rememberProducer(req *AppendRequest, position AppendResult, timestamp int64, previous producerState, found bool) error {
	p := b.partition
	seq := req.ProducerSeq
	if b.producers == nil {
		b.producers = make(map[producerKey]producerState)
	}
	next := producerState{lastSeq: seq, lastSeenUnixNano: timestamp, epoch: req.ProducerEpoch, windowFirstSeq: seq}
	switch {
	case found && req.ProducerEpoch > previous.epoch:
		window := appendProducerWindowPrefix(nil, p.id, req.Tenant, req.ProducerID)
		if err := b.deleteRange(window, prefixSuccessor(window), "producer window"); err != nil {
			return err
		}
	case found:
		first := req.ProducerFirstSeq
		if first == 0 || first > seq {
			first = seq
		}
		next.windowFirstSeq = max(previous.windowFirstSeq, min(first, windowFloor(seq)))
		for old := previous.windowFirstSeq; old < next.windowFirstSeq; old++ {
			if err := b.delete(appendProducerWindowKey(nil, p.id, req.Tenant, req.ProducerID, old), "producer window"); err != nil {
				return err
			}
		}
	}
	b.producers[producerKey{req.Tenant, req.ProducerID}] = next
	return b.set(appendProducerWindowKey(nil, p.id, req.Tenant, req.ProducerID, seq), encodePosition(position), "producer window")
}

// CheckProducerRequest decides whether the producer rules refuse the
// request reqs (the records of one produce call, in order), before any of
// it is appended: the caller appends them with AppendRecord only when it
// returns nil, so that a refused request leaves nothing behind. Each
// producer's records must carry one epoch and consecutive sequences; the
// first sequence of each decides (a retry that overlaps the end of what
// was committed is duplicates then appends). It sets ProducerFirstSeq on
// every idempotent record. It writes nothing. Writer only.
func (b *Batch) CheckProducerRequest(reqs []AppendRequest) error {
	if err := b.begin(); err != nil {
		return err
	}
	defer b.end()
	type run struct{ epoch, first, last uint64 }
	runs := make(map[producerKey]*run)
	for i := range reqs {
		req := &reqs[i]
		if req.ProducerID == "" {
			continue
		}
		k := producerKey{req.Tenant, req.ProducerID}
		r, ok := runs[k]
		if !ok {
			runs[k] = &run{epoch: req.ProducerEpoch, first: req.ProducerSeq, last: req.ProducerSeq}
			if _, _, _, _, err := b.checkProducerLocked(req); err != nil {
				return err
			}
		} else if req.ProducerEpoch != r.epoch || req.ProducerSeq != r.last+1 {
			return fmt.Errorf("%w: producer %q of tenant %q: sequence %d epoch %d follows %d epoch %d in one request",
				ErrInvalidArgument, req.ProducerID, req.Tenant, req.ProducerSeq, req.ProducerEpoch, r.last, r.epoch)
		} else {
			r.last = req.ProducerSeq
		}
		req.ProducerFirstSeq = runs[k].first
	}
	return nil
}
