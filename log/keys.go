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

	// Reserved for later kinds; listed so that no one reuses the letters.
	kindDedupe       byte = 'd'
	kindEventIDIndex byte = 'i'
	kindTimeIndex    byte = 'x'
)

// Meta names.
const (
	metaApplied      = "applied"
	metaNextOffset   = "next_offset"
	metaLowWatermark = "low_watermark"
	metaRestoring    = "restoring"
)

const (
	// partitionPrefixBytes is len('p' | pid(8)).
	partitionPrefixBytes = 1 + 8
	// recordKeyBytes is len('p' | pid | 'e' | offset).
	recordKeyBytes = partitionPrefixBytes + 1 + 8
	// tenantBytesMax is the longest tenant id (its length is stored in one byte).
	tenantBytesMax = 255
	// relativeKeyBytesMax bounds a partition-relative key (kind onwards):
	// the longest is the tenant index key, 1 + 1 + 255 + 8 bytes.
	relativeKeyBytesMax = 1 + 1 + tenantBytesMax + 8
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
