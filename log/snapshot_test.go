package log

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// snapshotBytes takes a snapshot of p and returns its stream.
func snapshotBytes(t *testing.T, p *Partition) ([]byte, uint64) {
	t.Helper()
	s, err := p.Snapshot()
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	var buf bytes.Buffer
	n, err := s.WriteTo(&buf)
	require.NoError(t, err)
	require.Equal(t, int64(buf.Len()), n)
	return buf.Bytes(), s.AppliedIndex()
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	tenants := []string{"acme", "globex", strings.Repeat("L", 255)}
	db := openMemDB(t)
	source := partition(t, db, 1)
	// Enough data (about 6 MiB) that a restore writes several batches.
	big := make([]byte, 64<<10)
	for i := range big {
		big[i] = byte(i)
	}
	for i := range 12 {
		es := entries(5+i, tenants...)
		for j := range 8 {
			es = append(es, entry{tenant: tenants[j%3], ts: int64(j), body: big})
		}
		commitBatch(t, source, uint64(10+i), es)
	}
	commitBatch(t, partition(t, db, 2), 1, entries(3, "other"))
	want := view(t, source, tenants...)

	stream, applied := snapshotBytes(t, source)
	require.Equal(t, uint64(21), applied)
	require.Greater(t, len(stream), restoreBatchBytesMax, "the restore needs several batches")

	t.Run("into another partition id of the same DB", func(t *testing.T) {
		target := partition(t, db, 3)
		commitBatch(t, target, 500, entries(9, "stale")) // replaced by the restore
		require.NoError(t, target.Restore(bytes.NewReader(stream)))
		got := view(t, target, tenants...)
		require.Equal(t, want, got)
		require.Empty(t, readTenantAll(t, target, "stale"))
		require.Len(t, readAll(t, partition(t, db, 2)), 3, "neighbour untouched")
		// The restored partition takes new appends where the source stopped.
		records := commitBatch(t, target, applied+1, entries(1, "acme"))
		require.Equal(t, want.High, records[0].Offset)
		require.Equal(t, want.NextSequence["acme"], records[0].Sequence)
		// The image is its own: the source did not move.
		require.Equal(t, want, view(t, source, tenants...))
	})

	t.Run("into another DB, surviving a reopen", func(t *testing.T) {
		fs := vfs.NewMem()
		other, err := Open(Options{Dir: "db", FS: fs, Logger: discardLogger()})
		require.NoError(t, err)
		require.NoError(t, partition(t, other, 1).Restore(bytes.NewReader(stream)))
		require.NoError(t, partition(t, other, 99).Restore(bytes.NewReader(stream)))
		require.NoError(t, other.Close())

		other = openDB(t, fs)
		for _, id := range []uint64{1, 99} {
			require.Equal(t, want, view(t, partition(t, other, id), tenants...))
		}
		// A snapshot of the restored copy is byte-identical.
		again, _ := snapshotBytes(t, partition(t, other, 99))
		require.Equal(t, stream, again)
	})

	t.Run("empty partition", func(t *testing.T) {
		empty, _ := snapshotBytes(t, partition(t, db, 50))
		target := partition(t, db, 51)
		commitBatch(t, target, 3, entries(2, "x"))
		require.NoError(t, target.Restore(bytes.NewReader(empty)))
		require.Equal(t, partitionView{ByTenant: map[string][]Record{}, NextSequence: map[string]uint64{}}, view(t, target))
	})
}

func TestSnapshotExcludesLaterCommits(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	for i := range 20 {
		commitBatch(t, p, uint64(i+1), entries(10, "a", "b"))
	}
	want := view(t, p, "a", "b")
	s, err := p.Snapshot()
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	require.Equal(t, uint64(20), s.AppliedIndex())

	// WriteTo streams on one goroutine while the writer keeps committing.
	reader, writer := io.Pipe()
	var wg sync.WaitGroup
	var written int64
	var writeErr error
	wg.Go(func() {
		written, writeErr = s.WriteTo(writer)
		writer.CloseWithError(writeErr)
	})
	var stream bytes.Buffer
	copyDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(&stream, reader)
		copyDone <- err
	}()
	for i := range 30 {
		commitBatch(t, p, uint64(100+i), entries(7, "a", "b", "c"))
	}
	wg.Wait()
	require.NoError(t, writeErr)
	require.NoError(t, <-copyDone)
	require.Equal(t, int64(stream.Len()), written)

	target := partition(t, db, 2)
	require.NoError(t, target.Restore(&stream))
	require.Equal(t, want, view(t, target, "a", "b"))
	require.Empty(t, readTenantAll(t, target, "c"))
	require.Equal(t, uint64(129), p.AppliedIndex())
}

