package log

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// truncate runs TruncateBefore in its own batch.
func truncate(t testing.TB, p *Partition, offset uint64) {
	t.Helper()
	inBatch(t, p, func(b *Batch) { require.NoError(t, b.TruncateBefore(offset)) })
}

// storedRecordBytes derives what SizeBytes must be from what partition id
// stores, read behind the package's back: the value size of every record
// stored under its own key, and for chunks the size of each record at or
// above the stored low watermark (the header counted with a chunk's first
// record).
func storedRecordBytes(t testing.TB, db *DB, id uint64) uint64 {
	t.Helper()
	var low uint64
	if value, closer, err := db.Pebble().Get(appendMetaKey(nil, id, metaLowWatermark)); err == nil {
		low = binary.BigEndian.Uint64(value)
		require.NoError(t, closer.Close())
	}
	var sum uint64
	for _, kind := range []byte{kindRecord, kindChunk} {
		lower, upper := kindBounds(id, kind)
		iter, err := db.Pebble().NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		require.NoError(t, err)
		for valid := iter.First(); valid; valid = iter.Next() {
			if kind == kindRecord {
				sum += uint64(len(iter.Value()))
				continue
			}
			base, ok := parseChunkKey(id, iter.Key())
			require.True(t, ok)
			_, views, err := decodeChunk(id, base, iter.Value(), nil)
			require.NoError(t, err)
			for i, v := range views {
				if v.offset >= low {
					sum += uint64(chunkRecordHeaderBytes + len(v.tenant) + len(v.body))
					if i == 0 {
						sum += chunkHeaderBytes
					}
				}
			}
		}
		require.NoError(t, iter.Close())
	}
	return sum
}

// storedChunks returns the [base, end) ranges of partition id's chunks.
func storedChunks(t testing.TB, db *DB, id uint64) [][2]uint64 {
	t.Helper()
	lower, upper := kindBounds(id, kindChunk)
	iter, err := db.Pebble().NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	require.NoError(t, err)
	defer func() { require.NoError(t, iter.Close()) }()
	var out [][2]uint64
	for valid := iter.First(); valid; valid = iter.Next() {
		base, ok := parseChunkKey(id, iter.Key())
		require.True(t, ok)
		_, views, err := decodeChunk(id, base, iter.Value(), nil)
		require.NoError(t, err)
		out = append(out, [2]uint64{base, chunkEnd(views)})
	}
	return out
}

// timeIndexOffsets returns the offsets of partition id's time index points.
func timeIndexOffsets(t testing.TB, db *DB, id uint64) []uint64 {
	t.Helper()
	var out []uint64
	for _, key := range keysOfKind(t, db, id, kindTimeIndex) {
		_, offset, ok := parseTimeIndexKey(id, key)
		require.True(t, ok)
		out = append(out, offset)
	}
	return out
}

// tenantChunkEntry is one sparse tenant index entry.
type tenantChunkEntry struct{ firstSeq, base, count uint64 }

// tenantChunkEntries returns tenant's sparse index entries in partition id.
func tenantChunkEntries(t testing.TB, db *DB, id uint64, tenant string) []tenantChunkEntry {
	t.Helper()
	prefix := appendTenantChunkPrefix(nil, id, tenant)
	iter, err := db.Pebble().NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixSuccessor(prefix)})
	require.NoError(t, err)
	defer func() { require.NoError(t, iter.Close()) }()
	var out []tenantChunkEntry
	for valid := iter.First(); valid; valid = iter.Next() {
		_, firstSeq, ok := parseTenantChunkKey(id, iter.Key())
		require.True(t, ok)
		base, count, ok := decodeTenantChunkValue(iter.Value())
		require.True(t, ok)
		out = append(out, tenantChunkEntry{firstSeq, base, count})
	}
	return out
}

