package log

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"
)

// markKeys returns every processed mark key and value of partition id.
func markKeys(t testing.TB, db *DB, id uint64) [][2][]byte {
	t.Helper()
	return kindEntries(t, db, id, kindGroupMark, kindGroupMarkOffset, kindGroupMarkCount)
}

func (h *groupHarness) ackMarks(name string, before uint64, offsets []uint64, marks ...GroupMark) (GroupResult, error) {
	h.t.Helper()
	return h.apply(func(b *Batch) (GroupResult, error) {
		return b.GroupAck(GroupAckRequest{Group: name, Generation: 1, Member: "m1", Before: before, Offsets: offsets, Marks: marks})
	})
}

func (h *groupHarness) marks(name string, keys ...string) []uint64 {
	h.t.Helper()
	seqs, err := h.p.GroupMarks(name, keys)
	require.NoError(h.t, err)
	require.NoError(h.t, groupStore{partition: h.p.id, r: h.p.db.pebble}.checkMarks())
	return seqs
}

func TestGroupMarksRiseOnlyAndGoWithTheAck(t *testing.T) {
	h := newGroupHarness(t, 10)
	h.create("g", testGroupConfig)
	_, err := h.deliver("g", 0, 10, nil, 1)
	require.NoError(t, err)

	res, err := h.ackMarks("g", 0, []uint64{3}, GroupMark{Key: "c1", Sequence: 5, Offset: 3})
	require.NoError(t, err)
	require.Equal(t, outcomes(OffsetApplied), res.Outcomes)
	require.Equal(t, uint64(1), res.MarksWritten)
	require.Equal(t, []uint64{5, 0}, h.marks("g", "c1", "absent"))

	// A lower or equal sequence changes nothing; the ack still applies.
	res, err = h.ackMarks("g", 0, []uint64{2, 4}, GroupMark{Key: "c1", Sequence: 4, Offset: 2}, GroupMark{Key: "c1", Sequence: 5, Offset: 4})
	require.NoError(t, err)
	require.Equal(t, outcomes(OffsetApplied, OffsetApplied), res.Outcomes)
	require.Zero(t, res.MarksWritten)
	require.Equal(t, []uint64{5}, h.marks("g", "c1"))

	// A higher one raises it and moves its offset entry; a cumulative ack
	// carries marks below its before. An ack of an offset already done
	// still writes its mark (a resend after an unknown outcome).
	res, err = h.ackMarks("g", 8, nil, GroupMark{Key: "c1", Sequence: 9, Offset: 7}, GroupMark{Key: "e2", Sequence: 1, Offset: 0})
	require.NoError(t, err)
	require.Equal(t, uint64(2), res.MarksWritten)
	res, err = h.ackMarks("g", 0, []uint64{3}, GroupMark{Key: "e3", Sequence: 2, Offset: 3})
	require.NoError(t, err)
	require.Equal(t, outcomes(OffsetAlreadyDone), res.Outcomes)
	require.Equal(t, []uint64{9, 1, 2}, h.marks("g", "c1", "e2", "e3"))
	count, err := h.p.GroupMarkCount("g")
	require.NoError(t, err)
	require.Equal(t, uint64(3), count)

	// A reset to earliest keeps the marks; a delete drops them, and a
	// group created again under the name starts with none.
	h.must(func(b *Batch) (GroupResult, error) { return b.GroupReset("g", 0) })
	require.Equal(t, []uint64{9, 1, 2}, h.marks("g", "c1", "e2", "e3"))
	h.must(func(b *Batch) (GroupResult, error) { return b.GroupDelete("g") })
	require.Empty(t, markKeys(t, h.db, 1))
	h.create("g", testGroupConfig)
	require.Equal(t, []uint64{0, 0, 0}, h.marks("g", "c1", "e2", "e3"))
	require.Equal(t, []uint64{0}, h.marks("nope", "c1"), "an absent group has no mark")
}

func TestGroupMarksBadInputChangesNothing(t *testing.T) {
	h := newGroupHarness(t, 10)
	h.create("g", testGroupConfig)
	_, err := h.deliver("g", 0, 5, nil, 1)
	require.NoError(t, err)
	_, err = h.ackMarks("g", 0, []uint64{0}, GroupMark{Key: "kept", Sequence: 1, Offset: 0})
	require.NoError(t, err)
	before, beforeGroups := markKeys(t, h.db, 1), groupKeys(t, h.db, 1)

	tooMany := make([]GroupMark, GroupCommandOffsetsMax+1)
	for i := range tooMany {
		tooMany[i] = GroupMark{Key: fmt.Sprint("k", i), Sequence: 1, Offset: 1}
	}
	for _, tc := range []struct {
		name    string
		before  uint64
		offsets []uint64
		marks   []GroupMark
	}{
		{"offset not acknowledged", 0, []uint64{1}, []GroupMark{{Key: "x", Sequence: 1, Offset: 2}}},
		{"offset not below before", 2, nil, []GroupMark{{Key: "x", Sequence: 1, Offset: 2}}},
		{"empty key", 0, []uint64{1}, []GroupMark{{Key: "", Sequence: 1, Offset: 1}}},
		{"key too long", 0, []uint64{1}, []GroupMark{{Key: strings.Repeat("k", GroupMarkKeyBytesMax+1), Sequence: 1, Offset: 1}}},
		{"sequence 0", 0, []uint64{1}, []GroupMark{{Key: "x", Sequence: 0, Offset: 1}}},
		{"too many marks", 0, []uint64{1}, tooMany},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.ackMarks("g", tc.before, tc.offsets, tc.marks...)
			require.ErrorIs(t, err, ErrInvalidArgument)
			require.Equal(t, before, markKeys(t, h.db, 1), "marks changed")
			require.Equal(t, beforeGroups, groupKeys(t, h.db, 1), "the ack applied")
		})
	}
	// A mark of an offset never delivered (at or above the cursor, as
	// after a reset moved it back) is not written; its offset's outcome
	// says not delivered and the rest of the ack applies.
	res, err := h.ackMarks("g", 0, []uint64{7, 1}, GroupMark{Key: "x", Sequence: 1, Offset: 7}, GroupMark{Key: "y", Sequence: 2, Offset: 1})
	require.NoError(t, err)
	require.Equal(t, outcomes(OffsetNotDelivered, OffsetApplied), res.Outcomes)
	require.Equal(t, uint64(1), res.MarksWritten)
	require.Equal(t, []uint64{0, 2}, h.marks("g", "x", "y"))
	before = markKeys(t, h.db, 1)

	// A stale generation is fenced with its marks.
	_, err = h.apply(func(b *Batch) (GroupResult, error) {
		return b.GroupAck(GroupAckRequest{Group: "g", Generation: 2, Member: "m1", Offsets: []uint64{1}, Marks: []GroupMark{{Key: "x", Sequence: 1, Offset: 1}}})
	})
	require.ErrorIs(t, err, ErrStaleGeneration)
	require.Equal(t, before, markKeys(t, h.db, 1))
}

