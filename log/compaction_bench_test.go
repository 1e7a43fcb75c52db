package log

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// compactionBenchMemTableBytes is the memtable of BenchmarkAppendCompaction:
// small, so that a run flushes and compacts many times.
const compactionBenchMemTableBytes = 4 << 20

// BenchmarkAppendCompaction appends batches of 1000 incompressible records
// of 128 bytes (random bodies, as `herald bench produce` sends) through a
// small memtable, so that the writes go through flushes and compactions,
// and reports the process's CPU time per batch (cpu-ns/op: user + system,
// which counts Pebble's background flushes and compactions, unlike ns/op).
// After the loop it waits for the compactions to finish, so that the
// figure includes all the work the writes caused. It runs with Pebble's
// WAL and without it (Options.PebbleWAL), and with no block compression
// and Snappy (Options.Compression); compare them with
// `benchstat -col /pebble_wal` or `-col /compression`.
func BenchmarkAppendCompaction(b *testing.B) {
	for _, wal := range []bool{true, false} {
		b.Run(fmt.Sprintf("pebble_wal=%t", wal), func(b *testing.B) {
			for _, compression := range []Compression{CompressionNone, CompressionSnappy} {
				b.Run(fmt.Sprintf("compression=%s", compression), func(b *testing.B) {
					benchmarkAppendCompaction(b, Options{PebbleWAL: wal, Compression: compression})
				})
			}
		})
	}
}

// benchmarkAppendCompaction is BenchmarkAppendCompaction with the
// PebbleWAL and Compression of opts.
func benchmarkAppendCompaction(b *testing.B, opts Options) {
	db, err := Open(Options{Dir: b.TempDir(), MemTableBytes: compactionBenchMemTableBytes, Logger: discardLogger(),
		PebbleWAL: opts.PebbleWAL, Compression: opts.Compression})
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, db.Close()) })
	p := partition(b, db, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	bodies := make([]byte, 1<<20)
	for i := range bodies {
		bodies[i] = byte(rng.Uint32())
	}
	b.SetBytes(benchBatchRecords * benchBodyBytes)
	b.ReportAllocs()
	cpuBefore := processCPU(b)
	applied := uint64(0)
	for b.Loop() {
		batch := p.NewBatch()
		for i := range benchBatchRecords {
			start := rng.IntN(len(bodies) - benchBodyBytes)
			if _, _, err := batch.Append(benchTenants[i%len(benchTenants)], int64(i), bodies[start:start+benchBodyBytes]); err != nil {
				b.Fatal(err)
			}
		}
		applied++
		if err := batch.Commit(applied); err != nil {
			b.Fatal(err)
		}
	}
	require.NoError(b, db.Pebble().Flush())
	for db.Pebble().Metrics().Compact.NumInProgress > 0 {
		time.Sleep(5 * time.Millisecond) // Pebble has no wait for compactions
	}
	cpu := processCPU(b) - cpuBefore
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	m := db.Pebble().Metrics()
	b.ReportMetric(float64(m.Compact.Count)/float64(b.N), "compactions/op")
	if testing.Verbose() {
		b.Log(m.String())
	}
}

// processCPU is the user + system CPU time the process used so far.
func processCPU(b *testing.B) time.Duration {
	var usage syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &usage))
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}