func TestTruncateBefore(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open(Options{Dir: "db", FS: fs, Logger: discardLogger()})
	require.NoError(t, err)
	p := partition(t, db, 1)
	// Ten batches of 5 records, 1 s apart: one time index point each.
	var all []Record
	for i := range 10 {
		es := entries(5, "a", "b", "c")
		for j := range es {
			es[j].ts = int64(i)*1e9 + int64(j)
		}
		all = append(all, commitBatch(t, p, uint64(i+1), es)...)
	}
	require.Equal(t, []uint64{0, 5, 10, 15, 20, 25, 30, 35, 40, 45}, timeIndexOffsets(t, db, 1))
	require.Equal(t, storedRecordBytes(t, db, 1), p.SizeBytes())
	require.NotZero(t, p.SizeBytes())

	truncate(t, p, 12)
	require.Equal(t, uint64(12), p.LowWatermark())
	require.Equal(t, uint64(50), p.HighWatermark())
	require.Equal(t, storedRecordBytes(t, db, 1), p.SizeBytes())
	require.Equal(t, all[12:], readAll(t, p))
	require.Equal(t, []uint64{15, 20, 25, 30, 35, 40, 45}, timeIndexOffsets(t, db, 1))

	// Reads below the low watermark fail with it.
	_, err = p.Read(11, 10, 1<<20)
	var outOfRange *OffsetOutOfRangeError
	require.True(t, errors.As(err, &outOfRange))
	require.Equal(t, OffsetOutOfRangeError{Partition: 1, Requested: 11, Low: 12, High: 50}, *outOfRange)

	// Chunks wholly below the low watermark are gone; the one straddling
	// it (records 10..14) stays.
	require.Equal(t, [][2]uint64{{10, 15}, {15, 20}, {20, 25}, {25, 30}, {30, 35}, {35, 40}, {40, 45}, {45, 50}}, storedChunks(t, db, 1))
	// Tenant reads start at the first retained sequence; the index entries
	// of the deleted chunks are gone.
	for _, tenant := range []string{"a", "b", "c"} {
		want := filterTenant(all[12:], tenant)
		require.Equal(t, want, readTenantAll(t, p, tenant), "tenant %s", tenant)
		entries := tenantChunkEntries(t, db, 1, tenant)
		require.Equal(t, uint64(10), entries[0].base, "tenant %s", tenant)
		require.LessOrEqual(t, entries[0].firstSeq, want[0].Sequence, "tenant %s", tenant)
		records, err := p.ReadTenant(tenant, 2, 1, 1<<20)
		require.NoError(t, err)
		require.Equal(t, want[0], records[0], "a read from a truncated sequence starts at the first retained one")
		_, ok, err := p.OffsetOfSequence(tenant, 1)
		require.NoError(t, err)
		require.False(t, ok)
	}

	// At or below the low watermark: a no-op; above the high watermark:
	// clamped to it.
	keys := rawKeys(t, db, 1)
	truncate(t, p, 12)
	truncate(t, p, 3)
	require.Equal(t, len(keys), len(rawKeys(t, db, 1)))
	truncate(t, p, 1000)
	require.Equal(t, uint64(50), p.LowWatermark())
	require.Zero(t, p.SizeBytes())
	require.Empty(t, readAll(t, p))
	require.Empty(t, keysOfKind(t, db, 1, kindChunk))
	require.Empty(t, keysOfKind(t, db, 1, kindTenantChunk))
	require.Empty(t, timeIndexOffsets(t, db, 1))
	require.Empty(t, readTenantAll(t, p, "a"))

	// The log goes on after a full truncation, also after a reopen.
	require.NoError(t, db.Sync())
	require.NoError(t, db.Close())
	db = openDB(t, fs)
	p = partition(t, db, 1)
	require.Equal(t, uint64(50), p.LowWatermark())
	require.Equal(t, uint64(50), p.HighWatermark())
	require.Zero(t, p.SizeBytes())
	more := commitBatch(t, p, p.AppliedIndex()+1, entries(2, "a"))
	require.Equal(t, uint64(50), more[0].Offset)
	require.Equal(t, filterTenant(all, "a")[len(filterTenant(all, "a"))-1].Sequence+1, more[0].Sequence)
	require.Equal(t, int64(9e9+4), more[0].TimestampUnixNano, "last_ts survived the truncation")
	require.Equal(t, []uint64{50}, timeIndexOffsets(t, db, 1), "a point for the first record after the index emptied")
	require.Equal(t, more, readTenantAll(t, p, "a"))
	require.Equal(t, storedRecordBytes(t, db, 1), p.SizeBytes())
}

func TestTruncateInsideABatch(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	all := commitBatch(t, p, 1, entries(10, "a", "b"))

	inBatch(t, p, func(b *Batch) {
		_, _, err := b.Append("a", 0, []byte("pending"))
		require.NoError(t, err)
		// Clamped to the committed high watermark: the pending record stays.
		require.NoError(t, b.TruncateBefore(1000))
		require.NoError(t, b.TruncateBefore(5))
		_, _, err = b.Append("b", 0, []byte("after"))
		require.NoError(t, err)
	})
	require.Equal(t, uint64(10), p.LowWatermark())
	require.Equal(t, uint64(12), p.HighWatermark())
	records := readAll(t, p)
	require.Len(t, records, 2)
	require.Equal(t, "pending", string(records[0].Body))
	require.Equal(t, "after", string(records[1].Body))
	require.Equal(t, storedRecordBytes(t, db, 1), p.SizeBytes())
	require.Equal(t, filterTenant(all, "b")[4].Sequence+1, readTenantAll(t, p, "b")[0].Sequence)

	// Two truncations in one batch add up.
	commitBatch(t, p, p.AppliedIndex()+1, entries(10, "a"))
	inBatch(t, p, func(b *Batch) {
		require.NoError(t, b.TruncateBefore(14))
		require.NoError(t, b.TruncateBefore(17))
	})
	require.Equal(t, uint64(17), p.LowWatermark())
	require.Equal(t, storedRecordBytes(t, db, 1), p.SizeBytes())
	require.Len(t, readAll(t, p), 5)
}

func TestReadsDuringTruncationNeverSeeCorruption(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	const batches = 40
	for i := range batches {
		commitBatch(t, p, uint64(i+1), entries(20, "a", "b"))
	}
	var done atomic.Bool
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for reader := range 3 {
		wg.Go(func() {
			for first := true; first || !done.Load(); first = false {
				var err error
				switch reader {
				case 0:
					_, err = p.Read(p.LowWatermark(), 50, 1<<20)
				case 1:
					_, err = p.ReadTenant("a", 1, 50, 1<<20)
				default:
					_, err = p.OffsetForTime(1_000_010)
				}
				if err != nil && !errors.Is(err, ErrOffsetOutOfRange) {
					errs <- err
					return
				}
			}
		})
	}
	for low := uint64(0); low < batches*20; low += 7 {
		truncate(t, p, low)
	}
	truncate(t, p, batches*20)
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, uint64(batches*20), p.LowWatermark())
}
