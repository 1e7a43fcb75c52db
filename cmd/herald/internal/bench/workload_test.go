package bench

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

func TestSpreadTenantsCoversEveryPartitionEvenly(t *testing.T) {
	for _, tc := range []struct{ tenants, partitions int }{{16, 3}, {1, 1}, {3, 3}, {64, 7}, {2, 5}} {
		names, err := spreadTenants(tc.tenants, tc.partitions)
		require.NoError(t, err)
		require.Len(t, names, tc.tenants)
		seen := map[string]bool{}
		for i, name := range names {
			assert.False(t, seen[name], "tenant %s repeated", name)
			seen[name] = true
			assert.Equal(t, uint32(i%tc.partitions), client.PartitionForTenant(name, uint32(tc.partitions)), "tenant %d of %+v", i, tc)
		}
	}
}

func TestWorkloadEventsRotateTenants(t *testing.T) {
	seed := uint64(42)
	t.Logf("seed %d", seed)
	w, err := newWorkload(4, 2, 100, rand.New(rand.NewPCG(seed, 0)))
	require.NoError(t, err)
	require.Len(t, w.payload, 100)
	for request := range int64(9) {
		events := w.events(request, 3)
		require.Len(t, events, 3)
		for _, e := range events {
			assert.Equal(t, w.tenants[request%4], e.GetTenantId())
			assert.Equal(t, w.payload, e.GetPayload())
			assert.Empty(t, e.GetEventId(), "Produce assigns the id")
		}
	}
	a, b := w.events(0, 1), w.events(0, 1)
	assert.NotSame(t, a[0], b[0], "each event is new: Produce writes into it")
}

func TestPacedBatch(t *testing.T) {
	assert.Equal(t, 1, pacedBatch(10, 500))
	assert.Equal(t, 20, pacedBatch(20_000, 500))
	assert.Equal(t, 500, pacedBatch(5_000_000, 500))
}
