package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// A follower just restarted, behind offsets the leader acknowledged while
// it was down, must never call them out of range: asked directly (as a
// forwarded request, so it answers for itself) it answers NOT_LEADER (a
// client tries elsewhere), and asked as a client would, it passes the read
// to a replica that has the events. Before, it answered
// "offset 25 out of range [0, 20)", which consumers take as final.
func TestFollowerBehindNeverAnswersOutOfRangeForAcknowledgedOffsets(t *testing.T) {
	f := newRejoinFixture(t) // 20 events of acme in "ledger"
	c := f.c
	c.stop(rejoinVictim)
	f.produce(200)
	c.restart(rejoinVictim)
	hc := c.rawClient(rejoinVictim)
	last := uint64(f.produced - 1)
	// While it catches up, for itself: ask as soon as its replica is open
	// and keep asking until it has the offset.
	polls := 0
	eventually(t, 20*time.Second, func() error {
		r := c.nodes[rejoinVictim].replica(f.gid)
		if r == nil {
			return fmt.Errorf("replica not open yet")
		}
		polls++
		_, err := hc.Fetch(forwardContext(ctxTimeout(t, 5*time.Second)), &heraldpb.FetchRequest{Topic: "ledger",
			Start: &heraldpb.FetchRequest_Offset{Offset: last}, MaxEvents: 1})
		if errors.Is(wire.FromStatus(err), wire.ErrOffsetOutOfRange) {
			t.Fatalf("restarted follower refused acknowledged offset %d (poll %d): %v", last, polls, err)
		}
		if hw := r.Log().HighWatermark(); hw <= last {
			return fmt.Errorf("follower at high watermark %d", hw)
		}
		return nil
	})
	t.Logf("%d polls while the follower caught up", polls)
	// As a client: the events, from whichever replica has them.
	eventually(t, 20*time.Second, func() error {
		resp, err := hc.Fetch(ctxTimeout(t, 5*time.Second), &heraldpb.FetchRequest{Topic: "ledger",
			Start: &heraldpb.FetchRequest_Offset{Offset: last}, MaxEvents: 1, MaxWaitMs: 100})
		if err := wire.FromStatus(err); errors.Is(err, wire.ErrOffsetOutOfRange) {
			t.Fatalf("acknowledged offset %d reported out of range: %v", last, err)
		} else if err != nil {
			return err
		}
		if len(resp.Events) != 1 || resp.Events[0].Offset != last {
			return fmt.Errorf("got %d events", len(resp.Events))
		}
		return nil
	})
}
