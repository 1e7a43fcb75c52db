package partition

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	heraldlog "github.com/heraldlog/herald/log"
)

// countingEncode returns an Encode that copies the body and counts calls.
func countingEncode(calls *atomic.Int64) func(*heraldlog.Record) []byte {
	return func(rec *heraldlog.Record) []byte {
		calls.Add(1)
		return append([]byte("w:"), rec.Body...)
	}
}

func singleReplica(t *testing.T) *Replica {
	t.Helper()
	n := startReplicaNode(t, "a", nil)
	r := n.openReplica(t, 1, voters(n), nil)
	return awaitLeader(t, r)
}

func offsetsOf(entries []TailEntry) []uint64 {
	out := make([]uint64, len(entries))
	for i := range entries {
		out[i] = entries[i].Record.Offset
	}
	return out
}

// Two subscribers at the live edge share what the tail read: each record
// is read and encoded once, however many ask for it.
func TestTailEncodesEachRecordOnceForEveryReader(t *testing.T) {
	r := singleReplica(t)
	var calls atomic.Int64
	tail, err := NewTail(r, TailOptions{Encode: countingEncode(&calls)})
	require.NoError(t, err)

	// At the end of an empty log: held, nothing yet.
	entries, held, err := tail.Since(0, 100, 1<<20)
	require.NoError(t, err)
	require.True(t, held)
	require.Empty(t, entries)

	produce(t, r, plainRecords("t1", 10))
	a, held, err := tail.Since(0, 100, 1<<20)
	require.NoError(t, err)
	require.True(t, held)
	b, _, err := tail.Since(0, 100, 1<<20)
	require.NoError(t, err)
	require.Equal(t, []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, offsetsOf(a))
	require.Equal(t, offsetsOf(a), offsetsOf(b))
	require.Equal(t, []byte("w:3"), b[3].Wire)
	require.Same(t, &a[0].Wire[0], &b[0].Wire[0], "readers must share one encoding")
	require.Equal(t, int64(10), calls.Load())

	// Limits: records, and bytes (at least one entry).
	c, _, err := tail.Since(4, 3, 1<<20)
	require.NoError(t, err)
	require.Equal(t, []uint64{4, 5, 6}, offsetsOf(c))
	d, _, err := tail.Since(4, 100, 1)
	require.NoError(t, err)
	require.Equal(t, []uint64{4}, offsetsOf(d))

	// Growth is read once more, at the edge only.
	produce(t, r, plainRecords("t2", 5))
	e, _, err := tail.Since(10, 100, 1<<20)
	require.NoError(t, err)
	require.Equal(t, []uint64{10, 11, 12, 13, 14}, offsetsOf(e))
	_, _, err = tail.Since(10, 100, 1<<20)
	require.NoError(t, err)
	require.Equal(t, int64(15), calls.Load())

	// An append by a later fill never writes into a slice handed out.
	require.Equal(t, len(a), cap(a))
}

// The tail keeps at most MaxBytes; a reader behind it is told so and reads
// its own page, and the tail's edge is not disturbed.
func TestTailDropsOldestPastMaxBytesAndSendsLaggardsToTheLog(t *testing.T) {
	r := singleReplica(t)
	var calls atomic.Int64
	// Each entry is 1 byte of body + 3 of encoding + the entry itself
	// (tailEntryBytes): more than MaxBytes, so the tail keeps only the page
	// it read last (it never drops the page just read).
	tail, err := NewTail(r, TailOptions{Encode: countingEncode(&calls), PageRecords: 5, PageBytes: 20, MaxBytes: 20})
	require.NoError(t, err)
	produce(t, r, plainRecords("t", 10))

	for from := uint64(0); from < 10; {
		got, held, err := tail.Since(from, 100, 1<<20)
		require.NoError(t, err)
		require.True(t, held)
		require.NotEmpty(t, got)
		from = got[len(got)-1].Record.Offset + 1
	}
	first, next := tail.Held()
	require.Equal(t, uint64(10), next)
	require.Equal(t, uint64(5), first, "the last page, 5 entries")

	got, held, err := tail.Since(2, 100, 1<<20)
	require.NoError(t, err)
	require.False(t, held)
	require.Empty(t, got)
	page, err := tail.ReadPage(2, 100, 1<<20)
	require.NoError(t, err)
	require.Equal(t, []uint64{2, 3, 4, 5, 6}, offsetsOf(page), "one page, bounded by PageRecords")
	require.Equal(t, []byte("w:2"), page[0].Wire)
	first2, next2 := tail.Held()
	require.Equal(t, [2]uint64{first, next}, [2]uint64{first2, next2})
}

// Below the low watermark is the partition's out-of-range error, from the
// tail as from a read.
func TestTailBelowLowWatermarkIsOutOfRange(t *testing.T) {
	r := singleReplica(t)
	var calls atomic.Int64
	tail, err := NewTail(r, TailOptions{Encode: countingEncode(&calls)})
	require.NoError(t, err)
	produce(t, r, plainRecords("t", 10))
	require.NoError(t, r.Trim(6, time.Now()))
	require.Equal(t, uint64(6), r.LowWatermark())

	_, _, err = tail.Since(2, 100, 1<<20)
	require.ErrorIs(t, err, ErrOffsetOutOfRange)
	got, held, err := tail.Since(6, 100, 1<<20)
	require.NoError(t, err)
	require.True(t, held)
	require.Equal(t, []uint64{6, 7, 8, 9}, offsetsOf(got))
}

func TestTailOptionsValidate(t *testing.T) {
	o := TailOptions{}
	o.EnsureDefaults()
	require.Error(t, o.Validate(), "Encode is required")
	o = TailOptions{Encode: func(*heraldlog.Record) []byte { return nil }, PageBytes: 10, MaxBytes: 5}
	o.EnsureDefaults()
	require.Error(t, o.Validate())
}
