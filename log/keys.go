package log

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Key layout: see the package documentation. Kind letters are persisted and
// append-only.
const (
	keyPartitionTag byte = 'p'

	kindRecord      byte = 'e'
	kindTenantIndex byte = 't'
	kindMeta        byte = 'm'
	kindTenantNext  byte = 'n'

	// Version 2 kinds.
	kindProducer       byte = 'd' // producer state: last sequence, last seen
	kindProducerWindow byte = 'w' // producer sequence -> original position
	kindEventID        byte = 'i' // event id -> original position, until
	kindEventExpiry    byte = 'j' // until | event id, for expiry in until order
	kindTimeIndex      byte = 'x' // sparse time index

	// Version 3 kinds: records are stored in chunks, with a sparse tenant
	// index; 'e' and 't' are no longer written (still read and truncated).
	kindChunk       byte = 'b' // chunk of consecutive records, by base offset
	kindTenantChunk byte = 's' // sparse tenant index: one entry per tenant per chunk

	// Version 5 kinds: consumer groups (group.go).
	kindGroup        byte = 'g' // group header: config, floor, cursor, assignment
	kindGroupPending byte = 'q' // a pending delivery of a group, by offset
	kindGroupDue     byte = 'r' // a pending delivery by not-before, for redelivery

	// Version 6 kinds: the processed marks of consumer groups (group_marks.go).
	kindGroupMark       byte = 'k' // idempotency key -> highest processed sequence, offset
	kindGroupMarkOffset byte = 'o' // a mark by offset, for eviction in offset order
	kindGroupMarkCount  byte = 'u' // how many marks a group holds
)

// Meta names.
const (
	metaApplied      = "applied"
	metaNextOffset   = "next_offset"
	metaLowWatermark = "low_watermark"
	metaRestoring    = "restoring"
	// Version 2 meta.
	metaLastTimestamp = "last_ts"
	metaBytes         = "bytes"
	// The topic contract version the partition is fenced with (contract.go).
	metaContract = "contract"
)

const (
	// partitionPrefixBytes is len('p' | pid(8)).
	partitionPrefixBytes = 1 + 8
	// recordKeyBytes is len('p' | pid | 'e' | offset).
	recordKeyBytes = partitionPrefixBytes + 1 + 8
	// chunkKeyBytes is len('p' | pid | 'b' | base offset).
	chunkKeyBytes = partitionPrefixBytes + 1 + 8
	// tenantBytesMax is the longest tenant id (its length is stored in one byte).
	tenantBytesMax = 255
	// producerIDBytesMax is the longest producer id (length stored in one byte).
	producerIDBytesMax = 255
	// eventIDBytesMax is the longest event id. It is the last field of its
	// keys, so the bound only keeps keys (and restore buffers) small.
	eventIDBytesMax = 255
	// groupNameBytesMax is the longest consumer group name, and
	// groupMemberBytesMax the longest member id (lengths stored in one byte).
	groupNameBytesMax   = 255
	groupMemberBytesMax = 255
	// relativeKeyBytesMax bounds a partition-relative key (kind onwards):
	// the longest is the producer window key,
	// 1 + 1 + 255 + 1 + 255 + 8 bytes (a group's due key, the longest
	// group key, is 1 + 1 + 255 + 8 + 8).
	relativeKeyBytesMax = 1 + 1 + tenantBytesMax + 1 + producerIDBytesMax + 8
)

// validTenant reports whether tenant is 1..255 bytes.
func validTenant(tenant string) bool {
	return len(tenant) >= 1 && len(tenant) <= tenantBytesMax
}

// checkTenant returns an error matching ErrInvalidTenant unless tenant is
// 1..255 bytes.
func checkTenant(tenant string) error {
	if !validTenant(tenant) {
		return fmt.Errorf("%w: length %d, want 1..%d", ErrInvalidTenant, len(tenant), tenantBytesMax)
	}
	return nil
}

