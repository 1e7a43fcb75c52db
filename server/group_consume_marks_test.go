package server

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// markOf is the processed mark of ev as the SDK writes it.
func markOf(ev *heraldpb.Event) *heraldpb.ProcessedMark {
	key, _ := wire.IdempotencyKey(ev.GetTenantId(), ev.GetCausationId(), ev.GetEventId())
	return &heraldpb.ProcessedMark{Key: key, Sequence: ev.GetSequence(), Offset: ev.GetOffset()}
}

func sendAckMarks(t *testing.T, stream heraldpb.Herald_GroupConsumeClient, id, before uint64, offsets []uint64, marks ...*heraldpb.ProcessedMark) *heraldpb.GroupAckResult {
	t.Helper()
	if err := stream.Send(&heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Ack{Ack: &heraldpb.GroupConsumeAck{
		Id: id, Before: before, Offsets: offsets, Marks: marks}}}); err != nil {
		t.Fatalf("send ack: %v", err)
	}
	return recvAckResult(t, stream)
}

// Processed marks go with their acks over the wire; a bad one refuses its
// ack and changes nothing; the marks survive a reset to earliest and a
// restart of every node, and the leader then sends each event with its
// key's mark.
func TestGroupConsumeMarksSurviveResetAndWholeClusterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a cluster")
	}
	const events = 20
	f := newConsumeFixture(t, events, &heraldpb.ConsumerGroupConfig{AckWaitMs: 600_000, MaxDeliveries: 5}, "")
	stream := f.open(t, 1, "m1", events)
	var got []*heraldpb.Event
	for len(got) < events {
		b := recvBatch(t, stream)
		if len(b.GetProcessedSequences()) != 0 {
			t.Fatalf("first delivery with processed sequences %v, want none", b.GetProcessedSequences())
		}
		got = append(got, b.GetEvents()...)
	}

	// Bad marks: each refuses its ack, nothing written.
	for i, bad := range []struct {
		offsets []uint64
		mark    *heraldpb.ProcessedMark
	}{
		{[]uint64{1}, markOf(got[2])},                                  // an offset the ack does not acknowledge
		{[]uint64{1}, &heraldpb.ProcessedMark{Sequence: 1, Offset: 1}}, // an empty key
		{[]uint64{1}, &heraldpb.ProcessedMark{Key: "k", Offset: 1}},    // sequence 0
	} {
		r := sendAckMarks(t, stream, uint64(100+i), 0, bad.offsets, bad.mark)
		if !r.GetRefused() || r.GetError() == "" || len(r.GetResults()) != 0 {
			t.Fatalf("bad mark %d: result %v, want refused with an error", i, r)
		}
	}
	if p := f.describe(t); p.GetFloor() != 0 || p.GetPending() != events {
		t.Fatalf("after refused acks: floor %d pending %d, want 0, %d", p.GetFloor(), p.GetPending(), events)
	}

	// [0, 10) processed: one cumulative ack with their marks; the rest
	// acknowledged without.
	var marks []*heraldpb.ProcessedMark
	for _, ev := range got[:10] {
		marks = append(marks, markOf(ev))
	}
	if r := sendAckMarks(t, stream, 1, 10, nil, marks...); r.GetRefused() || r.GetUnknownOutcome() || r.GetFloor() != 10 {
		t.Fatalf("ack with marks: %v", r)
	}
	if r := sendAckMarks(t, stream, 2, events, nil); r.GetRefused() || r.GetUnknownOutcome() || r.GetFloor() != events {
		t.Fatalf("ack: %v", r)
	}
	leader := f.c.nodes[f.leader(t)]
	if n := testutil.ToFloat64(leader.metrics.groupMarks.written.WithLabelValues(f.topic, f.group)); n != 10 {
		t.Fatalf("herald_group_marks_written_total %v, want 10", n)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}

	if _, err := f.hc.ResetGroup(ctxTimeout(t, 20*time.Second), &heraldpb.ResetGroupRequest{Topic: f.topic, Group: f.group}); err != nil {
		t.Fatalf("reset: %v", err)
	}
	for i := range f.c.nodes {
		f.c.stop(i)
	}
	for i := range f.c.nodes {
		f.c.restart(i)
	}
	f.c.waitControllerLeader()

	var s2 heraldpb.Herald_GroupConsumeClient
	eventually(t, 60*time.Second, func() error {
		var err error
		s2, err = f.start(t, f.c.rawClient(f.leader(t)), 1, "m1", events)
		return err
	})
	seen := 0
	for seen < events {
		b := recvBatch(t, s2)
		if len(b.GetProcessedSequences()) != len(b.GetEvents()) {
			t.Fatalf("batch of %d events with %d processed sequences", len(b.GetEvents()), len(b.GetProcessedSequences()))
		}
		for i, ev := range b.GetEvents() {
			want := uint64(0)
			if ev.GetOffset() < 10 {
				want = ev.GetSequence()
			}
			if got := b.GetProcessedSequences()[i]; got != want {
				t.Fatalf("offset %d: processed sequence %d, want %d", ev.GetOffset(), got, want)
			}
			seen++
		}
	}
	// Counted since the restart, on whichever node led meanwhile.
	var processed float64
	for _, n := range f.c.nodes {
		processed += testutil.ToFloat64(n.metrics.groupMarks.processed.WithLabelValues(f.topic, f.group))
	}
	if processed != 10 {
		t.Fatalf("herald_group_delivered_processed_total %v, want 10", processed)
	}
}
