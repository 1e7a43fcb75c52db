package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/server/proccluster"
)

// The consumer-group soak of issue 12's "Done means": a group of three
// members (ConsumeGroup) consumes 100,000 events, produced
// before and during the consumption, on three real `herald serve`
// processes while members join and leave and a partition leader is
// killed with SIGKILL and restarted. It lives in package client, not
// client_test, for one reason: GroupMessage.Ack answers nil both for an
// ack the group's record applied and for one it had already, and this
// test counts, per offset, the acks the record applied (soakAck below).

// Soak limits and pacing.
const (
	// groupSoakEvents is the number of events the soak produces (issue
	// 12's figure): 42-64 s with -race on the shared 2-core machine.
	groupSoakEvents       = 100_000
	groupSoakProducers    = 4 // concurrent producers, each of a share of the events
	groupSoakTimeout      = 5 * time.Minute
	groupSoakPartitions   = 3
	groupSoakProduceBatch = 1000 // events per Produce request
	groupSoakBatchEvents  = 1000 // events per delivered batch
	groupSoakAckers       = 256  // concurrent acks per member
	// groupSoakAckWait is the group's ack wait: long enough that a
	// member's backlog of acks (its ackers are busy while -race slows the
	// client) does not make the group redeliver what is about to be
	// acknowledged; with 2 s, two thirds of the deliveries were repeats.
	groupSoakAckWait       = 6 * time.Second
	groupSoakSession       = 3 * time.Second
	groupSoakKillDowntime  = 2 * time.Second
	groupSoakProduceTries  = 20 // per request, across the kill
	groupSoakMaxPending    = 4 * groupSoakBatchEvents
	groupSoakAckResendsMax = groupConsumerAckResends
)

// soakKey is one offset of one partition.
type soakKey struct {
	partition uint32
	offset    uint64
}

// soakRecord is what every member saw, under one lock: deliveries in the
// order each member's Next returned them, and the outcome of every ack.
type soakRecord struct {
	mu struct {
		sync.Mutex
		firstDeliveries map[soakKey]int // deliveries with count 1
		delivered       map[soakKey]bool
		redeliveries    int
		applied         map[soakKey]int // acks answered GROUP_OFFSET_APPLIED
		already         int             // acks answered GROUP_OFFSET_ALREADY_DONE
		unknown         map[soakKey]int // acks of unknown outcome
		notSent         int             // acks not sent: the stream had ended
		orderErrors     []string
		lastFirst       map[[2]uint64]uint64 // (member, partition) -> last first-delivered offset + 1
	}
}

func newSoakRecord() *soakRecord {
	r := &soakRecord{}
	r.mu.firstDeliveries = map[soakKey]int{}
	r.mu.delivered = map[soakKey]bool{}
	r.mu.applied = map[soakKey]int{}
	r.mu.unknown = map[soakKey]int{}
	r.mu.lastFirst = map[[2]uint64]uint64{}
	return r
}

// deliveredTo records m, received by member.
func (r *soakRecord) deliveredTo(member int, m *GroupMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := soakKey{m.Partition, m.Offset}
	r.mu.delivered[k] = true
	if m.DeliveryCount > 1 {
		r.mu.redeliveries++
		return
	}
	r.mu.firstDeliveries[k]++
	c := [2]uint64{uint64(member), uint64(m.Partition)}
	if last := r.mu.lastFirst[c]; m.Offset+1 <= last && len(r.mu.orderErrors) < 10 {
		r.mu.orderErrors = append(r.mu.orderErrors, fmt.Sprintf("member %d: first delivery of offset %d of partition %d after offset %d", member, m.Offset, m.Partition, last-1))
	}
	r.mu.lastFirst[c] = max(r.mu.lastFirst[c], m.Offset+1)
}

// settled records one ack's outcome.
func (r *soakRecord) settled(k soakKey, outcome heraldpb.GroupOffsetOutcome, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil && outcome == heraldpb.GroupOffsetOutcome_GROUP_OFFSET_APPLIED:
		r.mu.applied[k]++
	case err == nil && outcome == heraldpb.GroupOffsetOutcome_GROUP_OFFSET_ALREADY_DONE:
		r.mu.already++
	case err == nil:
		return fmt.Errorf("ack of offset %d of partition %d answered %s", k.offset, k.partition, outcome)
	case errors.Is(err, errSoakAckAnswer):
		return fmt.Errorf("partition %d: %w", k.partition, err)
	case errors.Is(err, ErrUnknownOutcome):
		r.mu.unknown[k]++
	default:
		// The stream had ended (a rebalance fenced it, its leader moved or
		// died) before the ack was sent: nothing written, the offset is
		// redelivered to the partition's owner.
		r.mu.notSent++
	}
	return nil
}