// appendPartitionPrefix appends 'p' | pid.
func appendPartitionPrefix(dst []byte, partition uint64) []byte {
	dst = append(dst, keyPartitionTag)
	return binary.BigEndian.AppendUint64(dst, partition)
}

// partitionBounds returns [lower, upper) covering every key of partition.
func partitionBounds(partition uint64) (lower, upper []byte) {
	lower = appendPartitionPrefix(nil, partition)
	if partition == math.MaxUint64 {
		return lower, []byte{keyPartitionTag + 1}
	}
	return lower, appendPartitionPrefix(nil, partition+1)
}

// kindBounds returns [lower, upper) covering every key of one kind in partition.
func kindBounds(partition uint64, kind byte) (lower, upper []byte) {
	lower = append(appendPartitionPrefix(nil, partition), kind)
	upper = append(appendPartitionPrefix(nil, partition), kind+1)
	return lower, upper
}

// appendRecordKey appends 'p' | pid | 'e' | offset.
func appendRecordKey(dst []byte, partition, offset uint64) []byte {
	dst = appendPartitionPrefix(dst, partition)
	dst = append(dst, kindRecord)
	return binary.BigEndian.AppendUint64(dst, offset)
}

// parseRecordKey returns the offset of a record key of partition; ok is
// false when key is not such a key.
func parseRecordKey(partition uint64, key []byte) (offset uint64, ok bool) {
	if len(key) != recordKeyBytes || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindRecord {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[partitionPrefixBytes+1:]), true
}

// appendTenantIndexKey appends 'p' | pid | 't' | len(tenant) | tenant | seq.
// tenant must be valid.
func appendTenantIndexKey(dst []byte, partition uint64, tenant string, sequence uint64) []byte {
	dst = appendPartitionPrefix(dst, partition)
	dst = append(dst, kindTenantIndex, byte(len(tenant)))
	dst = append(dst, tenant...)
	return binary.BigEndian.AppendUint64(dst, sequence)
}

// parseTenantIndexKey returns the tenant and sequence of a tenant index key of
// partition; ok is false when key is not such a key.
func parseTenantIndexKey(partition uint64, key []byte) (tenant []byte, sequence uint64, ok bool) {
	if len(key) < partitionPrefixBytes+2 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindTenantIndex {
		return nil, 0, false
	}
	n := int(key[partitionPrefixBytes+1])
	rest := key[partitionPrefixBytes+2:]
	if n == 0 || len(rest) != n+8 {
		return nil, 0, false
	}
	return rest[:n], binary.BigEndian.Uint64(rest[n:]), true
}

// appendMetaKey appends 'p' | pid | 'm' | name.
func appendMetaKey(dst []byte, partition uint64, name string) []byte {
	dst = appendPartitionPrefix(dst, partition)
	dst = append(dst, kindMeta)
	return append(dst, name...)
}

// appendTenantNextKey appends 'p' | pid | 'n' | tenant.
func appendTenantNextKey(dst []byte, partition uint64, tenant string) []byte {
	dst = appendPartitionPrefix(dst, partition)
	dst = append(dst, kindTenantNext)
	return append(dst, tenant...)
}

// hasPartitionPrefix reports whether key starts with 'p' | pid.
func hasPartitionPrefix(partition uint64, key []byte) bool {
	return len(key) >= partitionPrefixBytes && key[0] == keyPartitionTag &&
		binary.BigEndian.Uint64(key[1:partitionPrefixBytes]) == partition
}

// encodeUint64 returns v as 8 big-endian bytes.
func encodeUint64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

// prefixSuccessor returns the smallest key above every key that starts with
// prefix, or nil if there is none (prefix is all 0xff). It does not modify
// prefix.
func prefixSuccessor(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			out := append([]byte(nil), prefix[:i+1]...)
			out[i]++
			return out
		}
	}
	return nil
}

// orderedInt64 maps v to a uint64 whose big-endian bytes sort as v does
// (the sign bit flipped), for timestamps inside keys.
func orderedInt64(v int64) uint64 { return uint64(v) ^ (1 << 63) }

