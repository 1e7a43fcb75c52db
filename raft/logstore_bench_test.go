package raft

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/stretchr/testify/require"
)

// Shape of the raft.db the log-store benchmarks write: entries of
// logStoreBenchEntryBytes appended logStoreBenchBatchEntries at a time (one
// fsynced bbolt transaction, as a leader's StoreLogs), and the log
// truncated to its last logStoreBenchTrailingEntries every
// logStoreBenchTruncateEvery entries, as snapshots do, so that the
// freelist is in use.
const (
	logStoreBenchEntryBytes      = 16 << 10
	logStoreBenchBatchEntries    = 8
	logStoreBenchTrailingEntries = 1024
	logStoreBenchTruncateEvery   = 2048
)

// openBenchLogStore opens a raft-boltdb store at path with the options
// OpenGroup uses.
func openBenchLogStore(b *testing.B, path string) *raftboltdb.BoltStore {
	store, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: boltOptions()})
	require.NoError(b, err)
	return store
}

// benchLogStoreAppend appends one batch after last and truncates when due;
// it returns the new last index.
func benchLogStoreAppend(b *testing.B, store *raftboltdb.BoltStore, last uint64, data []byte) uint64 {
	logs := make([]*hraft.Log, logStoreBenchBatchEntries)
	for i := range logs {
		last++
		logs[i] = &hraft.Log{Index: last, Term: 1, Type: hraft.LogCommand, Data: data}
	}
	if err := store.StoreLogs(logs); err != nil {
		b.Fatal(err)
	}
	if last%logStoreBenchTruncateEvery == 0 {
		first, err := store.FirstIndex()
		require.NoError(b, err)
		if err := store.DeleteRange(first, last-logStoreBenchTrailingEntries); err != nil {
			b.Fatal(err)
		}
	}
	return last
}

// BenchmarkLogStoreStoreLogs appends batches of 8 entries of 16 KiB to a
// group's raft.db (fsynced, on the real filesystem), truncating as
// snapshots do, and reports the process's CPU time per batch (cpu-ns/op).
func BenchmarkLogStoreStoreLogs(b *testing.B) {
	store := openBenchLogStore(b, filepath.Join(b.TempDir(), raftDBFile))
	b.Cleanup(func() { require.NoError(b, store.Close()) })
	data := make([]byte, logStoreBenchEntryBytes)
	var last uint64
	// Warm up to a steady-state file: one truncation done.
	for last < 2*logStoreBenchTruncateEvery {
		last = benchLogStoreAppend(b, store, last, data)
	}
	b.SetBytes(logStoreBenchBatchEntries * logStoreBenchEntryBytes)
	b.ReportAllocs()
	cpuBefore := logStoreBenchCPU(b)
	for b.Loop() {
		last = benchLogStoreAppend(b, store, last, data)
	}
	b.ReportMetric(float64((logStoreBenchCPU(b)-cpuBefore).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkLogStoreOpen opens and closes a raft.db holding 10,000 entries
// of 1 KiB (written in batches of 8, truncated as snapshots do): the cost
// a node pays per group at start for the store alone (VerifyStore's read
// is apart).
func BenchmarkLogStoreOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), raftDBFile)
	store := openBenchLogStore(b, path)
	data := make([]byte, 1<<10)
	var last uint64
	for last < 10_000 {
		logs := make([]*hraft.Log, logStoreBenchBatchEntries)
		for i := range logs {
			last++
			logs[i] = &hraft.Log{Index: last, Term: 1, Type: hraft.LogCommand, Data: data}
		}
		require.NoError(b, store.StoreLogs(logs))
		if last%logStoreBenchTruncateEvery == 0 {
			// Truncate a little, as snapshots with a long trailing log do,
			// so that the file has free pages.
			first, err := store.FirstIndex()
			require.NoError(b, err)
			require.NoError(b, store.DeleteRange(first, first+logStoreBenchTrailingEntries/4))
		}
	}
	require.NoError(b, store.Close())
	b.ReportAllocs()
	for b.Loop() {
		store := openBenchLogStore(b, path)
		if err := store.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// logStoreBenchCPU is the user + system CPU time the process used so far.
func logStoreBenchCPU(b *testing.B) time.Duration {
	var usage syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &usage))
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}
