package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

// groupConsumerTestTimeout bounds one group consumer test.
const groupConsumerTestTimeout = 180 * time.Second

// delivery is one message a test consumer received.
type delivery struct {
	consumer  int
	partition uint32
	offset    uint64
	count     uint32
	received  int  // the record's step at which it was received
	acked     int  // the step at which its Ack returned nil (0: it did not)
	maybe     bool // its Ack's outcome is unknown (it may have been recorded)
}

// groupRecord collects, in one order of steps, what the test consumers
// received and acknowledged.
type groupRecord struct {
	mu         sync.Mutex
	step       int
	deliveries []delivery
}

// received records d and returns its index.
func (r *groupRecord) received(d delivery) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.step++
	d.received = r.step
	r.deliveries = append(r.deliveries, d)
	return len(r.deliveries) - 1
}

// settled records the outcome of delivery i's Ack.
func (r *groupRecord) settled(i int, acked, maybe bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.step++
	if acked {
		r.deliveries[i].acked = r.step
	}
	r.deliveries[i].maybe = maybe
}

func (r *groupRecord) snapshot() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.deliveries...)
}

// groupConsumerSetup starts a three-node cluster with topic "orders" (3
// partitions, replicated on every node) and its group "billing" of cfg.
func groupConsumerSetup(t *testing.T, cfg *client.GroupConfig) (*realCluster, *client.Client, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), groupConsumerTestTimeout)
	t.Cleanup(cancel)
	rc := startRealCluster(t, 3)
	c, err := client.New(ctx, client.Config{Servers: rc.addrs})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 3, AutoTenants: true})
	require.NoError(t, err)
	_, err = c.CreateGroup(ctx, "orders", "billing", cfg, client.GroupStartEarliest())
	require.NoError(t, err)
	return rc, c, ctx
}

