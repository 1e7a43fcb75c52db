package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// consumeFixture is a one-partition topic on a three-node cluster with a
// consumer group assigned to member "m1" under generation 1.
type consumeFixture struct {
	c       *testCluster
	hc      heraldpb.HeraldClient
	clients []heraldpb.HeraldClient // one per node
	topic   string
	group   string
	gid     uint64
}

// newConsumeFixture creates topic (one partition, three replicas; with
// dead-letter topic dlt when not empty), produces events, creates the
// group with cfg at earliest and assigns it to m1, generation 1.
func newConsumeFixture(t *testing.T, events int, cfg *heraldpb.ConsumerGroupConfig, dlt string) *consumeFixture {
	t.Helper()
	return newConsumeFixtureDLT(t, events, cfg, dlt, nil)
}

// newConsumeFixtureDLT is newConsumeFixture with the dead-letter topic's
// allowed schema versions given (the events have none: [2] refuses them).
func newConsumeFixtureDLT(t *testing.T, events int, cfg *heraldpb.ConsumerGroupConfig, dlt string, dltSchemaVersions []uint32) *consumeFixture {
	t.Helper()
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	if dlt != "" {
		schema := ""
		if len(dltSchemaVersions) > 0 {
			schema = "dead-letters"
		}
		if _, err := hc.CreateTopic(ctxTimeout(t, 20*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{
			Name: dlt, Partitions: 1, ReplicationFactor: 3, AutoTenants: true, DedupeWindowMs: 3_600_000,
			Schema: schema, SchemaVersions: dltSchemaVersions}}); err != nil {
			t.Fatalf("create %s: %v", dlt, err)
		}
	}
	resp, err := hc.CreateTopic(ctxTimeout(t, 20*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{
		Name: "orders", Partitions: 1, ReplicationFactor: 3, AutoTenants: true, DeadLetterTopic: dlt}})
	if err != nil {
		t.Fatalf("create orders: %v", err)
	}
	f := &consumeFixture{c: c, hc: hc, topic: "orders", group: "billing", gid: resp.GetTopic().GetPartitions()[0].GetGroupId()}
	for i := range c.nodes {
		f.clients = append(f.clients, c.rawClient(i))
	}
	for done := 0; done < events; {
		batch := make([]*heraldpb.Event, min(500, events-done))
		for i := range batch {
			batch[i] = &heraldpb.Event{TenantId: "acme", Payload: []byte(strconv.Itoa(done + i))}
		}
		produceRetry(t, hc, f.topic, batch...)
		done += len(batch)
	}
	if _, err := hc.CreateGroup(ctxTimeout(t, 20*time.Second), &heraldpb.CreateGroupRequest{Topic: f.topic, Group: f.group,
		Config: cfg, Start: &heraldpb.GroupStart{At: &heraldpb.GroupStart_Position{Position: heraldpb.StartPosition_EARLIEST}}}); err != nil {
		t.Fatalf("create group: %v", err)
	}
	f.assign(t, 1, "m1")
	return f
}

// leader returns the index of the node leading the partition.
func (f *consumeFixture) leader(t *testing.T) int {
	t.Helper()
	leader := -1
	eventually(t, 20*time.Second, func() error {
		for i, n := range f.c.nodes {
			if n == nil {
				continue
			}
			if r := n.replica(f.gid); r != nil && r.IsLeader() {
				leader = i
				return nil
			}
		}
		return errors.New("no leader yet")
	})
	return leader
}

// assign sets the group's assignment on the partition's leader, as the
// coordinator will.
func (f *consumeFixture) assign(t *testing.T, generation uint64, member string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		r := f.c.nodes[f.leader(t)].replica(f.gid)
		_, err := r.GroupAssign(f.group, generation, member)
		return err
	})
}

// describe returns the group's state on the partition, asked of a node
// that runs.
func (f *consumeFixture) describe(t *testing.T) *heraldpb.ConsumerGroupPartition {
	t.Helper()
	hc := f.hc
	for i, n := range f.c.nodes {
		if n != nil {
			hc = f.clients[i]
			break
		}
	}
	d, err := hc.DescribeGroup(ctxTimeout(t, 20*time.Second), &heraldpb.DescribeGroupRequest{Topic: f.topic, Group: f.group})
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	return d.GetGroup().GetPartitions()[0]
}

