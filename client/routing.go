package client

import (
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// PartitionForTenant returns the partition of a topic with the given number
// of partitions that holds every event of tenant (see
// wire.PartitionForTenant; the hash is part of the wire contract).
func PartitionForTenant(tenant string, partitions uint32) uint32 {
	return wire.PartitionForTenant(tenant, partitions)
}

// PartitionFor returns the partition of an event under a topic's ordering
// (see wire.PartitionFor; SDKs in every language route the same way).
func PartitionFor(ordering heraldpb.Ordering, tenant string, key []byte, eventID string, partitions uint32) uint32 {
	return wire.PartitionFor(ordering, tenant, key, eventID, partitions)
}
