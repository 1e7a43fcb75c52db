package log

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// inBatch runs fn in a new batch of p and commits it at the next applied
// index.
func inBatch(t testing.TB, p *Partition, fn func(b *Batch)) {
	t.Helper()
	b := p.NewBatch()
	defer b.Abort()
	fn(b)
	require.NoError(t, b.Commit(p.AppliedIndex()+1))
}

// appendReq appends req in its own batch and returns the result.
func appendReq(t testing.TB, p *Partition, req AppendRequest) (AppendResult, error) {
	t.Helper()
	var result AppendResult
	var err error
	inBatch(t, p, func(b *Batch) { result, err = b.AppendRecord(req) })
	return result, err
}

// producerReq is a request of producer "prod" of tenant "acme".
func producerReq(seq uint64) AppendRequest {
	return AppendRequest{Tenant: "acme", TimestampUnixNano: 1000, Body: fmt.Appendf(nil, "seq-%d", seq), ProducerID: "prod", ProducerSeq: seq}
}

// eventReq is a request of tenant "acme" with event id, at ts, remembered
// until until.
func eventReq(id string, ts, until int64) AppendRequest {
	return AppendRequest{Tenant: "acme", TimestampUnixNano: ts, Body: []byte(id), EventID: id, DedupeUntilUnixNano: until}
}

// keysOfKind returns the raw keys of one kind in partition id.
func keysOfKind(t testing.TB, db *DB, id uint64, kind byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, key := range rawKeys(t, db, id) {
		if key[partitionPrefixBytes] == kind {
			out = append(out, key)
		}
	}
	return out
}

func TestProducerIdempotence(t *testing.T) {
	type step struct {
		seq     uint64
		want    AppendResult
		wantErr error
		// wantOutOfOrder is the *OutOfOrderError expected with ErrOutOfOrder.
		wantOutOfOrder *OutOfOrderError
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"consecutive from 1", []step{{seq: 1, want: AppendResult{0, 1, false}}, {seq: 2, want: AppendResult{1, 2, false}}}},
		{"retry of the last is a duplicate", []step{
			{seq: 1, want: AppendResult{0, 1, false}}, {seq: 2, want: AppendResult{1, 2, false}},
			{seq: 2, want: AppendResult{1, 2, true}}, {seq: 1, want: AppendResult{0, 1, true}},
			{seq: 3, want: AppendResult{2, 3, false}},
		}},
		{"gap is out of order", []step{
			{seq: 1, want: AppendResult{0, 1, false}},
			{seq: 3, wantErr: ErrOutOfOrder, wantOutOfOrder: &OutOfOrderError{Tenant: "acme", ProducerID: "prod", Expected: 2, Got: 3}},
			{seq: 2, want: AppendResult{1, 2, false}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openMemDB(t)
			p := partition(t, db, 1)
			for i, s := range tt.steps {
				keysBefore := rawKeys(t, db, 1)
				high := p.HighWatermark()
				got, err := appendReq(t, p, producerReq(s.seq))
				if s.wantErr != nil {
					require.ErrorIs(t, err, s.wantErr, "step %d", i)
					if s.wantOutOfOrder != nil {
						var gotErr *OutOfOrderError
						require.True(t, errors.As(err, &gotErr))
						require.Equal(t, *s.wantOutOfOrder, *gotErr)
					}
				} else {
					require.NoError(t, err, "step %d", i)
					require.Equal(t, s.want, got, "step %d", i)
				}
				if s.wantErr != nil || s.want.Duplicate {
					// Nothing written but the applied index.
					require.Equal(t, high, p.HighWatermark(), "step %d", i)
					require.Equal(t, keysBefore, rawKeys(t, db, 1), "step %d", i)
				}
			}
		})
	}
}

func TestProducerWindow(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	const last = ProducerWindow + 300
	inBatch(t, p, func(b *Batch) {
		for seq := uint64(1); seq <= last; seq++ {
			result, err := b.AppendRecord(producerReq(seq))
			require.NoError(t, err)
			require.Equal(t, AppendResult{Offset: seq - 1, Sequence: seq}, result)
		}
	})
	// Exactly the window is remembered.
	require.Len(t, keysOfKind(t, db, 1, kindProducerWindow), ProducerWindow)

	oldest := uint64(last - ProducerWindow + 1)
	for _, seq := range []uint64{last, oldest + 1, oldest} {
		got, err := appendReq(t, p, producerReq(seq))
		require.NoError(t, err)
		require.Equal(t, AppendResult{Offset: seq - 1, Sequence: seq, Duplicate: true}, got)
	}
	for _, seq := range []uint64{oldest - 1, 1} {
		high := p.HighWatermark()
		_, err := appendReq(t, p, producerReq(seq))
		require.ErrorIs(t, err, ErrSequenceTooOld, "seq %d", seq)
		require.Equal(t, high, p.HighWatermark())
	}
}

