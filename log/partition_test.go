package log

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

func TestAppendAndReadAcrossTenantsAndPartitions(t *testing.T) {
	db := openMemDB(t)
	tenants := []string{"acme", "globex", "initech"}
	parts := []*Partition{partition(t, db, 1), partition(t, db, 2), partition(t, db, 1<<40)}

	want := make(map[uint64][]Record)
	for round := range 4 {
		for i, p := range parts {
			// Different batch sizes per partition, so their offsets diverge.
			es := entries(3+round+i*2, tenants[i%len(tenants):]...)
			want[p.ID()] = append(want[p.ID()], commitBatch(t, p, uint64(round+1)*10, es)...)
		}
	}

	for _, p := range parts {
		records := want[p.ID()]
		// Offsets dense from 0; sequences dense from 1 per tenant.
		nextSeq := map[string]uint64{}
		for i, r := range records {
			require.Equal(t, uint64(i), r.Offset)
			nextSeq[r.Tenant]++
			require.Equal(t, nextSeq[r.Tenant], r.Sequence, "partition %d offset %d", p.ID(), i)
		}

		require.Equal(t, uint64(40), p.AppliedIndex())
		require.Equal(t, uint64(0), p.LowWatermark())
		require.Equal(t, uint64(len(records)), p.HighWatermark())
		require.Equal(t, records, readAll(t, p))
		for _, tenant := range tenants {
			tenantRecords := filterTenant(records, tenant)
			require.Equal(t, tenantRecords, readTenantAll(t, p, tenant), "partition %d tenant %s", p.ID(), tenant)
			next, err := p.NextSequence(tenant)
			require.NoError(t, err)
			require.Equal(t, nextSeq[tenant]+1, next)
			for _, r := range tenantRecords {
				offset, ok, err := p.OffsetOfSequence(tenant, r.Sequence)
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, r.Offset, offset)
			}
			_, ok, err := p.OffsetOfSequence(tenant, next)
			require.NoError(t, err)
			require.False(t, ok)
		}
	}

	// Isolation: a tenant absent from a partition has nothing there, though
	// it has records elsewhere.
	require.Empty(t, filterTenant(want[1<<40], "acme"))
	require.Empty(t, readTenantAll(t, parts[2], "acme"))
	next, err := parts[2].NextSequence("acme")
	require.NoError(t, err)
	require.Equal(t, uint64(1), next)
	_, ok, err := parts[2].OffsetOfSequence("acme", 1)
	require.NoError(t, err)
	require.False(t, ok)
}

func TestPartitionReturnsSameInstance(t *testing.T) {
	db := openMemDB(t)
	const callers = 8
	got := make([]*Partition, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			p, err := db.Partition(5)
			if err == nil {
				got[i] = p
			}
		})
	}
	wg.Wait()
	for _, p := range got {
		require.NotNil(t, p)
		require.Same(t, got[0], p)
	}
	require.NotSame(t, got[0], partition(t, db, 6))
}

func TestCommitRules(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	first := commitBatch(t, p, 5, entries(3, "a", "b"))
	before := view(t, p, "a", "b")

	t.Run("stale applied index changes nothing", func(t *testing.T) {
		for _, applied := range []uint64{4, 5} {
			b := p.NewBatch()
			_, _, err := b.Append("a", 1, []byte("x"))
			require.NoError(t, err)
			require.ErrorIs(t, b.Commit(applied), ErrStaleAppliedIndex)
			require.Equal(t, before, view(t, p, "a", "b"))
		}
	})

	t.Run("aborted batch changes nothing", func(t *testing.T) {
		b := p.NewBatch()
		offset, seq, err := b.Append("a", 1, []byte("x"))
		require.NoError(t, err)
		require.Equal(t, uint64(3), offset)
		require.Equal(t, uint64(3), seq)
		b.Abort()
		b.Abort() // idempotent
		require.Equal(t, before, view(t, p, "a", "b"))
		_, _, err = b.Append("a", 1, []byte("x"))
		require.ErrorIs(t, err, ErrBatchDone)
		require.ErrorIs(t, b.Commit(6), ErrBatchDone)
		// The next batch assigns the same offset and sequence again.
		b = p.NewBatch()
		defer b.Abort()
		offset, seq, err = b.Append("a", 1, []byte("x"))
		require.NoError(t, err)
		require.Equal(t, uint64(3), offset)
		require.Equal(t, uint64(3), seq)
	})

	t.Run("invalid appends leave the batch usable", func(t *testing.T) {
		b := p.NewBatch()
		defer b.Abort()
		_, _, err := b.Append("", 1, []byte("x"))
		require.ErrorIs(t, err, ErrInvalidTenant)
		_, _, err = b.Append(strings.Repeat("t", 256), 1, []byte("x"))
		require.ErrorIs(t, err, ErrInvalidTenant)
		_, _, err = b.Append("a", 1, make([]byte, recordBodyBytesMax+1))
		require.ErrorIs(t, err, ErrRecordTooLarge)
		require.Equal(t, 0, b.Len())
		offset, _, err := b.Append("a", 1, []byte("ok"))
		require.NoError(t, err)
		require.Equal(t, uint64(3), offset)
	})

	t.Run("empty batch advances the applied index only", func(t *testing.T) {
		b := p.NewBatch()
		require.Equal(t, 0, b.Len())
		require.NoError(t, b.Commit(9))
		require.ErrorIs(t, b.Commit(10), ErrBatchDone)
		require.Equal(t, uint64(9), p.AppliedIndex())
		require.Equal(t, first, readAll(t, p))
	})

	t.Run("two batches in flight: the second to commit conflicts", func(t *testing.T) {
		b1, b2 := p.NewBatch(), p.NewBatch()
		_, _, err := b1.Append("a", 1, []byte("one"))
		require.NoError(t, err)
		_, _, err = b2.Append("b", 1, []byte("two"))
		require.NoError(t, err)
		require.NoError(t, b1.Commit(10))
		after := view(t, p, "a", "b")
		require.ErrorIs(t, b2.Commit(11), ErrBatchConflict)
		require.Equal(t, after, view(t, p, "a", "b"))
	})

	t.Run("sequences continue within and across batches", func(t *testing.T) {
		b := p.NewBatch()
		defer b.Abort()
		next, err := p.NextSequence("b")
		require.NoError(t, err)
		for i := range 3 {
			_, seq, err := b.Append("b", 1, []byte("y"))
			require.NoError(t, err)
			require.Equal(t, next+uint64(i), seq)
		}
		// Uncommitted appends are invisible.
		again, err := p.NextSequence("b")
		require.NoError(t, err)
		require.Equal(t, next, again)
		require.NoError(t, b.Commit(12))
		after, err := p.NextSequence("b")
		require.NoError(t, err)
		require.Equal(t, next+3, after)
	})

	_, err := p.NextSequence("")
	require.ErrorIs(t, err, ErrInvalidTenant)
}