// open opens a GroupConsume stream on the partition's leader and checks
// the started message.
func (f *consumeFixture) open(t *testing.T, generation uint64, member string, maxEvents uint32) heraldpb.Herald_GroupConsumeClient {
	t.Helper()
	hc := f.c.rawClient(f.leader(t))
	stream, err := f.start(t, hc, generation, member, maxEvents)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return stream
}

func (f *consumeFixture) start(t *testing.T, hc heraldpb.HeraldClient, generation uint64, member string, maxEvents uint32) (heraldpb.Herald_GroupConsumeClient, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	stream, err := hc.GroupConsume(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Start{Start: &heraldpb.GroupConsumeStart{
		Topic: f.topic, Group: f.group, MemberId: member, Generation: generation, MaxBatchEvents: maxEvents}}}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if resp.GetStarted() == nil {
		t.Fatalf("first message %v, want started", resp)
	}
	return stream, nil
}

// recvBatch returns the next batch, failing on anything else.
func recvBatch(t *testing.T, stream heraldpb.Herald_GroupConsumeClient) *heraldpb.GroupConsumeBatch {
	t.Helper()
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if resp.GetBatch() == nil {
		t.Fatalf("got %v, want a batch", resp)
	}
	b := resp.GetBatch()
	if len(b.GetEvents()) == 0 || len(b.GetEvents()) != len(b.GetDeliveryCounts()) {
		t.Fatalf("batch of %d events with %d delivery counts", len(b.GetEvents()), len(b.GetDeliveryCounts()))
	}
	return b
}

// recvAckResult returns the next ack result, failing on anything else.
func recvAckResult(t *testing.T, stream heraldpb.Herald_GroupConsumeClient) *heraldpb.GroupAckResult {
	t.Helper()
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if resp.GetAckResult() == nil {
		t.Fatalf("got %v, want an ack result", resp)
	}
	return resp.GetAckResult()
}

func sendAck(t *testing.T, stream heraldpb.Herald_GroupConsumeClient, id, before uint64, offsets ...uint64) {
	t.Helper()
	if err := stream.Send(&heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Ack{Ack: &heraldpb.GroupConsumeAck{
		Id: id, Before: before, Offsets: offsets}}}); err != nil {
		t.Fatalf("send ack: %v", err)
	}
}

// A member consumes 1,000 events in batches and acknowledges them (each
// batch's first half one by one, the rest cumulatively): every event
// comes once, in offset order, delivered once; the group's floor ends at
// 1,000 with no lag.
func TestGroupConsumeAcksEverything(t *testing.T) {
	f := newConsumeFixture(t, 1000, &heraldpb.ConsumerGroupConfig{AckWaitMs: 30_000, MaxDeliveries: 3}, "")
	stream := f.open(t, 1, "m1", 100)
	next := uint64(0)
	id := uint64(0)
	for next < 1000 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv at %d: %v", next, err)
		}
		if resp.GetAckResult() != nil {
			if r := resp.GetAckResult(); r.GetUnknownOutcome() || r.GetRefused() {
				t.Fatalf("ack result %v", r)
			}
			continue
		}
		b := resp.GetBatch()
		var half []uint64
		for i, ev := range b.GetEvents() {
			if ev.GetOffset() != next || string(ev.GetPayload()) != strconv.FormatUint(next, 10) || b.GetDeliveryCounts()[i] != 1 {
				t.Fatalf("event %d: offset %d payload %q deliveries %d", next, ev.GetOffset(), ev.GetPayload(), b.GetDeliveryCounts()[i])
			}
			if i < len(b.GetEvents())/2 {
				half = append(half, ev.GetOffset())
			}
			next++
		}
		id++
		sendAck(t, stream, id, 0, half...)
		id++
		sendAck(t, stream, id, next)
	}
	eventually(t, 20*time.Second, func() error {
		p := f.describe(t)
		if p.GetFloor() != 1000 || p.GetLagEvents() != 0 || p.GetPending() != 0 {
			return fmt.Errorf("floor %d, lag %d, pending %d; want 1000, 0, 0", p.GetFloor(), p.GetLagEvents(), p.GetPending())
		}
		return nil
	})
	// Every ack came back, none with an unknown outcome.
	for range 100 {
		select {
		case <-stream.Context().Done():
			t.Fatal("stream ended")
		default:
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		r := resp.GetAckResult()
		if r == nil || r.GetUnknownOutcome() || r.GetRefused() {
			t.Fatalf("got %v, want an ack result", resp)
		}
		if r.GetId() == id {
			break
		}
	}
	if got := testCounter(t, f.c.nodes[f.leader(t)], "herald_group_deliveries_total", f.topic, f.group); got != 1000 {
		t.Fatalf("herald_group_deliveries_total %v, want 1000", got)
	}
}