// errSoakAckAnswer marks an ack the leader answered with something the
// soak does not expect: a refusal, or a result without the offset.
var errSoakAckAnswer = errors.New("unexpected ack answer")

// soakAck acknowledges m as GroupMessage.Ack does (groupPartitionStream's
// settle: register the waiter, send, await, resend an unknown outcome a
// few times) but returns the leader's outcome for m's offset instead of
// folding APPLIED and ALREADY_DONE into nil.
func soakAck(ctx context.Context, m *GroupMessage) (heraldpb.GroupOffsetOutcome, error) {
	ps := m.stream
	for resend := 0; ; resend++ {
		if ps.ended() {
			return 0, ps.endErr(resend > 0)
		}
		w := make(chan *GroupAckResult, 1)
		var id uint64
		if _, err := ps.s.settle(false, 0, m.Offset, nil, func(i uint64) { id = i; ps.register(i, w) }); err != nil {
			ps.unregister(id)
			select {
			case <-ps.done:
				return 0, ps.endErr(true)
			case <-ctx.Done():
				return 0, fmt.Errorf("ack of offset %d: %w (%w)", m.Offset, ctx.Err(), ErrUnknownOutcome)
			}
		}
		r, err := ps.await(ctx, w)
		ps.unregister(id)
		if err != nil {
			return 0, err
		}
		switch {
		case r.GetRefused():
			return 0, fmt.Errorf("ack of offset %d refused: %s (%w)", m.Offset, r.GetError(), errSoakAckAnswer)
		case r.GetUnknownOutcome():
			if resend < groupSoakAckResendsMax {
				continue
			}
			return 0, fmt.Errorf("ack of offset %d: %s (%w)", m.Offset, r.GetError(), ErrUnknownOutcome)
		}
		for _, o := range r.GetResults() {
			if o.GetOffset() == m.Offset {
				return o.GetOutcome(), nil
			}
		}
		return 0, fmt.Errorf("ack of offset %d: a result without it: %v (%w)", m.Offset, r, errSoakAckAnswer)
	}
}

// soakMember is one running member: its consumer, the goroutine taking
// its messages and its ack workers.
type soakMember struct {
	index int
	gc    *GroupConsumer
	done  chan struct{} // closed when Next's goroutine and every ack worker ended
}

// startSoakMember starts member index: one goroutine calls Next and hands
// each message to groupSoakAckers workers (through a channel of that
// size); all end after Close.
func startSoakMember(ctx context.Context, t *testing.T, c *Client, index int, rec *soakRecord) *soakMember {
	t.Helper()
	gc, err := c.ConsumeGroup(ctx, "soak", "soakers", GroupConsumerOptions{MemberID: fmt.Sprintf("m%d", index),
		SessionTimeout: groupSoakSession, MaxBatchEvents: groupSoakBatchEvents})
	if err != nil {
		t.Fatalf("member %d: %v", index, err)
	}
	sm := &soakMember{index: index, gc: gc, done: make(chan struct{})}
	work := make(chan *GroupMessage, groupSoakAckers)
	var workers sync.WaitGroup
	for range groupSoakAckers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for m := range work {
				outcome, err := soakAck(ctx, m)
				if err := rec.settled(soakKey{m.Partition, m.Offset}, outcome, err); err != nil && ctx.Err() == nil {
					t.Errorf("member %d: %v", index, err)
				}
			}
		}()
	}
	go func() {
		defer close(sm.done)
		defer workers.Wait()
		defer close(work)
		for {
			m, err := gc.Next(ctx)
			if err != nil {
				if !errors.Is(err, ErrConsumerClosed) && ctx.Err() == nil {
					t.Errorf("member %d: Next: %v", index, err)
				}
				return
			}
			rec.deliveredTo(index, m)
			work <- m
		}
	}()
	return sm
}

// stop closes the member (it leaves the group) and waits for its
// goroutines.
func (sm *soakMember) stop(t *testing.T) {
	t.Helper()
	if err := sm.gc.Close(); err != nil {
		t.Errorf("member %d: close: %v", sm.index, err)
	}
	<-sm.done
}

