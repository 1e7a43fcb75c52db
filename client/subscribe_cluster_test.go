package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/server"
)

// subscribeTestTimeout bounds one subscription test with its cluster. It
// is a hang guard, not a performance bound: the 50,000-event failover test
// takes 40-90 s on a 2-core machine that runs other packages' tests beside
// it (one run under `make test` hit 90 s while its producers waited out a
// re-election), so the guard leaves room.
const subscribeTestTimeout = 4 * time.Minute

// restartableCluster is a realCluster whose nodes can be stopped and
// started again on the same data and addresses.
type restartableCluster struct {
	t     *testing.T
	cfgs  []server.Config // without listeners
	nodes []*server.Node  // nil while stopped
	addrs []string
}

// startRestartableCluster starts size nodes n1..n<size> and waits until
// each is ready; they are closed when the test ends.
func startRestartableCluster(t *testing.T, size int) *restartableCluster {
	t.Helper()
	peers := map[string]string{}
	grpcLis := make([]net.Listener, size)
	for i := range size {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		grpcLis[i] = l
		peers[fmt.Sprintf("n%d", i+1)] = l.Addr().String()
	}
	// The data directory first: cleanups run last-registered first, so the
	// nodes are closed before their directory is removed.
	root := t.TempDir()
	c := &restartableCluster{t: t, nodes: make([]*server.Node, size)}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n != nil {
				n.Close()
			}
		}
	})
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		httpLis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		cfg := server.Config{
			NodeID: id, DataDir: filepath.Join(root, id),
			GRPCAddr: peers[id], HTTPAddr: httpLis.Addr().String(), Peers: peers,
			Logger: slog.New(slog.DiscardHandler),
		}
		c.cfgs = append(c.cfgs, cfg)
		cfg.GRPCListener, cfg.HTTPListener = grpcLis[i], httpLis
		n, err := server.StartNode(cfg)
		require.NoError(t, err, "start %s", id)
		c.nodes[i] = n
		c.addrs = append(c.addrs, peers[id])
	}
	for _, n := range c.nodes {
		require.NoError(t, waitReady(n.HTTPAddr(), readerTestTimeout))
	}
	return c
}

// index returns the index of the node at gRPC address addr.
func (c *restartableCluster) index(addr string) int {
	for i, a := range c.addrs {
		if a == addr {
			return i
		}
	}
	c.t.Fatalf("no node at %s", addr)
	return -1
}

// stop closes node i.
func (c *restartableCluster) stop(i int) {
	require.NotNil(c.t, c.nodes[i], "node %d is not running", i)
	c.nodes[i].Close()
	c.nodes[i] = nil
}

// restart starts node i again on its data and addresses and waits until
// it is ready.
func (c *restartableCluster) restart(i int) {
	require.Nil(c.t, c.nodes[i], "node %d is running", i)
	n, err := server.StartNode(c.cfgs[i])
	require.NoError(c.t, err, "restart %s", c.cfgs[i].NodeID)
	c.nodes[i] = n
	require.NoError(c.t, waitReady(n.HTTPAddr(), readerTestTimeout))
}

// replay reads partition p of topic from offset 0 to until (the high
// watermark the caller knows) through a Reader: the reference a
// subscription is checked against. Pages are served by any replica, and
// one still catching up (a node just restarted) ends its pages at its own
// high watermark, below until: replay then reads on.
func replay(ctx context.Context, t *testing.T, c *client.Client, topic string, p uint32, until uint64) []*client.Event {
	t.Helper()
	r, err := client.NewReader(c, client.ReaderConfig{Topic: topic, Partition: p, Start: client.FromOffset(0), PageEventsMax: 5000})
	require.NoError(t, err)
	var out []*client.Event
	for {
		page, err := r.Next(ctx)
		require.NoError(t, err)
		out = append(out, page.GetEvents()...)
		if r.AtEnd() && uint64(len(out)) >= until {
			return out
		}
		if r.AtEnd() {
			t.Logf("replay of partition %d: the answering replica ends at %d, below %d; reading on", p, page.GetHighWatermark(), until)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				t.Fatalf("replay of partition %d: %d of %d events: %v", p, len(out), until, ctx.Err())
			}
		}
	}
}

