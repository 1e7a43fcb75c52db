package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/client/wsclient"
)

// wsGroupTestKey names an event of the test topic.
type wsGroupTestKey struct {
	partition uint32
	offset    uint64
}

// wsGroupMember consumes a group subscription in a goroutine of its own,
// acknowledging what ack says, and records what it received.
type wsGroupMember struct {
	name string
	sub  *wsclient.GroupSubscription
	done chan struct{}
	err  error // why it stopped; set before done is closed

	mu struct {
		sync.Mutex
		batches  int
		acked    int              // batches acknowledged
		received []wsGroupTestKey // in arrival order
		tagged   []bool           // received while late was set
	}
}

// wsGroupAckState is what the group acknowledged, as the members' ack
// results said.
type wsGroupAckState struct {
	mu    sync.Mutex
	acked map[wsGroupTestKey]int // acked outcomes per event
	// late is set once the test closed member a: receipts are tagged.
	late atomic.Bool
}

func (s *wsGroupAckState) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acked)
}

// Ways a member settles a batch.
const (
	wsGroupAckOffsets = iota // an ack frame naming each offset
	wsGroupAckBefore         // a cumulative ack below the batch's end
	wsGroupHold              // nothing: the member keeps the deliveries
)

// run takes batches until the subscription ends, settling each as how
// says (given how many batches came before it).
func (m *wsGroupMember) run(ctx context.Context, st *wsGroupAckState, how func(batch int) int) {
	defer close(m.done)
	for {
		b, err := m.sub.Next(ctx)
		if err != nil {
			m.err = err
			return
		}
		late := st.late.Load()
		m.mu.Lock()
		n := m.mu.batches
		m.mu.batches++
		for _, e := range b.Events {
			if e.Partition != b.Partition || e.DeliveryCount < 1 {
				m.mu.Unlock()
				m.err = fmt.Errorf("%s: event %+v in a batch of partition %d", m.name, e, b.Partition)
				return
			}
			m.mu.received = append(m.mu.received, wsGroupTestKey{b.Partition, e.Offset})
			m.mu.tagged = append(m.mu.tagged, late)
		}
		m.mu.Unlock()
		var results []wsclient.OffsetOutcome
		switch how(n) {
		case wsGroupHold:
			continue
		case wsGroupAckBefore:
			results, err = m.sub.AckBefore(ctx, b.Partition, b.Events[len(b.Events)-1].Offset+1)
		default:
			offsets := make([]uint64, len(b.Events))
			for i, e := range b.Events {
				offsets[i] = e.Offset
			}
			results, err = m.sub.Ack(ctx, b.Partition, offsets...)
		}
		if err == nil {
			results, err = ackUnknownAgain(ctx, m.sub, b.Partition, results)
		}
		if err != nil {
			m.err = fmt.Errorf("%s: ack on partition %d: %w", m.name, b.Partition, err)
			return
		}
		st.mu.Lock()
		for _, r := range results {
			if r.Outcome == wire.WSAckAcked {
				st.acked[wsGroupTestKey{b.Partition, r.Offset}]++
			}
		}
		st.mu.Unlock()
		m.mu.Lock()
		m.mu.acked++
		m.mu.Unlock()
	}
}

// ackUnknownAgain acknowledges again, a few times, the offsets of res
// whose outcome was unknown (safe: the subscription holds them, and an
// ack applied twice is acked), and returns res with their new outcomes.
func ackUnknownAgain(ctx context.Context, sub *wsclient.GroupSubscription, partition uint32, res []wsclient.OffsetOutcome) ([]wsclient.OffsetOutcome, error) {
	for range 5 {
		var unknown []uint64
		kept := make([]wsclient.OffsetOutcome, 0, len(res))
		for _, r := range res {
			if r.Outcome == wire.WSAckUnknown {
				unknown = append(unknown, r.Offset)
			} else {
				kept = append(kept, r)
			}
		}
		if len(unknown) == 0 {
			return res, nil
		}
		again, err := sub.Ack(ctx, partition, unknown...)
		if err != nil {
			return nil, err
		}
		res = append(kept, again...)
	}
	return res, nil
}

// counts returns the batches received and acknowledged.
func (m *wsGroupMember) counts() (received, acked int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.batches, m.mu.acked
}

