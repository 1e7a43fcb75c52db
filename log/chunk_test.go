package log

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"
)

// crc32c is the checksum of chunks and records.
func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// bodyOfRecordBytes returns a body that makes a record of a one-byte
// tenant exactly recordBytes long in a chunk.
func bodyOfRecordBytes(recordBytes int) []byte {
	return bytes.Repeat([]byte{'x'}, recordBytes-chunkRecordBytes(1, 0))
}

func TestChunkBoundaries(t *testing.T) {
	small := []byte("s")
	big := make([]byte, chunkRecordsBytesMax+1000)
	quarter := bodyOfRecordBytes(chunkRecordsBytesMax / 4)
	overQuarter := bodyOfRecordBytes(chunkRecordsBytesMax/4 + 1)
	repeat := func(n int, body []byte) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = body
		}
		return out
	}
	tests := []struct {
		name    string
		batches [][][]byte // bodies per batch
		want    [][2]uint64
	}{
		{"exactly the record bound", [][][]byte{repeat(chunkRecordsMax, small)}, [][2]uint64{{0, 1024}}},
		{"one record past the record bound", [][][]byte{repeat(chunkRecordsMax+1, small)}, [][2]uint64{{0, 1024}, {1024, 1025}}},
		{"exactly the byte bound", [][][]byte{repeat(5, quarter)}, [][2]uint64{{0, 4}, {4, 5}}},
		{"one byte past the byte bound", [][][]byte{repeat(5, overQuarter)}, [][2]uint64{{0, 3}, {3, 5}}},
		{"a record bigger than the bound is a chunk of its own", [][][]byte{{small, big, small, small}}, [][2]uint64{{0, 1}, {1, 2}, {2, 4}}},
		{"a big record first", [][][]byte{{big, small}}, [][2]uint64{{0, 1}, {1, 2}}},
		{"every commit seals its chunk", [][][]byte{{small, small}, {small}, {}, {small, small}}, [][2]uint64{{0, 2}, {2, 3}, {3, 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openMemDB(t)
			p := partition(t, db, 1)
			var all []Record
			for i, bodies := range tt.batches {
				es := make([]entry, len(bodies))
				for j, body := range bodies {
					es[j] = entry{tenant: []string{"a", "b", "c"}[j%3], ts: int64(j), body: body}
				}
				all = append(all, commitBatch(t, p, uint64(i+1), es)...)
			}
			require.Equal(t, tt.want, storedChunks(t, db, 1))
			require.Equal(t, all, readAll(t, p))
			require.Equal(t, storedRecordBytes(t, db, 1), p.SizeBytes())
			// One sparse index entry per tenant per chunk, naming its
			// first sequence and its count there.
			for _, tenant := range []string{"a", "b", "c"} {
				var want []tenantChunkEntry
				for _, chunk := range tt.want {
					records := filterTenant(all[chunk[0]:chunk[1]], tenant)
					if len(records) > 0 {
						want = append(want, tenantChunkEntry{firstSeq: records[0].Sequence, base: chunk[0], count: uint64(len(records))})
					}
				}
				require.Equal(t, want, tenantChunkEntries(t, db, 1, tenant), "tenant %s", tenant)
				require.Equal(t, filterTenant(all, tenant), readTenantAll(t, p, tenant), "tenant %s", tenant)
			}
		})
	}
}

func TestReadsStartMidChunk(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	var all []Record
	for i := range 3 {
		all = append(all, commitBatch(t, p, uint64(i+1), entries(10, "a", "b", "c"))...)
	}
	bodyBytes := len(all[0].Body)
	for from := range uint64(len(all)) {
		for _, maxRecords := range []int{1, 3, 15, 100} {
			got, err := p.Read(from, maxRecords, 1<<20)
			require.NoError(t, err)
			end := min(int(from)+maxRecords, len(all))
			require.Equal(t, all[from:end], got, "from %d max %d", from, maxRecords)
		}
		// A byte limit of two and a half bodies: two records.
		got, err := p.Read(from, 100, 2*bodyBytes+bodyBytes/2)
		require.NoError(t, err)
		require.Equal(t, all[from:min(int(from)+2, len(all))], got, "from %d", from)
	}
	// Records returned own their bodies: appending to one leaves the next.
	got, err := p.Read(0, 2, 1<<20)
	require.NoError(t, err)
	_ = append(got[0].Body, "overwrite"...)
	require.Equal(t, all[1].Body, got[1].Body)
}

