package log

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// expire runs ExpireDedupe in its own batch and returns its count.
func expire(t testing.TB, p *Partition, now int64, idle time.Duration) int {
	t.Helper()
	var n int
	inBatch(t, p, func(b *Batch) {
		var err error
		n, err = b.ExpireDedupe(now, idle)
		require.NoError(t, err)
	})
	return n
}

// isDuplicate reports whether req is answered as a duplicate, appending it
// if not.
func isDuplicate(t testing.TB, p *Partition, req AppendRequest) bool {
	t.Helper()
	result, err := appendReq(t, p, req)
	require.NoError(t, err)
	return result.Duplicate
}

func TestExpireDedupeForgetsEventIDsAtTheirUntil(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	for i, until := range []int64{300, 100, 200, 50} {
		_, err := appendReq(t, p, eventReq(fmt.Sprintf("e%d", i), -100, until))
		require.NoError(t, err)
	}
	require.Equal(t, 0, expire(t, p, 49, time.Hour))
	require.Equal(t, 1, expire(t, p, 50, time.Hour), "until 50 is at now")
	require.Equal(t, 2, expire(t, p, 200, time.Hour), "untils 100 and 200")
	require.Equal(t, 0, expire(t, p, 200, time.Hour))
	require.Len(t, keysOfKind(t, db, 1, kindEventID), 1)
	require.Len(t, keysOfKind(t, db, 1, kindEventExpiry), 1)

	// e0 (until 300) is still remembered; e1 is forgotten, so the same id
	// appends again even below its old until.
	require.True(t, isDuplicate(t, p, eventReq("e0", 250, 400)))
	require.False(t, isDuplicate(t, p, eventReq("e1", 50, 400)))
}

func TestExpireDedupeForgetsIdleProducers(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	// Producer "old" last seen at 1000, "new" at 5000; timestamps are
	// monotonic, so append old first.
	for seq := uint64(1); seq <= 3; seq++ {
		_, err := appendReq(t, p, AppendRequest{Tenant: "acme", TimestampUnixNano: 1000, Body: []byte("o"), ProducerID: "old", ProducerSeq: seq})
		require.NoError(t, err)
	}
	_, err := appendReq(t, p, AppendRequest{Tenant: "acme", TimestampUnixNano: 5000, Body: []byte("n"), ProducerID: "new", ProducerSeq: 1})
	require.NoError(t, err)
	require.Len(t, keysOfKind(t, db, 1, kindProducerWindow), 4)

	// Idle 4000 at 5000: the cutoff is 1000 and "old" is not before it.
	require.Equal(t, 0, expire(t, p, 5000, 4000))
	require.Equal(t, 1, expire(t, p, 5001, 4000))
	require.Len(t, keysOfKind(t, db, 1, kindProducer), 1)
	require.Len(t, keysOfKind(t, db, 1, kindProducerWindow), 1, "the forgotten producer's window is gone")

	// "old" is unknown again: its retry of 3 is refused (neither appended
	// nor a duplicate), it starts again at 1; "new" still dedupes.
	_, err = appendReq(t, p, AppendRequest{Tenant: "acme", TimestampUnixNano: 6000, Body: []byte("o"), ProducerID: "old", ProducerSeq: 3})
	require.ErrorIs(t, err, ErrUnknownProducer)
	result, err := appendReq(t, p, AppendRequest{Tenant: "acme", TimestampUnixNano: 6000, Body: []byte("o"), ProducerID: "old", ProducerSeq: 1})
	require.NoError(t, err)
	require.Equal(t, AppendResult{Offset: 4, Sequence: 5}, result)
	require.True(t, isDuplicate(t, p, AppendRequest{Tenant: "acme", Body: []byte("n"), ProducerID: "new", ProducerSeq: 1}))

	// A negative idle counts as 0: everything seen before now goes.
	require.Equal(t, 2, expire(t, p, 6001, -time.Hour))
	require.Empty(t, keysOfKind(t, db, 1, kindProducer))
	require.Empty(t, keysOfKind(t, db, 1, kindProducerWindow))
}

func TestExpireDedupeIsBounded(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	const events = expireEntriesMax + 5
	inBatch(t, p, func(b *Batch) {
		for i := range events {
			_, err := b.AppendRecord(eventReq(fmt.Sprintf("e%05d", i), 0, int64(1+i)))
			require.NoError(t, err)
		}
		_, err := b.AppendRecord(AppendRequest{Tenant: "acme", Body: []byte("p"), ProducerID: "prod", ProducerSeq: 1})
		require.NoError(t, err)
	})
	require.Equal(t, expireEntriesMax, expire(t, p, 1<<40, 0))
	// The oldest untils went first.
	require.False(t, isDuplicate(t, p, eventReq("e00000", 0, 1<<41)))
	require.True(t, isDuplicate(t, p, eventReq(fmt.Sprintf("e%05d", expireEntriesMax), 0, 1<<41)))
	require.Equal(t, 5+1, expire(t, p, 1<<40, 0), "the other 5 events, then the producer; e00000 (until 2^41) stays")
	require.Len(t, keysOfKind(t, db, 1, kindEventID), 1)
}

func TestExpireDedupeSeesTheBatchsOwnWrites(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	_, err := appendReq(t, p, eventReq("kept", 0, 5))
	require.NoError(t, err)

	inBatch(t, p, func(b *Batch) {
		// Appended in this batch, expired at once.
		_, err := b.AppendRecord(eventReq("fresh", 0, 7))
		require.NoError(t, err)
		// Re-remembered in this batch with a later until: its committed
		// expiry key (5) must not make ExpireDedupe drop the new entry.
		result, err := b.AppendRecord(eventReq("kept", 6, 100))
		require.NoError(t, err)
		require.False(t, result.Duplicate)
		n, err := b.ExpireDedupe(10, time.Hour)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		// Forgotten within the batch: appends again.
		result, err = b.AppendRecord(eventReq("fresh", 10, 20))
		require.NoError(t, err)
		require.False(t, result.Duplicate)
	})
	require.True(t, isDuplicate(t, p, eventReq("kept", 50, 0+200)))
	require.Len(t, keysOfKind(t, db, 1, kindEventExpiry), 2)
}
