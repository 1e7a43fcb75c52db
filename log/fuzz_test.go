package log

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/stretchr/testify/require"
)

// Fuzz targets for the decoders that read bytes back from disk or from a
// peer's snapshot stream (docs/operations.md, "Fuzz targets"). Each takes
// the bytes as stored plus a flag that rewrites their checksum first, so
// that the fuzzer reaches the checks behind the CRC as well as the CRC
// itself. Run one with `go test -run='^$' -fuzz='^FuzzX$' ./log/`;
// `make fuzz` runs them all for a short time; plain `go test` runs the
// seeds (f.Add and testdata/fuzz/FuzzX/).

// fixLeadingCRC returns a copy of value whose first four bytes are the
// CRC32C of the rest (the layout of records, chunks and group values),
// or value itself when it is too short to have one.
func fixLeadingCRC(value []byte) []byte {
	if len(value) < recordChecksumBytes {
		return value
	}
	out := bytes.Clone(value)
	binary.BigEndian.PutUint32(out, crc32.Checksum(out[recordChecksumBytes:], castagnoli))
	return out
}

// requireFuzzCorruption fails unless err is the package's *CorruptionError
// for partition (the contract of every on-disk decoder).
func requireFuzzCorruption(t *testing.T, err error, partition uint64) {
	t.Helper()
	var ce *CorruptionError
	require.ErrorAs(t, err, &ce)
	require.ErrorIs(t, err, ErrCorruption)
	require.Equal(t, partition, ce.Partition)
}

// FuzzParseRecordValue: a record value stored under its own key decodes
// to a record that encodes back to the same bytes, or fails with a
// *CorruptionError; never a panic, never a view past the value.
func FuzzParseRecordValue(f *testing.F) {
	records := []Record{
		{Offset: 0, Sequence: 1, Tenant: "a", Body: []byte("x")},
		{Offset: 7, Sequence: 3, Tenant: "acme", TimestampUnixNano: 1_700_000_000_000_000_000, ExpireAtUnixNano: 1_800_000_000_000_000_000, Body: []byte("payload")},
		{Offset: 1 << 40, Sequence: 1 << 33, Tenant: string(bytes.Repeat([]byte("t"), tenantBytesMax)), TimestampUnixNano: -1, Body: nil},
	}
	for _, r := range records {
		f.Add(r.Offset, appendRecordValue(nil, &r), false)
		f.Add(r.Offset, appendRecordValueV1(nil, &r), false)
		f.Add(r.Offset+1, appendRecordValue(nil, &r), false)
		cut := appendRecordValue(nil, &r)
		f.Add(r.Offset, cut[:len(cut)/2], true)
	}
	f.Add(uint64(0), []byte{}, false)
	f.Add(uint64(0), []byte{0, 0, 0, 0, recordVersion2}, true)
	f.Add(uint64(0), bytes.Repeat([]byte{0xff}, recordHeaderV2Bytes+2), true)

	f.Fuzz(func(t *testing.T, keyOffset uint64, value []byte, fixCRC bool) {
		if fixCRC {
			value = fixLeadingCRC(value)
		}
		v, err := parseRecordValue(3, keyOffset, value)
		if err != nil {
			requireFuzzCorruption(t, err, 3)
			return
		}
		require.Equal(t, keyOffset, v.offset)
		require.NotZero(t, v.sequence)
		require.NotEmpty(t, v.tenant)
		r := v.record()
		if value[recordChecksumBytes] == recordVersion2 {
			require.Equal(t, value, appendRecordValue(nil, &r), "decode(encode) differs")
		} else {
			require.Equal(t, value, appendRecordValueV1(nil, &r), "decode(encode) of version 1 differs")
		}
	})
}

