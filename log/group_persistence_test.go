package log

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// The groups survive a restart of the DB and come along in a snapshot,
// whose stream is version 6 only when there is a group; a drop of the
// partition removes them.
func TestGroupStateSurvivesRestartSnapshotAndDrop(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open(Options{Dir: "db", FS: fs, Logger: discardLogger()})
	require.NoError(t, err)
	p := partition(t, db, 1)
	commitBatch(t, p, 1, entries(10, "a"))

	var stream bytes.Buffer
	snap, err := p.Snapshot()
	require.NoError(t, err)
	_, err = snap.WriteTo(&stream)
	require.NoError(t, err)
	require.NoError(t, snap.Close())
	require.Equal(t, snapshotVersion3, stream.Bytes()[len(snapshotMagic)], "a partition without groups streams version 3")

	h := &groupHarness{t: t, db: db, p: p, applied: 1}
	h.create("g", testGroupConfig)
	h.create("g2", GroupConfig{AckWait: time.Minute, MaxDeliveries: 0, MaxPending: 5, KeyOrder: true}) // a version-2 header
	_, err = h.deliver("g", 0, 6, nil, 10)
	require.NoError(t, err)
	_, err = h.ack("g", 0, 0, 3)
	require.NoError(t, err)
	_, err = h.deliver("g2", 0, 2, nil, 10)
	require.NoError(t, err)
	keys := groupKeys(t, db, 1)
	groups, err := p.Groups()
	require.NoError(t, err)

	require.NoError(t, db.Close())
	db, err = Open(Options{Dir: "db", FS: fs, Logger: discardLogger()})
	require.NoError(t, err)
	defer db.Close()
	p = partition(t, db, 1)
	require.Equal(t, keys, groupKeys(t, db, 1))
	reopened, err := p.Groups()
	require.NoError(t, err)
	require.Equal(t, groups, reopened)

	stream.Reset()
	snap, err = p.Snapshot()
	require.NoError(t, err)
	_, err = snap.WriteTo(&stream)
	require.NoError(t, err)
	require.NoError(t, snap.Close())
	require.Equal(t, snapshotVersion6, stream.Bytes()[len(snapshotMagic)], "a partition with groups streams version 6")

	// Restored under another partition id, in another DB.
	other := openMemDB(t)
	q := partition(t, other, 9)
	require.NoError(t, q.Restore(bytes.NewReader(stream.Bytes())))
	restored, err := q.Groups()
	require.NoError(t, err)
	require.Equal(t, groups, restored)
	checkGroupInvariants(t, q)
	want, got := groupKeys(t, db, 1), groupKeys(t, other, 9)
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, want[i][0][partitionPrefixBytes:], got[i][0][partitionPrefixBytes:])
		require.Equal(t, want[i][1], got[i][1])
	}

	// A damaged group value in a stream is refused.
	damaged := bytes.Clone(stream.Bytes())
	header := appendGroupKey(nil, 1, "g")[partitionPrefixBytes:]
	at := bytes.Index(damaged, header) + len(header) + 4 + 10 // inside the header value
	damaged[at] ^= 0x01
	require.ErrorIs(t, partition(t, openMemDB(t), 2).Restore(bytes.NewReader(damaged)), ErrCorruption)
	// While a restore is unfinished (under way, or failed after writing
	// some keys) the partition shows no group, as it shows no record.
	q.restoring.Store(true)
	halfGroups, err := q.Groups()
	require.NoError(t, err)
	require.Empty(t, halfGroups)
	_, err = q.GroupState("g")
	require.ErrorIs(t, err, ErrUnknownGroup)
	_, err = q.GroupPending("g", 0, 10)
	require.ErrorIs(t, err, ErrUnknownGroup)
	q.restoring.Store(false)

	require.NoError(t, p.Drop())
	require.Empty(t, groupKeys(t, db, 1))
	_, err = p.GroupState("g")
	require.ErrorIs(t, err, ErrUnknownGroup)
}

