package wire

import "github.com/heraldlog/herald/client/heraldpb"

// PartitionForTenant returns the partition of a topic with the given number
// of partitions that holds every event of tenant, so that the tenant's
// sequence orders all its events in the topic.
//
// The hash is fixed and part of the wire contract (docs/protocol.md): 64-bit
// FNV-1a over the UTF-8 bytes of the tenant id, reduced modulo the partition
// count. SDKs in other languages must route the same way.
func PartitionForTenant(tenant string, partitions uint32) uint32 {
	if partitions == 0 {
		return 0
	}
	return uint32(fnv1a64(tenant) % uint64(partitions))
}

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnv1a64 is FNV-1a (64-bit); written out rather than using hash/fnv so that
// routing allocates nothing on the produce path.
func fnv1a64(s string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// PartitionFor returns the partition of an event under a topic's ordering:
//
//   - per-tenant (and unspecified): FNV-1a-64(tenant) mod partitions, so a
//     tenant's sequence orders all its events in the topic;
//   - per-key: FNV-1a-64(key) mod partitions, or the tenant's partition when
//     the event has no key;
//   - none: FNV-1a-64(event_id) mod partitions, spreading events evenly.
//
// Part of the wire contract (docs/protocol.md): SDKs route the same way.
func PartitionFor(ordering heraldpb.Ordering, tenant string, key []byte, eventID string, partitions uint32) uint32 {
	if partitions == 0 {
		return 0
	}
	switch ordering {
	case heraldpb.Ordering_PER_KEY:
		if len(key) > 0 {
			return uint32(fnv1a64(string(key)) % uint64(partitions))
		}
	case heraldpb.Ordering_NONE:
		return uint32(fnv1a64(eventID) % uint64(partitions))
	}
	return PartitionForTenant(tenant, partitions)
}