// Two WebSocket members of a group, on different nodes of a three-node
// cluster, split the partitions and acknowledge two events in three; one
// socket leaves; the other then owns every partition and receives exactly
// the events not acknowledged (the rest of the group's pending), acks them
// cumulatively, and the group ends with nothing pending. Then bad input
// on a raw socket gets its documented error frame and changes nothing.
func TestWSGroupMembersShareAndHandOver(t *testing.T) {
	// Registered first, so it runs last: once the cluster has closed, no
	// connection, member, stream or ack goroutine is left.
	t.Cleanup(func() {
		goleak.VerifyNone(t, goleak.IgnoreCurrent(),
			goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).releaseLoop"),
			goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"))
	})
	c := startCluster(t, 3)
	t.Cleanup(c.close)
	hc := c.rawClient(0)
	const partitions = 4
	createAutoTopic(t, hc, "orders", partitions, 3)
	if _, err := hc.CreateGroup(ctxTimeout(t, 20*time.Second), &heraldpb.CreateGroupRequest{Topic: "orders", Group: "billing",
		Config: &heraldpb.ConsumerGroupConfig{AckWaitMs: 120_000}}); err != nil {
		t.Fatalf("create group: %v", err)
	}
	var urls []string
	for i := range c.cfgs {
		urls = append(urls, wsURL(c.cfgs[i].HTTPAddr))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wc, err := wsclient.Dial(ctx, wsclient.Config{URLs: urls})
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	subscribe := func(member string) *wsGroupMember {
		t.Helper()
		sub, err := wc.GroupSubscribe(ctx, wsclient.GroupSubscribeOptions{Topic: "orders", Group: "billing", MemberID: member,
			MaxBatchEvents: 10, SessionTimeout: 3 * time.Second})
		if err != nil {
			t.Fatalf("group subscribe as %s: %v", member, err)
		}
		if sub.MemberID() != member {
			t.Fatalf("member id %q, want %q", sub.MemberID(), member)
		}
		return &wsGroupMember{name: member, sub: sub, done: make(chan struct{})}
	}
	a, b := subscribe("a"), subscribe("b")
	if a.sub.URL() == b.sub.URL() {
		t.Fatalf("both members on %s: want two nodes", a.sub.URL())
	}
	defer a.sub.Close()
	defer b.sub.Close()
	owners := func() map[uint32]string {
		info, err := hc.DescribeGroup(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeGroupRequest{Topic: "orders", Group: "billing"})
		if err != nil {
			return nil
		}
		out := map[uint32]string{}
		for _, p := range info.GetGroup().GetPartitions() {
			out[p.GetPartition()] = p.GetMember()
		}
		return out
	}
	waitOwners := func(want func(map[uint32]string) bool, what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			o := owners()
			if want(o) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: owners %v", what, o)
			}
			time.Sleep(100 * time.Millisecond) // the coordinator's rebalance has no notification to await
		}
	}
	// floors reads the group's committed position and high watermark per
	// partition (the replicated truth: an ack of unknown outcome is
	// settled here, not in what its answer said).
	floors := func() (floor, high map[uint32]uint64) {
		info, err := hc.DescribeGroup(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeGroupRequest{Topic: "orders", Group: "billing"})
		if err != nil {
			return nil, nil
		}
		floor, high = map[uint32]uint64{}, map[uint32]uint64{}
		for _, p := range info.GetGroup().GetPartitions() {
			floor[p.GetPartition()], high[p.GetPartition()] = p.GetFloor(), p.GetHighWatermark()
		}
		return floor, high
	}
	done := func(parts func(uint32) bool) bool {
		floor, high := floors()
		if floor == nil {
			return false
		}
		for p := range uint32(partitions) {
			if parts(p) && floor[p] != high[p] {
				return false
			}
		}
		return true
	}
	waitOwners(func(o map[uint32]string) bool {
		count := map[string]int{}
		for _, m := range o {
			count[m]++
		}
		return len(o) == partitions && count["a"] == partitions/2 && count["b"] == partitions/2
	}, "a and b share the partitions")

	// Events on every partition: keyed by tenant, ten tenants.
	perPartition := produceSpread(t, hc, "orders", "e", 240)
	all := map[wsGroupTestKey]bool{}
	for p, n := range perPartition {
		for o := range n {
			all[wsGroupTestKey{p, o}] = true
		}
	}
	bParts := map[uint32]bool{}
	for p, m := range owners() {
		if m == "b" {
			bParts[p] = true
		}
	}
	st := &wsGroupAckState{acked: map[wsGroupTestKey]int{}}
	// a acknowledges its first batch, then holds what it gets (as a
	// client that crashes with deliveries in hand); b acknowledges every
	// batch, offset by offset, then cumulatively once a has left.
	go a.run(ctx, st, func(n int) int {
		if n == 0 {
			return wsGroupAckOffsets
		}
		return wsGroupHold
	})
	go b.run(ctx, st, func(int) int {
		if st.late.Load() {
			return wsGroupAckBefore
		}
		return wsGroupAckOffsets
	})

	waitFor := func(what string, cond func() bool, members ...*wsGroupMember) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			for _, m := range members {
				select {
				case <-m.done:
					t.Fatalf("%s: member %s stopped: %v", what, m.name, m.err)
				default:
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: acknowledged %d", what, st.count())
			}
			time.Sleep(200 * time.Millisecond) // acks come from the members' goroutines; the group's record is polled
		}
	}
	// Everything b was given is acknowledged (b acks every batch): its
	// partitions are done in the group's record. What a holds, and what
	// its partitions did not send it meanwhile, is the unacknowledged
	// rest: on a's partitions, from the floor (past a's first batch) to
	// the end.
	waitFor("a acknowledges its first batch and holds the next; b's partitions are done", func() bool {
		received, acked := a.counts()
		return acked == 1 && received >= 2 && done(func(p uint32) bool { return bParts[p] })
	}, a, b)
	floor, high := floors()
	if floor == nil {
		t.Fatal("describe the group failed")
	}
	var want []wsGroupTestKey
	for p := range uint32(partitions) {
		for o := floor[p]; o < high[p]; o++ {
			want = append(want, wsGroupTestKey{p, o})
		}
	}
	if len(want) == 0 {
		t.Fatal("nothing left unacknowledged: a holds nothing")
	}
	received, _ := a.counts()
	t.Logf("a received %d batches and acknowledged 1; %d of %d events unacknowledged when it leaves", received, len(want), len(all))

	// a leaves: b takes every partition and gets the unacknowledged rest.
	st.late.Store(true)
	if err := a.sub.Close(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	if !errors.Is(a.err, wsclient.ErrClosed) {
		t.Fatalf("a ended with %v, want ErrClosed", a.err)
	}
	waitFor("every event acknowledged", func() bool { return done(func(uint32) bool { return true }) }, b)
	waitOwners(func(o map[uint32]string) bool {
		for p := range uint32(partitions) {
			if o[p] != "b" {
				return false
			}
		}
		return true
	}, "b owns every partition")
	// What b received after a left, each offset once: a leader move
	// (elections happen on a loaded machine) may deliver an offset not yet
	// acknowledged twice, which at-least-once allows; what must never
	// come is an offset acknowledged before a left.
	b.mu.Lock()
	var late []wsGroupTestKey
	seen, twice := map[wsGroupTestKey]bool{}, 0
	for i, k := range b.mu.received {
		if !b.mu.tagged[i] {
			continue
		}
		if seen[k] {
			twice++
			continue
		}
		seen[k] = true
		late = append(late, k)
	}
	b.mu.Unlock()
	if twice > 0 {
		t.Logf("b received %d of the unacknowledged events more than once (a stream reopened)", twice)
	}
	sort.Slice(late, func(i, j int) bool {
		return late[i].partition < late[j].partition || late[i].partition == late[j].partition && late[i].offset < late[j].offset
	})
	sort.Slice(want, func(i, j int) bool {
		return want[i].partition < want[j].partition || want[i].partition == want[j].partition && want[i].offset < want[j].offset
	})
	if fmt.Sprint(late) != fmt.Sprint(want) {
		t.Fatalf("after a left, b received %d events %v;\nwant exactly the %d unacknowledged %v", len(late), late, len(want), want)
	}
	info, err := hc.DescribeGroup(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeGroupRequest{Topic: "orders", Group: "billing"})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetGroup().GetPending() != 0 || info.GetGroup().GetLagEvents() != 0 {
		t.Fatalf("group after every ack: pending %d, lag %d; want 0 and 0", info.GetGroup().GetPending(), info.GetGroup().GetLagEvents())
	}
	if err := b.sub.Close(); err != nil {
		t.Fatal(err)
	}
	<-b.done
	if got := testutil.ToFloat64(c.nodes[0].metrics.wsGroup.acks.WithLabelValues("ack", wire.WSAckAcked)) +
		testutil.ToFloat64(c.nodes[1].metrics.wsGroup.acks.WithLabelValues("ack", wire.WSAckAcked)) +
		testutil.ToFloat64(c.nodes[2].metrics.wsGroup.acks.WithLabelValues("ack", wire.WSAckAcked)); got < float64(len(want)) {
		t.Fatalf("herald_ws_group_acks_total{outcome=acked} %v over the nodes, want at least the %d acknowledged after a left", got, len(want))
	}

	t.Run("bad input", func(t *testing.T) {
		testWSGroupBadInput(t, c, hc)
	})
}

