package bench

import (
	"fmt"
	"math/rand/v2"

	"github.com/heraldlog/herald/client"
)

// tenantCandidatesMax bounds the names tried when spreading tenants over
// partitions.
const tenantCandidatesMax = 1 << 20

// workload is what the producers send: tenant names and one shared
// payload. It is immutable once made and safe for concurrent use.
type workload struct {
	tenants []string
	payload []byte
}

// newWorkload makes tenants spread evenly over partitions (tenant i lands
// on partition i mod partitions, under the SDK's per-tenant routing, as
// long as there are at least as many tenants as partitions) and a random
// payload of size bytes (random so that no layer can compress it away).
func newWorkload(tenants, partitions, size int, rng *rand.Rand) (*workload, error) {
	names, err := spreadTenants(tenants, partitions)
	if err != nil {
		return nil, err
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(rng.UintN(256))
	}
	return &workload{tenants: names, payload: payload}, nil
}

// spreadTenants returns n tenant names such that name i routes to
// partition i mod partitions.
func spreadTenants(n, partitions int) ([]string, error) {
	names := make([]string, n)
	next := make([]int, partitions) // per partition, the next slot i with i%partitions == p
	for p := range next {
		next[p] = p
	}
	filled := 0
	for k := 0; filled < n; k++ {
		if k >= tenantCandidatesMax {
			return nil, fmt.Errorf("bench: no spread of %d tenants over %d partitions in %d names", n, partitions, tenantCandidatesMax)
		}
		name := fmt.Sprintf("bench-tenant-%d", k)
		p := int(client.PartitionForTenant(name, uint32(partitions)))
		if next[p] >= n {
			continue
		}
		names[next[p]] = name
		next[p] += partitions
		filled++
	}
	return names, nil
}

// events returns n new events for the request-th request of a phase,
// all of tenant request mod tenants: each request goes to one partition
// and successive requests rotate over the tenants (so over the
// partitions). Each Event is new, since Produce writes its event id into
// it; the payload is shared (Produce only reads it).
func (w *workload) events(request int64, n int) []*client.Event {
	tenant := w.tenants[request%int64(len(w.tenants))]
	events := make([]*client.Event, n)
	for i := range events {
		events[i] = &client.Event{TenantId: tenant, Payload: w.payload}
	}
	return events
}