// unorderedInt64 inverts orderedInt64.
func unorderedInt64(u uint64) int64 { return int64(u ^ (1 << 63)) }

// appendKindPrefix appends 'p' | pid | kind.
func appendKindPrefix(dst []byte, partition uint64, kind byte) []byte {
	return append(appendPartitionPrefix(dst, partition), kind)
}

// appendShortString appends len(s)(1) | s; s must be 1..255 bytes.
func appendShortString(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)))
	return append(dst, s...)
}

// cutShortString splits len(s)(1) | s | rest; ok is false when b is too
// short or s is empty.
func cutShortString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 1 {
		return nil, nil, false
	}
	n := int(b[0])
	if n == 0 || len(b) < 1+n {
		return nil, nil, false
	}
	return b[1 : 1+n], b[1+n:], true
}

// appendProducerKey appends 'p' | pid | 'd' | len(tenant) | tenant |
// len(producer) | producer. tenant and producer must be valid.
func appendProducerKey(dst []byte, partition uint64, tenant, producer string) []byte {
	dst = appendKindPrefix(dst, partition, kindProducer)
	dst = appendShortString(dst, tenant)
	return appendShortString(dst, producer)
}

// parseProducerKey returns the tenant and producer of a producer key of
// partition; ok is false when key is not such a key.
func parseProducerKey(partition uint64, key []byte) (tenant, producer []byte, ok bool) {
	if len(key) < partitionPrefixBytes+1 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindProducer {
		return nil, nil, false
	}
	tenant, rest, ok := cutShortString(key[partitionPrefixBytes+1:])
	if !ok {
		return nil, nil, false
	}
	producer, rest, ok = cutShortString(rest)
	if !ok || len(rest) != 0 {
		return nil, nil, false
	}
	return tenant, producer, true
}

