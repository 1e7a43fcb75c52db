package server

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
)

// A restart of every node keeps a group's committed position, its pending
// deliveries and its assignment: the member's new stream is redelivered
// exactly what it had not acknowledged, and nothing it had.
func TestGroupPositionsSurviveWholeClusterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a cluster")
	}
	const events = 100
	f := newConsumeFixture(t, events, &heraldpb.ConsumerGroupConfig{AckWaitMs: 600_000, MaxDeliveries: 5}, "")
	stream := f.open(t, 1, "m1", events)
	var delivered []uint64
	for len(delivered) < events {
		for _, ev := range recvBatch(t, stream).GetEvents() {
			delivered = append(delivered, ev.GetOffset())
		}
	}
	// Acknowledge [0, 60) and 70, 71; the rest stays pending.
	sendAck(t, stream, 1, 60, 70, 71)
	if r := recvAckResult(t, stream); r.GetUnknownOutcome() || r.GetRefused() || r.GetFloor() != 60 {
		t.Fatalf("ack result %v, want floor 60", r)
	}
	want := func() error {
		p := f.describe(t)
		if p.GetFloor() != 60 || p.GetPending() != events-60-2 || p.GetGeneration() != 1 || p.GetMember() != "m1" {
			return fmt.Errorf("floor %d pending %d generation %d member %q; want 60, %d, 1, m1",
				p.GetFloor(), p.GetPending(), p.GetGeneration(), p.GetMember(), events-60-2)
		}
		return nil
	}
	eventually(t, 20*time.Second, want)

	for i := range f.c.nodes {
		f.c.stop(i)
	}
	for i := range f.c.nodes {
		f.c.restart(i)
	}
	f.c.waitControllerLeader()
	eventually(t, 60*time.Second, want)

	// A new stream of the same member and generation: every pending
	// offset again, each delivered for the second time; none acknowledged.
	var again []uint64
	var s2 heraldpb.Herald_GroupConsumeClient
	eventually(t, 60*time.Second, func() error {
		var err error
		s2, err = f.start(t, f.c.rawClient(f.leader(t)), 1, "m1", events)
		return err
	})
	for len(again) < events-60-2 {
		b := recvBatch(t, s2)
		for i, ev := range b.GetEvents() {
			if b.GetDeliveryCounts()[i] != 2 {
				t.Fatalf("offset %d delivered %d times, want 2", ev.GetOffset(), b.GetDeliveryCounts()[i])
			}
			again = append(again, ev.GetOffset())
		}
	}
	slices.Sort(again)
	var expect []uint64
	for o := uint64(60); o < events; o++ {
		if o != 70 && o != 71 {
			expect = append(expect, o)
		}
	}
	if !slices.Equal(again, expect) {
		t.Fatalf("redelivered %v, want %v", again, expect)
	}
}
