package log

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// streamEntry is one entry of a hand-made snapshot stream.
type streamEntry struct{ key, value string }

// makeStream frames entries with a valid CRC; count is the trailer's count
// (-1: the real number of entries).
func makeStream(applied uint64, entries []streamEntry, count int) []byte {
	var buf bytes.Buffer
	sw := newSnapshotWriter(&buf)
	sw.header(snapshotVersion3, applied)
	for _, e := range entries {
		sw.entry([]byte(e.key), []byte(e.value))
	}
	if count < 0 {
		count = len(entries)
	}
	sw.trailer(uint64(count))
	if sw.err != nil {
		panic(sw.err)
	}
	return buf.Bytes()
}

func TestRestoreChecksStructure(t *testing.T) {
	record := func(offset, seq uint64, tenant string) streamEntry {
		return streamEntry{
			key:   string(appendRecordKey(nil, 0, offset)[partitionPrefixBytes:]),
			value: string(appendRecordValue(nil, &Record{Offset: offset, Sequence: seq, Tenant: tenant, Body: []byte("b")})),
		}
	}
	index := func(tenant string, seq, offset uint64) streamEntry {
		return streamEntry{key: string(appendTenantIndexKey(nil, 0, tenant, seq)[partitionPrefixBytes:]), value: be8(offset)}
	}
	meta := func(name string, v uint64) streamEntry { return streamEntry{key: "m" + name, value: be8(v)} }
	next := func(tenant string, v uint64) streamEntry { return streamEntry{key: "n" + tenant, value: be8(v)} }
	valid := []streamEntry{
		record(0, 1, "a"), record(1, 1, "b"),
		meta(metaApplied, 7), meta(metaLowWatermark, 0), meta(metaNextOffset, 2),
		next("a", 2), next("b", 2),
		index("a", 1, 0), index("b", 1, 1),
	}
	with := func(edit func([]streamEntry) []streamEntry) []streamEntry {
		return edit(append([]streamEntry(nil), valid...))
	}

	db := openMemDB(t)
	p := partition(t, db, 4)
	require.NoError(t, p.Restore(bytes.NewReader(makeStream(7, valid, -1))))
	require.Equal(t, uint64(7), p.AppliedIndex())
	require.Equal(t, uint64(2), p.HighWatermark())
	require.Len(t, readTenantAll(t, p, "b"), 1)

	tests := []struct {
		name   string
		stream []byte
	}{
		{"count mismatch", makeStream(7, valid, 8)},
		{"header applied differs from meta", makeStream(8, valid, -1)},
		{"unknown kind", makeStream(7, with(func(es []streamEntry) []streamEntry {
			// 'a' sorts first, so only the kind check can refuse it.
			return append([]streamEntry{{key: "axyz", value: be8(1)}}, es...)
		}), -1)},
		{"malformed producer key", makeStream(7, with(func(es []streamEntry) []streamEntry {
			return append([]streamEntry{{key: "d\x05ab", value: be8(1) + be8(1)}}, es...)
		}), -1)},
		{"restoring marker", makeStream(7, with(func(es []streamEntry) []streamEntry {
			return append(es[:5], append([]streamEntry{{key: "mrestoring", value: ""}}, es[5:]...)...)
		}), -1)},
		{"unknown meta", makeStream(7, with(func(es []streamEntry) []streamEntry {
			return append(es[:5], append([]streamEntry{{key: "mzzz", value: be8(1)}}, es[5:]...)...)
		}), -1)},
		{"keys out of order", makeStream(7, with(func(es []streamEntry) []streamEntry {
			es[0], es[1] = es[1], es[0]
			return es
		}), -1)},
		{"duplicate key", makeStream(7, with(func(es []streamEntry) []streamEntry {
			return append(es[:1], es...)
		}), -1)},
		{"empty key", makeStream(7, with(func(es []streamEntry) []streamEntry {
			return append([]streamEntry{{key: "", value: ""}}, es...)
		}), -1)},
		{"record under the wrong offset", makeStream(7, with(func(es []streamEntry) []streamEntry {
			es[1].key = string(appendRecordKey(nil, 0, 5)[partitionPrefixBytes:])
			return es
		}), -1)},
		{"meta disagrees with records", makeStream(7, with(func(es []streamEntry) []streamEntry {
			es[4] = meta(metaNextOffset, 3)
			return es
		}), -1)},
		{"short meta value", makeStream(7, with(func(es []streamEntry) []streamEntry {
			es[2].value = "\x07"
			return es
		}), -1)},
		{"empty tenant next key", makeStream(7, with(func(es []streamEntry) []streamEntry {
			es[5] = streamEntry{key: "n", value: be8(2)}
			return es
		}), -1)},
		{"bad magic", append([]byte("XLOGSNAP"), makeStream(7, valid, -1)[8:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Restore(bytes.NewReader(tt.stream))
			require.ErrorIs(t, err, ErrCorruption)
			require.True(t, hasRestoringMarker(t, db, 4))
		})
	}
}

func TestErrorsNameWhatFailed(t *testing.T) {
	corruption := error(&CorruptionError{Partition: 3, Offset: 9, Reason: "checksum"})
	require.ErrorIs(t, corruption, ErrCorruption)
	require.NotErrorIs(t, corruption, ErrOffsetOutOfRange)
	require.Equal(t, "log: corruption in partition 3 at offset 9: checksum", corruption.Error())

	outOfRange := error(&OffsetOutOfRangeError{Partition: 3, Requested: 20, Low: 5, High: 10})
	require.ErrorIs(t, outOfRange, ErrOffsetOutOfRange)
	require.NotErrorIs(t, outOfRange, ErrCorruption)
	require.Equal(t, "log: offset 20 out of range [5, 10] in partition 3", outOfRange.Error())
}

func TestMissingRecordDuringResetIsOutOfRange(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	commitBatch(t, p, 1, entries(3, "a"))
	epoch := p.epoch.Load()
	var corruption *CorruptionError
	require.True(t, errors.As(p.missing(epoch, 0, 1, "gone"), &corruption))

	// A drop between the read's start and its iterator: not corruption.
	require.NoError(t, p.Drop())
	var outOfRange *OffsetOutOfRangeError
	require.True(t, errors.As(p.missing(epoch, 0, 1, "gone"), &outOfRange))
	require.Equal(t, OffsetOutOfRangeError{Partition: 1, Requested: 0, Low: 0, High: 0}, *outOfRange)
}
