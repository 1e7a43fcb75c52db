package log

import "sync"

// tenantCacheEntriesMax bounds the tenant next-sequence cache of one
// partition. An evicted entry is reloaded from Pebble on its next use, so
// eviction costs one point read and never correctness.
const tenantCacheEntriesMax = 1 << 16

// tenantSequences caches each tenant's next sequence as committed to Pebble.
// The partition's writer publishes committed values; readers of
// NextSequence fill misses from Pebble. A fill carries the generation it
// read under, so a fill racing a reset (Restore, Drop) or an eviction is
// discarded rather than resurrecting a stale value: a reader may read
// Pebble before the writer commits and publishes a newer value, which an
// eviction then removes; its late fill must not put the old value back,
// or the writer would hand out a tenant sequence twice. Safe for
// concurrent use.
type tenantSequences struct {
	// entriesMax bounds the entries; 0: tenantCacheEntriesMax. Set before
	// use (tests set it small).
	entriesMax int
	mu         struct {
		sync.Mutex
		next       map[string]uint64
		generation uint64
	}
}

// lookup returns the cached next sequence of tenant, and the generation a
// fill after a miss must present.
func (t *tenantSequences) lookup(tenant string) (next, generation uint64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	next, ok = t.mu.next[tenant]
	return next, t.mu.generation, ok
}

// fill caches next for tenant, read from Pebble under generation, unless
// the cache was reset or evicted since, or already holds a (newer) value.
func (t *tenantSequences) fill(tenant string, next, generation uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if generation != t.mu.generation {
		return
	}
	if _, ok := t.mu.next[tenant]; ok {
		return
	}
	if t.mu.next == nil {
		t.mu.next = make(map[string]uint64)
	}
	t.evictLocked(len(t.mu.next)+1-t.max(), nil)
	t.mu.next[tenant] = next
}

// publish records committed next sequences; they overwrite whatever the
// cache holds.
func (t *tenantSequences) publish(updates map[string]uint64) {
	if len(updates) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.next == nil {
		t.mu.next = make(map[string]uint64, len(updates))
	}
	for tenant, next := range updates {
		t.mu.next[tenant] = next
	}
	t.evictLocked(len(t.mu.next)-t.max(), updates)
}

// reset forgets everything and invalidates fills in flight.
func (t *tenantSequences) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.next = nil
	t.mu.generation++
}

// max returns the entry bound.
func (t *tenantSequences) max() int {
	if t.entriesMax > 0 {
		return t.entriesMax
	}
	return tenantCacheEntriesMax
}

// evictLocked removes up to n arbitrary entries not in keep, and
// invalidates the fills in flight (their value may be older than the
// evicted one). t.mu must be held.
func (t *tenantSequences) evictLocked(n int, keep map[string]uint64) {
	if n > 0 {
		t.mu.generation++
	}
	for tenant := range t.mu.next {
		if n <= 0 {
			return
		}
		if _, ok := keep[tenant]; ok {
			continue
		}
		delete(t.mu.next, tenant)
		n--
	}
}

// len returns the number of cached entries (for tests).
func (t *tenantSequences) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.mu.next)
}
