package partition

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	heraldlog "github.com/heraldlog/herald/log"
)

// A node crash loses what Pebble holds in memory only: the log runs
// without Pebble's WAL (the Raft log is the WAL), so the partition comes
// back at its last flush, which a snapshot forces, and Raft's replay of
// the entries after the snapshot restores the rest, offsets and bodies
// exactly as before.
//
// The crash image is a copy of the Pebble directory taken while the node
// runs with unflushed batches in its memtable (without a WAL, Pebble
// writes files only at flushes and compactions, none of which runs here).
func TestReplicaRecoversWhatACrashLostFromTheRaftLog(t *testing.T) {
	n := startReplicaNode(t, "n1", nil)
	r := n.openReplica(t, 1, voters(n), nil)
	awaitLeader(t, r)
	produce(t, r, plainRecords("acme", 10))
	require.NoError(t, r.Raft().Snapshot().Error())
	snapshotApplied := r.Log().AppliedIndex()
	produce(t, r, plainRecords("globex", 20))
	produce(t, r, plainRecords("acme", 5))
	want, err := r.Log().Read(0, 100, 1<<20)
	require.NoError(t, err)
	require.Len(t, want, 35)
	applied := r.Log().AppliedIndex()

	crashDir := filepath.Join(t.TempDir(), "pebble")
	copyDir(t, filepath.Join(n.dir, "pebble"), crashDir)
	require.NoError(t, r.Close())

	db, err := heraldlog.Open(heraldlog.Options{Dir: crashDir, Logger: testLogger(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	lp, err := db.Partition(1)
	require.NoError(t, err)
	t.Logf("after the crash the log is at applied index %d (snapshot %d, before the crash %d)", lp.AppliedIndex(), snapshotApplied, applied)
	require.GreaterOrEqual(t, lp.AppliedIndex(), snapshotApplied, "the crash lost a batch a snapshot covered")
	require.Less(t, lp.AppliedIndex(), applied, "the crash image should miss the batches after the snapshot")

	n.db = db
	r = n.openReplica(t, 1, voters(n), nil)
	awaitLeader(t, r)
	require.Eventually(t, func() bool { return r.Log().AppliedIndex() >= applied }, 10*time.Second, 10*time.Millisecond)
	got, err := r.Log().Read(0, 100, 1<<20)
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Equal(t, uint64(35), produce(t, r, plainRecords("acme", 1))[0].Offset)
}

// copyDir copies the regular files of directory from into a new directory
// to.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(to, 0o755))
	entries, err := os.ReadDir(from)
	require.NoError(t, err)
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		require.NoError(t, err)
		dst, err := os.Create(filepath.Join(to, e.Name()))
		require.NoError(t, err)
		_, err = io.Copy(dst, src)
		require.NoError(t, err)
		require.NoError(t, src.Close())
		require.NoError(t, dst.Close())
	}
}
