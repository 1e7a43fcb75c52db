package partition

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition/partitionpb"
)

// randomRecord has a payload and envelope fields of random sizes: what an
// entry costs is all of it, not the payload alone.
func randomRecord(rng *rand.Rand) *partitionpb.AppendRecord {
	return &partitionpb.AppendRecord{
		TenantId:       strings.Repeat("t", 1+rng.IntN(64)),
		Event:          make([]byte, rng.IntN(2048)),
		ProducerId:     strings.Repeat("p", rng.IntN(128)),
		ProducerSeq:    rng.Uint64N(1 << 40),
		EventId:        strings.Repeat("e", rng.IntN(300)),
		TtlMs:          rng.Int64N(1 << 30),
		DedupeWindowMs: rng.Int64N(1 << 30),
	}
}

// The size the batcher accounts for a set of records bounds the entry they
// encode to, within the produced-at varint.
func TestAppendRecordBytesBoundsTheEncodedEntry(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for range 200 {
		cmd := &partitionpb.AppendCommand{ProducedAtUnixNano: rng.Int64()}
		accounted := appendCommandOverheadBytes
		for range rng.IntN(50) {
			rec := randomRecord(rng)
			cmd.Records = append(cmd.Records, rec)
			accounted += appendRecordBytes(rec)
		}
		data, err := encodeAppend(cmd)
		require.NoError(t, err)
		require.LessOrEqual(t, len(data), accounted, "seed %d", seed)
		require.GreaterOrEqual(t, len(data), accounted-10, "seed %d", seed)
	}
}

// gather cuts a batch by the encoded size of the entry: one of several
// calls never exceeds BatchBytesMax, however large the envelopes are next
// to the payloads.
func TestBatcherCutsEntriesByEncodedSize(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	opts := DefaultBatcherOptions()
	opts.BatchBytesMax = 16 << 10
	opts.EntryBytesMax = 64 << 10
	const calls = 300
	b := &Batcher{opts: opts, queue: newFairQueue(opts.BatchBytesMax/4, calls), tenantBytes: make(map[string]int), stop: make(chan struct{})}
	for range calls {
		recs := make([]*partitionpb.AppendRecord, 1+rng.IntN(8))
		for i := range recs {
			recs[i] = randomRecord(rng)
		}
		require.NoError(t, b.queue.push(context.Background(), newProduceCall(context.Background(), recs)))
	}
	batches := 0
	first, _ := b.queue.pop()
	for ; first != nil; batches++ {
		batch, leftover := b.gather(first)
		cmd := &partitionpb.AppendCommand{ProducedAtUnixNano: time.Now().UnixNano()}
		for _, c := range batch {
			cmd.Records = append(cmd.Records, c.records...)
		}
		data, err := encodeAppend(cmd)
		require.NoError(t, err)
		if len(batch) > 1 {
			require.LessOrEqual(t, len(data), opts.BatchBytesMax, "seed %d: batch %d of %d calls", seed, batches, len(batch))
		}
		require.LessOrEqual(t, len(data), opts.EntryBytesMax, "seed %d", seed)
		first = leftover
		if first == nil {
			first, _ = b.queue.pop()
		}
	}
	require.Greater(t, batches, 10, "seed %d: the caps never cut", seed)
}

// A call whose records would encode to an entry above EntryBytesMax is
// refused before anything is proposed, with an error the server maps to
// InvalidArgument; one at the limit goes.
func TestBatcherRefusesACallTooLargeForOneEntry(t *testing.T) {
	r, _ := singleNodeRaft(t)
	opts := DefaultBatcherOptions()
	opts.BatchBytesMax = 16 << 10
	opts.EntryBytesMax = 64 << 10
	b, err := NewBatcher(1, r, opts, testLogger(t), NewMetrics())
	require.NoError(t, err)
	t.Cleanup(b.Close)

	// Small payloads, large envelopes: the payloads alone are far below the cap.
	var recs []*partitionpb.AppendRecord
	size := appendCommandOverheadBytes
	for size <= opts.EntryBytesMax {
		rec := &partitionpb.AppendRecord{TenantId: "acme", Event: []byte("x"), EventId: strings.Repeat("e", 500)}
		recs = append(recs, rec)
		size += appendRecordBytes(rec)
	}
	// A barrier first: the new leader's own entries are in the log after
	// it, so nothing but the call under test can move the last index (1 in
	// 30 runs under load read it before the leader's no-op).
	require.NoError(t, r.Barrier(10*time.Second).Error())
	before := r.LastIndex()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = b.Submit(ctx, recs, 0)
	require.ErrorIs(t, err, ErrEntryTooLarge)
	require.ErrorIs(t, err, heraldlog.ErrInvalidArgument)
	var tooLarge *EntryTooLargeError
	require.ErrorAs(t, err, &tooLarge)
	require.Equal(t, size, tooLarge.EntryBytes)
	require.Equal(t, before, r.LastIndex(), "a refused call was proposed")

	assigned, _, err := b.Submit(ctx, recs[:len(recs)-1], 0)
	require.NoError(t, err)
	require.Len(t, assigned, len(recs)-1)
}