// produceSoak produces n events of 30 tenants from groupSoakProducers
// goroutines, groupSoakProduceBatch per request, each request retried
// (bounded) across faults: a retried request whose first try was written
// appends its events twice, which the soak does not mind (it consumes
// whatever the log holds).
func produceSoak(ctx context.Context, c *Client, prefix string, n int) error {
	errs := make([]error, groupSoakProducers)
	var wg sync.WaitGroup
	for w := range groupSoakProducers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = produceSoakShare(ctx, c, prefix, n, w)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// produceSoakShare produces producer w's requests of produceSoak: every
// groupSoakProducers-th one, from the w-th.
func produceSoakShare(ctx context.Context, c *Client, prefix string, n, w int) error {
	for from := w * groupSoakProduceBatch; from < n; from += groupSoakProducers * groupSoakProduceBatch {
		evs := make([]*Event, 0, groupSoakProduceBatch)
		for i := from; i < min(from+groupSoakProduceBatch, n); i++ {
			evs = append(evs, &Event{TenantId: fmt.Sprintf("t%d", i%30), Payload: fmt.Appendf(nil, "%s%d", prefix, i)})
		}
		var err error
		for try := 0; try < groupSoakProduceTries; try++ {
			if _, err = c.Produce(ctx, "soak", evs...); err == nil || ctx.Err() != nil {
				break
			}
			if sleep(ctx, 250*time.Millisecond) != nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("produce of events %d..%d: %w", from, from+len(evs), err)
		}
	}
	return nil
}

// TestProcessesGroupSoak: three `herald serve` processes, topic "soak"
// (3 partitions, replicated on every node), group "soakers" from the
// earliest offset. Half the events are produced first; three members
// start; the other half is produced while a fourth member joins, one of
// the first three leaves, the leader of a partition is killed (SIGKILL)
// and restarted, and a fifth member joins. The members ack every message
// (groupSoakAckers at a time each). Then it checks: every partition's
// floor reaches its high watermark with nothing pending (the group's
// record has every offset done); no offset's ack was answered APPLIED
// twice (across every member), and every offset's ack was answered
// APPLIED once, except offsets whose ack had an unknown outcome (a
// stream ended after the ack was sent: the floor says it was applied);
// every offset below the high watermark delivered at least once; each
// offset's first delivery (count 1) received once; each member's first
// deliveries of a partition in increasing offset order.
func TestProcessesGroupSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("a soak of three processes")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HERALD_TEST_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("HERALD_TEST_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (the leaver, the victim and the pauses between steps; replay them with HERALD_TEST_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	const events = groupSoakEvents
	ctx, cancel := context.WithTimeout(context.Background(), groupSoakTimeout)
	defer cancel()
	t0 := time.Now()

	nodes, err := proccluster.Layout(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		nodes[i].LogPath = filepath.Join(nodes[i].DataDir, "node.log")
	}
	pc, err := proccluster.New(proccluster.Config{Binary: proccluster.TestBinary(t), Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := pc.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for i := range nodes {
				t.Logf("--- %s (last lines)\n%s", nodes[i].ID, pc.LogTail(i))
			}
		}
	}()
	if err := pc.StartAll(); err != nil {
		t.Fatal(err)
	}
	if err := pc.AwaitReady(ctx, 0, 1, 2); err != nil {
		t.Fatal(err)
	}
	c, err := New(ctx, Config{Servers: pc.GRPCAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateTopic(ctx, &TopicConfig{Name: "soak", Partitions: groupSoakPartitions, ReplicationFactor: 3, AutoTenants: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, "soak", "soakers", &GroupConfig{AckWaitMs: groupSoakAckWait.Milliseconds(),
		MaxPending: groupSoakMaxPending}, GroupStartEarliest()); err != nil {
		t.Fatal(err)
	}
	before := events / 2
	if err := produceSoak(ctx, c, "a", before); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d events produced; three members start", time.Since(t0).Round(time.Millisecond), before)

	rec := newSoakRecord()
	members := map[int]*soakMember{}
	for i := range 3 {
		members[i] = startSoakMember(ctx, t, c, i, rec)
	}
	defer func() { // the members still running when the test ends early
		for _, sm := range members {
			sm.stop(t)
		}
	}()
	produced := make(chan error, 1)
	go func() { produced <- produceSoak(ctx, c, "b", events-before) }()

	// pause waits 0.5-1.5 s (from the seed) between steps.
	pause := func() { _ = sleep(ctx, 500*time.Millisecond+time.Duration(rng.Int64N(int64(time.Second)))) }
	pause()
	members[3] = startSoakMember(ctx, t, c, 3, rec)
	t.Logf("%s: member 3 joined", time.Since(t0).Round(time.Millisecond))
	pause()
	leaver := rng.IntN(3)
	members[leaver].stop(t)
	delete(members, leaver)
	t.Logf("%s: member %d left", time.Since(t0).Round(time.Millisecond), leaver)
	pause()

	// The victim: the leader of a partition drawn from the seed (asked
	// again while a describe fails or names no leader).
	victimPartition := uint32(rng.IntN(groupSoakPartitions))
	victim := -1
	for victim < 0 {
		info, err := c.DescribeGroup(ctx, "soak", "soakers")
		for _, p := range info.GetPartitions() {
			if err == nil && p.GetPartition() == victimPartition {
				victim = slices.IndexFunc(nodes, func(n proccluster.Node) bool { return n.ID == p.GetLeaderId() })
			}
		}
		if victim < 0 && sleep(ctx, 100*time.Millisecond) != nil {
			t.Fatalf("no leader of partition %d known: %v", victimPartition, ctx.Err())
		}
	}
	victimID := nodes[victim].ID
	if err := pc.Kill(victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s, the leader of partition %d, killed (SIGKILL)", time.Since(t0).Round(time.Millisecond), victimID, victimPartition)
	_ = sleep(ctx, groupSoakKillDowntime)
	if err := pc.Start(victim); err != nil {
		t.Fatal(err)
	}
	if err := pc.AwaitReady(ctx, victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s restarted", time.Since(t0).Round(time.Millisecond), victimID)
	members[4] = startSoakMember(ctx, t, c, 4, rec)
	t.Logf("%s: member 4 joined", time.Since(t0).Round(time.Millisecond))

	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: the other %d events produced", time.Since(t0).Round(time.Millisecond), events-before)

	// The group's record: every floor at its high watermark, nothing
	// pending.
	hw := map[uint32]uint64{}
	for {
		info, err := c.DescribeGroup(ctx, "soak", "soakers")
		done := err == nil && len(info.GetPartitions()) == groupSoakPartitions
		if done {
			for _, p := range info.GetPartitions() {
				hw[p.GetPartition()] = p.GetHighWatermark()
				done = done && p.GetPresent() && p.GetFloor() == p.GetHighWatermark() && p.GetPending() == 0
			}
		}
		if done {
			break
		}
		if sleep(ctx, 200*time.Millisecond) != nil {
			t.Fatalf("the floors did not reach the high watermarks: %v (last describe: %v)", ctx.Err(), info)
		}
	}
	t.Logf("%s: every floor at its high watermark %v", time.Since(t0).Round(time.Millisecond), hw)
	for i, sm := range members {
		sm.stop(t)
		delete(members, i)
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var total uint64
	missing, twice, unseen, firstTwice := 0, 0, 0, 0
	for p, h := range hw {
		total += h
		for o := range h {
			k := soakKey{p, o}
			switch n := rec.mu.applied[k]; {
			case n > 1:
				if twice++; twice <= 10 {
					t.Errorf("offset %d of partition %d: %d acks answered APPLIED; the group's record applied it more than once", o, p, n)
				}
			case n == 0 && rec.mu.unknown[k] == 0:
				if missing++; missing <= 10 {
					t.Errorf("offset %d of partition %d: no ack answered APPLIED and none had an unknown outcome, yet the floor passed it", o, p)
				}
			}
			if !rec.mu.delivered[k] {
				if unseen++; unseen <= 10 {
					t.Errorf("offset %d of partition %d below the high watermark %d was never delivered", o, p, h)
				}
			}
			if n := rec.mu.firstDeliveries[k]; n > 1 {
				if firstTwice++; firstTwice <= 10 {
					t.Errorf("offset %d of partition %d: first delivery (count 1) received %d times", o, p, n)
				}
			}
		}
	}
	for _, e := range rec.mu.orderErrors {
		t.Error(e)
	}
	if total < uint64(events) {
		t.Errorf("the high watermarks sum to %d, fewer than the %d events produced", total, events)
	}
	unknownOffsets := 0
	for k := range rec.mu.unknown {
		if rec.mu.applied[k] == 0 {
			unknownOffsets++
		}
	}
	t.Logf("%s: %d offsets, %d redeliveries, acks: %d applied, %d already done, %d not sent (the stream had ended), %d offsets with only an unknown outcome",
		time.Since(t0).Round(time.Millisecond), total, rec.mu.redeliveries, len(rec.mu.applied), rec.mu.already, rec.mu.notSent, unknownOffsets)
}