// TestGroupMarksBoundEvictsLowestOffset fills a group's partition with
// GroupMarksMax marks and checks that each new key evicts the mark with
// the lowest offset (then the lowest key), and a raised key evicts none.
func TestGroupMarksBoundEvictsLowestOffset(t *testing.T) {
	h := newGroupHarness(t, 10)
	h.create("g", testGroupConfig)
	_, err := h.deliver("g", 0, 10, nil, 1)
	require.NoError(t, err)
	_, err = h.ackMarks("g", 0, []uint64{2}, GroupMark{Key: "low", Sequence: 1, Offset: 2})
	require.NoError(t, err)
	// GroupMarksMax-1 keys at offset 5, GroupCommandOffsetsMax per ack.
	for written := 1; written < GroupMarksMax; {
		n := min(GroupCommandOffsetsMax, GroupMarksMax-written)
		marks := make([]GroupMark, n)
		for i := range marks {
			marks[i] = GroupMark{Key: fmt.Sprintf("k%06d", written+i), Sequence: 1, Offset: 5}
		}
		res, err := h.ackMarks("g", 0, []uint64{5}, marks...)
		require.NoError(t, err)
		require.Equal(t, uint64(n), res.MarksWritten)
		require.Zero(t, res.MarksEvicted)
		written += n
	}
	count, err := h.p.GroupMarkCount("g")
	require.NoError(t, err)
	require.Equal(t, uint64(GroupMarksMax), count)

	// Raising a key at the bound evicts nothing.
	res, err := h.ackMarks("g", 0, []uint64{6}, GroupMark{Key: "k000001", Sequence: 2, Offset: 6})
	require.NoError(t, err)
	require.Equal(t, uint64(1), res.MarksWritten)
	require.Zero(t, res.MarksEvicted)

	// A new key evicts the lowest offset: "low" at 2.
	res, err = h.ackMarks("g", 0, []uint64{7}, GroupMark{Key: "new1", Sequence: 1, Offset: 7})
	require.NoError(t, err)
	require.Equal(t, uint64(1), res.MarksEvicted)
	require.Equal(t, []uint64{0, 1, 2}, h.marks("g", "low", "new1", "k000001"))
	// The next one the lowest key at the lowest offset left (5).
	res, err = h.ackMarks("g", 0, []uint64{8}, GroupMark{Key: "new2", Sequence: 1, Offset: 8})
	require.NoError(t, err)
	require.Equal(t, uint64(1), res.MarksEvicted)
	require.Equal(t, []uint64{0, 1, 1, 2}, h.marks("g", "k000002", "k000003", "new2", "k000001"))
	count, err = h.p.GroupMarkCount("g")
	require.NoError(t, err)
	require.Equal(t, uint64(GroupMarksMax), count)
}

func TestGroupMarksSnapshotAndRestore(t *testing.T) {
	h := newGroupHarness(t, 10)
	h.create("g", testGroupConfig)
	_, err := h.deliver("g", 0, 4, nil, 1)
	require.NoError(t, err)
	_, err = h.ackMarks("g", 0, []uint64{1, 3}, GroupMark{Key: "c1", Sequence: 4, Offset: 1}, GroupMark{Key: "e9", Sequence: 7, Offset: 3})
	require.NoError(t, err)

	var stream bytes.Buffer
	snap, err := h.p.Snapshot()
	require.NoError(t, err)
	_, err = snap.WriteTo(&stream)
	require.NoError(t, err)
	require.NoError(t, snap.Close())
	require.Equal(t, snapshotVersion6, stream.Bytes()[len(snapshotMagic)], "a partition with groups streams version 6")

	q := partition(t, openMemDB(t), 9)
	require.NoError(t, q.Restore(bytes.NewReader(stream.Bytes())))
	seqs, err := q.GroupMarks("g", []string{"c1", "e9", "x"})
	require.NoError(t, err)
	require.Equal(t, []uint64{4, 7, 0}, seqs)
	require.NoError(t, groupStore{partition: q.id, r: q.db.pebble}.checkMarks())

	// Marks that disagree with their count or offset entries are
	// corruption, as a restore checks them.
	require.NoError(t, q.db.pebble.Delete(appendGroupMarkOffsetKey(nil, 9, "g", 3, "e9"), pebble.NoSync))
	require.ErrorIs(t, groupStore{partition: q.id, r: q.db.pebble}.checkMarks(), ErrCorruption)
}
