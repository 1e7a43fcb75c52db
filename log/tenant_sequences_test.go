package log

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// A fill that read Pebble before the writer published a newer value, and
// arrives after that value was evicted, must not put the stale value back
// (issue 9, defect 9): the writer would hand out a tenant sequence twice.
func TestTenantSequencesStaleFillAfterEvictionIsDiscarded(t *testing.T) {
	var cache tenantSequences
	_, generation, ok := cache.lookup("acme") // a reader misses...
	require.False(t, ok)
	stale := uint64(5) // ...and reads 5 from Pebble
	// The writer commits 6, publishes it, and other tenants evict it.
	cache.publish(map[string]uint64{"acme": 6})
	for i := 0; ; i++ {
		cache.publish(map[string]uint64{fmt.Sprintf("t%06d", i): 1})
		if _, _, ok := cache.lookup("acme"); !ok {
			break
		}
	}
	cache.fill("acme", stale, generation) // the reader's fill arrives late
	next, _, ok := cache.lookup("acme")
	require.False(t, ok && next == stale, "the stale value %d was cached again", next)
}

// The same race, run concurrently (under -race in CI): readers fill the
// cache from a "Pebble" value while the writer commits, publishes and
// evicts. The writer must never see a value older than its last commit.
func TestTenantSequencesConcurrentFillsNeverGoBack(t *testing.T) {
	cache := tenantSequences{entriesMax: 1} // every other tenant evicts "acme"
	var committed atomic.Uint64             // what Pebble holds for "acme"
	committed.Store(1)
	const rounds = 200_000
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				if _, generation, ok := cache.lookup("acme"); !ok {
					cache.fill("acme", committed.Load(), generation)
				}
			}
		})
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	for round := uint64(2); round < rounds; round++ {
		committed.Store(round)
		cache.publish(map[string]uint64{"acme": round})
		cache.publish(map[string]uint64{"other": 1}) // evicts "acme"
		if next, _, ok := cache.lookup("acme"); ok && next < round {
			t.Fatalf("round %d: the cache went back to %d", round, next)
		}
	}
}
