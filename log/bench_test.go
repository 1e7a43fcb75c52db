package log

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	benchBatchRecords = 1000
	benchBodyBytes    = 128
)

// openBenchDB opens a DB on the real filesystem in a temporary directory.
func openBenchDB(b *testing.B) *Partition {
	db, err := Open(Options{Dir: b.TempDir(), Logger: discardLogger()})
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, db.Close()) })
	return partition(b, db, 1)
}

// benchTenants are the tenants records cycle over.
var benchTenants = func() []string {
	out := make([]string, 16)
	for i := range out {
		out[i] = fmt.Sprintf("tenant-%02d", i)
	}
	return out
}()

// BenchmarkAppend commits one batch of 1000 records of 128 bytes per
// iteration (NoSync, as the FSM does).
func BenchmarkAppend(b *testing.B) {
	p := openBenchDB(b)
	body := make([]byte, benchBodyBytes)
	b.SetBytes(benchBatchRecords * benchBodyBytes)
	b.ReportAllocs()
	applied := uint64(0)
	for b.Loop() {
		batch := p.NewBatch()
		for i := range benchBatchRecords {
			if _, _, err := batch.Append(benchTenants[i%len(benchTenants)], int64(i), body); err != nil {
				b.Fatal(err)
			}
		}
		applied++
		if err := batch.Commit(applied); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchBatchRecords)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppendIdempotent is BenchmarkAppend with every record from an
// idempotent producer (one per tenant) and an event id remembered for
// dedupe: the cost of the producer and event-id checks and state.
func BenchmarkAppendIdempotent(b *testing.B) {
	p := openBenchDB(b)
	body := make([]byte, benchBodyBytes)
	b.SetBytes(benchBatchRecords * benchBodyBytes)
	b.ReportAllocs()
	applied := uint64(0)
	for b.Loop() {
		batch := p.NewBatch()
		for i := range benchBatchRecords {
			n := applied*benchBatchRecords + uint64(i)
			_, err := batch.AppendRecord(AppendRequest{
				Tenant: benchTenants[n%uint64(len(benchTenants))], TimestampUnixNano: int64(n), Body: body,
				ProducerID: "producer", ProducerSeq: n/uint64(len(benchTenants)) + 1,
				EventID: fmt.Sprintf("event-%d", n), DedupeUntilUnixNano: int64(n) + 1e9,
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		applied++
		if err := batch.Commit(applied); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchBatchRecords)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkRead reads 1000 records of 128 bytes per iteration, cycling
// over a 100 000-record partition.
func BenchmarkRead(b *testing.B) {
	p := openBenchDB(b)
	body := make([]byte, benchBodyBytes)
	const total = 100 * benchBatchRecords
	for applied := uint64(1); applied <= total/benchBatchRecords; applied++ {
		batch := p.NewBatch()
		for i := range benchBatchRecords {
			_, _, err := batch.Append(benchTenants[i%len(benchTenants)], int64(i), body)
			require.NoError(b, err)
		}
		require.NoError(b, batch.Commit(applied))
	}
	b.SetBytes(benchBatchRecords * benchBodyBytes)
	b.ReportAllocs()
	from := uint64(0)
	for b.Loop() {
		records, err := p.Read(from, benchBatchRecords, 1<<30)
		if err != nil {
			b.Fatal(err)
		}
		if len(records) != benchBatchRecords {
			b.Fatalf("read %d records, want %d", len(records), benchBatchRecords)
		}
		from = (from + benchBatchRecords) % total
	}
	b.ReportMetric(float64(b.N*benchBatchRecords)/b.Elapsed().Seconds(), "records/s")
}