func TestReopenPersistsEverything(t *testing.T) {
	fs := vfs.NewMem()
	tenants := []string{"a", "b", "c"}
	db, err := Open(Options{Dir: "db", FS: fs, Logger: discardLogger()})
	require.NoError(t, err)
	var want []partitionView
	for id := uint64(1); id <= 2; id++ {
		p := partition(t, db, id)
		for i := range 5 {
			commitBatch(t, p, uint64(i+1), entries(int(id)*7+i, tenants...))
		}
		want = append(want, view(t, p, tenants...))
	}
	require.NoError(t, db.Close())

	db = openDB(t, fs)
	for i, id := range []uint64{1, 2} {
		p := partition(t, db, id)
		require.Equal(t, want[i], view(t, p, tenants...))
		// Appending continues where it stopped.
		records := commitBatch(t, p, 100, entries(1, "b"))
		require.Equal(t, want[i].High, records[0].Offset)
		require.Equal(t, want[i].NextSequence["b"], records[0].Sequence)
	}
}

func TestTenantCacheIsBounded(t *testing.T) {
	var cache tenantSequences
	_, generation, _ := cache.lookup("any")
	for i := range tenantCacheEntriesMax + 10 {
		cache.fill(fmt.Sprintf("fill-%d", i), 2, generation)
	}
	require.Equal(t, tenantCacheEntriesMax, cache.len())
	// Publishing evicts other entries, never the published ones.
	published := map[string]uint64{}
	for i := range 20 {
		published[fmt.Sprintf("published-%d", i)] = uint64(i + 1)
	}
	cache.publish(published)
	require.Equal(t, tenantCacheEntriesMax, cache.len())
	for tenant, want := range published {
		next, _, ok := cache.lookup(tenant)
		require.True(t, ok)
		require.Equal(t, want, next)
	}

	// A fill that raced a reset is dropped.
	_, generation, _ = cache.lookup("late")
	cache.reset()
	require.Equal(t, 0, cache.len())
	cache.fill("late", 9, generation)
	_, _, ok := cache.lookup("late")
	require.False(t, ok)
	// A published value wins over a later fill.
	cache.publish(map[string]uint64{"late": 4})
	_, generation, _ = cache.lookup("late")
	cache.fill("late", 2, generation)
	next, _, ok := cache.lookup("late")
	require.True(t, ok)
	require.Equal(t, uint64(4), next)
}

func TestClosedDB(t *testing.T) {
	db, err := Open(Options{Dir: "db", FS: vfs.NewMem(), Logger: discardLogger()})
	require.NoError(t, err)
	p := partition(t, db, 1)
	commitBatch(t, p, 1, entries(2, "a"))
	snapshot, err := p.Snapshot()
	require.NoError(t, err)
	pending := p.NewBatch()
	_, _, err = pending.Append("a", 1, []byte("x"))
	require.NoError(t, err)

	require.NoError(t, db.Close())
	require.NoError(t, db.Close(), "second Close")

	_, err = db.Partition(1)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, db.Sync(), ErrClosed)
	_, err = p.Read(0, 1, 1)
	require.ErrorIs(t, err, ErrClosed)
	_, err = p.ReadTenant("a", 1, 1, 1)
	require.ErrorIs(t, err, ErrClosed)
	_, _, err = p.OffsetOfSequence("a", 1)
	require.ErrorIs(t, err, ErrClosed)
	_, err = p.NextSequence("zzz")
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, pending.Commit(2), ErrClosed)
	b := p.NewBatch()
	_, _, err = b.Append("a", 1, []byte("x"))
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, b.Commit(2), ErrClosed)
	_, err = p.Snapshot()
	require.ErrorIs(t, err, ErrClosed)
	_, err = snapshot.WriteTo(&strings.Builder{})
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, snapshot.Close(), "DB.Close released it")
	require.ErrorIs(t, p.Restore(strings.NewReader("")), ErrClosed)
	require.ErrorIs(t, p.Drop(), ErrClosed)
	// The published state stays readable.
	require.Equal(t, uint64(2), p.HighWatermark())
}