func TestReadTenantAcrossManyChunks(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	db := openMemDB(t)
	p := partition(t, db, 1)
	// Skewed tenants: "hot" has most records, "rare" very few.
	tenants := []string{"hot", "hot", "hot", "hot", "warm", "warm", "cold", "rare"}
	var all []Record
	for batch := range 12 {
		n := rng.IntN(2600) // up to three chunks per batch
		es := make([]entry, n)
		for i := range es {
			tenant := tenants[rng.IntN(len(tenants))]
			if tenant == "rare" && rng.IntN(20) != 0 {
				tenant = "cold"
			}
			es[i] = entry{tenant: tenant, ts: int64(batch*10_000 + i), body: fmt.Appendf(nil, "%d-%d", batch, i)}
		}
		all = append(all, commitBatch(t, p, uint64(batch+1), es)...)
	}
	require.Greater(t, len(storedChunks(t, db, 1)), 12, "several batches span more than one chunk")

	check := func(t *testing.T, retained []Record) {
		t.Helper()
		for _, tenant := range []string{"hot", "warm", "cold", "rare", "none"} {
			want := filterTenant(retained, tenant)
			require.Equal(t, want, readTenantAll(t, p, tenant), "tenant %s", tenant)
			next, err := p.NextSequence(tenant)
			require.NoError(t, err)
			// Reads from random sequences with random limits.
			for range 20 {
				fromSeq := uint64(rng.IntN(int(next) + 2))
				maxRecords := 1 + rng.IntN(300)
				got, err := p.ReadTenant(tenant, fromSeq, maxRecords, 1<<20)
				require.NoError(t, err)
				var expected []Record
				for _, r := range want {
					if r.Sequence >= fromSeq && len(expected) < maxRecords {
						expected = append(expected, r)
					}
				}
				require.Equal(t, expected, got, "tenant %s from %d max %d", tenant, fromSeq, maxRecords)
			}
			// OffsetOfSequence for a sample of sequences, and around the ends.
			for _, r := range want {
				if rng.IntN(10) == 0 || r.Sequence == want[0].Sequence {
					offset, ok, err := p.OffsetOfSequence(tenant, r.Sequence)
					require.NoError(t, err)
					require.True(t, ok, "tenant %s sequence %d", tenant, r.Sequence)
					require.Equal(t, r.Offset, offset)
				}
			}
			for _, seq := range []uint64{0, next, next + 1} {
				_, ok, err := p.OffsetOfSequence(tenant, seq)
				require.NoError(t, err)
				require.False(t, ok, "tenant %s sequence %d", tenant, seq)
			}
			if len(want) > 0 && want[0].Sequence > 1 {
				_, ok, err := p.OffsetOfSequence(tenant, want[0].Sequence-1)
				require.NoError(t, err)
				require.False(t, ok, "tenant %s: truncated sequence %d", tenant, want[0].Sequence-1)
			}
		}
	}
	t.Run("all retained", func(t *testing.T) { check(t, all) })

	// A cut inside a chunk: the chunk stays, its records below the low
	// watermark are neither returned nor found.
	chunks := storedChunks(t, db, 1)
	straddled := chunks[len(chunks)/2]
	for i := len(chunks) / 2; straddled[1]-straddled[0] < 2; i++ {
		straddled = chunks[i]
	}
	low := straddled[0] + 1 + uint64(rng.IntN(int(straddled[1]-straddled[0]-1)))
	truncate(t, p, low)
	require.Equal(t, straddled, storedChunks(t, db, 1)[0])
	t.Run("after a truncation inside a chunk", func(t *testing.T) { check(t, all[low:]) })
}