// A subscriber to every partition receives 50,000 events produced
// concurrently by four tenants while the node serving one of its
// partitions is stopped and started again: each partition's events arrive
// in offset order, with no gap and no repeat, and equal a Reader's replay
// of the partition; a second subscription resumed at offset N delivers
// exactly what the first delivered from N.
func TestSubscribeFailoverNoGapNoRepeat(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	began := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), subscribeTestTimeout)
	defer cancel()
	rc := startRestartableCluster(t, 3)
	// Retries enough for a partition to elect a leader again on a busy
	// machine: the test is about the subscriber, not the producers.
	c, err := client.New(ctx, client.Config{Servers: rc.addrs, MaxRetries: 100})
	require.NoError(t, err)
	defer c.Close()
	const (
		topic      = "feed"
		partitions = 3
		producers  = 4
		total      = 50_000
		batch      = 1000
	)
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: topic, Partitions: partitions, ReplicationFactor: 3, AutoTenants: true})
	require.NoError(t, err)

	sub, err := c.NewSubscription(topic, client.SubscribeOptions{
		// Small windows, so that credit is given back many times over.
		CreditEvents: 400, CreditBytes: 32 << 10, Heartbeat: 500 * time.Millisecond,
	})
	require.NoError(t, err)

	// Producers: each tenant sends its share, then an "end" marker; once
	// the subscriber has every marker it has every event (a tenant's
	// events precede its marker in its partition).
	produceErr := make(chan error, producers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range producers {
		wg.Go(func() {
			err := produceShare(ctx, c, topic, fmt.Sprintf("tenant-%d", i), total/producers, batch)
			t.Logf("%s: producer %d done (%v)", time.Since(began), i, err)
			produceErr <- err
		})
	}

	live := make(map[uint32][]*client.Event)
	epochs := make(map[uint32]uint64)
	var (
		delivered, markers int
		victim             = -1
		victimPartition    uint32
		restarted          bool
	)
	for d, err := range sub.All(ctx) {
		if err != nil {
			t.Fatalf("%s: after %d events and %d markers: %v; partitions %+v", time.Since(began), delivered, markers, err, sub.Partitions())
		}
		p := d.Event.GetPartition()
		live[p] = append(live[p], d.Event)
		if epochs[p] == 0 {
			epochs[p] = d.Epoch
		}
		require.Equal(t, epochs[p], d.Epoch, "one epoch per partition")
		delivered++
		if string(d.Event.GetPayload()) == "end" {
			if markers++; markers == producers {
				break
			}
		}
		switch {
		case victim < 0 && delivered == total/5:
			for _, sp := range sub.Partitions() {
				if sp.Addr != "" {
					victim, victimPartition = rc.index(sp.Addr), sp.Partition
					break
				}
			}
			require.GreaterOrEqual(t, victim, 0, "some partition is being streamed")
			t.Logf("%s: stopping %s, serving partition %d, after %d events", time.Since(began), rc.addrs[victim], victimPartition, delivered)
			rc.stop(victim)
		case victim >= 0 && !restarted && delivered == total/2:
			t.Logf("%s: restarting %s after %d events", time.Since(began), rc.addrs[victim], delivered)
			rc.restart(victim)
			restarted = true
		}
	}
	t.Logf("%s: every event delivered; partitions %+v", time.Since(began), sub.Partitions())
	for range producers {
		require.NoError(t, <-produceErr)
	}
	require.True(t, restarted, "the node was stopped and restarted while events flowed")
	for _, sp := range sub.Partitions() {
		if sp.Partition == victimPartition {
			assert.Greater(t, sp.Streams, 1, "partition %d resumed on another stream", sp.Partition)
		}
	}

	// Everything delivered, checked against a replay of each partition.
	count := 0
	hws := map[uint32]uint64{}
	for _, sp := range sub.Partitions() {
		hws[sp.Partition] = sp.HighWatermark
	}
	for p := range uint32(partitions) {
		want := replay(ctx, t, c, topic, p, hws[p])
		got := live[p]
		require.Equal(t, len(want), len(got), "partition %d: events delivered", p)
		for i := range want {
			require.Equal(t, uint64(i), got[i].GetOffset(), "partition %d: offset order, no gap, no repeat", p)
			require.Equal(t, want[i].GetEventId(), got[i].GetEventId(), "partition %d offset %d", p, i)
			require.Equal(t, want[i].GetSequence(), got[i].GetSequence(), "partition %d offset %d", p, i)
		}
		count += len(got)
	}
	require.Equal(t, total+producers, count)
	for p, pos := range sub.Positions() {
		assert.Equal(t, client.Position{Offset: uint64(len(live[p])), Epoch: epochs[p]}, pos, "partition %d", p)
	}

	// A subscription resumed at offset N (with the epoch) delivers what
	// the live one delivered from N.
	resume := make(map[uint32]client.Position)
	want := 0
	for p := range uint32(partitions) {
		// Somewhere in the last resumeSpan offsets: what counts is that N
		// is arbitrary, and replaying the whole log again costs time.
		const resumeSpan = 3000
		n := uint64(max(len(live[p])-resumeSpan, 0) + rng.IntN(min(len(live[p]), resumeSpan)+1))
		resume[p] = client.Position{Offset: n, Epoch: epochs[p]}
		want += len(live[p]) - int(n)
	}
	t.Logf("%s: replayed; resuming at %v", time.Since(began), resume)
	again := make(map[uint32][]*client.Event)
	got := 0
	if want > 0 {
		for d, err := range c.Subscribe(ctx, topic, client.SubscribeOptions{Resume: resume}) {
			require.NoError(t, err)
			p := d.Event.GetPartition()
			again[p] = append(again[p], d.Event)
			if got++; got == want {
				break
			}
		}
	}
	for p := range uint32(partitions) {
		from := resume[p].Offset
		require.Len(t, again[p], len(live[p])-int(from), "partition %d from %d", p, from)
		for i, e := range again[p] {
			require.Equal(t, live[p][int(from)+i].GetEventId(), e.GetEventId(), "partition %d offset %d", p, int(from)+i)
		}
	}
}

