package server

import (
	"time"

	"github.com/heraldlog/herald/partition"
)

// quotaActivityWindow is how recently a tenant's events must have been
// applied to a partition for the partition to share its quota.
const quotaActivityWindow = 10 * time.Second

// tenantLimit is the share of tenant's quota that the leader of one
// partition enforces (partition.TenantLimits): the tenant's rates and
// bursts from the registry, divided evenly over the partitions its events
// went to within quotaActivityWindow, as this node's replicas applied them
// (partition.TenantActivity). A tenant without a quota, or unknown to this
// node's registry, is unlimited; a quota changed in the registry applies
// from the next produce call.
func (n *Node) tenantLimit(tenant string, _ uint64) (partition.TenantLimit, bool) {
	t, ok := n.controllerFSM.Tenant(tenant)
	if !ok {
		return partition.TenantLimit{}, false
	}
	q := t.Quota
	if q.EventsPerSec == 0 && q.BytesPerSec == 0 {
		return partition.TenantLimit{}, false
	}
	share := float64(n.tenantActivity.Partitions(tenant))
	lim := partition.TenantLimit{
		EventsPerSec: float64(q.EventsPerSec) / share,
		BytesPerSec:  float64(q.BytesPerSec) / share,
		BurstEvents:  float64(q.Burst) / share,
	}
	if q.Burst == 0 {
		lim.BurstEvents = lim.EventsPerSec
	}
	// Bytes get one second's worth of burst (the quota has no byte burst).
	lim.BurstBytes = lim.BytesPerSec
	return lim, true
}