// Events not acknowledged are redelivered after the ack wait with
// delivery count 2; a nack with a delay redelivers after the delay.
func TestGroupConsumeRedelivers(t *testing.T) {
	const ackWait = 500 * time.Millisecond
	f := newConsumeFixture(t, 4, &heraldpb.ConsumerGroupConfig{AckWaitMs: ackWait.Milliseconds()}, "")
	stream := f.open(t, 1, "m1", 100)
	first := recvBatch(t, stream)
	sent := time.Now()
	if len(first.GetEvents()) != 4 {
		t.Fatalf("first batch of %d events, want 4", len(first.GetEvents()))
	}
	// Ack 0 and 1; leave 2 and 3.
	sendAck(t, stream, 1, 2)
	if r := recvAckResult(t, stream); r.GetFloor() != 2 {
		t.Fatalf("ack result %v, want floor 2", r)
	}
	again := recvBatch(t, stream)
	if waited := time.Since(sent); waited < ackWait-50*time.Millisecond {
		t.Fatalf("redelivered after %v, before the ack wait %v", waited, ackWait)
	}
	if len(again.GetEvents()) != 2 || again.GetEvents()[0].GetOffset() != 2 || again.GetEvents()[1].GetOffset() != 3 ||
		again.GetDeliveryCounts()[0] != 2 || again.GetDeliveryCounts()[1] != 2 {
		t.Fatalf("redelivered %v with counts %v, want offsets 2, 3 with count 2", again.GetEvents(), again.GetDeliveryCounts())
	}
	// Nack 2 with a delay of 800 ms; ack 3.
	const delay = 800 * time.Millisecond
	if err := stream.Send(&heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Nack{Nack: &heraldpb.GroupConsumeNack{
		Id: 2, Offsets: []uint64{2}, DelayMs: uint32(delay.Milliseconds())}}}); err != nil {
		t.Fatal(err)
	}
	nacked := time.Now()
	r := recvAckResult(t, stream)
	if !r.GetNack() || len(r.GetResults()) != 1 || r.GetResults()[0].GetOutcome() != heraldpb.GroupOffsetOutcome_GROUP_OFFSET_APPLIED {
		t.Fatalf("nack result %v", r)
	}
	sendAck(t, stream, 3, 0, 3)
	if r := recvAckResult(t, stream); r.GetResults()[0].GetOutcome() != heraldpb.GroupOffsetOutcome_GROUP_OFFSET_APPLIED {
		t.Fatalf("ack result %v", r)
	}
	third := recvBatch(t, stream)
	if waited := time.Since(nacked); waited < delay-50*time.Millisecond {
		t.Fatalf("redelivered %v after the nack, before its delay %v", waited, delay)
	}
	if len(third.GetEvents()) != 1 || third.GetEvents()[0].GetOffset() != 2 || third.GetDeliveryCounts()[0] != 3 {
		t.Fatalf("after the nack: %v with counts %v, want offset 2 with count 3", third.GetEvents(), third.GetDeliveryCounts())
	}
	sendAck(t, stream, 4, 3)
	if r := recvAckResult(t, stream); r.GetFloor() != 4 {
		t.Fatalf("ack result %v, want floor 4", r)
	}
	if p := f.describe(t); p.GetFloor() != 4 || p.GetPending() != 0 {
		t.Fatalf("floor %d pending %d, want 4, 0", p.GetFloor(), p.GetPending())
	}
}

