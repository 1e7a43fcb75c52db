package server

import (
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/partition"
)

// quotaActivityWindow is how recently a tenant's events must have been
// applied to a partition for the partition to share its quota.
const quotaActivityWindow = 10 * time.Second

// tenantLimits returns the partition.TenantLimits of a replica of a
// topic with partitions partitions.
//
// A tenant's share on a partition is its quota (rates and bursts from the
// registry) divided evenly over the partitions its events went to within
// quotaActivityWindow, as this node's replicas applied them
// (partition.TenantActivity), this partition included. A tenant with no
// activity in the window is assumed to be starting on every partition of
// the topic at once (a flood's first wave reaches them all before any of
// it applies): its share is divided by the topic's partitions until its
// first events apply. A tenant without a quota, or unknown to this node's
// registry, is unlimited; a quota changed in the registry applies from the
// next produce call.
func (n *Node) tenantLimits(partitions int) partition.TenantLimits {
	return func(tenant string, groupID uint64) (partition.TenantLimit, bool) {
		t, ok := n.controllerFSM.Tenant(tenant)
		if !ok {
			return partition.TenantLimit{}, false
		}
		q := t.Quota
		if q.EventsPerSec == 0 && q.BytesPerSec == 0 && q.MaxInflightBytes == 0 {
			return partition.TenantLimit{}, false
		}
		k, active := n.tenantActivity.Partitions(tenant, groupID)
		if !active {
			k = max(k, partitions)
		}
		share := float64(k)
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
}

// Door holds: a request refused at the door (its tenant is blocked) is
// answered only once the block is over, up to doorHoldMax, the way Kafka
// delays a throttled client's answers: a producer that sends its next
// request when the last is answered, ignoring the hints, is then slowed
// to one request per retry hint instead of spinning the node's cores on
// refusals. The requests held at once are bounded by their bytes
// (doorHoldBytesMax); past it a refusal is answered at once.
const (
	doorHoldMax      = time.Second
	doorHoldBytesMax = 64 << 20
)

// refuseAtDoor answers a request of a blocked tenant: QuotaExceeded, after
// holding it while the block lasts (within the bounds above).
func (n *Node) refuseAtDoor(ctx context.Context, req *heraldpb.ProduceRequest, tenant string, wait time.Duration) error {
	n.partitionMetrics.ObserveRefused(tenant, wire.LimitTenantQuota)
	hold := min(wait, doorHoldMax)
	size := int64(proto.Size(req))
	if n.doorHeld.Add(size) <= doorHoldBytesMax {
		t := time.NewTimer(hold)
		select {
		case <-t.C:
			wait -= hold
		case <-ctx.Done():
		case <-n.ctx.Done():
		}
		t.Stop()
	}
	n.doorHeld.Add(-size)
	return wire.QuotaExceeded(tenant, "refused moments ago on this node", max(wait.Milliseconds(), 1))
}

// quotaBlocks remembers, for a short while, the tenants a partition leader
// on this node just refused for their quota, so that the node refuses
// their next requests before planning and encoding them: a tenant in a
// tight loop of refused requests then costs the node a map lookup per
// request, not the work of a produce. A block lasts until the refusal's
// retry hint. The quota is split evenly over the partitions a tenant uses,
// so a tenant refused by one of them is about as far over on the others.
type quotaBlocks struct {
	mu    sync.RWMutex // read by every produce request, written on refusals
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
	b.mu.RLock()
	defer b.mu.RUnlock()
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
