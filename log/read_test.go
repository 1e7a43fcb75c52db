package log

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

func TestReadLimits(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	// Bodies of 10 bytes, except offset 4 (30 bytes); tenants alternate.
	var es []entry
	for i := range 8 {
		body := []byte("0123456789")
		if i == 4 {
			body = []byte("012345678901234567890123456789")
		}
		es = append(es, entry{tenant: []string{"a", "b"}[i%2], ts: int64(i), body: body})
	}
	all := commitBatch(t, p, 1, es)

	tests := []struct {
		name                 string
		from                 uint64
		maxRecords, maxBytes int
		want                 []uint64 // offsets
	}{
		{"everything", 0, 100, 1 << 20, []uint64{0, 1, 2, 3, 4, 5, 6, 7}},
		{"record limit", 0, 3, 1 << 20, []uint64{0, 1, 2}},
		{"one record", 6, 1, 1 << 20, []uint64{6}},
		{"byte limit exact", 0, 100, 20, []uint64{0, 1}},
		{"byte limit not exact", 0, 100, 25, []uint64{0, 1}},
		{"first record always returned", 4, 100, 5, []uint64{4}},
		{"stops before an oversize record", 2, 100, 35, []uint64{2, 3}},
		{"from the middle to the end", 5, 100, 1 << 20, []uint64{5, 6, 7}},
		{"last record", 7, 100, 1, []uint64{7}},
		{"at the high watermark", 8, 100, 1 << 20, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Read(tt.from, tt.maxRecords, tt.maxBytes)
			require.NoError(t, err)
			var offsets []uint64
			for _, r := range got {
				offsets = append(offsets, r.Offset)
				require.Equal(t, all[r.Offset], r)
			}
			require.Equal(t, tt.want, offsets)
		})
	}

	tenantTests := []struct {
		name                 string
		tenant               string
		fromSeq              uint64
		maxRecords, maxBytes int
		want                 []uint64 // offsets
	}{
		{"tenant everything", "a", 1, 100, 1 << 20, []uint64{0, 2, 4, 6}},
		{"fromSeq 0 is 1", "a", 0, 100, 1 << 20, []uint64{0, 2, 4, 6}},
		{"tenant record limit", "b", 2, 2, 1 << 20, []uint64{3, 5}},
		{"tenant byte limit", "a", 1, 100, 25, []uint64{0, 2}},
		{"tenant first always", "a", 3, 100, 1, []uint64{4}},
		{"past the tenant's end", "a", 5, 100, 1 << 20, nil},
		{"unknown tenant", "zzz", 1, 100, 1 << 20, nil},
	}
	for _, tt := range tenantTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.ReadTenant(tt.tenant, tt.fromSeq, tt.maxRecords, tt.maxBytes)
			require.NoError(t, err)
			var offsets []uint64
			for _, r := range got {
				offsets = append(offsets, r.Offset)
				require.Equal(t, all[r.Offset], r)
			}
			require.Equal(t, tt.want, offsets)
		})
	}

	for _, limits := range [][2]int{{0, 1}, {1, 0}, {-1, 10}} {
		_, err := p.Read(0, limits[0], limits[1])
		require.ErrorIs(t, err, ErrInvalidArgument)
		_, err = p.ReadTenant("a", 1, limits[0], limits[1])
		require.ErrorIs(t, err, ErrInvalidArgument)
	}
	_, err := p.ReadTenant("", 1, 1, 1)
	require.ErrorIs(t, err, ErrInvalidTenant)
}