// appendProducerWindowKey appends 'p' | pid | 'w' | len(tenant) | tenant |
// len(producer) | producer | seq.
func appendProducerWindowKey(dst []byte, partition uint64, tenant, producer string, seq uint64) []byte {
	dst = appendProducerWindowPrefix(dst, partition, tenant, producer)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// appendProducerWindowPrefix appends the part of a producer window key
// before the sequence: every window key of the producer starts with it.
func appendProducerWindowPrefix(dst []byte, partition uint64, tenant, producer string) []byte {
	dst = appendKindPrefix(dst, partition, kindProducerWindow)
	dst = appendShortString(dst, tenant)
	return appendShortString(dst, producer)
}

// parseProducerWindowKey returns the parts of a producer window key of
// partition; ok is false when key is not such a key.
func parseProducerWindowKey(partition uint64, key []byte) (tenant, producer []byte, seq uint64, ok bool) {
	if len(key) < partitionPrefixBytes+1 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindProducerWindow {
		return nil, nil, 0, false
	}
	tenant, rest, ok := cutShortString(key[partitionPrefixBytes+1:])
	if !ok {
		return nil, nil, 0, false
	}
	producer, rest, ok = cutShortString(rest)
	if !ok || len(rest) != 8 {
		return nil, nil, 0, false
	}
	return tenant, producer, binary.BigEndian.Uint64(rest), true
}

// appendEventIDKey appends 'p' | pid | 'i' | len(tenant) | tenant | event_id.
func appendEventIDKey(dst []byte, partition uint64, tenant, eventID string) []byte {
	dst = appendKindPrefix(dst, partition, kindEventID)
	dst = appendShortString(dst, tenant)
	return append(dst, eventID...)
}

// parseEventIDKey returns the tenant and event id of an event-id key of
// partition; ok is false when key is not such a key.
func parseEventIDKey(partition uint64, key []byte) (tenant, eventID []byte, ok bool) {
	if len(key) < partitionPrefixBytes+1 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindEventID {
		return nil, nil, false
	}
	tenant, rest, ok := cutShortString(key[partitionPrefixBytes+1:])
	if !ok || len(rest) == 0 || len(rest) > eventIDBytesMax {
		return nil, nil, false
	}
	return tenant, rest, true
}

// appendEventExpiryKey appends 'p' | pid | 'j' | until(8, sign-flipped) |
// len(tenant) | tenant | event_id.
func appendEventExpiryKey(dst []byte, partition uint64, untilUnixNano int64, tenant, eventID string) []byte {
	dst = appendKindPrefix(dst, partition, kindEventExpiry)
	dst = binary.BigEndian.AppendUint64(dst, orderedInt64(untilUnixNano))
	dst = appendShortString(dst, tenant)
	return append(dst, eventID...)
}

// parseEventExpiryKey returns the parts of an event expiry key of
// partition; ok is false when key is not such a key.
func parseEventExpiryKey(partition uint64, key []byte) (untilUnixNano int64, tenant, eventID []byte, ok bool) {
	if len(key) < partitionPrefixBytes+1+8 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindEventExpiry {
		return 0, nil, nil, false
	}
	untilUnixNano = unorderedInt64(binary.BigEndian.Uint64(key[partitionPrefixBytes+1:]))
	tenant, rest, ok := cutShortString(key[partitionPrefixBytes+1+8:])
	if !ok || len(rest) == 0 || len(rest) > eventIDBytesMax {
		return 0, nil, nil, false
	}
	return untilUnixNano, tenant, rest, true
}

// timeIndexKeyBytes is len('p' | pid | 'x' | timestamp | offset).
const timeIndexKeyBytes = partitionPrefixBytes + 1 + 8 + 8

// appendTimeIndexKey appends 'p' | pid | 'x' | timestamp(8, sign-flipped) |
// offset(8).
func appendTimeIndexKey(dst []byte, partition uint64, timestampUnixNano int64, offset uint64) []byte {
	dst = appendKindPrefix(dst, partition, kindTimeIndex)
	dst = binary.BigEndian.AppendUint64(dst, orderedInt64(timestampUnixNano))
	return binary.BigEndian.AppendUint64(dst, offset)
}

// parseTimeIndexKey returns the timestamp and offset of a time index key of
// partition; ok is false when key is not such a key.
func parseTimeIndexKey(partition uint64, key []byte) (timestampUnixNano int64, offset uint64, ok bool) {
	if len(key) != timeIndexKeyBytes || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindTimeIndex {
		return 0, 0, false
	}
	timestampUnixNano = unorderedInt64(binary.BigEndian.Uint64(key[partitionPrefixBytes+1:]))
	return timestampUnixNano, binary.BigEndian.Uint64(key[partitionPrefixBytes+9:]), true
}

// appendChunkKey appends 'p' | pid | 'b' | base offset.
func appendChunkKey(dst []byte, partition, base uint64) []byte {
	dst = appendKindPrefix(dst, partition, kindChunk)
	return binary.BigEndian.AppendUint64(dst, base)
}

// parseChunkKey returns the base offset of a chunk key of partition; ok is
// false when key is not such a key.
func parseChunkKey(partition uint64, key []byte) (base uint64, ok bool) {
	if len(key) != chunkKeyBytes || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindChunk {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[partitionPrefixBytes+1:]), true
}

// appendTenantChunkPrefix appends 'p' | pid | 's' | len(tenant) | tenant:
// every sparse index entry of tenant starts with it. tenant must be valid.
func appendTenantChunkPrefix(dst []byte, partition uint64, tenant string) []byte {
	dst = appendKindPrefix(dst, partition, kindTenantChunk)
	return appendShortString(dst, tenant)
}

// appendTenantChunkKey appends 'p' | pid | 's' | len(tenant) | tenant |
// first sequence of tenant in the chunk. tenant must be valid.
func appendTenantChunkKey(dst []byte, partition uint64, tenant string, firstSeq uint64) []byte {
	dst = appendTenantChunkPrefix(dst, partition, tenant)
	return binary.BigEndian.AppendUint64(dst, firstSeq)
}

// parseTenantChunkKey returns the tenant and first sequence of a sparse
// tenant index key of partition; ok is false when key is not such a key.
func parseTenantChunkKey(partition uint64, key []byte) (tenant []byte, firstSeq uint64, ok bool) {
	if len(key) < partitionPrefixBytes+1 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindTenantChunk {
		return nil, 0, false
	}
	tenant, rest, ok := cutShortString(key[partitionPrefixBytes+1:])
	if !ok || len(rest) != 8 {
		return nil, 0, false
	}
	return tenant, binary.BigEndian.Uint64(rest), true
}

// appendGroupKey appends 'p' | pid | 'g' | len(group) | group. group must
// be 1..255 bytes.
func appendGroupKey(dst []byte, partition uint64, group string) []byte {
	dst = appendKindPrefix(dst, partition, kindGroup)
	return appendShortString(dst, group)
}

// parseGroupKey returns the group name of a group header key of partition;
// ok is false when key is not such a key.
func parseGroupKey(partition uint64, key []byte) (group []byte, ok bool) {
	if len(key) < partitionPrefixBytes+1 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindGroup {
		return nil, false
	}
	group, rest, ok := cutShortString(key[partitionPrefixBytes+1:])
	if !ok || len(rest) != 0 {
		return nil, false
	}
	return group, true
}

// appendGroupPendingPrefix appends 'p' | pid | 'q' | len(group) | group:
// every pending key of the group starts with it.
func appendGroupPendingPrefix(dst []byte, partition uint64, group string) []byte {
	dst = appendKindPrefix(dst, partition, kindGroupPending)
	return appendShortString(dst, group)
}

// appendGroupPendingKey appends 'p' | pid | 'q' | len(group) | group | offset(8).
func appendGroupPendingKey(dst []byte, partition uint64, group string, offset uint64) []byte {
	dst = appendGroupPendingPrefix(dst, partition, group)
	return binary.BigEndian.AppendUint64(dst, offset)
}

// parseGroupPendingKey returns the group and offset of a pending key of
// partition; ok is false when key is not such a key.
func parseGroupPendingKey(partition uint64, key []byte) (group []byte, offset uint64, ok bool) {
	if len(key) < partitionPrefixBytes+1 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindGroupPending {
		return nil, 0, false
	}
	group, rest, ok := cutShortString(key[partitionPrefixBytes+1:])
	if !ok || len(rest) != 8 {
		return nil, 0, false
	}
	return group, binary.BigEndian.Uint64(rest), true
}

// appendGroupDuePrefix appends 'p' | pid | 'r' | len(group) | group: every
// due key of the group starts with it.
func appendGroupDuePrefix(dst []byte, partition uint64, group string) []byte {
	dst = appendKindPrefix(dst, partition, kindGroupDue)
	return appendShortString(dst, group)
}

// appendGroupDueKey appends 'p' | pid | 'r' | len(group) | group |
// not_before(8, sign-flipped) | offset(8).
func appendGroupDueKey(dst []byte, partition uint64, group string, notBeforeUnixNano int64, offset uint64) []byte {
	dst = appendGroupDuePrefix(dst, partition, group)
	dst = binary.BigEndian.AppendUint64(dst, orderedInt64(notBeforeUnixNano))
	return binary.BigEndian.AppendUint64(dst, offset)
}

// parseGroupDueKey returns the parts of a due key of partition; ok is false
// when key is not such a key.
func parseGroupDueKey(partition uint64, key []byte) (group []byte, notBeforeUnixNano int64, offset uint64, ok bool) {
	if len(key) < partitionPrefixBytes+1 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindGroupDue {
		return nil, 0, 0, false
	}
	group, rest, ok := cutShortString(key[partitionPrefixBytes+1:])
	if !ok || len(rest) != 16 {
		return nil, 0, 0, false
	}
	return group, unorderedInt64(binary.BigEndian.Uint64(rest)), binary.BigEndian.Uint64(rest[8:]), true
}
