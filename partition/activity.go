package partition

import (
	"sync"
	"time"
)

// TenantActivity records, node-wide, on which partitions each tenant's
// events were applied lately, as every replica (leader or follower) on the
// node applies them. The node splits a tenant's cluster-wide quota evenly
// over the partitions it used within the window (Partitions): a replica
// applies every committed entry of its partition, so where every node
// hosts every partition (three nodes, replication factor 3) the count is
// the cluster's; where a node hosts fewer, it counts those it hosts and
// the tenant's share on them is larger (docs/operations.md, "Quotas").
//
// Its methods are safe for concurrent use; its memory is bounded by
// activityEntriesMax.
type TenantActivity struct {
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	seen    map[string]map[uint64]int64 // tenant -> group id -> unix nano last applied
	entries int
	swept   time.Time
}

// activityEntriesMax bounds the (tenant, partition) pairs remembered; past
// it, entries older than the window are swept, and new pairs are not
// recorded until there is room (their tenants count fewer partitions).
const activityEntriesMax = 1 << 18

// NewTenantActivity returns a record of tenant activity over window.
func NewTenantActivity(window time.Duration) *TenantActivity {
	return &TenantActivity{window: window, now: time.Now, seen: make(map[string]map[uint64]int64)}
}

// record notes that an entry applied to groupID carried tenants' events.
func (a *TenantActivity) record(groupID uint64, tenants []string) {
	if a == nil || len(tenants) == 0 {
		return
	}
	now := a.now().UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range tenants {
		m := a.seen[t]
		if m == nil {
			m = make(map[uint64]int64, 1)
			a.seen[t] = m
		}
		if _, ok := m[groupID]; !ok {
			if a.entries >= activityEntriesMax {
				a.sweepLocked(now)
				if a.entries >= activityEntriesMax {
					continue
				}
			}
			a.entries++
		}
		m[groupID] = now
	}
}

// Partitions returns how many partitions tenant's events were applied to
// within the window on this node; at least 1.
func (a *TenantActivity) Partitions(tenant string) int {
	if a == nil {
		return 1
	}
	now := a.now().UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	if time.Duration(now-a.swept.UnixNano()) > a.window {
		a.sweepLocked(now)
	}
	n := 0
	for _, t := range a.seen[tenant] {
		if time.Duration(now-t) <= a.window {
			n++
		}
	}
	return max(n, 1)
}

// sweepLocked forgets what is older than the window (a.mu held).
func (a *TenantActivity) sweepLocked(now int64) {
	a.swept = time.Unix(0, now)
	for tenant, m := range a.seen {
		for g, t := range m {
			if time.Duration(now-t) > a.window {
				delete(m, g)
				a.entries--
			}
		}
		if len(m) == 0 {
			delete(a.seen, tenant)
		}
	}
}