func TestReadOutOfRange(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 3)

	got, err := p.Read(0, 10, 100)
	require.NoError(t, err, "empty partition, at the high watermark")
	require.Empty(t, got)

	commitBatch(t, p, 1, entries(5, "a"))
	for _, from := range []uint64{6, 1 << 62} {
		_, err = p.Read(from, 10, 100)
		require.ErrorIs(t, err, ErrOffsetOutOfRange)
		var outOfRange *OffsetOutOfRangeError
		require.True(t, errors.As(err, &outOfRange))
		require.Equal(t, OffsetOutOfRangeError{Partition: 3, Requested: from, Low: 0, High: 5}, *outOfRange)
	}

	// Below the low watermark: simulate a retention cut (low_watermark 2,
	// inside the one chunk, which therefore stays) through the raw handle.
	require.NoError(t, db.Pebble().Set(appendMetaKey(nil, 3, metaLowWatermark), encodeUint64(2), pebble.NoSync))
	p.low.Store(2) // what the replicated truncate command will publish

	_, err = p.Read(1, 10, 100)
	var outOfRange *OffsetOutOfRangeError
	require.True(t, errors.As(err, &outOfRange))
	require.Equal(t, OffsetOutOfRangeError{Partition: 3, Requested: 1, Low: 2, High: 5}, *outOfRange)
	got, err = p.Read(2, 10, 100)
	require.NoError(t, err)
	require.Len(t, got, 3)
	// Tenant reads skip what is no longer retained.
	got, err = p.ReadTenant("a", 1, 10, 100)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, uint64(3), got[0].Sequence)
}

// requireCorruption asserts err is a *CorruptionError at partition, offset.
func requireCorruption(t *testing.T, err error, partition, offset uint64) {
	t.Helper()
	require.ErrorIs(t, err, ErrCorruption)
	var corruption *CorruptionError
	require.True(t, errors.As(err, &corruption), "%v", err)
	require.Equal(t, partition, corruption.Partition, "%v", err)
	require.Equal(t, offset, corruption.Offset, "%v", err)
}

// rawGet returns a copy of the value stored under key.
func rawGet(t *testing.T, db *DB, key []byte) []byte {
	t.Helper()
	value, closer, err := db.Pebble().Get(key)
	require.NoError(t, err)
	defer closer.Close()
	return append([]byte(nil), value...)
}

