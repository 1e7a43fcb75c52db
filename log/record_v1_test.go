package log

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"
)

// appendRecordValueV1 is the version-1 encoder as it was shipped: no
// expiry in the header.
func appendRecordValueV1(dst []byte, r *Record) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, recordVersion1)
	dst = binary.BigEndian.AppendUint64(dst, r.Offset)
	dst = binary.BigEndian.AppendUint64(dst, r.Sequence)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.TimestampUnixNano))
	dst = append(dst, byte(len(r.Tenant)))
	dst = append(dst, r.Tenant...)
	dst = append(dst, r.Body...)
	binary.BigEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+recordChecksumBytes:], castagnoli))
	return dst
}

// legacyPartition is what a version-1 writer left: three records with
// timestamps not in order, and version-1 meta only.
var legacyPartition = []Record{
	{Offset: 0, Sequence: 1, Tenant: "a", TimestampUnixNano: 500, Body: []byte("zero")},
	{Offset: 1, Sequence: 1, Tenant: "b", TimestampUnixNano: 900, Body: []byte("one")},
	{Offset: 2, Sequence: 2, Tenant: "a", TimestampUnixNano: 700, Body: []byte("two")},
}

// legacyEntries returns partition-relative keys and values of
// legacyPartition, in key order, and the sum of the record value sizes.
func legacyEntries() ([]streamEntry, uint64) {
	var records, index []streamEntry
	var valueBytes uint64
	for _, r := range legacyPartition {
		value := appendRecordValueV1(nil, &r)
		valueBytes += uint64(len(value))
		records = append(records, streamEntry{string(appendRecordKey(nil, 0, r.Offset)[partitionPrefixBytes:]), string(value)})
		index = append(index, streamEntry{string(appendTenantIndexKey(nil, 0, r.Tenant, r.Sequence)[partitionPrefixBytes:]), be8(r.Offset)})
	}
	entries := append(records,
		streamEntry{"m" + metaApplied, be8(3)}, streamEntry{"m" + metaLowWatermark, be8(0)}, streamEntry{"m" + metaNextOffset, be8(3)},
		streamEntry{"na", be8(3)}, streamEntry{"nb", be8(2)})
	// Tenant index keys sort after 'n': a before b, by sequence.
	entries = append(entries, index[0], index[2], index[1])
	return entries, valueBytes
}

func TestVersion1RecordsStayReadable(t *testing.T) {
	value := appendRecordValueV1(nil, &legacyPartition[1])
	require.Len(t, value, recordHeaderV1Bytes+1+3)
	view, err := parseRecordValue(1, 1, value)
	require.NoError(t, err)
	require.Equal(t, legacyPartition[1], view.record())

	entries, valueBytes := legacyEntries()
	check := func(t *testing.T, db *DB, p *Partition) {
		t.Helper()
		require.Equal(t, legacyPartition, readAll(t, p), "version-1 records read with ExpireAtUnixNano 0")
		require.Equal(t, []Record{legacyPartition[0], legacyPartition[2]}, readTenantAll(t, p, "a"))
		require.Equal(t, valueBytes, p.SizeBytes(), "derived from the records")
		require.Equal(t, int64(700), p.lastTimestamp.Load(), "derived from the last record")
		offset, err := p.OffsetForTime(800)
		require.NoError(t, err)
		require.Contains(t, []uint64{1, 2}, offset, "version-1 timestamps are not monotonic: one crossing")

		// A version-2 append after them: monotonic from the last record,
		// indexed (no point yet), and the derived meta gets persisted.
		more := commitBatch(t, p, 4, []entry{{tenant: "b", ts: 600, body: []byte("three")}})
		require.Equal(t, Record{Offset: 3, Sequence: 2, Tenant: "b", TimestampUnixNano: 700, Body: []byte("three")}, more[0])
		require.Equal(t, []uint64{3}, timeIndexOffsets(t, db, p.ID()))
		require.Equal(t, storedRecordBytes(t, db, p.ID()), p.SizeBytes())
		require.Equal(t, uint64(p.SizeBytes()), binary.BigEndian.Uint64(rawGet(t, db, appendMetaKey(nil, p.ID(), metaBytes))))
		truncate(t, p, 2)
		require.Equal(t, storedRecordBytes(t, db, p.ID()), p.SizeBytes())
		require.Equal(t, []Record{legacyPartition[2]}, readTenantAll(t, p, "a"))
	}

	t.Run("stored", func(t *testing.T) {
		db := openMemDB(t)
		batch := db.Pebble().NewBatch()
		for _, e := range entries {
			require.NoError(t, batch.Set(append(appendPartitionPrefix(nil, 5), e.key...), []byte(e.value), nil))
		}
		require.NoError(t, batch.Commit(pebble.NoSync))
		check(t, db, partition(t, db, 5))
	})

	t.Run("version-1 snapshot stream", func(t *testing.T) {
		var stream bytes.Buffer
		sw := newSnapshotWriter(&stream)
		sw.write([]byte(snapshotMagic))
		sw.write([]byte{snapshotVersion1})
		sw.write(encodeUint64(3))
		for _, e := range entries {
			sw.entry([]byte(e.key), []byte(e.value))
		}
		sw.trailer(uint64(len(entries)))
		require.NoError(t, sw.err)
		db := openMemDB(t)
		p := partition(t, db, 6)
		require.NoError(t, p.Restore(&stream))
		check(t, db, p)
	})
}