func TestTruncateInsideAChunk(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	all := commitBatch(t, p, 1, entries(10, "a", "b"))
	all = append(all, commitBatch(t, p, 2, entries(10, "a", "b"))...)
	require.Equal(t, [][2]uint64{{0, 10}, {10, 20}}, storedChunks(t, db, 1))
	sparse := keysOfKind(t, db, 1, kindTenantChunk)

	truncate(t, p, 3)
	require.Equal(t, uint64(3), p.LowWatermark())
	require.Equal(t, [][2]uint64{{0, 10}, {10, 20}}, storedChunks(t, db, 1), "the straddling chunk stays")
	require.Equal(t, sparse, keysOfKind(t, db, 1, kindTenantChunk), "with its index entries")
	require.Equal(t, storedRecordBytes(t, db, 1), p.SizeBytes(), "records below the low watermark no longer count")
	require.Equal(t, all[3:], readAll(t, p))
	require.Equal(t, filterTenant(all[3:], "a"), readTenantAll(t, p, "a"))
	_, err := p.Read(2, 10, 1<<20)
	require.ErrorIs(t, err, ErrOffsetOutOfRange)
	_, ok, err := p.OffsetOfSequence("b", 1) // offset 1
	require.NoError(t, err)
	require.False(t, ok)
	offset, err := p.OffsetForTime(0)
	require.NoError(t, err)
	require.Equal(t, uint64(3), offset)

	// Further in the same chunk, then past it: it goes with its entries.
	truncate(t, p, 7)
	require.Equal(t, storedRecordBytes(t, db, 1), p.SizeBytes())
	truncate(t, p, 12)
	require.Equal(t, [][2]uint64{{10, 20}}, storedChunks(t, db, 1))
	require.Equal(t, []tenantChunkEntry{{firstSeq: 6, base: 10, count: 5}}, tenantChunkEntries(t, db, 1, "a"))
	require.Equal(t, storedRecordBytes(t, db, 1), p.SizeBytes())
	require.Equal(t, all[12:], readAll(t, p))
	require.Equal(t, filterTenant(all[12:], "b"), readTenantAll(t, p, "b"))

	// The retention scan counts the straddling chunk's retained records only.
	point, err := p.RetentionPoint(RetentionPolicy{MaxBytes: p.SizeBytes() - 1}, 0)
	require.NoError(t, err)
	require.Equal(t, uint64(13), point)

	truncate(t, p, 20)
	require.Empty(t, storedChunks(t, db, 1))
	require.Empty(t, keysOfKind(t, db, 1, kindTenantChunk))
	require.Zero(t, p.SizeBytes())
}

func TestRetentionUsesChunkHeaders(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	// Three chunks: all expired at 10, all expired at 20, one never expires.
	for i, expire := range [][]int64{{5, 10, 1}, {20, 15, 11}, {12, 0, 13}} {
		inBatch(t, p, func(b *Batch) {
			for j, at := range expire {
				_, err := b.AppendRecord(AppendRequest{Tenant: "a", TimestampUnixNano: int64(i*3 + j), ExpireAtUnixNano: at, Body: []byte("x")})
				require.NoError(t, err)
			}
		})
	}
	for _, tt := range []struct {
		now  int64
		want uint64
	}{{0, 0}, {4, 0}, {5, 1}, {10, 3}, {14, 3}, {19, 3}, {20, 7}, {100, 7}} {
		got, err := p.RetentionPoint(RetentionPolicy{DropExpired: true}, tt.now)
		require.NoError(t, err)
		require.Equal(t, tt.want, got, "now %d", tt.now)
	}
	got, err := p.RetentionPoint(RetentionPolicy{MaxBytes: p.SizeBytes() - uint64(chunkHeaderBytes+2*chunkRecordBytes(1, 1))}, 0)
	require.NoError(t, err)
	require.Equal(t, uint64(2), got, "the first chunk's header counts with its first record")
}

// legacyRecords writes records as a version-2 writer did (one key per
// record, one tenant index entry per record, a time index point at 0,
// version-2 meta) into partition id, before it is opened.
func legacyRecords(t *testing.T, db *DB, id uint64, records []Record) {
	t.Helper()
	batch := db.Pebble().NewBatch()
	defer batch.Close()
	set := func(key, value []byte) { require.NoError(t, batch.Set(key, value, nil)) }
	next := map[string]uint64{}
	var valueBytes uint64
	for _, r := range records {
		value := appendRecordValue(nil, &r)
		valueBytes += uint64(len(value))
		set(appendRecordKey(nil, id, r.Offset), value)
		set(appendTenantIndexKey(nil, id, r.Tenant, r.Sequence), encodeUint64(r.Offset))
		next[r.Tenant] = r.Sequence + 1
	}
	for tenant, seq := range next {
		set(appendTenantNextKey(nil, id, tenant), encodeUint64(seq))
	}
	set(appendTimeIndexKey(nil, id, records[0].TimestampUnixNano, 0), nil)
	set(appendMetaKey(nil, id, metaApplied), encodeUint64(1))
	set(appendMetaKey(nil, id, metaNextOffset), encodeUint64(uint64(len(records))))
	set(appendMetaKey(nil, id, metaLastTimestamp), encodeUint64(uint64(records[len(records)-1].TimestampUnixNano)))
	set(appendMetaKey(nil, id, metaBytes), encodeUint64(valueBytes))
	require.NoError(t, batch.Commit(pebble.NoSync))
}

