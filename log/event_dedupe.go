package log

import (
	"encoding/binary"
)

// Event-id entry value: offset(8) | sequence(8) | until_unix_nano(8).
const eventEntryValueBytes = 8 + 8 + 8

// eventEntry is what the partition remembers of an event id.
type eventEntry struct {
	offset        uint64
	sequence      uint64
	untilUnixNano int64
}

func (e eventEntry) encode() []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, eventEntryValueBytes), e.offset)
	v = binary.BigEndian.AppendUint64(v, e.sequence)
	return binary.BigEndian.AppendUint64(v, uint64(e.untilUnixNano))
}

// decodeEventEntry decodes an event-id value; ok is false when it is
// malformed.
func decodeEventEntry(value []byte) (eventEntry, bool) {
	if len(value) != eventEntryValueBytes {
		return eventEntry{}, false
	}
	return eventEntry{
		offset:        binary.BigEndian.Uint64(value),
		sequence:      binary.BigEndian.Uint64(value[8:]),
		untilUnixNano: int64(binary.BigEndian.Uint64(value[16:])),
	}, true
}

// eventEntryLocked reads the entry of tenant's eventID through the batch.
// db.lifecycle must be read-held.
func (b *Batch) eventEntryLocked(tenant, eventID string) (entry eventEntry, found bool, err error) {
	value, found, err := b.getLocked(appendEventIDKey(nil, b.partition.id, tenant, eventID), "event id")
	if err != nil || !found {
		return eventEntry{}, false, err
	}
	entry, ok := decodeEventEntry(value)
	if !ok {
		return eventEntry{}, false, b.corrupt("event id %q of tenant %q: malformed entry %x", eventID, tenant, value)
	}
	return entry, true, nil
}

// rememberEvent stores (or overwrites) the entry of req's event id with
// position and req.DedupeUntilUnixNano, and its expiry key; an overwritten
// entry's expiry key is deleted. Failures are sticky.
func (b *Batch) rememberEvent(req *AppendRequest, position AppendResult, previous eventEntry, hadPrevious bool) error {
	p := b.partition
	if hadPrevious {
		if err := b.delete(appendEventExpiryKey(nil, p.id, previous.untilUnixNano, req.Tenant, req.EventID), "event expiry"); err != nil {
			return err
		}
	}
	entry := eventEntry{offset: position.Offset, sequence: position.Sequence, untilUnixNano: req.DedupeUntilUnixNano}
	if err := b.set(appendEventIDKey(nil, p.id, req.Tenant, req.EventID), entry.encode(), "event id"); err != nil {
		return err
	}
	return b.set(appendEventExpiryKey(nil, p.id, req.DedupeUntilUnixNano, req.Tenant, req.EventID), nil, "event expiry")
}