func TestProducersAreScopedByTenant(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	a, err := appendReq(t, p, AppendRequest{Tenant: "a", Body: []byte("x"), ProducerID: "prod", ProducerSeq: 1})
	require.NoError(t, err)
	b, err := appendReq(t, p, AppendRequest{Tenant: "b", Body: []byte("x"), ProducerID: "prod", ProducerSeq: 1})
	require.NoError(t, err)
	require.False(t, a.Duplicate)
	require.False(t, b.Duplicate)
	require.Equal(t, uint64(1), b.Offset)
}

func TestEventIDDedupe(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)

	first, err := appendReq(t, p, eventReq("e1", 100, 200))
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 0, Sequence: 1}, first)

	// Inside the window: a duplicate of the original, nothing written.
	keys := rawKeys(t, db, 1)
	dup, err := appendReq(t, p, eventReq("e1", 199, 500))
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 0, Sequence: 1, Duplicate: true}, dup)
	require.Equal(t, keys, rawKeys(t, db, 1))
	require.Equal(t, uint64(1), p.HighWatermark())

	// Another tenant's event with the same id is its own.
	other, err := appendReq(t, p, AppendRequest{Tenant: "globex", TimestampUnixNano: 150, Body: []byte("g"), EventID: "e1", DedupeUntilUnixNano: 300})
	require.NoError(t, err)
	require.False(t, other.Duplicate)

	// At the until: appended again, and the entry moves to the new until.
	again, err := appendReq(t, p, eventReq("e1", 200, 900))
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 2, Sequence: 2}, again)
	require.Len(t, keysOfKind(t, db, 1, kindEventExpiry), 2, "the overwritten entry's expiry key is gone")
	dup, err = appendReq(t, p, eventReq("e1", 800, 0))
	require.NoError(t, err, "no dedupe asked: appended")
	require.False(t, dup.Duplicate)
	dup, err = appendReq(t, p, eventReq("e1", 800, 1000))
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 2, Sequence: 2, Duplicate: true}, dup)

	// Dedupe compares the stored timestamp: a clock behind the partition
	// (ts 10) is raised to the last stored timestamp (800) first.
	dup, err = appendReq(t, p, eventReq("e1", 10, 1000))
	require.NoError(t, err)
	require.True(t, dup.Duplicate)
}

func TestProducerCheckComesBeforeEventID(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	req := func(seq uint64, eventID string) AppendRequest {
		r := producerReq(seq)
		r.EventID, r.DedupeUntilUnixNano = eventID, 1<<40
		return r
	}
	_, err := appendReq(t, p, req(1, "e1"))
	require.NoError(t, err)

	// A producer retry with a new event id: the producer's duplicate, and
	// the new event id is not remembered.
	dup, err := appendReq(t, p, req(1, "e2"))
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 0, Sequence: 1, Duplicate: true}, dup)
	require.Len(t, keysOfKind(t, db, 1, kindEventID), 1)

	// An out-of-order sequence fails even with a known event id.
	_, err = appendReq(t, p, req(5, "e1"))
	require.ErrorIs(t, err, ErrOutOfOrder)

	// The next sequence carrying a known event id: a duplicate of the
	// event's original; the producer still moves on (deviation from "no
	// producer-state change", so that the producer is not stuck), and a
	// retry gets the same answer.
	dup, err = appendReq(t, p, req(2, "e1"))
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 0, Sequence: 1, Duplicate: true}, dup)
	retry, err := appendReq(t, p, req(2, "e1"))
	require.NoError(t, err)
	require.Equal(t, dup, retry)
	next, err := appendReq(t, p, req(3, "e3"))
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 1, Sequence: 2}, next)
}

func TestDedupeSeesTheBatchsOwnWrites(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	_, err := appendReq(t, p, AppendRequest{Tenant: "acme", Body: []byte("before")})
	require.NoError(t, err)

	var results []AppendResult
	inBatch(t, p, func(b *Batch) {
		for _, req := range []AppendRequest{
			eventReq("e1", 10, 100), eventReq("e1", 20, 100),
			producerReq(1), producerReq(2), producerReq(2),
		} {
			result, err := b.AppendRecord(req)
			require.NoError(t, err)
			results = append(results, result)
		}
		_, err := b.AppendRecord(producerReq(4))
		require.ErrorIs(t, err, ErrOutOfOrder)
		require.Equal(t, 3, b.Len())
	})
	require.Equal(t, []AppendResult{
		{Offset: 1, Sequence: 2}, {Offset: 1, Sequence: 2, Duplicate: true},
		{Offset: 2, Sequence: 3}, {Offset: 3, Sequence: 4}, {Offset: 3, Sequence: 4, Duplicate: true},
	}, results)
	require.Equal(t, uint64(4), p.HighWatermark())
}

func TestAbortedBatchChangesNoDedupeState(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	_, err := appendReq(t, p, producerReq(1))
	require.NoError(t, err)
	keys := rawKeys(t, db, 1)

	b := p.NewBatch()
	for _, req := range []AppendRequest{producerReq(2), producerReq(3), eventReq("e1", 10, 100)} {
		_, err := b.AppendRecord(req)
		require.NoError(t, err)
	}
	require.NoError(t, b.TruncateBefore(1))
	_, err = b.ExpireDedupe(1<<40, 0)
	require.NoError(t, err)
	b.Abort()
	require.Equal(t, keys, rawKeys(t, db, 1))

	got, err := appendReq(t, p, producerReq(2))
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 1, Sequence: 2}, got)
	got, err = appendReq(t, p, eventReq("e1", 10, 100))
	require.NoError(t, err)
	require.False(t, got.Duplicate)
}

