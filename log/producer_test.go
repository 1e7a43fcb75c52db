package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// requestOf returns the records of one request of producer "prod" of
// tenant "acme" under epoch: sequences first..first+n-1.
func requestOf(epoch, first uint64, n int) []AppendRequest {
	reqs := make([]AppendRequest, n)
	for i := range reqs {
		reqs[i] = producerReq(first + uint64(i))
		reqs[i].ProducerEpoch = epoch
	}
	return reqs
}

// appendRequestOf checks reqs as one request and, unless refused, appends
// them in one batch, returning the results.
func appendRequestOf(t *testing.T, p *Partition, reqs []AppendRequest) ([]AppendResult, error) {
	t.Helper()
	var results []AppendResult
	var refused error
	inBatch(t, p, func(b *Batch) {
		if refused = b.CheckProducerRequest(reqs); refused != nil {
			return
		}
		for _, req := range reqs {
			r, err := b.AppendRecord(req)
			require.NoError(t, err)
			results = append(results, r)
		}
	})
	return results, refused
}

// A resend of a whole request larger than ProducerWindow is answered with
// every original position (issue 9, defect 4); the next request moves the
// window on.
func TestProducerWindowKeepsTheWholeLastRequest(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	const n = 3 * ProducerWindow
	first, err := appendRequestOf(t, p, requestOf(0, 1, n))
	require.NoError(t, err)
	again, err := appendRequestOf(t, p, requestOf(0, 1, n))
	require.NoError(t, err)
	for i := range again {
		require.Equal(t, AppendResult{Offset: first[i].Offset, Sequence: first[i].Sequence, Duplicate: true}, again[i], "event %d", i)
	}
	require.Equal(t, uint64(n), p.HighWatermark(), "each event once")
	require.Len(t, keysOfKind(t, db, 1, kindProducerWindow), n)

	// A later request keeps its own sequences and the last ProducerWindow.
	_, err = appendRequestOf(t, p, requestOf(0, n+1, 1))
	require.NoError(t, err)
	require.Len(t, keysOfKind(t, db, 1, kindProducerWindow), ProducerWindow)
	_, err = appendRequestOf(t, p, requestOf(0, 1, 1))
	require.ErrorIs(t, err, ErrSequenceTooOld)
	dup, err := appendRequestOf(t, p, requestOf(0, n+1-ProducerWindow+1, 2))
	require.NoError(t, err)
	require.True(t, dup[0].Duplicate && dup[1].Duplicate)
	require.Equal(t, uint64(n+1), p.HighWatermark())
}

// Fencing (issue 9, defect 6): an unknown producer starts at 1, an older
// epoch is fenced, a newer one restarts at 1 and forgets the old window.
func TestProducerEpochFencing(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	_, err := appendRequestOf(t, p, requestOf(5, 7, 2))
	require.ErrorIs(t, err, ErrUnknownProducer, "an unknown producer's sequence 7")
	require.Zero(t, p.HighWatermark())
	require.Empty(t, keysOfKind(t, db, 1, kindProducer))

	_, err = appendRequestOf(t, p, requestOf(5, 1, 3))
	require.NoError(t, err)

	_, err = appendRequestOf(t, p, requestOf(4, 4, 1))
	var fenced *ProducerFencedError
	require.True(t, errors.As(err, &fenced), "an older epoch: %v", err)
	require.Equal(t, ProducerFencedError{Tenant: "acme", ProducerID: "prod", Epoch: 4, CurrentEpoch: 5}, *fenced)
	_, err = appendRequestOf(t, p, requestOf(4, 1, 1))
	require.ErrorIs(t, err, ErrProducerFenced, "an older epoch's retry is fenced too, not a duplicate")

	_, err = appendRequestOf(t, p, requestOf(6, 4, 1))
	var ooo *OutOfOrderError
	require.True(t, errors.As(err, &ooo), "a newer epoch not at 1: %v", err)
	require.Equal(t, uint64(1), ooo.Expected)
	require.Equal(t, uint64(3), p.HighWatermark(), "nothing refused was appended")

	got, err := appendRequestOf(t, p, requestOf(6, 1, 2))
	require.NoError(t, err)
	require.Equal(t, []AppendResult{{Offset: 3, Sequence: 4}, {Offset: 4, Sequence: 5}}, got, "a new epoch's 1 and 2 are new events")
	require.Len(t, keysOfKind(t, db, 1, kindProducerWindow), 2, "the old epoch's window is gone")
	_, err = appendRequestOf(t, p, requestOf(5, 4, 1))
	require.ErrorIs(t, err, ErrProducerFenced, "the zombie of epoch 5")
}

// A request is refused as a whole, before any of it is appended, when one
// of its producers is refused.
func TestCheckProducerRequestRefusesBeforeAnyAppend(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	_, err := appendRequestOf(t, p, requestOf(1, 1, 2))
	require.NoError(t, err)
	other := producerReq(9)
	other.ProducerID, other.ProducerEpoch = "forged", 1
	reqs := append(requestOf(1, 3, 2), other)
	_, err = appendRequestOf(t, p, reqs)
	require.ErrorIs(t, err, ErrUnknownProducer)
	require.Equal(t, uint64(2), p.HighWatermark())

	gap := append(requestOf(1, 3, 1), requestOf(1, 5, 1)...)
	_, err = appendRequestOf(t, p, gap)
	require.ErrorIs(t, err, ErrInvalidArgument, "a gap inside one request")
	got, err := appendRequestOf(t, p, requestOf(1, 3, 1))
	require.NoError(t, err)
	require.Equal(t, uint64(2), got[0].Offset)
}

// Producer state written before epochs (version 1, 16 bytes) is read as
// epoch 0 with the last ProducerWindow sequences remembered.
func TestProducerStateVersion1IsRead(t *testing.T) {
	for _, last := range []uint64{1, ProducerWindow, 5000} {
		t.Run(fmt.Sprint(last), func(t *testing.T) {
			v := binary.BigEndian.AppendUint64(nil, last)
			v = binary.BigEndian.AppendUint64(v, 77)
			s, ok := decodeProducerState(v)
			require.True(t, ok)
			require.Equal(t, producerState{lastSeq: last, lastSeenUnixNano: 77, windowFirstSeq: windowFloor(last)}, s)
			again, ok := decodeProducerState(s.encode())
			require.True(t, ok)
			require.Equal(t, s, again)
		})
	}
	_, ok := decodeProducerState(make([]byte, 24))
	require.False(t, ok)
}
