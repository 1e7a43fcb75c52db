package log

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// heapSampler samples the live heap (runtime/metrics, no stop-the-world)
// every heapSampleInterval until stop, keeping the peak. Its goroutine is
// owned by the sampler and exits in stop.
type heapSampler struct {
	done chan struct{}
	wg   sync.WaitGroup
	peak uint64
}

const heapSampleInterval = 2 * time.Millisecond

func startHeapSampler() *heapSampler {
	s := &heapSampler{done: make(chan struct{})}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		s.peak = max(s.peak, sample[0].Value.Uint64())
	}
	read()
	s.wg.Go(func() {
		tick := time.NewTicker(heapSampleInterval)
		defer tick.Stop()
		for {
			select {
			case <-s.done:
				read()
				return
			case <-tick.C:
				read()
			}
		}
	})
	return s
}

// stop ends sampling and returns the peak live heap seen.
func (s *heapSampler) stop() uint64 {
	close(s.done)
	s.wg.Wait()
	return s.peak
}

// BenchmarkSnapshotRestore1M appends 1,000,000 records of 128 bytes (in
// batches of 1000, on disk), then per iteration streams Snapshot+WriteTo
// into a file and Restores the file into a fresh DB. Besides ns/op and
// MB/s (of stream), it reports the live heap before the loop, its peak
// during an iteration (Pebble memtables and batches included) and its
// growth across the loop, to show that the partition is never loaded into
// memory. Run it with:
//
//	go test -run '^$' -bench BenchmarkSnapshotRestore1M -benchtime 1x ./log/
func BenchmarkSnapshotRestore1M(b *testing.B) {
	const records = 1_000_000
	p := openBenchDB(b)
	body := make([]byte, benchBodyBytes)
	for applied := uint64(1); applied <= records/benchBatchRecords; applied++ {
		batch := p.NewBatch()
		for i := range benchBatchRecords {
			_, err := batch.AppendRecord(AppendRequest{Tenant: benchTenants[i%len(benchTenants)], TimestampUnixNano: int64(applied*1e9) + int64(i), Body: body})
			require.NoError(b, err)
		}
		require.NoError(b, batch.Commit(applied))
	}
	require.Equal(b, uint64(records), p.HighWatermark())
	dir := b.TempDir()

	var streamBytes int64
	var writeTime, restoreTime time.Duration
	var peakHeap, heapBefore, heapAfter uint64
	var stats runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&stats)
	heapBefore = stats.HeapAlloc
	for b.Loop() {
		sampler := startHeapSampler()
		start := time.Now()
		streamPath := filepath.Join(dir, "stream")
		file, err := os.Create(streamPath)
		require.NoError(b, err)
		snap, err := p.Snapshot()
		require.NoError(b, err)
		streamBytes, err = snap.WriteTo(file)
		require.NoError(b, err)
		require.NoError(b, snap.Close())
		require.NoError(b, file.Sync())
		require.NoError(b, file.Close())
		writeTime += time.Since(start)

		start = time.Now()
		targetDir := filepath.Join(dir, "target")
		target, err := Open(Options{Dir: targetDir, Logger: discardLogger()})
		require.NoError(b, err)
		restored, err := target.Partition(2)
		require.NoError(b, err)
		file, err = os.Open(streamPath)
		require.NoError(b, err)
		require.NoError(b, restored.Restore(bufio.NewReader(file)))
		require.NoError(b, file.Close())
		restoreTime += time.Since(start)
		peakHeap = max(peakHeap, sampler.stop())

		require.Equal(b, uint64(records), restored.HighWatermark())
		require.Equal(b, p.SizeBytes(), restored.SizeBytes())
		require.NoError(b, target.Close())
		require.NoError(b, os.RemoveAll(targetDir))
	}
	runtime.GC()
	runtime.ReadMemStats(&stats)
	heapAfter = stats.HeapAlloc
	b.SetBytes(streamBytes)
	n := float64(b.N)
	b.ReportMetric(float64(streamBytes)/1e6, "stream-MB")
	b.ReportMetric(writeTime.Seconds()/n, "snapshot-write-s/op")
	b.ReportMetric(restoreTime.Seconds()/n, "restore-s/op")
	b.ReportMetric(float64(heapBefore)/(1<<20), "heap-before-MiB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric((float64(heapAfter)-float64(heapBefore))/(1<<20), "heap-growth-MiB")
}