// FuzzDecodeChunk: a chunk value decodes to records that a chunkBuilder
// encodes back to the same bytes, or fails with a *CorruptionError.
func FuzzDecodeChunk(f *testing.F) {
	build := func(records ...Record) []byte {
		var c chunkBuilder
		for i := range records {
			c.add(&records[i])
		}
		return bytes.Clone(c.seal())
	}
	one := build(Record{Offset: 5, Sequence: 1, Tenant: "a", TimestampUnixNano: 10, Body: []byte("one")})
	many := build(
		Record{Offset: 100, Sequence: 1, Tenant: "a", TimestampUnixNano: 10, ExpireAtUnixNano: 50, Body: []byte("first")},
		Record{Offset: 101, Sequence: 1, Tenant: "bb", TimestampUnixNano: 10, ExpireAtUnixNano: 70, Body: nil},
		Record{Offset: 102, Sequence: 2, Tenant: "a", TimestampUnixNano: 12, Body: []byte("third")},
	)
	expiring := build(
		Record{Offset: 0, Sequence: 9, Tenant: "t", TimestampUnixNano: -5, ExpireAtUnixNano: 1, Body: []byte{0}},
		Record{Offset: 1, Sequence: 10, Tenant: "t", TimestampUnixNano: 0, ExpireAtUnixNano: 3, Body: []byte{1}},
	)
	f.Add(uint64(5), one, false)
	f.Add(uint64(100), many, false)
	f.Add(uint64(0), expiring, false)
	f.Add(uint64(101), many, false)
	f.Add(uint64(100), many[:len(many)-3], true)
	f.Add(uint64(100), append(bytes.Clone(many), 0), true)
	f.Add(uint64(0), []byte{}, false)
	f.Add(uint64(0), make([]byte, chunkHeaderBytes+chunkRecordHeaderBytes+1), true)

	f.Fuzz(func(t *testing.T, base uint64, value []byte, fixCRC bool) {
		if fixCRC {
			value = fixLeadingCRC(value)
		}
		header, views, err := decodeChunk(4, base, value, nil)
		if err != nil {
			requireFuzzCorruption(t, err, 4)
			return
		}
		require.Len(t, views, header.count)
		var c chunkBuilder
		for i, v := range views {
			require.Equal(t, base+uint64(i), v.offset)
			r := v.record()
			c.add(&r)
		}
		require.Equal(t, value, c.seal(), "decode(encode) differs")
		require.Equal(t, base+uint64(header.count), chunkEnd(views))
	})
}

// fuzzRunFirst is the key offset FuzzDecodeGroupValue decodes pending
// values under.
const fuzzRunFirst = 1000

// FuzzDecodeGroupValue: a consumer group header or pending value (a run
// of one offset, version 1, or of more, version 2) decodes to one that
// encodes back to the same bytes, or names its problem.
func FuzzDecodeGroupValue(f *testing.F) {
	headers := []groupHeader{
		{config: testGroupConfig},
		{floor: 3, delivered: 9, generation: 2, pending: 4, deadLettered: 1, config: testGroupConfig, member: "m1"},
		{floor: 9, delivered: 9, generation: 1, config: GroupConfig{AckWait: testGroupAckWait, MaxDeliveries: 1, MaxPending: 1, KeyOrder: true}, member: "member-x"},
	}
	for _, h := range headers {
		require.Empty(f, h.check(), "seed header %+v", h)
		f.Add(false, h.encode(), false)
	}
	pendings := []pendingRun{
		{first: fuzzRunFirst, last: fuzzRunFirst, v: pendingValue{deliveries: 1, lastDeliveredUnixNano: 10, notBeforeUnixNano: 20, member: "m1"}},
		{first: fuzzRunFirst, last: fuzzRunFirst, v: pendingValue{deliveries: 1 << 31, lastDeliveredUnixNano: -1, member: string(bytes.Repeat([]byte("m"), 255))}},
		// Runs (version 2).
		{first: fuzzRunFirst, last: fuzzRunFirst + 1, v: pendingValue{deliveries: 2, lastDeliveredUnixNano: 10, notBeforeUnixNano: 20, member: "m1"}},
		{first: fuzzRunFirst, last: fuzzRunFirst + GroupPendingMax - 1, v: pendingValue{deliveries: 1, notBeforeUnixNano: -5, member: string(bytes.Repeat([]byte("m"), 255))}},
	}
	for _, p := range pendings {
		f.Add(true, p.encode(), false)
	}
	f.Add(false, []byte{}, false)
	f.Add(true, []byte{}, false)
	f.Add(false, make([]byte, groupHeaderFixedBytes+1), true)
	f.Add(true, make([]byte, groupPendingFixedBytes), true)
	run := make([]byte, groupPendingFixedBytes+8)
	run[4] = groupValueVersion2 // a run ending at or below its first offset
	f.Add(true, run, true)

	f.Fuzz(func(t *testing.T, pending bool, value []byte, fixCRC bool) {
		if fixCRC {
			value = fixLeadingCRC(value)
		}
		if pending {
			r, problem := decodePendingRun(fuzzRunFirst, value)
			if problem == "" {
				require.Equal(t, uint64(fuzzRunFirst), r.first)
				require.GreaterOrEqual(t, r.last, r.first)
				require.Equal(t, value, r.encode(), "decode(encode) of a pending value differs")
			}
			return
		}
		h, problem := decodeGroupHeader(value)
		if problem == "" {
			require.Equal(t, value, h.encode(), "decode(encode) of a group header differs")
		}
	})
}