func TestDedupeStateSurvivesReopenAndSnapshot(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open(Options{Dir: "db", FS: fs, Logger: discardLogger()})
	require.NoError(t, err)
	p := partition(t, db, 1)
	inBatch(t, p, func(b *Batch) {
		for seq := uint64(1); seq <= 3; seq++ {
			req := producerReq(seq)
			req.EventID, req.DedupeUntilUnixNano = fmt.Sprintf("e%d", seq), 5000
			_, err := b.AppendRecord(req)
			require.NoError(t, err)
		}
	})
	require.NoError(t, db.Sync())
	require.NoError(t, db.Close())

	// checkState asserts the dedupe state of the three appends in p.
	checkState := func(t *testing.T, p *Partition) {
		t.Helper()
		got, err := appendReq(t, p, producerReq(2))
		require.NoError(t, err)
		require.Equal(t, AppendResult{Offset: 1, Sequence: 2, Duplicate: true}, got)
		got, err = appendReq(t, p, eventReq("e3", 4000, 6000))
		require.NoError(t, err)
		require.Equal(t, AppendResult{Offset: 2, Sequence: 3, Duplicate: true}, got)
		_, err = appendReq(t, p, producerReq(5))
		require.ErrorIs(t, err, ErrOutOfOrder)
		got, err = appendReq(t, p, producerReq(4))
		require.NoError(t, err)
		require.Equal(t, AppendResult{Offset: 3, Sequence: 4}, got)
	}

	db = openDB(t, fs)
	p = partition(t, db, 1)
	snap, err := p.Snapshot()
	require.NoError(t, err)
	var stream bytes.Buffer
	_, err = snap.WriteTo(&stream)
	require.NoError(t, err)
	require.NoError(t, snap.Close())
	t.Run("reopen", func(t *testing.T) { checkState(t, p) })

	restored := partition(t, openMemDB(t), 9)
	require.NoError(t, restored.Restore(&stream))
	t.Run("restore", func(t *testing.T) { checkState(t, restored) })
}

func TestAppendRecordRefusesInvalidRequests(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	b := p.NewBatch()
	defer b.Abort()
	tests := []struct {
		name string
		req  AppendRequest
		want error
	}{
		{"no tenant", AppendRequest{}, ErrInvalidTenant},
		{"body too large", AppendRequest{Tenant: "a", Body: make([]byte, recordBodyBytesMax+1)}, ErrRecordTooLarge},
		{"producer sequence 0", AppendRequest{Tenant: "a", ProducerID: "p"}, ErrInvalidArgument},
		{"producer id too long", AppendRequest{Tenant: "a", ProducerID: strings.Repeat("p", 256), ProducerSeq: 1}, ErrInvalidArgument},
		{"dedupe without event id", AppendRequest{Tenant: "a", DedupeUntilUnixNano: 1}, ErrInvalidArgument},
		{"event id too long", AppendRequest{Tenant: "a", EventID: strings.Repeat("e", 256), DedupeUntilUnixNano: 1}, ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.AppendRecord(tt.req)
			require.ErrorIs(t, err, tt.want)
		})
	}
	// The batch is still usable.
	result, err := b.AppendRecord(AppendRequest{Tenant: "a", Body: []byte("ok"), ProducerID: strings.Repeat("p", 255), ProducerSeq: 1})
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 0, Sequence: 1}, result)
	require.NoError(t, b.Commit(1))
}

func TestTimestampsAreMonotonic(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open(Options{Dir: "db", FS: fs, Logger: discardLogger()})
	require.NoError(t, err)
	p := partition(t, db, 1)
	inBatch(t, p, func(b *Batch) {
		for _, ts := range []int64{100, 50, 200, -5} {
			_, _, err := b.Append("a", ts, []byte("x"))
			require.NoError(t, err)
		}
	})
	// A new leader whose clock is behind: still not below the last one.
	inBatch(t, p, func(b *Batch) {
		_, _, err := b.Append("a", 150, []byte("x"))
		require.NoError(t, err)
	})
	require.NoError(t, db.Sync())
	require.NoError(t, db.Close())

	p = partition(t, openDB(t, fs), 1)
	inBatch(t, p, func(b *Batch) {
		_, _, err := b.Append("a", 190, []byte("x"))
		require.NoError(t, err)
		_, _, err = b.Append("a", 300, []byte("x"))
		require.NoError(t, err)
	})
	var stamps []int64
	for _, r := range readAll(t, p) {
		stamps = append(stamps, r.TimestampUnixNano)
	}
	require.Equal(t, []int64{100, 100, 200, 200, 200, 200, 300}, stamps)
	require.Equal(t, int64(300), p.lastTimestamp.Load())
}
