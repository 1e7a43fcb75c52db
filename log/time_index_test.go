package log

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// firstAtOrAfter is OffsetForTime by brute force over the retained records.
func firstAtOrAfter(records []Record, high uint64, ts int64) uint64 {
	for _, r := range records {
		if r.TimestampUnixNano >= ts {
			return r.Offset
		}
	}
	return high
}

func TestOffsetForTime(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 3))
	db := openMemDB(t)
	p := partition(t, db, 1)

	offset, err := p.OffsetForTime(0)
	require.NoError(t, err)
	require.Zero(t, offset, "empty partition: the high watermark")

	// Batches whose input timestamps mostly advance by 0..300 ms but
	// sometimes jump back (a new leader with a slower clock); the stored
	// ones never decrease. Model the index points alongside.
	var all []Record
	var wantPoints []uint64
	lastPoint := int64(math.MinInt64)
	clock := int64(-5e9) // negative timestamps too: keys flip the sign bit
	for batch := range 60 {
		es := make([]entry, 1+rng.IntN(30))
		for i := range es {
			if i == 0 && rng.IntN(6) == 0 {
				clock -= rng.Int64N(1e9)
			}
			clock += rng.Int64N(600e6) / int64(len(es))
			es[i] = entry{tenant: "a", ts: clock, body: []byte("x")}
		}
		records := commitBatch(t, p, uint64(batch+1), es)
		for _, r := range records {
			if r.Offset == 0 || r.TimestampUnixNano-lastPoint >= timeIndexIntervalNanos {
				wantPoints = append(wantPoints, r.Offset)
				lastPoint = r.TimestampUnixNano
				break
			}
		}
		all = append(all, records...)
	}
	for i := 1; i < len(all); i++ {
		require.GreaterOrEqual(t, all[i].TimestampUnixNano, all[i-1].TimestampUnixNano, "stored timestamps are monotonic")
	}
	require.Equal(t, wantPoints, timeIndexOffsets(t, db, 1))
	require.Greater(t, len(wantPoints), 5, "the test exercises several points")

	check := func(t *testing.T, retained []Record) {
		t.Helper()
		high := p.HighWatermark()
		targets := []int64{math.MinInt64, math.MaxInt64, all[0].TimestampUnixNano - 1}
		for _, r := range all {
			targets = append(targets, r.TimestampUnixNano-1, r.TimestampUnixNano, r.TimestampUnixNano+1)
		}
		for _, ts := range targets {
			got, err := p.OffsetForTime(ts)
			require.NoError(t, err)
			require.Equal(t, firstAtOrAfter(retained, high, ts), got, "ts %d", ts)
		}
	}
	t.Run("all retained", func(t *testing.T) { check(t, all) })

	low := uint64(rng.IntN(len(all)))
	truncate(t, p, low)
	t.Run("after truncation", func(t *testing.T) {
		check(t, all[low:])
		var kept []uint64
		for _, offset := range wantPoints {
			if offset >= low {
				kept = append(kept, offset)
			}
		}
		require.Equal(t, kept, timeIndexOffsets(t, db, 1))
		got, err := p.OffsetForTime(math.MinInt64)
		require.NoError(t, err)
		require.Equal(t, low, got, "before everything retained: the low watermark")
	})
}