// testWSGroupBadInput sends bad frames on a raw socket: each gets its
// documented error frame, and the group's state does not change.
func testWSGroupBadInput(t *testing.T, c *testCluster, hc heraldpb.HeraldClient) {
	describe := func() string {
		info, err := hc.DescribeGroup(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeGroupRequest{Topic: "orders", Group: "billing"})
		if err != nil {
			t.Fatal(err)
		}
		var s string
		for _, p := range info.GetGroup().GetPartitions() {
			s += fmt.Sprintf("p%d floor %d cursor %d pending %d; ", p.GetPartition(), p.GetFloor(), p.GetCursor(), p.GetPending())
		}
		return s
	}
	before := describe()
	w := wsDial(t, c, 0, nil, 0).read()
	expectError := func(id, forType, code string) wsTestFrame {
		t.Helper()
		f := w.next(30*time.Second, func(f wsTestFrame) bool { return f.Type == wsTypeError && f.ID == id })
		if f.For != forType || f.Code != code {
			t.Fatalf("error frame %+v: want for %q, code %q", f, forType, code)
		}
		return f
	}
	// A frame that is no JSON.
	if err := w.conn.WriteMessage(1, []byte(`{"type":"ack",`)); err != nil {
		t.Fatal(err)
	}
	expectError("", "frame", "INVALID_ARGUMENT")
	// Out-of-range numbers, missing fields.
	w.send(map[string]any{"type": "group_subscribe", "id": "g0", "topic": "orders", "group": "billing", "max_batch_events": 5000})
	expectError("g0", "group_subscribe", "INVALID_ARGUMENT")
	w.send(map[string]any{"type": "group_subscribe", "id": "g0", "topic": "orders"})
	expectError("g0", "group_subscribe", "INVALID_ARGUMENT")
	// A group that does not exist: refused before anything is joined.
	w.send(map[string]any{"type": "group_subscribe", "id": "g1", "topic": "orders", "group": "nope"})
	if f := expectError("g1", "group_subscribe", "GROUP_NOT_FOUND"); !f.Ended {
		t.Fatalf("error frame %+v: want ended", f)
	}
	if _, err := hc.DescribeGroup(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeGroupRequest{Topic: "orders", Group: "nope"}); err == nil {
		t.Fatal("group nope exists after a refused group_subscribe")
	}
	// An ack on no subscription.
	w.send(map[string]any{"type": "ack", "id": "r1", "sub": "g9", "partition": 0, "offsets": []int{0}})
	expectError("r1", "ack", "INVALID_ARGUMENT")
	// A member that holds nothing: everything is acknowledged.
	w.send(map[string]any{"type": "group_subscribe", "id": "g2", "topic": "orders", "group": "billing", "member": "c"})
	if f := w.next(30*time.Second, byID("g2")); f.Type != wsTypeGroupSubscribed {
		t.Fatalf("want group_subscribed, got %+v", f)
	}
	// Offset 0 of partition 0 exists, but was never delivered to g2.
	w.send(map[string]any{"type": "ack", "id": "r2", "sub": "g2", "partition": 0, "offsets": []int{0, 1}})
	expectError("r2", "ack", "INVALID_ARGUMENT")
	w.send(map[string]any{"type": "nack", "id": "r3", "sub": "g2", "partition": 0, "offsets": []int{0}, "delay_ms": -1})
	expectError("r3", "nack", "INVALID_ARGUMENT")
	w.send(map[string]any{"type": "ack", "id": "r4", "sub": "g2", "partition": 0, "offsets": []int{0}, "before": 3})
	expectError("r4", "ack", "INVALID_ARGUMENT")
	w.send(map[string]any{"type": "ack", "id": "r5", "sub": "g2", "offsets": []int{0}})
	expectError("r5", "ack", "INVALID_ARGUMENT")
	// A cumulative ack below nothing held acknowledges nothing.
	w.send(map[string]any{"type": "ack", "id": "r6", "sub": "g2", "partition": 0, "before": 1000})
	if f := w.next(30*time.Second, byID("r6")); f.Type != wsTypeGroupAckResult {
		t.Fatalf("want ack_result, got %+v", f)
	}
	w.send(map[string]any{"type": "group_unsubscribe", "id": "g2"})
	if f := w.next(30*time.Second, byID("g2")); f.Type != wsTypeGroupUnsubscribed {
		t.Fatalf("want group_unsubscribed, got %+v", f)
	}
	w.send(map[string]any{"type": "group_unsubscribe", "id": "g2"})
	expectError("g2", "group_unsubscribe", "INVALID_ARGUMENT")
	if after := describe(); after != before {
		t.Fatalf("group state changed by bad input:\nbefore %s\nafter  %s", before, after)
	}

	// A group deleted under its member ends the subscription.
	if _, err := hc.CreateGroup(ctxTimeout(t, 20*time.Second), &heraldpb.CreateGroupRequest{Topic: "orders", Group: "temp"}); err != nil {
		t.Fatalf("create group temp: %v", err)
	}
	w.send(map[string]any{"type": "group_subscribe", "id": "g3", "topic": "orders", "group": "temp"})
	if f := w.next(30*time.Second, byID("g3")); f.Type != wsTypeGroupSubscribed {
		t.Fatalf("want group_subscribed, got %+v", f)
	}
	if _, err := hc.DeleteGroup(ctxTimeout(t, 20*time.Second), &heraldpb.DeleteGroupRequest{Topic: "orders", Group: "temp"}); err != nil {
		t.Fatalf("delete group temp: %v", err)
	}
	if f := w.next(30*time.Second, func(f wsTestFrame) bool { return f.ID == "g3" && f.Type != wsTypeGroupEvents }); f.Type != wsTypeError ||
		f.For != wsTypeGroupSubscribe || f.Code != "GROUP_NOT_FOUND" || !f.Ended {
		t.Fatalf("after the group's delete: %+v; want an error frame, GROUP_NOT_FOUND, ended", f)
	}
}