// A group value damaged in Pebble is a corruption error, never a wrong state.
func TestGroupDamagedValueIsCorruption(t *testing.T) {
	h := newGroupHarness(t, 5)
	h.create("g", testGroupConfig)
	_, err := h.deliver("g", 0, 2, nil, 1)
	require.NoError(t, err)
	for _, key := range [][]byte{appendGroupKey(nil, 1, "g"), appendGroupPendingKey(nil, 1, "g", 0)} {
		value, closer, err := h.db.Pebble().Get(key)
		require.NoError(t, err)
		damaged := bytes.Clone(value)
		require.NoError(t, closer.Close())
		damaged[len(damaged)-1] ^= 0x20
		require.NoError(t, h.db.Pebble().Set(key, damaged, pebble.NoSync))
		_, err = h.p.GroupPending("g", 0, 10)
		require.ErrorIs(t, err, ErrCorruption)
		b := h.p.NewBatch()
		_, err = b.GroupAck(GroupAckRequest{Group: "g", Generation: 1, Member: "m1", Offsets: []uint64{1}})
		require.ErrorIs(t, err, ErrCorruption)
		require.False(t, IsGroupRefusal(err))
		b.Abort()
		require.NoError(t, h.db.Pebble().Set(key, value, pebble.NoSync))
	}
}

// A restored image whose group header disagrees with its pending
// deliveries is refused, whatever the stream's framing says.
func TestGroupRestoreChecksHeadersAgainstPendingDeliveries(t *testing.T) {
	relative := func(key []byte) string { return string(key[partitionPrefixBytes:]) }
	applied := streamEntry{key: relative(appendMetaKey(nil, 0, metaApplied)), value: string(encodeUint64(7))}
	header := groupHeader{floor: 0, delivered: 2, generation: 1, member: "m", pending: 2, config: testGroupConfig}
	pending := pendingValue{deliveries: 1, lastDeliveredUnixNano: 5, notBeforeUnixNano: 9, member: "m"}
	// Per-offset pending keys, as key layout version 5 wrote them.
	entries := func(h groupHeader, offsets []uint64, due []uint64) []streamEntry {
		es := []streamEntry{{key: relative(appendGroupKey(nil, 0, "g")), value: string(h.encode())}}
		es = append(es, applied)
		for _, o := range offsets {
			es = append(es, streamEntry{key: relative(appendGroupPendingKey(nil, 0, "g", o)), value: string(pendingRun{first: o, last: o, v: pending}.encode())})
		}
		for _, o := range due {
			es = append(es, streamEntry{key: relative(appendGroupDueKey(nil, 0, "g", pending.notBeforeUnixNano, o))})
		}
		return es
	}
	require.NoError(t, partition(t, openMemDB(t), 1).Restore(bytes.NewReader(makeStream(7, entries(header, []uint64{0, 1}, []uint64{0, 1}), -1))))

	floorAbove := header
	floorAbove.floor, floorAbove.delivered = 1, 3
	cases := map[string][]streamEntry{
		"a pending delivery missing": entries(header, []uint64{0}, []uint64{0}),
		"a due key missing":          entries(header, []uint64{0, 1}, []uint64{0}),
		"a due key of no delivery":   entries(header, []uint64{0, 1}, []uint64{0, 1, 2}),
		"the floor above the lowest": entries(floorAbove, []uint64{0, 1}, []uint64{0, 1}),
	}
	for name, es := range cases {
		err := partition(t, openMemDB(t), 1).Restore(bytes.NewReader(makeStream(7, es, -1)))
		require.ErrorIs(t, err, ErrCorruption, name)
		require.ErrorContains(t, err, "restored consumer groups are inconsistent", name)
	}
}

// A header without flags is written as version 1 (readable by nodes that
// know only it); one with key order as version 2; both decode to what was
// encoded, and unknown flags or versions are refused.
func TestGroupHeaderVersions(t *testing.T) {
	h := groupHeader{floor: 3, delivered: 9, generation: 2, pending: 4, deadLettered: 1, member: "m1",
		config: GroupConfig{AckWait: time.Second, MaxDeliveries: 5, MaxPending: 10}}
	v1 := h.encode()
	require.Equal(t, groupValueVersion1, v1[4])
	got, problem := decodeGroupHeader(v1)
	require.Empty(t, problem)
	require.Equal(t, h, got)

	h.config.KeyOrder = true
	v2 := h.encode()
	require.Equal(t, groupValueVersion2, v2[4])
	require.Len(t, v2, len(v1)+1)
	got, problem = decodeGroupHeader(v2)
	require.Empty(t, problem)
	require.Equal(t, h, got)

	reseal := func(v []byte) []byte {
		binary.BigEndian.PutUint32(v, crc32.Checksum(v[groupChecksumBytes:], castagnoli))
		return v
	}
	bad := reseal(append([]byte(nil), v2...))
	bad[groupHeaderMemberOffset] = 0x80 // an unknown flag
	_, problem = decodeGroupHeader(reseal(bad))
	require.Contains(t, problem, "flags")
	bad = append([]byte(nil), v1...)
	bad[4] = 3
	_, problem = decodeGroupHeader(reseal(bad))
	require.Contains(t, problem, "version 3")
}