// streamOf returns p's snapshot stream.
func streamOf(t testing.TB, p *Partition) []byte {
	t.Helper()
	snap, err := p.Snapshot()
	require.NoError(t, err)
	defer snap.Close()
	var buf bytes.Buffer
	_, err = snap.WriteTo(&buf)
	require.NoError(t, err)
	return buf.Bytes()
}

// FuzzRestore: a damaged snapshot stream fails Restore with an error
// matching ErrCorruption (a reader's own failure aside, which bytes.Reader
// never has) and leaves the partition empty and refusing writes until a
// restore succeeds; a stream that restores is served whole and snapshots
// to a stream that restores to the same state.
func FuzzRestore(f *testing.F) {
	db := openMemDB(f)
	src := partition(f, db, 1)
	commitBatch(f, src, 1, entries(5, "a", "bb"))
	b := src.NewBatch()
	_, err := b.GroupCreate("g", testGroupConfig, 0)
	require.NoError(f, err)
	_, err = b.GroupAssign("g", 1, "m1")
	require.NoError(f, err)
	_, err = b.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 1, Member: "m1", NewFrom: 0, NewCount: 3, NowUnixNano: 100})
	require.NoError(f, err)
	require.NoError(f, b.Commit(2))
	full := streamOf(f, src)
	empty := streamOf(f, partition(f, db, 2))
	legacy, _ := legacyEntries()
	f.Add(full, false)
	f.Add(empty, false)
	f.Add(makeStream(3, legacy, -1), false)
	f.Add(full[:len(full)/2], true)
	f.Add(full[:snapshotHeaderBytes], true)
	f.Add([]byte{}, false)
	flipped := bytes.Clone(full)
	flipped[len(flipped)/3] ^= 0x10
	f.Add(flipped, false)
	f.Add(flipped, true)

	target := partition(f, db, 3)
	again := partition(f, db, 4)
	f.Fuzz(func(t *testing.T, stream []byte, fixCRC bool) {
		if fixCRC && len(stream) >= 4 {
			// The stream's CRC32C covers everything before its last four bytes.
			stream = bytes.Clone(stream)
			body := stream[:len(stream)-4]
			binary.BigEndian.PutUint32(stream[len(body):], crc32.Checksum(body, castagnoli))
		}
		err := target.Restore(bytes.NewReader(stream))
		if err != nil {
			require.ErrorIs(t, err, ErrCorruption, "a damaged stream must fail as corruption: %v", err)
			// Nothing half-restored is served: reads see an empty partition
			// and writes are refused until a restore succeeds.
			require.Zero(t, target.HighWatermark())
			require.Zero(t, target.LowWatermark())
			recs, err := target.Read(0, 10, 1<<20)
			require.NoError(t, err)
			require.Empty(t, recs)
			groups, err := target.Groups()
			require.NoError(t, err)
			require.Empty(t, groups)
			wb := target.NewBatch()
			_, _, err = wb.Append("a", 1, []byte("x"))
			if err == nil {
				err = wb.Commit(target.AppliedIndex() + 1)
			}
			wb.Abort()
			require.ErrorIs(t, err, ErrRestoreIncomplete)
			return
		}
		// Restored: every record reads back, and the state survives a
		// snapshot and a second restore.
		var got []Record
		for from := target.LowWatermark(); from < target.HighWatermark(); {
			recs, err := target.Read(from, 1000, 64<<20)
			require.NoError(t, err, "reading a restored partition at %d", from)
			require.NotEmpty(t, recs)
			got = append(got, recs...)
			from = recs[len(recs)-1].Offset + 1
		}
		groups, err := target.Groups()
		require.NoError(t, err)
		require.NoError(t, again.Restore(bytes.NewReader(streamOf(t, target))))
		require.Equal(t, target.AppliedIndex(), again.AppliedIndex())
		require.Equal(t, target.LowWatermark(), again.LowWatermark())
		require.Equal(t, target.HighWatermark(), again.HighWatermark())
		var gotAgain []Record
		for from := again.LowWatermark(); from < again.HighWatermark(); {
			recs, err := again.Read(from, 1000, 64<<20)
			require.NoError(t, err)
			gotAgain = append(gotAgain, recs...)
			from = recs[len(recs)-1].Offset + 1
		}
		require.Equal(t, got, gotAgain)
		groupsAgain, err := again.Groups()
		require.NoError(t, err)
		require.Equal(t, groups, groupsAgain)
	})
}
