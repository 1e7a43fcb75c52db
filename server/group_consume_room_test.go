package server

import (
	"testing"
	"time"
)

// The member's room: at most two batches in flight, a batch leaving the
// count when every offset of it is settled (acknowledged or nacked), when
// its ack wait ends, or when its offsets were redelivered in a later batch.
func TestGroupConsumerRoom(t *testing.T) {
	t0 := time.Unix(1000, 0)
	wait := 10 * time.Second
	type step struct {
		what     string
		send     []uint64 // a batch sent at now with these offsets
		settle   []uint64
		below    uint64 // settleBelow, when above 0
		now      time.Duration
		wantRoom bool
		wantNext time.Duration // the earliest batch end, from t0; 0: none
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"two batches fill the room", []step{
			{what: "empty", wantRoom: true},
			{what: "one batch", send: []uint64{0, 1}, wantRoom: true, wantNext: wait},
			{what: "two batches", send: []uint64{2, 3}, now: time.Second, wantRoom: false, wantNext: wait},
			{what: "one offset of the first acked", settle: []uint64{0}, now: time.Second, wantRoom: false, wantNext: wait},
			{what: "the first settled", settle: []uint64{1}, now: time.Second, wantRoom: true, wantNext: wait + time.Second},
		}},
		{"the ack wait ends a batch", []step{
			{what: "two batches", send: []uint64{0}, wantRoom: true, wantNext: wait},
			{send: []uint64{1}, now: time.Second, wantRoom: false, wantNext: wait},
			{what: "the first's ack wait ended", now: wait, wantRoom: true, wantNext: wait + time.Second},
			{what: "both ended", now: wait + time.Second, wantRoom: true},
		}},
		{"a cumulative ack settles both", []step{
			{send: []uint64{0, 1}, wantRoom: true, wantNext: wait},
			{send: []uint64{2, 3}, wantRoom: false, wantNext: wait},
			{what: "ack before 4", below: 4, wantRoom: true},
		}},
		{"a redelivery moves an offset to the new batch", []step{
			{send: []uint64{0, 1}, wantRoom: true, wantNext: wait},
			{what: "1 redelivered", send: []uint64{1}, wantRoom: false, wantNext: wait},
			{what: "0 acked: the first is empty", settle: []uint64{0}, wantRoom: true, wantNext: wait},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &groupConsumer{inFlight: map[uint64]*groupBatchInFlight{}, inFlightMax: groupConsumeBatchesInFlightDefault}
			for i, s := range tc.steps {
				now := t0.Add(s.now)
				if len(s.send) > 0 {
					c.track(s.send, now.Add(wait))
				}
				for _, off := range s.settle {
					c.settle(off)
				}
				if s.below > 0 {
					c.settleBelow(s.below)
				}
				room, next := c.room(now)
				var want time.Time
				if s.wantNext > 0 {
					want = t0.Add(s.wantNext)
				}
				if room != s.wantRoom || !next.Equal(want) {
					t.Fatalf("step %d (%s): room %v next %v, want %v %v", i, s.what, room, next, s.wantRoom, want)
				}
			}
		})
	}
}