// An event never acknowledged is delivered max-deliveries times, then
// written to the dead-letter topic with its reason headers; the floor
// moves past it.
func TestGroupConsumeDeadLetters(t *testing.T) {
	f := newConsumeFixture(t, 3, &heraldpb.ConsumerGroupConfig{AckWaitMs: 300, MaxDeliveries: 2}, "orders-dlq")
	stream := f.open(t, 1, "m1", 100)
	deliveries := 0
	for deliveries < 2 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		b := resp.GetBatch()
		if b == nil {
			continue
		}
		var ack []uint64
		for i, ev := range b.GetEvents() {
			if ev.GetOffset() == 1 {
				deliveries++
				if b.GetDeliveryCounts()[i] != uint32(deliveries) {
					t.Fatalf("offset 1 delivery %d counted %d", deliveries, b.GetDeliveryCounts()[i])
				}
				continue
			}
			ack = append(ack, ev.GetOffset())
		}
		if len(ack) > 0 {
			sendAck(t, stream, 1, 0, ack...)
		}
	}
	eventually(t, 20*time.Second, func() error {
		if p := f.describe(t); p.GetFloor() != 3 {
			return fmt.Errorf("floor %d, want 3", p.GetFloor())
		}
		return nil
	})
	if deliveries != 2 {
		t.Fatalf("offset 1 delivered %d times, want max deliveries 2", deliveries)
	}
	p := f.describe(t)
	if p.GetDeadLettered() != 1 || p.GetPending() != 0 {
		t.Fatalf("dead lettered %d, pending %d; want 1, 0", p.GetDeadLettered(), p.GetPending())
	}
	resp, err := f.hc.Fetch(ctxTimeout(t, 10*time.Second), &heraldpb.FetchRequest{Topic: "orders-dlq", Partition: 0,
		Start: &heraldpb.FetchRequest_Offset{Offset: 0}, MaxEvents: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetEvents()) != 1 {
		t.Fatalf("dead-letter topic holds %d events, want 1", len(resp.GetEvents()))
	}
	ev := resp.GetEvents()[0]
	h := ev.GetHeaders()
	if string(ev.GetPayload()) != "1" || ev.GetTenantId() != "acme" || h[deadLetterHeaderReason] != "max_deliveries" ||
		h[deadLetterHeaderGroup] != f.group || h[deadLetterHeaderTopic] != f.topic || h[deadLetterHeaderPartition] != "0" ||
		h[deadLetterHeaderOffset] != "1" || h[deadLetterHeaderDeliveries] != "2" ||
		ev.GetEventId() != deadLetterEventID(f.topic, f.group, 0, 1) {
		t.Fatalf("dead-letter event %v", ev)
	}
	if got := testCounter(t, f.c.nodes[f.leader(t)], "herald_group_dead_letters_total", f.topic, f.group); got != 1 {
		t.Fatalf("herald_group_dead_letters_total %v, want 1", got)
	}
}

// A stream under a stale generation (or another member) is refused with
// GROUP_FENCED and changes nothing; a node that does not lead the
// partition answers NOT_LEADER naming the leader.
func TestGroupConsumeFencing(t *testing.T) {
	f := newConsumeFixture(t, 5, nil, "")
	f.assign(t, 2, "m2")
	before := f.describe(t)
	leader := f.leader(t)
	for _, tc := range []struct {
		generation uint64
		member     string
	}{{1, "m1"}, {2, "m1"}, {3, "m2"}} {
		_, err := f.start(t, f.c.rawClient(leader), tc.generation, tc.member, 10)
		requireGroupError(t, err, codes.FailedPrecondition, wire.ErrGroupFenced)
	}
	after := f.describe(t)
	if after.GetCursor() != before.GetCursor() || after.GetFloor() != before.GetFloor() || after.GetPending() != 0 || after.GetGeneration() != 2 {
		t.Fatalf("after fenced streams: %v; before: %v", after, before)
	}
	follower := (leader + 1) % 3
	_, err := f.start(t, f.c.rawClient(follower), 2, "m2", 10)
	var nl *wire.NotLeaderError
	if !errors.As(wire.FromStatus(err), &nl) || nl.LeaderAddr != f.c.cfgs[leader].GRPCAddr {
		t.Fatalf("stream on a follower: %v, want NOT_LEADER naming %s", err, f.c.cfgs[leader].GRPCAddr)
	}
	// A generation moved on mid-stream ends the stream at its next ack (or
	// before it, when the leader notices the new generation first: the
	// send then finds the stream ended, io.EOF, and Recv has its status).
	stream := f.open(t, 2, "m2", 10)
	recvBatch(t, stream)
	f.assign(t, 3, "m3")
	if err := stream.Send(&heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Ack{Ack: &heraldpb.GroupConsumeAck{
		Id: 1, Before: 1}}}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("send ack: %v", err)
	}
	for {
		_, err := stream.Recv()
		if err != nil {
			requireGroupError(t, err, codes.FailedPrecondition, wire.ErrGroupFenced)
			break
		}
	}
	if p := f.describe(t); p.GetFloor() != 0 {
		t.Fatalf("a fenced ack moved the floor to %d", p.GetFloor())
	}
}

