package log

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// testSeed returns a random seed, or HERALD_TEST_SEED when set, and logs it
// so that a failure replays exactly.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := rand.Uint64()
	if s := os.Getenv("HERALD_TEST_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
	}
	t.Logf("seed %d (replay with HERALD_TEST_SEED=%d)", seed, seed)
	return seed
}

// crashModel is what a partition must look like after each committed batch.
type crashModel struct {
	// states[i] is the state after the i-th batch; states[0] is empty.
	states []crashState
	// records are every record committed, by offset.
	records []Record
	// syncedApplied is the applied index of the last batch made durable
	// (DB.Sync, or a Partition.Snapshot streamed, after it).
	syncedApplied uint64
}

type crashState struct {
	applied    uint64
	low        uint64
	high       uint64
	tenantNext map[string]uint64
}

func newCrashModel() *crashModel {
	return &crashModel{states: []crashState{{tenantNext: map[string]uint64{}}}}
}

func (m *crashModel) last() crashState { return m.states[len(m.states)-1] }

// commit commits a batch of n random records at applied, truncating
// before truncateBefore first when it is not 0, and records it.
func (m *crashModel) commit(t *testing.T, rng *rand.Rand, p *Partition, tenants []string, n int, applied, truncateBefore uint64) {
	t.Helper()
	es := make([]entry, n)
	for i := range es {
		es[i] = entry{tenant: tenants[rng.IntN(len(tenants))], ts: rng.Int64(), body: fmt.Appendf(nil, "p%d-a%d-%d-%x", p.ID(), applied, i, rng.Uint32())}
	}
	low := m.last().low
	var records []Record
	if truncateBefore == 0 {
		records = commitBatch(t, p, applied, es)
	} else {
		stamp := stamper(p)
		b := p.NewBatch()
		require.NoError(t, b.TruncateBefore(truncateBefore))
		for _, e := range es {
			offset, sequence, err := b.Append(e.tenant, e.ts, e.body)
			require.NoError(t, err)
			records = append(records, Record{Offset: offset, Sequence: sequence, Tenant: e.tenant, TimestampUnixNano: stamp(e.ts), Body: e.body})
		}
		require.NoError(t, b.Commit(applied))
		low = max(low, min(truncateBefore, m.last().high))
		require.Equal(t, low, p.LowWatermark())
	}
	next := make(map[string]uint64)
	for tenant, seq := range m.last().tenantNext {
		next[tenant] = seq
	}
	for _, r := range records {
		require.Equal(t, uint64(len(m.records)), r.Offset)
		require.Equal(t, max(next[r.Tenant], 1), r.Sequence)
		next[r.Tenant] = r.Sequence + 1
		m.records = append(m.records, r)
	}
	m.states = append(m.states, crashState{applied: applied, low: low, high: uint64(len(m.records)), tenantNext: next})
}

// recover checks p, just reopened after a crash, against the model and
// cuts the model back to the state p recovered.
func (m *crashModel) recover(t *testing.T, db *DB, p *Partition, tenants []string) {
	t.Helper()
	applied := p.AppliedIndex()
	require.GreaterOrEqual(t, applied, m.syncedApplied, "partition %d lost a synced batch", p.ID())
	index := -1
	for i, s := range m.states {
		if s.applied == applied {
			index = i
		}
	}
	require.NotEqual(t, -1, index, "partition %d recovered applied index %d, which no batch had", p.ID(), applied)
	state := m.states[index]

	// The applied index and the records agree: exactly the batches up to
	// the recovered one, all readable, nothing beyond.
	require.Equal(t, state.high, p.HighWatermark(), "partition %d", p.ID())
	require.Equal(t, state.low, p.LowWatermark(), "partition %d", p.ID())
	retained := m.records[state.low:state.high]
	require.Equal(t, retained, readAll(t, p), "partition %d", p.ID())
	require.Equal(t, storedRecordBytes(t, db, p.ID()), p.SizeBytes(), "partition %d", p.ID())
	// Exactly the records [low, high) are stored, in chunks that follow
	// each other; only the first may start below low (it straddles it).
	chunks := storedChunks(t, db, p.ID())
	if state.high > state.low {
		require.NotEmpty(t, chunks, "partition %d", p.ID())
		require.LessOrEqual(t, chunks[0][0], state.low, "partition %d", p.ID())
		require.Greater(t, chunks[0][1], state.low, "partition %d: a chunk wholly below low is left", p.ID())
		for i := 1; i < len(chunks); i++ {
			require.Equal(t, chunks[i-1][1], chunks[i][0], "partition %d: chunks are dense", p.ID())
		}
		require.Equal(t, state.high, chunks[len(chunks)-1][1], "partition %d", p.ID())
	} else {
		require.Empty(t, chunks, "partition %d", p.ID())
	}
	for _, tenant := range tenants {
		next, err := p.NextSequence(tenant)
		require.NoError(t, err)
		require.Equal(t, max(state.tenantNext[tenant], 1), next, "partition %d tenant %s", p.ID(), tenant)
		require.Equal(t, filterTenant(retained, tenant), readTenantAll(t, p, tenant))
	}

	t.Logf("partition %d recovered applied index %d (synced %d): kept %d of %d batches since the start",
		p.ID(), applied, m.syncedApplied, index, len(m.states)-1)
	m.states = m.states[:index+1]
	m.records = m.records[:state.high]
}