// produceShare sends n events of tenant in batches through an idempotent
// producer (a retry after a node died is stored once), then the marker.
func produceShare(ctx context.Context, c *client.Client, topic, tenant string, n, batch int) error {
	p, err := c.NewProducer(ctx, topic)
	if err != nil {
		return err
	}
	defer p.Close()
	for sent := 0; sent < n; {
		events := make([]*client.Event, min(batch, n-sent))
		for i := range events {
			events[i] = &client.Event{TenantId: tenant, Payload: fmt.Appendf(nil, "%s-%d", tenant, sent+i)}
		}
		if _, err := p.Send(ctx, events...); err != nil {
			return fmt.Errorf("%s after %d events: %w", tenant, sent, err)
		}
		sent += len(events)
	}
	_, err = p.Send(ctx, &client.Event{TenantId: tenant, Payload: []byte("end")})
	return err
}

// subscribeSetup starts a one-node cluster with topic "orders" (one
// partition) holding n events of tenant "acme".
func subscribeSetup(t *testing.T, n int) (*client.Client, context.Context) {
	t.Helper()
	_, c, ctx := readerSetup(t, 1)
	if n > 0 {
		produceN(ctx, t, c, "acme", "e", n)
	}
	return c, ctx
}

// Breaking out of the loop, or cancelling its context, ends every
// goroutine of the subscription before the loop returns.
func TestSubscribeBreakAndCancelLeaveNoGoroutine(t *testing.T) {
	c, ctx := subscribeSetup(t, 5)
	// The connection's own goroutines exist before the subscription.
	_, err := c.Fetch(ctx, &client.FetchRequest{Topic: "orders", Start: &client.FetchFromPosition{Position: client.Earliest}})
	require.NoError(t, err)
	baseline := goleak.IgnoreCurrent()

	sub, err := c.NewSubscription("orders", client.SubscribeOptions{})
	require.NoError(t, err)
	seen := 0
	for d, err := range sub.All(ctx) {
		require.NoError(t, err)
		require.Equal(t, uint64(seen), d.Event.GetOffset())
		if seen++; seen == 3 {
			break
		}
	}
	require.NoError(t, goleak.Find(baseline), "after break")
	assert.Equal(t, map[uint32]client.Position{0: {Offset: 3, Epoch: sub.Partitions()[0].Position.Epoch}}, sub.Positions())
	assert.NotZero(t, sub.Partitions()[0].Position.Epoch)

	// Iterating again resumes where the break left off; cancelling ends it
	// with the context's error, at the live edge where nothing comes.
	cctx, ccancel := context.WithCancel(ctx)
	var offsets []uint64
	var last error
	for d, err := range sub.All(cctx) {
		if err != nil {
			last = err
			break
		}
		offsets = append(offsets, d.Event.GetOffset())
		if len(offsets) == 2 {
			ccancel()
		}
	}
	ccancel()
	assert.Equal(t, []uint64{3, 4}, offsets)
	assert.ErrorIs(t, last, context.Canceled)
	require.NoError(t, goleak.Find(baseline), "after cancel")
}