// Acks for offsets never delivered, already acknowledged or beyond the
// log each get their per-offset outcome; a cumulative ack above the
// cursor is refused with nothing written.
func TestGroupConsumeAckOutcomes(t *testing.T) {
	f := newConsumeFixture(t, 20, nil, "")
	stream := f.open(t, 1, "m1", 5)
	b := recvBatch(t, stream)
	if len(b.GetEvents()) != 5 {
		t.Fatalf("batch of %d, want 5", len(b.GetEvents()))
	}
	// The member has two batches in flight at most: 0-4 and 5-9.
	recvBatch(t, stream)
	sendAck(t, stream, 1, 0, 0, 0, 15, 1_000_000)
	r := recvAckResult(t, stream)
	want := []heraldpb.GroupOffsetOutcome{heraldpb.GroupOffsetOutcome_GROUP_OFFSET_APPLIED, heraldpb.GroupOffsetOutcome_GROUP_OFFSET_ALREADY_DONE,
		heraldpb.GroupOffsetOutcome_GROUP_OFFSET_NOT_DELIVERED, heraldpb.GroupOffsetOutcome_GROUP_OFFSET_NOT_DELIVERED}
	if r.GetId() != 1 || len(r.GetResults()) != len(want) {
		t.Fatalf("ack result %v", r)
	}
	for i, w := range want {
		if got := r.GetResults()[i]; got.GetOutcome() != w {
			t.Fatalf("offset %d: %v, want %v", got.GetOffset(), got.GetOutcome(), w)
		}
	}
	sendAck(t, stream, 2, 100)
	if r := recvAckResult(t, stream); !r.GetRefused() || r.GetId() != 2 {
		t.Fatalf("ack before 100 (cursor 10): %v, want refused", r)
	}
	if p := f.describe(t); p.GetFloor() != 1 || p.GetCursor() != 10 || p.GetPending() != 9 {
		t.Fatalf("floor %d cursor %d pending %d, want 1, 10, 9", p.GetFloor(), p.GetCursor(), p.GetPending())
	}
}