func TestCorruptionIsDetected(t *testing.T) {
	// Partition 7 holds three chunks of four records: [0, 4), [4, 8),
	// [8, 12), tenants alternating a, b.
	setup := func(t *testing.T) (*DB, *Partition) {
		db := openMemDB(t)
		p := partition(t, db, 7)
		commitBatch(t, p, 1, entries(4, "a", "b"))
		commitBatch(t, p, 2, entries(4, "a", "b"))
		commitBatch(t, p, 3, entries(4, "a", "b"))
		// A neighbour partition is unaffected by anything done to 7.
		commitBatch(t, partition(t, db, 8), 1, entries(3, "a"))
		return db, p
	}

	t.Run("flipped byte", func(t *testing.T) {
		db, p := setup(t)
		key := appendChunkKey(nil, 7, 4)
		value := rawGet(t, db, key)
		value[len(value)-2] ^= 0x10
		require.NoError(t, db.Pebble().Set(key, value, pebble.NoSync))

		// The error names the chunk's base offset.
		_, err := p.Read(0, 100, 1<<20)
		requireCorruption(t, err, 7, 4)
		_, err = p.Read(6, 1, 1)
		requireCorruption(t, err, 7, 4)
		got, err := p.Read(0, 4, 1<<20)
		require.NoError(t, err, "records before the damage are served")
		require.Len(t, got, 4)
		got, err = p.Read(8, 100, 1<<20)
		require.NoError(t, err, "records after the damage are served")
		require.Len(t, got, 4)
		_, err = p.ReadTenant("b", 1, 100, 1<<20)
		requireCorruption(t, err, 7, 4)
		_, _, err = p.OffsetOfSequence("b", 3)
		requireCorruption(t, err, 7, 4)
		_, err = p.OffsetForTime(1_000_002)
		requireCorruption(t, err, 7, 4)
		require.Len(t, readAll(t, partition(t, db, 8)), 3)
	})

	t.Run("offset mismatch", func(t *testing.T) {
		db, p := setup(t)
		value := rawGet(t, db, appendChunkKey(nil, 7, 0))
		require.NoError(t, db.Pebble().Set(appendChunkKey(nil, 7, 4), value, pebble.NoSync))
		_, err := p.Read(0, 100, 1<<20)
		requireCorruption(t, err, 7, 4)
	})

	t.Run("missing chunk", func(t *testing.T) {
		db, p := setup(t)
		require.NoError(t, db.Pebble().Delete(appendChunkKey(nil, 7, 4), pebble.NoSync))
		_, err := p.Read(2, 100, 1<<20)
		requireCorruption(t, err, 7, 4)
		_, err = p.Read(5, 100, 1<<20)
		requireCorruption(t, err, 7, 5)
		_, err = p.ReadTenant("a", 1, 100, 1<<20)
		requireCorruption(t, err, 7, 4)
	})

	t.Run("tenant index points at another chunk", func(t *testing.T) {
		db, p := setup(t)
		// "a" sequences 3..4 are in chunk 4; point their entry at chunk 0,
		// which holds "a" sequences 1..2 (the first at offset 0).
		require.NoError(t, db.Pebble().Set(appendTenantChunkKey(nil, 7, "a", 3), append(encodeUint64(0), 0, 0, 0, 2), pebble.NoSync))
		_, err := p.ReadTenant("a", 1, 100, 1<<20)
		requireCorruption(t, err, 7, 0)
		_, _, err = p.OffsetOfSequence("a", 3)
		requireCorruption(t, err, 7, 0)
	})

	t.Run("tenant index count disagrees with the chunk", func(t *testing.T) {
		db, p := setup(t)
		require.NoError(t, db.Pebble().Set(appendTenantChunkKey(nil, 7, "a", 3), append(encodeUint64(4), 0, 0, 0, 3), pebble.NoSync))
		_, err := p.ReadTenant("a", 1, 100, 1<<20)
		requireCorruption(t, err, 7, 4)
	})

	t.Run("tenant index gap", func(t *testing.T) {
		db, p := setup(t)
		require.NoError(t, db.Pebble().Delete(appendTenantChunkKey(nil, 7, "a", 3), pebble.NoSync))
		_, err := p.ReadTenant("a", 1, 100, 1<<20)
		requireCorruption(t, err, 7, 8)
		_, err = p.ReadTenant("a", 3, 100, 1<<20)
		requireCorruption(t, err, 7, 8)
	})

	t.Run("detected on open", func(t *testing.T) {
		fs := vfs.NewMem()
		reopen := func(damage func(raw *pebble.DB)) error {
			db, err := Open(Options{Dir: "db", FS: fs, Logger: discardLogger()})
			require.NoError(t, err)
			defer func() { require.NoError(t, db.Close()) }()
			if damage != nil {
				damage(db.Pebble())
				return nil
			}
			require.Len(t, readAll(t, partition(t, db, 8)), 3, "the neighbour opens")
			_, err = db.Partition(7)
			return err
		}
		db, err := Open(Options{Dir: "db", FS: fs, Logger: discardLogger()})
		require.NoError(t, err)
		commitBatch(t, partition(t, db, 7), 1, entries(4, "a", "b"))
		commitBatch(t, partition(t, db, 7), 2, entries(4, "a", "b"))
		commitBatch(t, partition(t, db, 8), 1, entries(3, "a"))
		require.NoError(t, db.Close())

		// The last chunk is damaged.
		require.NoError(t, reopen(func(raw *pebble.DB) {
			key := appendChunkKey(nil, 7, 4)
			value, closer, err := raw.Get(key)
			require.NoError(t, err)
			value = append([]byte(nil), value...)
			require.NoError(t, closer.Close())
			value[0] ^= 1
			require.NoError(t, raw.Set(key, value, pebble.NoSync))
		}))
		requireCorruption(t, reopen(nil), 7, 4)

		// next_offset disagrees with the records.
		require.NoError(t, reopen(func(raw *pebble.DB) {
			require.NoError(t, raw.Delete(appendChunkKey(nil, 7, 4), pebble.NoSync))
		}))
		requireCorruption(t, reopen(nil), 7, 3)

		// A malformed meta value.
		require.NoError(t, reopen(func(raw *pebble.DB) {
			require.NoError(t, raw.Set(appendMetaKey(nil, 7, metaApplied), []byte{1, 2, 3}, pebble.NoSync))
		}))
		require.ErrorIs(t, reopen(nil), ErrCorruption)
	})
}