func TestLegacyAndChunkedRecordsMix(t *testing.T) {
	tenants := []string{"a", "b", "c"}
	// setup writes 10 legacy records (tenants a, b), then three batches of
	// 7 chunked records (a, b, c): offsets [0, 10) legacy, [10, 31) chunks.
	setup := func(t *testing.T) (*DB, *Partition, []Record) {
		db := openMemDB(t)
		var all []Record
		for i := range 10 {
			tenant := tenants[i%2]
			all = append(all, Record{Offset: uint64(i), Sequence: uint64(i/2 + 1), Tenant: tenant,
				TimestampUnixNano: int64(100 + i), ExpireAtUnixNano: int64(i % 3), Body: fmt.Appendf(nil, "legacy-%d", i)})
		}
		legacyRecords(t, db, 4, all)
		p := partition(t, db, 4)
		require.Equal(t, uint64(10), p.legacyHigh.Load())
		for i := range 3 {
			es := entries(7, tenants...)
			for j := range es {
				es[j].ts = int64(200 + 10*i + j)
			}
			all = append(all, commitBatch(t, p, uint64(2+i), es)...)
		}
		require.Equal(t, [][2]uint64{{10, 17}, {17, 24}, {24, 31}}, storedChunks(t, db, 4))
		return db, p, all
	}
	check := func(t *testing.T, db *DB, p *Partition, retained []Record) {
		t.Helper()
		require.Equal(t, retained, readAll(t, p))
		require.Equal(t, storedRecordBytes(t, db, p.ID()), p.SizeBytes())
		for _, from := range []uint64{8, 9, 10, 11} {
			if from < p.LowWatermark() {
				continue
			}
			got, err := p.Read(from, 4, 1<<20)
			require.NoError(t, err)
			require.Equal(t, retained[from-retained[0].Offset:][:4], got, "across the legacy end, from %d", from)
		}
		for _, tenant := range tenants {
			want := filterTenant(retained, tenant)
			require.Equal(t, want, readTenantAll(t, p, tenant), "tenant %s", tenant)
			for i, r := range want {
				got, err := p.ReadTenant(tenant, r.Sequence, 3, 1<<20)
				require.NoError(t, err)
				require.Equal(t, want[i:min(i+3, len(want))], got, "tenant %s from %d", tenant, r.Sequence)
				offset, ok, err := p.OffsetOfSequence(tenant, r.Sequence)
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, r.Offset, offset)
			}
		}
		for _, r := range retained {
			offset, err := p.OffsetForTime(r.TimestampUnixNano)
			require.NoError(t, err)
			require.Equal(t, firstAtOrAfter(retained, p.HighWatermark(), r.TimestampUnixNano), offset)
		}
	}

	t.Run("reads", func(t *testing.T) {
		db, p, all := setup(t)
		check(t, db, p, all)
		got, err := p.RetentionPoint(RetentionPolicy{MaxRecords: 25, DropExpired: true}, 0)
		require.NoError(t, err)
		require.Equal(t, uint64(6), got)
	})

	t.Run("snapshot, restore and reopen", func(t *testing.T) {
		db, p, all := setup(t)
		stream, _ := snapshotBytes(t, p)
		target := partition(t, db, 5)
		require.NoError(t, target.Restore(bytes.NewReader(stream)))
		require.Equal(t, uint64(10), target.legacyHigh.Load())
		check(t, db, target, all)
		require.Equal(t, view(t, p, tenants...), view(t, target, tenants...))
	})

	t.Run("truncation deletes both layouts", func(t *testing.T) {
		db, p, all := setup(t)
		truncate(t, p, 5)
		require.Len(t, keysOfKind(t, db, 4, kindRecord), 5, "legacy records go exactly")
		require.Len(t, keysOfKind(t, db, 4, kindTenantIndex), 5)
		check(t, db, p, all[5:])

		truncate(t, p, 13)
		require.Empty(t, keysOfKind(t, db, 4, kindRecord))
		require.Empty(t, keysOfKind(t, db, 4, kindTenantIndex))
		require.Equal(t, [][2]uint64{{10, 17}, {17, 24}, {24, 31}}, storedChunks(t, db, 4), "the chunk straddling 13 stays")
		check(t, db, p, all[13:])

		// The partition reopens with its legacy records gone.
		stream, _ := snapshotBytes(t, p)
		target := partition(t, db, 6)
		require.NoError(t, target.Restore(bytes.NewReader(stream)))
		require.Zero(t, target.legacyHigh.Load())
		check(t, db, target, all[13:])

		truncate(t, p, 31)
		for _, kind := range []byte{kindRecord, kindTenantIndex, kindChunk, kindTenantChunk} {
			require.Empty(t, keysOfKind(t, db, 4, kind), "kind %c", kind)
		}
		require.Zero(t, p.SizeBytes())
		more := commitBatch(t, p, p.AppliedIndex()+1, entries(2, "a"))
		require.Equal(t, uint64(31), more[0].Offset)
		require.Equal(t, more, readAll(t, p))
	})

	t.Run("a damaged legacy record is detected", func(t *testing.T) {
		db, p, _ := setup(t)
		key := appendRecordKey(nil, 4, 3)
		value := rawGet(t, db, key)
		value[len(value)-1] ^= 1
		require.NoError(t, db.Pebble().Set(key, value, pebble.NoSync))
		_, err := p.Read(0, 100, 1<<20)
		requireCorruption(t, err, 4, 3)
		_, err = p.ReadTenant("b", 1, 100, 1<<20)
		requireCorruption(t, err, 4, 3)
	})
}

