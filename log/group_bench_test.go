package log

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkGroupApply measures the state machine's side of a consumer
// group batch: one delivery of 1,000 new offsets committed, then their
// acknowledgement committed, cumulative (one Before) or individual (the
// 1,000 offsets named). A reset between iterations, untimed, brings the
// cursor back to 0.
func BenchmarkGroupApply(b *testing.B) {
	const batchOffsets = 1000
	for _, bc := range []struct {
		name       string
		cumulative bool
	}{{"cumulative", true}, {"individual", false}} {
		b.Run(bc.name, func(b *testing.B) {
			db := openMemDB(b)
			p := partition(b, db, 1)
			var applied uint64 = 1
			commitBatch(b, p, applied, entries(batchOffsets, "a", "b"))
			commit := func(fn func(*Batch) (GroupResult, error)) {
				batch := p.NewBatch()
				defer batch.Abort()
				_, err := fn(batch)
				require.NoError(b, err)
				applied++
				require.NoError(b, batch.Commit(applied))
			}
			config := GroupConfig{AckWait: testGroupAckWait, MaxPending: 4096}
			commit(func(batch *Batch) (GroupResult, error) { return batch.GroupCreate("g", config, 0) })
			commit(func(batch *Batch) (GroupResult, error) { return batch.GroupAssign("g", 1, "m1") })
			offsets := make([]uint64, batchOffsets)
			for i := range offsets {
				offsets[i] = uint64(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now := int64(i + 1)
				commit(func(batch *Batch) (GroupResult, error) {
					return batch.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 1, Member: "m1",
						NewFrom: 0, NewCount: batchOffsets, NowUnixNano: now})
				})
				ack := GroupAckRequest{Group: "g", Generation: 1, Member: "m1"}
				if bc.cumulative {
					ack.Before = batchOffsets
				} else {
					ack.Offsets = offsets
				}
				commit(func(batch *Batch) (GroupResult, error) { return batch.GroupAck(ack) })
				b.StopTimer()
				commit(func(batch *Batch) (GroupResult, error) { return batch.GroupReset("g", 0) })
				b.StartTimer()
			}
		})
	}
}