// TestCrashRecovery commits random batches to two partitions, crashes the
// filesystem at random points (keeping what was synced and a random share
// of the rest) and checks each partition after reopening against its
// model, with Pebble's WAL (a crash keeps a prefix of the WAL) and without
// it (a crash loses the memtables not flushed; DB.Sync and
// Partition.Snapshot flush).
func TestCrashRecovery(t *testing.T) {
	for _, wal := range []bool{true, false} {
		t.Run(fmt.Sprintf("pebble_wal=%t", wal), func(t *testing.T) { testCrashRecovery(t, wal) })
	}
}

func testCrashRecovery(t *testing.T, wal bool) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	tenants := []string{"acme", "globex", "initech", "umbrella"}
	ids := []uint64{1, 2}
	models := map[uint64]*crashModel{1: newCrashModel(), 2: newCrashModel()}

	fs := vfs.NewCrashableMem()
	const crashes = 5
	for cycle := range crashes + 1 {
		db, err := Open(Options{Dir: "db", FS: fs, CacheBytes: 4 << 20, Logger: discardLogger(), PebbleWAL: wal})
		require.NoError(t, err, "cycle %d", cycle)
		parts := map[uint64]*Partition{}
		for _, id := range ids {
			parts[id] = partition(t, db, id)
			models[id].recover(t, db, parts[id], tenants)
		}
		if cycle == crashes {
			require.NoError(t, db.Close())
			break
		}

		for range 20 + rng.IntN(40) {
			id := ids[rng.IntN(len(ids))]
			p, m := parts[id], models[id]
			// Batch sizes from 0 (only advances the applied index) to 40;
			// applied indexes with gaps, as Raft indexes have.
			applied := p.AppliedIndex() + 1 + uint64(rng.IntN(3))
			// One batch in six also truncates, up to a bit past the high
			// watermark (clamped).
			var truncateBefore uint64
			if rng.IntN(6) == 0 {
				truncateBefore = 1 + uint64(rng.IntN(int(p.HighWatermark())+5))
			}
			m.commit(t, rng, p, tenants, rng.IntN(41), applied, truncateBefore)
			switch rng.IntN(8) {
			case 0:
				require.NoError(t, db.Sync())
				for _, id := range ids {
					models[id].syncedApplied = parts[id].AppliedIndex()
				}
			case 1:
				// The image is durable once its stream is complete.
				s, err := p.Snapshot()
				require.NoError(t, err)
				require.Equal(t, applied, s.AppliedIndex())
				_, err = s.WriteTo(io.Discard)
				require.NoError(t, err)
				require.NoError(t, s.Close())
				for _, id := range ids {
					models[id].syncedApplied = parts[id].AppliedIndex()
				}
			}
		}

		// Crash: keep what was synced plus a random share of the rest.
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(rng.Uint64(), 2))})
		require.NoError(t, db.Close())
		fs = crashed
	}
}