// The live edge: a subscription from the latest position gets only events
// produced after it started.
func TestSubscribeFromLatest(t *testing.T) {
	c, ctx := subscribeSetup(t, 3)
	sub, err := c.NewSubscription("orders", client.SubscribeOptions{Start: client.FromLatest(), Heartbeat: 100 * time.Millisecond})
	require.NoError(t, err)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		// Produce once the stream is open at the resolved latest offset.
		if assert.Eventually(t, func() bool {
			ps := sub.Partitions()
			return len(ps) == 1 && ps[0].Known && ps[0].Addr != ""
		}, 20*time.Second, 10*time.Millisecond) {
			produceN(ctx, t, c, "acme", "new", 1)
		}
	})
	for d, err := range sub.All(ctx) {
		require.NoError(t, err)
		assert.Equal(t, "new0", string(d.Event.GetPayload()))
		assert.Equal(t, uint64(3), d.Event.GetOffset())
		break
	}
}

// Lag is the high watermark past what the caller took, per event and for
// the subscription.
func TestSubscribeLag(t *testing.T) {
	c, ctx := subscribeSetup(t, 3)
	sub, err := c.NewSubscription("orders", client.SubscribeOptions{})
	require.NoError(t, err)
	for d, err := range sub.All(ctx) {
		require.NoError(t, err)
		assert.Equal(t, uint64(3), d.HighWatermark)
		assert.Equal(t, uint64(2), d.Lag())
		assert.Equal(t, uint64(2), sub.Lag())
		assert.Equal(t, client.Position{Offset: 1, Epoch: d.Epoch}, d.Next())
		break
	}
}