func TestRestoreRejectsBadStreams(t *testing.T) {
	db := openMemDB(t)
	source := partition(t, db, 1)
	commitBatch(t, source, 4, entries(3, "a", "b"))
	commitBatch(t, source, 5, entries(2, "b"))
	want := view(t, source, "a", "b")
	stream, _ := snapshotBytes(t, source)
	target := partition(t, db, 2)

	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	// requireRejected restores bad and checks the failure leaves the
	// partition refusing writes but recoverable.
	restores := 0
	requireRejected := func(t *testing.T, bad []byte, what string) {
		t.Helper()
		// Each restore leaves a range tombstone in the memtable; flush now
		// and then, or pebble's invariant checks (on under -race) go
		// quadratic in their number.
		if restores++; restores%32 == 0 {
			require.NoError(t, db.Pebble().Flush())
		}
		err := target.Restore(bytes.NewReader(bad))
		require.ErrorIs(t, err, ErrCorruption, what)
		require.Equal(t, uint64(0), target.HighWatermark(), what)
		require.Equal(t, uint64(0), target.AppliedIndex(), what)
		got, err := target.Read(0, 10, 1<<20)
		require.NoError(t, err, what)
		require.Empty(t, got, what)
		require.ErrorIs(t, target.NewBatch().Commit(1), ErrRestoreIncomplete, what)
		_, err = target.Snapshot()
		require.ErrorIs(t, err, ErrRestoreIncomplete, what)
		require.True(t, hasRestoringMarker(t, db, 2), what)
	}

	t.Run("truncated at every length", func(t *testing.T) {
		for cut := range len(stream) {
			requireRejected(t, stream[:cut], "cut at "+strconv.Itoa(cut))
		}
	})
	t.Run("one flipped bit", func(t *testing.T) {
		for i := range len(stream) {
			bad := bytes.Clone(stream)
			bad[i] ^= 1 << rng.IntN(8)
			requireRejected(t, bad, "flip at "+strconv.Itoa(i))
		}
	})
	t.Run("data after the trailer", func(t *testing.T) {
		requireRejected(t, append(bytes.Clone(stream), 0), "trailing byte")
	})
	t.Run("a failing reader is not corruption", func(t *testing.T) {
		boom := errors.New("boom")
		err := target.Restore(io.MultiReader(bytes.NewReader(stream[:40]), iotestErrReader{boom}))
		require.ErrorIs(t, err, boom)
		require.NotErrorIs(t, err, ErrCorruption)
	})
	t.Run("a good stream recovers the partition", func(t *testing.T) {
		require.NoError(t, target.Restore(bytes.NewReader(stream)))
		require.Equal(t, want, view(t, target, "a", "b"))
		require.False(t, hasRestoringMarker(t, db, 2))
		commitBatch(t, target, 6, entries(1, "a"))
	})
}

// iotestErrReader fails every read with err.
type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// hasRestoringMarker reports whether partition id's "restoring" marker is stored.
func hasRestoringMarker(t *testing.T, db *DB, id uint64) bool {
	t.Helper()
	_, closer, err := db.Pebble().Get(appendMetaKey(nil, id, metaRestoring))
	if errors.Is(err, pebble.ErrNotFound) {
		return false
	}
	require.NoError(t, err)
	require.NoError(t, closer.Close())
	return true
}

// warnRecorder is a slog.Handler that keeps the messages of warnings.
type warnRecorder struct {
	mu       sync.Mutex
	messages []string
}

func (w *warnRecorder) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelWarn
}

func (w *warnRecorder) Handle(_ context.Context, record slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.messages = append(w.messages, record.Message)
	return nil
}

func (w *warnRecorder) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnRecorder) WithGroup(string) slog.Handler      { return w }

func (w *warnRecorder) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.messages)
}

func TestRestoringMarkerRecovery(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open(Options{Dir: "db", FS: fs, Logger: discardLogger()})
	require.NoError(t, err)
	source := partition(t, db, 1)
	commitBatch(t, source, 3, entries(6, "a", "b"))
	want := view(t, source, "a", "b")
	stream, _ := snapshotBytes(t, source)
	target := partition(t, db, 2)
	commitBatch(t, target, 8, entries(4, "old"))
	neighbour := view(t, partition(t, db, 3), "a")

	// A restore dies half-way (the stream stops in the middle of the
	// records), then the node stops.
	require.ErrorIs(t, target.Restore(bytes.NewReader(stream[:len(stream)/2])), ErrCorruption)
	require.NotEmpty(t, rawKeys(t, db, 2), "half-restored content and marker are on disk")
	require.NoError(t, db.Close())

	warnings := &warnRecorder{}
	db, err = Open(Options{Dir: "db", FS: fs, Logger: slog.New(warnings)})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	target = partition(t, db, 2)
	require.Equal(t, 1, warnings.count(), "the wipe is logged")
	require.Empty(t, rawKeys(t, db, 2), "the range is wiped, marker included")
	require.Equal(t, partitionView{ByTenant: map[string][]Record{"old": nil}, NextSequence: map[string]uint64{"old": 1}}, view(t, target, "old"))
	require.Equal(t, neighbour, view(t, partition(t, db, 3), "a"))
	require.Equal(t, want, view(t, partition(t, db, 1), "a", "b"))

	// The caller restores again.
	require.NoError(t, target.Restore(bytes.NewReader(stream)))
	require.Equal(t, want, view(t, target, "a", "b"))
}

// SnapshotAppliedIndex reads the applied index from a stream's header
// alone (the rest may be missing) and refuses what is not a snapshot.
func TestSnapshotAppliedIndexReadsTheHeader(t *testing.T) {
	db := openMemDB(t)
	source := partition(t, db, 1)
	commitBatch(t, source, 42, entries(3, "acme"))
	stream, applied := snapshotBytes(t, source)
	require.Equal(t, uint64(42), applied)
	got, err := SnapshotAppliedIndex(bytes.NewReader(stream[:snapshotHeaderBytes]))
	require.NoError(t, err)
	require.Equal(t, applied, got)

	_, err = SnapshotAppliedIndex(bytes.NewReader(stream[:snapshotHeaderBytes-1]))
	require.ErrorIs(t, err, ErrCorruption)
	bad := append([]byte("NOTASNAP"), stream[len(snapshotMagic):]...)
	_, err = SnapshotAppliedIndex(bytes.NewReader(bad))
	require.ErrorIs(t, err, ErrCorruption)
}
