package log

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// discardLogger drops every line.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openDB opens a DB in directory "db" of fs and closes it at cleanup.
func openDB(t testing.TB, fs vfs.FS) *DB {
	t.Helper()
	db, err := Open(Options{Dir: "db", FS: fs, CacheBytes: 8 << 20, Logger: discardLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

// openMemDB opens a DB on a fresh in-memory filesystem.
func openMemDB(t testing.TB) *DB {
	t.Helper()
	return openDB(t, vfs.NewMem())
}

// partition opens partition id of db.
func partition(t testing.TB, db *DB, id uint64) *Partition {
	t.Helper()
	p, err := db.Partition(id)
	require.NoError(t, err)
	return p
}

// entry is one record to append.
type entry struct {
	tenant string
	ts     int64
	body   []byte
}

// entries makes n entries cycling over tenants, with distinct bodies.
func entries(n int, tenants ...string) []entry {
	out := make([]entry, n)
	for i := range out {
		out[i] = entry{tenant: tenants[i%len(tenants)], ts: int64(1_000_000 + i), body: fmt.Appendf(nil, "body-%d-%s", i, tenants[i%len(tenants)])}
	}
	return out
}

// commitBatch appends es in one batch committed at applied and returns the
// records it should have produced.
func commitBatch(t testing.TB, p *Partition, applied uint64, es []entry) []Record {
	t.Helper()
	b := p.NewBatch()
	defer b.Abort()
	out := make([]Record, 0, len(es))
	stamp := stamper(p)
	for _, e := range es {
		offset, sequence, err := b.Append(e.tenant, e.ts, e.body)
		require.NoError(t, err)
		out = append(out, Record{Offset: offset, Sequence: sequence, Tenant: e.tenant, TimestampUnixNano: stamp(e.ts), Body: e.body})
	}
	require.Equal(t, len(es), b.Len())
	require.NoError(t, b.Commit(applied))
	return out
}

// stamper returns the timestamps p will store for a run of appends with the
// given timestamps: each is raised to the one before (monotonic
// timestamps). Call it before the batch.
func stamper(p *Partition) func(ts int64) int64 {
	last := p.lastTimestamp.Load()
	return func(ts int64) int64 {
		last = max(last, ts)
		return last
	}
}

// readAll reads every retained record of p.
func readAll(t testing.TB, p *Partition) []Record {
	t.Helper()
	var out []Record
	from := p.LowWatermark()
	for {
		records, err := p.Read(from, 64, 1<<20)
		require.NoError(t, err)
		if len(records) == 0 {
			return out
		}
		out = append(out, records...)
		from = records[len(records)-1].Offset + 1
	}
}

// readTenantAll reads every record of tenant in p.
func readTenantAll(t testing.TB, p *Partition, tenant string) []Record {
	t.Helper()
	var out []Record
	from := uint64(1)
	for {
		records, err := p.ReadTenant(tenant, from, 64, 1<<20)
		require.NoError(t, err)
		if len(records) == 0 {
			return out
		}
		out = append(out, records...)
		from = records[len(records)-1].Sequence + 1
	}
}

// filterTenant returns the records of tenant, in order.
func filterTenant(records []Record, tenant string) []Record {
	var out []Record
	for _, r := range records {
		if r.Tenant == tenant {
			out = append(out, r)
		}
	}
	return out
}

// rawKeys returns every key stored in partition id's range.
func rawKeys(t testing.TB, db *DB, id uint64) [][]byte {
	t.Helper()
	lower, upper := partitionBounds(id)
	iter, err := db.Pebble().NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	require.NoError(t, err)
	defer func() { require.NoError(t, iter.Close()) }()
	var keys [][]byte
	for valid := iter.First(); valid; valid = iter.Next() {
		keys = append(keys, bytes.Clone(iter.Key()))
	}
	require.NoError(t, iter.Error())
	return keys
}

// partitionView is everything a reader can observe of a partition.
type partitionView struct {
	Applied, Low, High uint64
	Records            []Record
	ByTenant           map[string][]Record
	NextSequence       map[string]uint64
}

// view observes p, for tenants.
func view(t testing.TB, p *Partition, tenants ...string) partitionView {
	t.Helper()
	v := partitionView{
		Applied: p.AppliedIndex(), Low: p.LowWatermark(), High: p.HighWatermark(),
		Records: readAll(t, p), ByTenant: map[string][]Record{}, NextSequence: map[string]uint64{},
	}
	for _, tenant := range tenants {
		v.ByTenant[tenant] = readTenantAll(t, p, tenant)
		next, err := p.NextSequence(tenant)
		require.NoError(t, err)
		v.NextSequence[tenant] = next
	}
	return v
}
