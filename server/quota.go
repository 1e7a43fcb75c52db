package server

import (
	"sync"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
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
	if q.EventsPerSec == 0 && q.BytesPerSec == 0 && q.MaxInflightBytes == 0 {
		return partition.TenantLimit{}, false
	}
	share := float64(n.tenantActivity.Partitions(tenant))
	lim := partition.TenantLimit{
		EventsPerSec: float64(q.EventsPerSec) / share,
		BytesPerSec:  float64(q.BytesPerSec) / share,
		BurstEvents:  float64(q.Burst) / share,
	}
	if q.MaxInflightBytes > 0 {
		// At least one byte, so that a tiny quota still caps (an idle
		// tenant always gets one call in, whatever its size).
		lim.QueuedBytesMax = int(max(float64(q.MaxInflightBytes)/share, 1))
	}
	if q.Burst == 0 {
		lim.BurstEvents = lim.EventsPerSec
	}
	// Bytes get one second's worth of burst (the quota has no byte burst).
	lim.BurstBytes = lim.BytesPerSec
	return lim, true
}

// quotaBlocks remembers, for a short while, the tenants a partition leader
// on this node just refused for their quota, so that the node refuses
// their next requests before planning and encoding them: a tenant in a
// tight loop of refused requests then costs the node a map lookup per
// request, not the work of a produce. A block lasts until the refusal's
// retry hint. The quota is split evenly over the partitions a tenant uses,
// so a tenant refused by one of them is about as far over on the others.
type quotaBlocks struct {
	mu    sync.Mutex
	until map[string]time.Time
}

// quotaBlocksMax bounds the tenants blocked at once; past it, expired
// blocks are swept and new ones are not recorded (their requests take the
// full path and are refused by the partition).
const quotaBlocksMax = 65_536

// block refuses tenant's requests at this node until now+d.
func (b *quotaBlocks) block(tenant string, d time.Duration) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.until == nil {
		b.until = make(map[string]time.Time)
	}
	if len(b.until) >= quotaBlocksMax {
		for t, u := range b.until {
			if !u.After(now) {
				delete(b.until, t)
			}
		}
		if len(b.until) >= quotaBlocksMax {
			return
		}
	}
	if u := now.Add(d); u.After(b.until[tenant]) {
		b.until[tenant] = u
	}
}

// blocked returns how long the request's tenants stay blocked when every
// one of them is (the shortest wait), else false.
func (b *quotaBlocks) blocked(events []*heraldpb.Event) (tenant string, wait time.Duration, ok bool) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.until) == 0 {
		return "", 0, false
	}
	for i, ev := range events {
		if ev == nil {
			return "", 0, false
		}
		if i > 0 && ev.TenantId == events[i-1].TenantId {
			continue
		}
		u, found := b.until[ev.TenantId]
		if !found || !u.After(now) {
			return "", 0, false
		}
		if w := u.Sub(now); !ok || w < wait {
			tenant, wait, ok = ev.TenantId, w, true
		}
	}
	return tenant, wait, ok
}