func TestProducerStateIsBufferedPerBatch(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	req := func(seq uint64, ts int64) AppendRequest {
		r := producerReq(seq)
		r.TimestampUnixNano = ts
		return r
	}
	// Across batches: the state of one batch is seen by the next.
	_, err := appendReq(t, p, req(1, 1000))
	require.NoError(t, err)

	var results []AppendResult
	inBatch(t, p, func(b *Batch) {
		for seq := uint64(2); seq <= 1500; seq++ {
			_, err := b.AppendRecord(req(seq, 2000))
			require.NoError(t, err)
		}
		// Inside the batch: retries of this batch's sequences are
		// duplicates, a gap is out of order, one out of the window too old.
		for _, seq := range []uint64{1500, 1000, 477} {
			result, err := b.AppendRecord(req(seq, 2000))
			require.NoError(t, err)
			results = append(results, result)
		}
		_, err := b.AppendRecord(req(1502, 2000))
		require.ErrorIs(t, err, ErrOutOfOrder)
		_, err = b.AppendRecord(req(476, 2000))
		require.ErrorIs(t, err, ErrSequenceTooOld)
		// ExpireDedupe in the same batch sees the buffered state (last
		// seen at 2000), not the stored one (1000): the producer stays.
		removed, err := b.ExpireDedupe(2500, time.Duration(1000))
		require.NoError(t, err)
		require.Zero(t, removed)
		result, err := b.AppendRecord(req(1501, 2000))
		require.NoError(t, err)
		require.Equal(t, AppendResult{Offset: 1500, Sequence: 1501}, result)
	})
	require.Equal(t, []AppendResult{
		{Offset: 1499, Sequence: 1500, Duplicate: true},
		{Offset: 999, Sequence: 1000, Duplicate: true},
		{Offset: 476, Sequence: 477, Duplicate: true},
	}, results)
	require.Len(t, keysOfKind(t, db, 1, kindProducer), 1)
	require.Equal(t, producerState{lastSeq: 1501, lastSeenUnixNano: 2000, windowFirstSeq: 1501 - ProducerWindow + 1}.encode(), rawGet(t, db, appendProducerKey(nil, 1, "acme", "prod")))
	require.Len(t, keysOfKind(t, db, 1, kindProducerWindow), ProducerWindow)

	// Across batches again.
	got, err := appendReq(t, p, req(1501, 3000))
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 1500, Sequence: 1501, Duplicate: true}, got)
	_, err = appendReq(t, p, req(1503, 3000))
	require.ErrorIs(t, err, ErrOutOfOrder)
	got, err = appendReq(t, p, req(1502, 3000))
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 1501, Sequence: 1502}, got)

	// ExpireDedupe forgets it once idle; the batch's later append of the
	// same producer must start it anew, at 1.
	inBatch(t, p, func(b *Batch) {
		removed, err := b.ExpireDedupe(10_000, time.Duration(1000))
		require.NoError(t, err)
		require.Equal(t, 1, removed)
		_, err = b.AppendRecord(req(9000, 10_000))
		require.ErrorIs(t, err, ErrUnknownProducer)
		result, err := b.AppendRecord(req(1, 10_000))
		require.NoError(t, err)
		require.False(t, result.Duplicate)
	})
	require.Len(t, keysOfKind(t, db, 1, kindProducerWindow), 1)
	require.Equal(t, producerState{lastSeq: 1, lastSeenUnixNano: 10_000, windowFirstSeq: 1}.encode(), rawGet(t, db, appendProducerKey(nil, 1, "acme", "prod")))
}