// group_subscribe frames: the numbers out of range and the missing names
// are refused with the field named; the rest become the consumer's
// options.
func TestWSGroupSubscribeOptions(t *testing.T) {
	num := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name  string
		msg   wsClientMessage
		field string // "" : accepted
	}{
		{"no topic", wsClientMessage{Group: "g"}, "topic"},
		{"no group", wsClientMessage{Topic: "t"}, "group"},
		{"defaults", wsClientMessage{Topic: "t", Group: "g"}, ""},
		{"bounds", wsClientMessage{Topic: "t", Group: "g", MaxBatchEvents: num(1000), MaxBatchBytes: num(4 << 20), SessionTimeoutMs: num(300_000)}, ""},
		{"events above", wsClientMessage{Topic: "t", Group: "g", MaxBatchEvents: num(1001)}, "max_batch_events"},
		{"events negative", wsClientMessage{Topic: "t", Group: "g", MaxBatchEvents: num(-1)}, "max_batch_events"},
		{"bytes above", wsClientMessage{Topic: "t", Group: "g", MaxBatchBytes: num(4<<20 + 1)}, "max_batch_bytes"},
		{"session below", wsClientMessage{Topic: "t", Group: "g", SessionTimeoutMs: num(999)}, "session_timeout_ms"},
		{"session above", wsClientMessage{Topic: "t", Group: "g", SessionTimeoutMs: num(300_001)}, "session_timeout_ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := tc.msg.groupOptions()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if o.MemberID == "" {
					t.Fatal("no member id made")
				}
				return
			}
			if !errors.Is(err, wire.ErrInvalidArgument) {
				t.Fatalf("error %v, want INVALID_ARGUMENT", err)
			}
			if e := wsErrorOf("x", wsTypeGroupSubscribe, err); e.Code != "INVALID_ARGUMENT" || !strings.Contains(e.Message, tc.field) {
				t.Fatalf("error frame %+v, want INVALID_ARGUMENT naming %s", e, tc.field)
			}
		})
	}
	o, err := (&wsClientMessage{Topic: "t", Group: "g", Member: "web-7", MaxBatchEvents: num(5), SessionTimeoutMs: num(2000)}).groupOptions()
	if err != nil || o.MemberID != "web-7" || o.MaxBatchEvents != 5 || o.SessionTimeout != 2*time.Second {
		t.Fatalf("options %+v, %v", o, err)
	}
}