// produceSpread produces n events of 30 tenants (spread over the
// partitions), 100 per request.
//
// It sends through an idempotent producer, which resends a request whose
// outcome is unknown (a leadership lost while committing, common on a
// loaded machine) under the same sequences: the tests count on exactly n
// events in the log.
func produceSpread(ctx context.Context, c *client.Client, prefix string, n int) error {
	// NewProducer's InitProducer may be forwarded to a node just stopped
	// (an unknown outcome) until the controller's leadership moves; asking
	// again is harmless, every half second while ctx lasts.
	var p *client.Producer
	var err error
	for {
		if p, err = c.NewProducer(ctx, "orders"); !errors.Is(err, client.ErrUnknownOutcome) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err != nil {
		return err
	}
	defer p.Close()
	for from := 0; from < n; from += 100 {
		var evs []*client.Event
		for i := from; i < min(from+100, n); i++ {
			evs = append(evs, &client.Event{TenantId: fmt.Sprintf("t%d", i%30), Payload: fmt.Appendf(nil, "%s%d", prefix, i)})
		}
		if _, err := p.Send(ctx, evs...); err != nil {
			return err
		}
	}
	return nil
}

// runTestConsumer consumes as consumer i, acknowledging each message,
// until the consumer ends; it returns when Next fails.
func runTestConsumer(ctx context.Context, t *testing.T, gc *client.GroupConsumer, i int, rec *groupRecord) {
	for {
		m, err := gc.Next(ctx)
		if err != nil {
			if !errors.Is(err, client.ErrConsumerClosed) && ctx.Err() == nil {
				t.Errorf("consumer %d: Next: %v", i, err)
			}
			return
		}
		d := rec.received(delivery{consumer: i, partition: m.Partition, offset: m.Offset, count: m.DeliveryCount})
		err = m.Ack(ctx)
		switch {
		case err == nil:
			rec.settled(d, true, false)
		case errors.Is(err, client.ErrUnknownOutcome):
			rec.settled(d, false, true) // the partition (or its leader) moved after the ack was sent
		case errors.Is(err, client.ErrGroupFenced), errors.Is(err, client.ErrStaleGeneration):
			rec.settled(d, false, false) // moved before: redelivered to the new owner
		default:
			t.Errorf("consumer %d: ack of %d/%d: %v", i, m.Partition, m.Offset, err)
		}
	}
}

// awaitGroupCaughtUp waits until the group's floor is the high watermark,
// want, on every partition (sum of the high watermarks), with no pending.
//
// It waits until 15 s before ctx's deadline: the test consumers ack one
// message at a time, each a Raft round of the partition, so on a loaded
// machine (a CI runner with the rest of the suite) 3,000 events can take
// most of a minute.
func awaitGroupCaughtUp(ctx context.Context, t *testing.T, c *client.Client, want uint64) {
	t.Helper()
	deadline, _ := ctx.Deadline()
	require.Eventually(t, func() bool {
		info, err := c.DescribeGroup(ctx, "orders", "billing")
		if err != nil {
			return false
		}
		var sum uint64
		for _, p := range info.GetPartitions() {
			if p.GetFloor() != p.GetHighWatermark() || p.GetLagEvents() != 0 || p.GetPending() != 0 {
				return false
			}
			sum += p.GetHighWatermark()
		}
		return sum == want
	}, time.Until(deadline)-15*time.Second, 100*time.Millisecond)
}

// checkDeliveries checks what the consumers saw: every offset below each
// partition's high watermark acknowledged by some consumer (an ack that
// returned nil, or one of unknown outcome: the group's floor, checked
// apart, says it was recorded); no delivery of an offset received after
// an ack of it returned nil (repeats are only of events not yet
// acknowledged); each offset's first delivery (count 1) received at most
// once; each consumer's first deliveries of a partition in offset order.
// It returns how many deliveries were redeliveries.
func checkDeliveries(t *testing.T, ds []delivery, hw map[uint32]uint64) (redelivered int) {
	t.Helper()
	type po struct {
		partition uint32
		offset    uint64
	}
	ackedAt := map[po]int{}
	maybe := map[po]bool{}
	for _, d := range ds {
		k := po{d.partition, d.offset}
		if d.acked > 0 && (ackedAt[k] == 0 || d.acked < ackedAt[k]) {
			ackedAt[k] = d.acked
		}
		maybe[k] = maybe[k] || d.maybe
	}
	first := map[po]int{}
	last := map[[2]uint64]uint64{} // (consumer, partition) -> last first-delivered offset + 1
	for _, d := range ds {
		k := po{d.partition, d.offset}
		if at := ackedAt[k]; at > 0 && d.received > at {
			t.Errorf("offset %d of partition %d delivered (count %d) to consumer %d after it was acknowledged", d.offset, d.partition, d.count, d.consumer)
		}
		if d.count > 1 {
			redelivered++
			continue
		}
		first[k]++
		c := [2]uint64{uint64(d.consumer), uint64(d.partition)}
		assert.Greater(t, d.offset+1, last[c], "consumer %d saw offset %d of partition %d out of order", d.consumer, d.offset, d.partition)
		last[c] = d.offset + 1
	}
	for k, n := range first {
		assert.Equal(t, 1, n, "first delivery of offset %d of partition %d received %d times", k.offset, k.partition, n)
	}
	for p, h := range hw {
		for o := range h {
			if k := (po{p, o}); ackedAt[k] == 0 && !maybe[k] {
				t.Errorf("offset %d of partition %d never acknowledged by a consumer", o, p)
				return redelivered
			}
		}
	}
	return redelivered
}

func highWatermarks(ctx context.Context, t *testing.T, c *client.Client) map[uint32]uint64 {
	t.Helper()
	info, err := c.DescribeGroup(ctx, "orders", "billing")
	require.NoError(t, err)
	hw := map[uint32]uint64{}
	for _, p := range info.GetPartitions() {
		hw[p.GetPartition()] = p.GetHighWatermark()
	}
	return hw
}

// Three consumers of a three-partition topic's group consume 3,000
// events and acknowledge them: the group's record has every partition's
// floor at its high watermark, each event was acknowledged, and each
// consumer saw its partitions' events in offset order.
func TestGroupConsumerThreeMembersAckEveryEvent(t *testing.T) {
	_, c, ctx := groupConsumerSetup(t, nil)
	rec := &groupRecord{}
	var wg sync.WaitGroup
	consumers := make([]*client.GroupConsumer, 3)
	for i := range consumers {
		gc, err := c.ConsumeGroup(ctx, "orders", "billing", client.GroupConsumerOptions{MemberID: fmt.Sprintf("m%d", i), SessionTimeout: 3 * time.Second})
		require.NoError(t, err)
		consumers[i] = gc
		wg.Add(1)
		go func() { defer wg.Done(); runTestConsumer(ctx, t, gc, i, rec) }()
	}
	require.NoError(t, produceSpread(ctx, c, "e", 3000))
	awaitGroupCaughtUp(ctx, t, c, 3000)
	for _, gc := range consumers {
		require.NoError(t, gc.Close())
	}
	wg.Wait()
	redelivered := checkDeliveries(t, rec.snapshot(), highWatermarks(ctx, t, c))
	t.Logf("%d deliveries, %d redeliveries", len(rec.snapshot()), redelivered)
}

// A fourth consumer joins and one leaves while events keep coming: every
// event is still acknowledged and the floors end at the high watermarks;
// the only repeats are redeliveries.
func TestGroupConsumerJoinAndLeaveMidway(t *testing.T) {
	_, c, ctx := groupConsumerSetup(t, nil)
	rec := &groupRecord{}
	var wg sync.WaitGroup
	start := func(i int) *client.GroupConsumer {
		gc, err := c.ConsumeGroup(ctx, "orders", "billing", client.GroupConsumerOptions{MemberID: fmt.Sprintf("m%d", i), SessionTimeout: 3 * time.Second})
		require.NoError(t, err)
		wg.Add(1)
		go func() { defer wg.Done(); runTestConsumer(ctx, t, gc, i, rec) }()
		return gc
	}
	consumers := []*client.GroupConsumer{start(0), start(1), start(2)}
	produced := make(chan error, 1)
	go func() { produced <- produceSpread(ctx, c, "e", 3000) }()
	require.Eventually(t, func() bool { return len(rec.snapshot()) >= 500 }, groupConsumerTestTimeout/2, 10*time.Millisecond)
	consumers = append(consumers, start(3))
	require.Eventually(t, func() bool { return len(rec.snapshot()) >= 1500 }, groupConsumerTestTimeout/2, 10*time.Millisecond)
	require.NoError(t, consumers[1].Close())
	require.NoError(t, <-produced)
	awaitGroupCaughtUp(ctx, t, c, 3000)
	for _, gc := range consumers {
		require.NoError(t, gc.Close())
	}
	wg.Wait()
	redelivered := checkDeliveries(t, rec.snapshot(), highWatermarks(ctx, t, c))
	t.Logf("%d deliveries, %d redeliveries", len(rec.snapshot()), redelivered)
}

// A consumer that never acknowledges gets the event again after each ack
// wait, with a rising delivery count.
func TestGroupConsumerRedeliversUnacknowledged(t *testing.T) {
	_, c, ctx := groupConsumerSetup(t, &client.GroupConfig{AckWaitMs: 300})
	_, err := c.Produce(ctx, "orders", &client.Event{TenantId: "t0", Payload: []byte("once")})
	require.NoError(t, err)
	gc, err := c.ConsumeGroup(ctx, "orders", "billing", client.GroupConsumerOptions{SessionTimeout: 3 * time.Second})
	require.NoError(t, err)
	defer gc.Close()
	var counts []uint32
	for len(counts) < 3 {
		m, err := gc.Next(ctx)
		require.NoError(t, err)
		assert.Equal(t, "once", string(m.Event.GetPayload()))
		counts = append(counts, m.DeliveryCount)
	}
	for i := 1; i < len(counts); i++ {
		assert.Greater(t, counts[i], counts[i-1], "delivery counts %v", counts)
	}
	// Nacked, it comes back at once; acknowledged, it is done.
	m, err := gc.Next(ctx)
	require.NoError(t, err)
	require.NoError(t, m.Nack(ctx, 0))
	m, err = gc.Next(ctx)
	require.NoError(t, err)
	require.NoError(t, m.Ack(ctx))
	require.NoError(t, gc.Close())
	info, err := c.DescribeGroup(ctx, "orders", "billing")
	require.NoError(t, err)
	for _, p := range info.GetPartitions() {
		assert.Equal(t, p.GetHighWatermark(), p.GetFloor(), "partition %d", p.GetPartition())
	}

	// Options out of range are refused at once; a group that does not
	// exist ends the consumer with ErrGroupNotFound.
	_, err = c.ConsumeGroup(ctx, "orders", "billing", client.GroupConsumerOptions{MaxBatchEvents: 5000, SessionTimeout: time.Millisecond})
	require.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = c.ConsumeGroup(ctx, "orders", "billing", client.GroupConsumerOptions{MaxBatchesInFlight: 9})
	require.ErrorIs(t, err, client.ErrInvalidArgument)
	missing, err := c.ConsumeGroup(ctx, "orders", "nope", client.GroupConsumerOptions{})
	require.NoError(t, err)
	_, err = missing.Next(ctx)
	require.ErrorIs(t, err, client.ErrGroupNotFound)
	require.ErrorIs(t, missing.Close(), client.ErrGroupNotFound)
}

// A node that leads a partition stops while two members consume: the
// stream it served is reopened on the new leader (and, when it was the
// coordinator, the members join the new one), and every event is still
// acknowledged, the floors ending at the high watermarks.
func TestGroupConsumerSurvivesNodeStop(t *testing.T) {
	rc, c, ctx := groupConsumerSetup(t, nil)
	rec := &groupRecord{}
	var wg sync.WaitGroup
	var consumers []*client.GroupConsumer
	for i := range 2 {
		gc, err := c.ConsumeGroup(ctx, "orders", "billing", client.GroupConsumerOptions{MemberID: fmt.Sprintf("m%d", i), SessionTimeout: 3 * time.Second})
		require.NoError(t, err)
		consumers = append(consumers, gc)
		wg.Add(1)
		go func() { defer wg.Done(); runTestConsumer(ctx, t, gc, i, rec) }()
	}
	require.NoError(t, produceSpread(ctx, c, "a", 600))
	awaitGroupCaughtUp(ctx, t, c, 600)
	info, err := c.DescribeGroup(ctx, "orders", "billing")
	require.NoError(t, err)
	victim := info.GetPartitions()[1].GetLeaderId() // a node that leads partition 1
	var index int
	_, err = fmt.Sscanf(victim, "n%d", &index)
	require.NoError(t, err, "leader id %q", victim)
	t.Logf("stopping %s, the leader of partition 1", victim)
	rc.stop(t, rc.addrs[index-1])
	require.NoError(t, produceSpread(ctx, c, "b", 600))
	awaitGroupCaughtUp(ctx, t, c, 1200)
	for _, gc := range consumers {
		require.NoError(t, gc.Close())
	}
	wg.Wait()
	redelivered := checkDeliveries(t, rec.snapshot(), highWatermarks(ctx, t, c))
	t.Logf("%d deliveries, %d redeliveries", len(rec.snapshot()), redelivered)
}

// MaxBatchesInFlight is each partition's window: a member that takes
// messages and acknowledges none receives that many batches per
// partition and no more (the server's window, not a local bound: nothing
// is dropped), and consumes the rest once it acknowledges.
func TestGroupConsumerWindow(t *testing.T) {
	_, c, ctx := groupConsumerSetup(t, nil)
	require.NoError(t, produceSpread(ctx, c, "w", 900))
	info, err := c.DescribeGroup(ctx, "orders", "billing")
	require.NoError(t, err)
	for _, p := range info.GetPartitions() {
		require.GreaterOrEqual(t, p.GetHighWatermark(), uint64(4*25+1), "partition %d holds more than the window", p.GetPartition())
	}
	gc, err := c.ConsumeGroup(ctx, "orders", "billing", client.GroupConsumerOptions{MemberID: "w", MaxBatchEvents: 25, MaxBatchesInFlight: 4})
	require.NoError(t, err)

	const window = 3 * 4 * 25 // partitions × batches × events
	var held []*client.GroupMessage
	for len(held) < window {
		// Well within the ack wait (30 s): a smaller window would give
		// nothing more until it passed.
		next, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := gc.Next(next)
		cancel()
		require.NoError(t, err, "after %d messages", len(held))
		held = append(held, m)
	}
	// Nothing new comes past the window. (A partition whose leader moved
	// meanwhile redelivers what its stream had out: only repeats.)
	for {
		quiet, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := gc.Next(quiet)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		require.NoError(t, err)
		require.Greater(t, m.DeliveryCount, uint32(1), "offset %d/%d delivered past the window", m.Partition, m.Offset)
		held = append(held, m)
	}
	require.Zero(t, gc.DroppedBatches())

	for _, m := range held {
		// A leader that moved meanwhile ends the partition's stream: the
		// ack is refused (not leader, nothing sent), fenced, or of unknown
		// outcome, and an event not acknowledged comes again, to the loop
		// below; the group's floors say at the end that all were.
		if err := m.Ack(ctx); err != nil && !errors.Is(err, client.ErrUnknownOutcome) &&
			!errors.Is(err, client.ErrGroupFenced) && !errors.Is(err, client.ErrStaleGeneration) &&
			!errors.Is(err, client.ErrNotLeader) && !errors.Is(err, client.ErrNoLeader) {
			t.Fatalf("ack of %d/%d: %v", m.Partition, m.Offset, err)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { runTestConsumer(ctx, t, gc, 0, &groupRecord{}) })
	awaitGroupCaughtUp(ctx, t, c, 900)
	require.NoError(t, gc.Close())
	wg.Wait()
}

// A redelivery the leader sent while the consumer was still handling the
// event (its ack wait ran out), and that waits in the consumer's window,
// is not handed out once the consumer's ack of the event is recorded.
func TestGroupConsumerSkipsRedeliveriesOfAckedEvents(t *testing.T) {
	_, c, ctx := groupConsumerSetup(t, &client.GroupConfig{AckWaitMs: 200})
	_, err := c.Produce(ctx, "orders", &client.Event{TenantId: "t0", Payload: []byte("slow")})
	require.NoError(t, err)
	gc, err := c.ConsumeGroup(ctx, "orders", "billing", client.GroupConsumerOptions{SessionTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer gc.Close()
	m, err := gc.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, uint32(1), m.DeliveryCount)
	time.Sleep(time.Second) // the ack wait runs out: redeliveries queue in the window
	require.NoError(t, m.Ack(ctx))
	quiet, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	again, err := gc.Next(quiet)
	if err == nil {
		t.Fatalf("offset %d/%d handed out again (delivery %d) after its ack was recorded", again.Partition, again.Offset, again.DeliveryCount)
	}
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Positive(t, gc.SkippedAcked(), "no redelivery reached the window: the test did not test anything")
}