// The partition's leader stops mid-stream: the member, through the SDK,
// reconnects to the new leader and gets the events it had not
// acknowledged again (at once, not after the ack wait), and none it had
// acknowledged.
func TestGroupConsumeFollowsANewLeader(t *testing.T) {
	f := newConsumeFixture(t, 50, &heraldpb.ConsumerGroupConfig{AckWaitMs: 60_000}, "")
	cl, err := client.New(ctxTimeout(t, 20*time.Second), client.Config{Servers: f.c.addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	opts := client.GroupConsumeOptions{Topic: f.topic, Group: f.group, MemberID: "m1", Generation: 1, MaxBatchEvents: 10}
	ctx := ctxTimeout(t, 60*time.Second)
	s, err := cl.GroupConsume(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]bool{}
	for len(acked) < 15 {
		b, _, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if b == nil {
			continue
		}
		var offs []uint64
		for _, ev := range b.GetEvents() {
			if len(acked)+len(offs) < 15 {
				offs = append(offs, ev.GetOffset())
			}
		}
		if _, err := s.Ack(0, offs...); err != nil {
			t.Fatal(err)
		}
		for _, o := range offs {
			acked[o] = true
		}
	}
	// Wait until the acks applied (their results), then stop the leader.
	eventually(t, 20*time.Second, func() error {
		if p := f.describe(t); p.GetFloor() < 15 {
			return fmt.Errorf("floor %d", p.GetFloor())
		}
		return nil
	})
	old := f.leader(t)
	f.c.stop(old)
	for {
		if _, _, err := s.Recv(); err != nil {
			break // NOT_LEADER or the connection's end
		}
	}
	s.Close()
	s, err = cl.GroupConsume(ctx, opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if s.Addr() == f.c.cfgs[old].GRPCAddr {
		t.Fatalf("reopened on the stopped leader")
	}
	seen := map[uint64]bool{}
	for len(seen) < 50-15 {
		b, _, err := s.Recv()
		if err != nil {
			t.Fatalf("after %d events: %v", len(seen), err)
		}
		if b == nil {
			continue
		}
		var offs []uint64
		for _, ev := range b.GetEvents() {
			o := ev.GetOffset()
			if acked[o] {
				t.Fatalf("offset %d acknowledged before the failover delivered again", o)
			}
			seen[o] = true
			offs = append(offs, o)
		}
		if _, err := s.Ack(0, offs...); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, func() error {
		if p := f.describe(t); p.GetFloor() != 50 {
			return fmt.Errorf("floor %d", p.GetFloor())
		}
		return nil
	})
}

// testCounter reads counter name (labels topic, group) of node n's
// GroupConsume metrics.
func testCounter(t *testing.T, n *Node, name, topic, group string) float64 {
	t.Helper()
	m := n.metrics.groupConsume
	vecs := map[string]*prometheus.CounterVec{
		"herald_group_deliveries_total":   m.deliveries,
		"herald_group_dead_letters_total": m.deadLetters,
	}
	return testutil.ToFloat64(vecs[name].WithLabelValues(topic, group))
}

// With no dead-letter topic declared, an event delivered max-deliveries
// times is dead-lettered all the same (logged) and the floor moves past
// it; an event whose TTL passed is never sent and the leader acknowledges
// it.
func TestGroupConsumeDeadLettersWithoutATopicAndSkipsExpired(t *testing.T) {
	f := newConsumeFixture(t, 2, &heraldpb.ConsumerGroupConfig{AckWaitMs: 200, MaxDeliveries: 1}, "")
	produceRetry(t, f.hc, f.topic, &heraldpb.Event{TenantId: "acme", Payload: []byte("2"), TtlMs: 1})
	produceRetry(t, f.hc, f.topic, &heraldpb.Event{TenantId: "acme", Payload: []byte("3")})
	time.Sleep(5 * time.Millisecond) // the TTL of offset 2 (1 ms) passes
	stream := f.open(t, 1, "m1", 100)
	b := recvBatch(t, stream)
	var got []uint64
	for _, ev := range b.GetEvents() {
		got = append(got, ev.GetOffset())
	}
	if fmt.Sprint(got) != "[0 1 3]" {
		t.Fatalf("delivered %v, want [0 1 3] (2 expired)", got)
	}
	sendAck(t, stream, 1, 0, 1, 3) // never 0
	eventually(t, 20*time.Second, func() error {
		if p := f.describe(t); p.GetFloor() != 4 || p.GetDeadLettered() != 1 || p.GetPending() != 0 {
			return fmt.Errorf("floor %d, dead lettered %d, pending %d; want 4, 1, 0", p.GetFloor(), p.GetDeadLettered(), p.GetPending())
		}
		return nil
	})
	if got := testutil.ToFloat64(f.c.nodes[f.leader(t)].metrics.groupConsume.skipped.WithLabelValues(f.topic, f.group, "expired")); got != 1 {
		t.Fatalf("herald_group_skipped_total{reason=expired} %v, want 1", got)
	}
}

// The partition's leadership moves mid-stream (a transfer, the old
// leader still up): the stream ends with NOT_LEADER naming the new
// leader, where a new stream gets the unacknowledged events again.
func TestGroupConsumeEndsWithNotLeader(t *testing.T) {
	f := newConsumeFixture(t, 10, &heraldpb.ConsumerGroupConfig{AckWaitMs: 60_000}, "")
	stream := f.open(t, 1, "m1", 100)
	b := recvBatch(t, stream)
	if len(b.GetEvents()) != 10 {
		t.Fatalf("batch of %d, want 10", len(b.GetEvents()))
	}
	sendAck(t, stream, 1, 4)
	if r := recvAckResult(t, stream); r.GetFloor() != 4 {
		t.Fatalf("ack result %v", r)
	}
	old := f.leader(t)
	if err := f.c.nodes[old].replica(f.gid).Raft().LeadershipTransfer().Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	_, err := stream.Recv()
	var nl *wire.NotLeaderError
	if !errors.As(wire.FromStatus(err), &nl) {
		t.Fatalf("stream after the transfer: %v, want NOT_LEADER", err)
	}
	leader := f.leader(t)
	if leader == old {
		t.Fatalf("leadership did not move")
	}
	if nl.LeaderAddr != "" && nl.LeaderAddr != f.c.cfgs[leader].GRPCAddr {
		t.Fatalf("NOT_LEADER names %s, the leader is %s", nl.LeaderAddr, f.c.cfgs[leader].GRPCAddr)
	}
	again := recvBatch(t, f.open(t, 1, "m1", 100))
	var got []uint64
	for i, ev := range again.GetEvents() {
		got = append(got, ev.GetOffset())
		if again.GetDeliveryCounts()[i] != 2 {
			t.Fatalf("offset %d delivery count %d, want 2", ev.GetOffset(), again.GetDeliveryCounts()[i])
		}
	}
	if fmt.Sprint(got) != "[4 5 6 7 8 9]" {
		t.Fatalf("redelivered %v, want [4 5 6 7 8 9]", got)
	}
}

// A dead-letter topic that refuses the event (its contract allows only
// schema version 2) leaves the offset pending, counted as a failure, and the
// write is tried again: once the contract accepts it, the event is in the
// dead-letter topic once and the floor moves past it.
func TestGroupConsumeDeadLetterWriteRetried(t *testing.T) {
	f := newConsumeFixtureDLT(t, 1, &heraldpb.ConsumerGroupConfig{AckWaitMs: 200, MaxDeliveries: 1}, "orders-dlq", []uint32{2})
	stream := f.open(t, 1, "m1", 100)
	recvBatch(t, stream) // never acknowledged
	leader := f.c.nodes[f.leader(t)]
	eventually(t, 20*time.Second, func() error {
		if got := testutil.ToFloat64(leader.metrics.groupConsume.deadLetterFailures.WithLabelValues(f.topic, f.group)); got < 1 {
			return fmt.Errorf("%v dead-letter failures", got)
		}
		return nil
	})
	if p := f.describe(t); p.GetFloor() != 0 || p.GetPending() != 1 || p.GetDeadLettered() != 0 {
		t.Fatalf("after a refused dead-letter write: floor %d, pending %d, dead lettered %d; want 0, 1, 0", p.GetFloor(), p.GetPending(), p.GetDeadLettered())
	}
	// Retried while the controller has no leader (an election on a loaded
	// machine); the alter is idempotent.
	eventually(t, 20*time.Second, func() error {
		_, err := f.hc.AlterTopic(ctxTimeout(t, 10*time.Second), &heraldpb.AlterTopicRequest{
			Config: &heraldpb.TopicConfig{Name: "orders-dlq"}, Fields: []string{"schema_versions"}})
		if err != nil {
			return fmt.Errorf("alter the dead-letter topic: %w", err)
		}
		return nil
	})
	eventually(t, 20*time.Second, func() error {
		if p := f.describe(t); p.GetFloor() != 1 || p.GetDeadLettered() != 1 {
			return fmt.Errorf("floor %d, dead lettered %d", p.GetFloor(), p.GetDeadLettered())
		}
		return nil
	})
	resp, err := f.hc.Fetch(ctxTimeout(t, 10*time.Second), &heraldpb.FetchRequest{Topic: "orders-dlq", Partition: 0,
		Start: &heraldpb.FetchRequest_Offset{Offset: 0}, MaxEvents: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetEvents()) != 1 || resp.GetEvents()[0].GetHeaders()[deadLetterHeaderOffset] != "0" {
		t.Fatalf("dead-letter topic holds %v, want the event at offset 0 once", resp.GetEvents())
	}
}
