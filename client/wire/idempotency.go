package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Idempotent consumer keys (issue 12): the SDK acknowledges a processed
// event with a mark under its idempotency key, and the partition leader
// looks the same key up when it delivers the event, so both derive it here.
//
// The key is the event's tenant with its causation id, or, when the event
// has none, with its event id (a tenant's sequences are per tenant, so the
// tenant is part of the key):
//
//	"c" | len(tenant) | ":" | tenant | causation_id
//	"e" | len(tenant) | ":" | tenant | event_id
//
// (len in decimal). A key longer than IdempotencyKeyBytesMax is replaced by
// "h" and the hex SHA-256 of the kind letter and the rest (the kind stays
// readable through IdempotencyKeyIsEventID). It is persisted: changing it
// makes every stored mark unreachable.
const IdempotencyKeyBytesMax = 255

// IdempotencyKey returns the idempotency key of an event of tenant with
// causationID and eventID, and whether it is keyed by its event id (no
// causation id). An event with neither has no key ("").
func IdempotencyKey(tenant, causationID, eventID string) (key string, byEventID bool) {
	kind, id := "c", causationID
	if causationID == "" {
		kind, id, byEventID = "e", eventID, true
	}
	if id == "" {
		return "", byEventID
	}
	key = kind + strconv.Itoa(len(tenant)) + ":" + tenant + id
	if len(key) > IdempotencyKeyBytesMax {
		sum := sha256.Sum256([]byte(key))
		key = "h" + kind + hex.EncodeToString(sum[:])
	}
	return key, byEventID
}

// Processed reports whether an event of sequence, keyed by its event id
// or not, was processed according to the group's mark of its key
// (markSequence, 0: none): an event id names one event, so any mark of it
// means processed (a producer retry that wrote the event twice has a
// higher sequence); a causation id names a cause with several events in
// sequence order, so the mark must be at or above the event's sequence.
func Processed(sequence, markSequence uint64, byEventID bool) bool {
	if markSequence == 0 {
		return false
	}
	return byEventID || markSequence >= sequence
}