// TestCrashAfterDurablePoints crashes right after each operation that must
// be durable when it returns (a Snapshot's complete stream, Drop, Restore,
// Close), keeping none
// of the unsynced writes, with and without Pebble's WAL: each must survive.
// Without the WAL a write is durable only once flushed, so each of these
// flushes (a Drop that came back after a crash would resurrect a log its
// Raft state no longer backs).
func TestCrashAfterDurablePoints(t *testing.T) {
	for _, wal := range []bool{true, false} {
		t.Run(fmt.Sprintf("pebble_wal=%t", wal), func(t *testing.T) {
			open := func(fs vfs.FS) *DB {
				db, err := Open(Options{Dir: "db", FS: fs, CacheBytes: 4 << 20, Logger: discardLogger(), PebbleWAL: wal})
				require.NoError(t, err)
				return db
			}
			// crash closes db after cloning what fs holds durably.
			crash := func(fs *vfs.MemFS, db *DB) *vfs.MemFS {
				crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
				require.NoError(t, db.Close())
				return crashed
			}

			fs := vfs.NewCrashableMem()
			db := open(fs)
			source, dropped := partition(t, db, 1), partition(t, db, 2)
			want := commitBatch(t, source, 5, entries(30, "acme", "globex"))
			commitBatch(t, dropped, 7, entries(10, "acme"))
			s, err := source.Snapshot()
			require.NoError(t, err)
			var stream bytes.Buffer
			_, err = s.WriteTo(&stream)
			require.NoError(t, err)
			require.NoError(t, s.Close())

			// Snapshot: the image is durable once its stream is complete.
			fs = crash(fs, db)
			db = open(fs)
			source, dropped = partition(t, db, 1), partition(t, db, 2)
			require.Equal(t, uint64(5), source.AppliedIndex(), "a streamed snapshot's batches were lost in a crash")
			require.Equal(t, want, readAll(t, source))

			// Drop.
			require.NoError(t, dropped.Drop())
			fs = crash(fs, db)
			db = open(fs)
			dropped = partition(t, db, 2)
			require.Zero(t, dropped.AppliedIndex(), "a dropped partition came back after a crash")
			require.Empty(t, readAll(t, dropped))
			require.Equal(t, want, readAll(t, partition(t, db, 1)), "a snapshotted partition lost records")

			// Restore.
			restored := partition(t, db, 3)
			commitBatch(t, restored, 2, entries(3, "initech"))
			require.NoError(t, restored.Restore(bytes.NewReader(stream.Bytes())))
			fs = crash(fs, db)
			db = open(fs)
			restored = partition(t, db, 3)
			require.Equal(t, uint64(5), restored.AppliedIndex(), "a restore was lost in a crash")
			require.Equal(t, want, readAll(t, restored))

			// Close: a clean close keeps everything committed.
			more := commitBatch(t, restored, 6, entries(4, "acme"))
			require.NoError(t, db.Close())
			fs = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
			db = open(fs)
			restored = partition(t, db, 3)
			require.Equal(t, uint64(6), restored.AppliedIndex(), "a clean close lost a batch")
			require.Equal(t, append(want, more...), readAll(t, restored))
			require.NoError(t, db.Close())
		})
	}
}

// A log written with Pebble's WAL (before the node ran without one) and
// left by a crash is reopened without the WAL: Pebble still replays the WAL
// it finds, so the synced batches are there.
func TestOpenWithoutWALReplaysAnOldWAL(t *testing.T) {
	fs := vfs.NewCrashableMem()
	db, err := Open(Options{Dir: "db", FS: fs, CacheBytes: 4 << 20, Logger: discardLogger(), PebbleWAL: true})
	require.NoError(t, err)
	want := commitBatch(t, partition(t, db, 1), 3, entries(20, "acme", "globex"))
	require.NoError(t, db.Sync())
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	require.NoError(t, db.Close())

	db, err = Open(Options{Dir: "db", FS: crashed, CacheBytes: 4 << 20, Logger: discardLogger()})
	require.NoError(t, err)
	p := partition(t, db, 1)
	require.Equal(t, uint64(3), p.AppliedIndex())
	require.Equal(t, want, readAll(t, p))
	require.NoError(t, db.Close())
}