// A position the partition no longer holds, or one of another epoch, ends
// the subscription with a typed error carrying the bounds; nothing is
// delivered and the position does not jump.
func TestSubscribeTypedErrors(t *testing.T) {
	_, c, ctx := readerSetup(t, 1)
	_, err := c.CreateTopic(ctx, &client.TopicConfig{Name: "short", Partitions: 1, ReplicationFactor: 1, AutoTenants: true, RetentionEvents: 5})
	require.NoError(t, err)
	evs := make([]*client.Event, 20)
	for i := range evs {
		evs[i] = &client.Event{TenantId: "acme", Payload: fmt.Appendf(nil, "e%d", i)}
	}
	_, err = c.Produce(ctx, "short", evs...)
	require.NoError(t, err)
	// Retention runs on the leader every second.
	var low uint64
	require.Eventually(t, func() bool {
		page, err := c.Fetch(ctx, &client.FetchRequest{Topic: "short", Start: &client.FetchFromPosition{Position: client.Earliest}, MaxEvents: 1})
		if err != nil || len(page.GetEvents()) == 0 {
			return false
		}
		low = page.GetEvents()[0].GetOffset()
		return low > 0
	}, 20*time.Second, 50*time.Millisecond)

	only := func(opts client.SubscribeOptions) error {
		t.Helper()
		var errs []error
		for d, err := range c.Subscribe(ctx, "short", opts) {
			require.Nil(t, d, "nothing is delivered")
			errs = append(errs, err)
		}
		require.Len(t, errs, 1, "one error ends the iteration")
		return errs[0]
	}

	err = only(client.SubscribeOptions{Start: client.FromOffset(0)})
	var oor *client.OffsetOutOfRangeError
	require.ErrorAs(t, err, &oor)
	assert.ErrorIs(t, err, client.ErrOffsetOutOfRange)
	assert.Equal(t, uint64(0), oor.Requested)
	assert.GreaterOrEqual(t, oor.Low, low)
	assert.Equal(t, uint64(20), oor.High)

	err = only(client.SubscribeOptions{Start: client.FromOffset(50)})
	require.ErrorAs(t, err, &oor, "beyond the end")
	assert.Equal(t, uint64(50), oor.Requested)

	md, err := c.DescribeTopic(ctx, "short")
	require.NoError(t, err)
	epoch := md.GetPartitions()[0].GetGroupId()
	err = only(client.SubscribeOptions{Resume: map[uint32]client.Position{0: {Offset: 19, Epoch: epoch + 1000}}})
	var changed *client.EpochChangedError
	require.ErrorAs(t, err, &changed)
	assert.ErrorIs(t, err, client.ErrEpochChanged)
	assert.Equal(t, client.EpochChangedError{Epoch: epoch + 1000, CurrentEpoch: epoch, Low: oor.Low, High: 20}, *changed)

	err = only(client.SubscribeOptions{Partitions: []uint32{3}})
	assert.ErrorIs(t, err, client.ErrPartitionNotFound)
	var missing error
	for _, err := range c.Subscribe(ctx, "no-such-topic", client.SubscribeOptions{}) {
		missing = err
	}
	assert.ErrorIs(t, missing, client.ErrTopicNotFound)
	_, err = c.NewSubscription("short", client.SubscribeOptions{Start: client.FromSequence(1), Heartbeat: time.Millisecond})
	assert.ErrorIs(t, err, client.ErrInvalidArgument)
	assert.ErrorContains(t, err, "needs the tenant id")
	assert.ErrorContains(t, err, "heartbeat 1ms")
}

// A topic deleted and recreated under a subscription: resuming with the
// old epoch is refused, typed, instead of reading the new topic's offsets.
func TestSubscribeRecreatedTopicIsEpochChanged(t *testing.T) {
	c, ctx := subscribeSetup(t, 4)
	var pos client.Position
	for d, err := range c.Subscribe(ctx, "orders", client.SubscribeOptions{}) {
		require.NoError(t, err)
		pos = d.Next()
		break
	}
	require.NoError(t, c.DeleteTopic(ctx, "orders", true))
	_, err := c.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 1, ReplicationFactor: 1, AutoTenants: true})
	require.NoError(t, err)
	produceN(ctx, t, c, "acme", "again", 4)

	var last error
	for d, err := range c.Subscribe(ctx, "orders", client.SubscribeOptions{Resume: map[uint32]client.Position{0: pos}}) {
		require.Nil(t, d)
		last = err
	}
	var changed *client.EpochChangedError
	require.ErrorAs(t, last, &changed)
	assert.Equal(t, pos.Epoch, changed.Epoch)
	assert.NotEqual(t, pos.Epoch, changed.CurrentEpoch)
}