func TestRestoreChecksChunks(t *testing.T) {
	var c chunkBuilder
	c.add(&Record{Offset: 0, Sequence: 1, Tenant: "a", TimestampUnixNano: 5, Body: []byte("zero")})
	c.add(&Record{Offset: 1, Sequence: 1, Tenant: "b", TimestampUnixNano: 6, Body: []byte("one")})
	chunk := string(c.seal())
	sparse := func(tenant string, seq, base uint64, count uint32) streamEntry {
		return streamEntry{string(appendTenantChunkKey(nil, 0, tenant, seq)[partitionPrefixBytes:]),
			string(binary.BigEndian.AppendUint32(encodeUint64(base), count))}
	}
	valid := []streamEntry{
		{"b" + be8(0), chunk},
		{"m" + metaApplied, be8(7)}, {"m" + metaLowWatermark, be8(0)}, {"m" + metaNextOffset, be8(2)},
		{"na", be8(2)}, {"nb", be8(2)},
		sparse("a", 1, 0, 1), sparse("b", 1, 0, 1),
	}
	db := openMemDB(t)
	p := partition(t, db, 2)
	require.NoError(t, p.Restore(bytes.NewReader(makeStream(7, valid, -1))))
	require.Equal(t, []Record{
		{Offset: 0, Sequence: 1, Tenant: "a", TimestampUnixNano: 5, Body: []byte("zero")},
		{Offset: 1, Sequence: 1, Tenant: "b", TimestampUnixNano: 6, Body: []byte("one")},
	}, readAll(t, p))
	require.Len(t, readTenantAll(t, p, "b"), 1)

	with := func(i int, e streamEntry) []streamEntry {
		es := append([]streamEntry(nil), valid...)
		es[i] = e
		return es
	}
	flipped := []byte(chunk)
	flipped[len(flipped)-1] ^= 1
	resealed := bytes.Clone(flipped)
	binary.BigEndian.PutUint32(resealed, crc32c(resealed[recordChecksumBytes:]))
	wrongCount := []byte(chunk)
	binary.BigEndian.PutUint32(wrongCount[chunkCountAt:], 3)
	binary.BigEndian.PutUint32(wrongCount, crc32c(wrongCount[recordChecksumBytes:]))
	for name, es := range map[string][]streamEntry{
		"chunk checksum mismatch":     with(0, streamEntry{"b" + be8(0), string(flipped)}),
		"chunk under the wrong base":  with(0, streamEntry{"b" + be8(1), chunk}),
		"chunk key too short":         with(0, streamEntry{"b" + be8(0)[:7], chunk}),
		"chunk count disagrees":       with(0, streamEntry{"b" + be8(0), string(wrongCount)}),
		"chunk too long":              with(0, streamEntry{"b" + be8(0), strings.Repeat("x", chunkValueBytesMax+1)}),
		"sparse entry of count 0":     with(6, sparse("a", 1, 0, 0)),
		"sparse entry of sequence 0":  with(6, sparse("a", 0, 0, 1)),
		"sparse entry value too long": with(7, streamEntry{sparse("b", 1, 0, 1).key, sparse("b", 1, 0, 1).value + "x"}),
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, p.Restore(bytes.NewReader(makeStream(7, es, -1))), ErrCorruption)
		})
	}
	// A resealed chunk whose body changed is valid as a chunk: only the
	// stream CRC would have caught it in transit.
	require.NoError(t, p.Restore(bytes.NewReader(makeStream(7, with(0, streamEntry{"b" + be8(0), string(resealed)}), -1))))
}
