package client_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/heraldtest"
)

func newProducer(t *testing.T, c *client.Client, topic string) *client.Producer {
	t.Helper()
	p, err := c.NewProducer(context.Background(), topic)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, p.Close()) })
	return p
}

// storedSeqs returns the producer sequences of a tenant's events stored in
// a partition, in log order.
func storedSeqs(c *heraldtest.Cluster, topic string, partition uint32, tenant string) (ids []string, seqs []uint64) {
	for _, e := range c.Events(topic, partition) {
		if e.GetTenantId() == tenant {
			ids = append(ids, e.GetProducerId())
			seqs = append(seqs, e.GetProducerSeq())
		}
	}
	return ids, seqs
}

func TestProducerNumbersEachTenantAndPartitionFromOne(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 3)
	cluster.CreateTopic("orders", 3)
	c := newClient(t, cluster.Addrs())
	p := newProducer(t, c, "orders")
	require.NotEmpty(t, p.ID())
	assert.Equal(t, "orders", p.Topic())
	a, b := tenantFor(t, 0, 3), tenantFor(t, 2, 3)
	ctx := context.Background()

	for range 3 {
		res, err := p.Send(ctx, events(a, b, a)...)
		require.NoError(t, err)
		require.Len(t, res, 3)
		for i, r := range res {
			assert.False(t, r.GetDuplicate(), "result %d", i)
		}
	}
	ids, seqs := storedSeqs(cluster, "orders", 0, a)
	assert.Equal(t, []uint64{1, 2, 3, 4, 5, 6}, seqs, "consecutive from 1 for tenant a")
	for _, id := range ids {
		assert.Equal(t, p.ID(), id)
	}
	_, seqs = storedSeqs(cluster, "orders", 2, b)
	assert.Equal(t, []uint64{1, 2, 3}, seqs, "tenant b has its own numbering")
	assert.Equal(t, 1, cluster.ProducerIDs(), "InitProducer once")
}

func TestProducerNumbersPerPartitionUnderPerKeyOrdering(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopicWith(&heraldpb.TopicConfig{Name: "orders", Partitions: 4, Ordering: client.OrderingPerKey})
	c := newClient(t, cluster.Addrs())
	p := newProducer(t, c, "orders")

	var evs []*client.Event
	for i := range 20 {
		evs = append(evs, &client.Event{TenantId: "acme", Key: fmt.Appendf(nil, "order-%d", i)})
	}
	res, err := p.Send(context.Background(), evs...)
	require.NoError(t, err)
	perPartition := map[uint32]uint64{}
	for i, r := range res {
		want := client.PartitionFor(client.OrderingPerKey, "acme", evs[i].GetKey(), "", 4)
		assert.Equal(t, want, r.GetPartition(), "event %d goes by its key", i)
		perPartition[want]++
		assert.Equal(t, perPartition[want], evs[i].GetProducerSeq(), "event %d: numbered within its partition", i)
	}
	assert.Greater(t, len(perPartition), 1, "the keys spread over partitions")
}

// TestProducerResendsACommittedRequestWhoseReplyWasLost is the point of
// idempotence: the cluster commits, the reply is lost, Send resends, and
// the log holds each event once.
func TestProducerResendsACommittedRequestWhoseReplyWasLost(t *testing.T) {
	cases := []struct {
		name string
		// lose commits req on node (the leader of orders/0) and then fails
		// the call as if the reply were lost.
		lose func(t *testing.T, cluster *heraldtest.Cluster, node *heraldtest.Node, ctx context.Context, req any) error
	}{
		{
			name: "UNKNOWN_OUTCOME after committing",
			lose: func(t *testing.T, _ *heraldtest.Cluster, node *heraldtest.Node, ctx context.Context, req any) error {
				_, err := node.Default(ctx, req)
				require.NoError(t, err)
				return client.UnknownOutcome("apply timed out")
			},
		},
		{
			name: "internal error after committing",
			lose: func(t *testing.T, _ *heraldtest.Cluster, node *heraldtest.Node, ctx context.Context, req any) error {
				_, err := node.Default(ctx, req)
				require.NoError(t, err)
				return status.Error(codes.Internal, "reply lost")
			},
		},
		{
			name: "connection killed after committing, leadership moved",
			lose: func(t *testing.T, cluster *heraldtest.Cluster, node *heraldtest.Node, ctx context.Context, req any) error {
				_, err := node.Default(ctx, req)
				require.NoError(t, err)
				cluster.SetLeader("orders", 0, 1)
				stopped := make(chan struct{})
				go func() { defer close(stopped); node.Stop() }() // Stop waits for this handler
				t.Cleanup(func() { <-stopped })
				<-ctx.Done()
				return ctx.Err()
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cluster := heraldtest.NewCluster(t, 2)
			cluster.CreateTopic("orders", 1, 0)
			c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.RequestTimeout = time.Second })
			p := newProducer(t, c, "orders")
			ctx := context.Background()

			first, err := p.Send(ctx, events("acme", "acme")...)
			require.NoError(t, err)
			var lost atomic.Bool
			node := cluster.Nodes[0]
			node.Handle("Produce", func(ctx context.Context, req any) (any, error) {
				if lost.CompareAndSwap(false, true) {
					return nil, tc.lose(t, cluster, node, ctx, req)
				}
				return node.Default(ctx, req)
			})

			second := events("acme", "acme")
			res, err := p.Send(ctx, second...)
			require.NoError(t, err, "the resend succeeded")
			require.Len(t, res, 2)
			for i, r := range res {
				assert.True(t, r.GetDuplicate(), "result %d: the cluster already had it", i)
				assert.Equal(t, uint64(2+i), r.GetOffset(), "result %d: its original offset", i)
				assert.Equal(t, uint64(3+i), r.GetSequence(), "result %d: its original sequence", i)
				assert.Equal(t, second[i].GetEventId(), r.GetEventId())
			}
			assert.Len(t, cluster.Events("orders", 0), 4, "each event is in the log once")
			assert.True(t, lost.Load(), "a reply was lost")

			third, err := p.Send(ctx, events("acme")...)
			require.NoError(t, err)
			assert.False(t, third[0].GetDuplicate())
			assert.Equal(t, uint64(4), third[0].GetOffset())
			_, seqs := storedSeqs(cluster, "orders", 0, "acme")
			assert.Equal(t, []uint64{1, 2, 3, 4, 5}, seqs, "numbering goes on after the resend")
			assert.Equal(t, first[0].GetEventId(), cluster.Events("orders", 0)[0].GetEventId())
		})
	}
}

func TestProducerDefiniteRefusalsAreNotRetriedAndConsumeNoSequence(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.EnforceTenants(true)
	cluster.CreateTopicWith(&heraldpb.TopicConfig{
		Name: "orders", Partitions: 1, MaxEventBytes: 8, MaxTtlMs: 60_000,
		SchemaVersions: []uint32{1, 2}, RequiredFields: []string{"correlation_id"},
	}, 0)
	c := newClient(t, cluster.Addrs())
	ctx := context.Background()
	_, err := c.CreateTenant(ctx, &client.Tenant{Id: "acme"})
	require.NoError(t, err)
	p := newProducer(t, c, "orders")
	ok := func() *client.Event {
		return &client.Event{TenantId: "acme", CorrelationId: "flow-1", Payload: []byte("ok")}
	}

	cases := []struct {
		name string
		edit func(*client.Event)
		want error
	}{
		{"payload too large", func(e *client.Event) { e.Payload = []byte("much too long") }, client.ErrPayloadTooLarge},
		{"ttl too large", func(e *client.Event) { e.TtlMs = 61_000 }, client.ErrTTLTooLarge},
		{"schema version", func(e *client.Event) { e.Schema, e.SchemaVersion = "order", 3 }, client.ErrSchemaVersionNotAllowed},
		{"missing field", func(e *client.Event) { e.CorrelationId = "" }, client.ErrMissingField},
		{"unknown tenant", func(e *client.Event) { e.TenantId = "globex" }, client.ErrTenantNotFound},
	}
	for _, tc := range cases {
		before := totalCalls(cluster, "Produce")
		e := ok()
		tc.edit(e)
		res, err := p.Send(ctx, e)
		require.ErrorIs(t, err, tc.want, tc.name)
		assert.NotErrorIs(t, err, client.ErrUnknownOutcome, tc.name)
		assert.Nil(t, res[0], tc.name)
		assert.Equal(t, before+1, totalCalls(cluster, "Produce"), "%s: not retried", tc.name)
	}

	res, err := p.Send(ctx, ok())
	require.NoError(t, err)
	assert.False(t, res[0].GetDuplicate())
	_, seqs := storedSeqs(cluster, "orders", 0, "acme")
	assert.Equal(t, []uint64{1}, seqs, "the refused events consumed no sequence")
	assert.Equal(t, 1, cluster.ProducerIDs(), "refusals keep the producer id")
}

func TestProducerRenewsItsEpochWhenTheOutcomeStaysUnknown(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.MaxRetries = 2 })
	p := newProducer(t, c, "orders")
	ctx := context.Background()
	_, err := p.Send(ctx, events("acme")...)
	require.NoError(t, err)
	firstID := p.ID()

	node := cluster.Nodes[0]
	node.Handle("Produce", func(context.Context, any) (any, error) {
		return nil, client.UnknownOutcome("apply timed out")
	})
	res, err := p.Send(ctx, events("acme")...)
	require.ErrorIs(t, err, client.ErrUnknownOutcome)
	assert.Nil(t, res[0])
	assert.Equal(t, 1+3, node.Calls("Produce"), "the first attempt and MaxRetries resends")
	assert.Empty(t, p.ID(), "the id is dropped until the next send")

	node.Handle("Produce", nil)
	res, err = p.Send(ctx, events("acme")...)
	require.NoError(t, err)
	assert.False(t, res[0].GetDuplicate())
	assert.Equal(t, firstID, p.ID(), "the same producer id, under a new epoch")
	assert.Equal(t, 2, cluster.InitProducers(), "NewProducer, then a new epoch")
	ids, seqs := storedSeqs(cluster, "orders", 0, "acme")
	assert.Equal(t, []string{firstID, firstID}, ids)
	assert.Equal(t, []uint64{1, 1}, seqs, "the new epoch numbers from 1")
}

func TestProducerAmbiguousThenRefusedIsStillUnknown(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.MaxRetries = 2 })
	p := newProducer(t, c, "orders")
	var calls atomic.Int32
	cluster.Nodes[0].Handle("Produce", func(context.Context, any) (any, error) {
		if calls.Add(1) == 1 {
			return nil, client.UnknownOutcome("apply timed out")
		}
		return nil, client.NoLeader("orders/0")
	})

	_, err := p.Send(context.Background(), events("acme")...)
	require.ErrorIs(t, err, client.ErrUnknownOutcome, "the first attempt may have been applied")
	assert.ErrorIs(t, err, client.ErrNoLeader, "the last attempt's error is kept")
	assert.Equal(t, int32(3), calls.Load())
}

func TestProducerUnknownProducerRenewsItsEpochAndRetriesOnce(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs())
	p := newProducer(t, c, "orders")
	ctx := context.Background()
	_, err := p.Send(ctx, events("acme", "acme")...)
	require.NoError(t, err)
	firstID := p.ID()

	cluster.ExpireProducers() // the cluster forgets the producer: seq 3 is refused
	res, err := p.Send(ctx, events("acme")...)
	require.NoError(t, err)
	assert.False(t, res[0].GetDuplicate())
	assert.Equal(t, firstID, p.ID())
	ids, seqs := storedSeqs(cluster, "orders", 0, "acme")
	assert.Equal(t, []string{firstID, firstID, firstID}, ids)
	assert.Equal(t, []uint64{1, 2, 1}, seqs, "numbered again from 1 under a new epoch")
	assert.Equal(t, 1+2, cluster.Nodes[0].Calls("Produce"), "one refused, one retried")

	// A second UNKNOWN_PRODUCER for the same request is returned.
	cluster.Nodes[0].Handle("Produce", func(context.Context, any) (any, error) {
		return nil, client.UnknownProducer("x")
	})
	_, err = p.Send(ctx, events("acme")...)
	require.ErrorIs(t, err, client.ErrUnknownProducer)
	assert.NotErrorIs(t, err, client.ErrUnknownOutcome)
	assert.Equal(t, 3+2, cluster.Nodes[0].Calls("Produce"), "refused, renewed, retried once, refused again")
	assert.Equal(t, 3, cluster.InitProducers(), "NewProducer, then one new epoch per retried request")
}

// The Producer never numbers again and resends events the cluster may
// hold: OUT_OF_ORDER_SEQUENCE, DUPLICATE_SEQUENCE and PRODUCER_FENCED are
// returned as they are, under the same producer id and epoch (issue 9,
// defect 4).
func TestProducerDoesNotRenumberOnSequenceRefusals(t *testing.T) {
	for _, tc := range []struct {
		refusal  error
		sentinel error
	}{
		{client.OutOfOrderSequence("x", 1, 2), client.ErrOutOfOrderSequence},
		{client.DuplicateSequence("x"), client.ErrDuplicateSequence},
		{client.ProducerFenced("x", 1, 2), client.ErrProducerFenced},
	} {
		refusal := tc.refusal
		t.Run(tc.sentinel.Error(), func(t *testing.T) {
			cluster := heraldtest.NewCluster(t, 1)
			cluster.CreateTopic("orders", 1, 0)
			c := newClient(t, cluster.Addrs())
			p := newProducer(t, c, "orders")
			ctx := context.Background()
			_, err := p.Send(ctx, events("acme")...)
			require.NoError(t, err)
			cluster.Nodes[0].Handle("Produce", func(context.Context, any) (any, error) { return nil, refusal })
			_, err = p.Send(ctx, events("acme")...)
			require.ErrorIs(t, err, tc.sentinel)
			assert.Equal(t, 2, cluster.Nodes[0].Calls("Produce"), "sent once, not renumbered and resent")
			assert.Equal(t, 1, cluster.InitProducers(), "no new producer id or epoch")
			assert.Len(t, cluster.Events("orders", 0), 1)
		})
	}
}

func TestProducerSerialisesEachKeyAndOverlapsOthers(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs())
	p := newProducer(t, c, "orders")
	node := cluster.Nodes[0]

	var inFlight, maxInFlight atomic.Int32
	node.Handle("Produce", func(ctx context.Context, req any) (any, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		runtime.Gosched() // widen the window for an overlapping request
		return node.Default(ctx, req)
	})
	const senders, sends = 6, 10
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for i := range sends {
				_, err := p.Send(context.Background(), events(repeat("acme", 1+i%3)...)...)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), maxInFlight.Load(), "one request of (acme, 0) in flight at a time")
	_, seqs := storedSeqs(cluster, "orders", 0, "acme")
	for i, s := range seqs {
		require.Equal(t, uint64(i+1), s, "consecutive, gap-free")
	}

	// Two tenants are two keys: their requests overlap. The first request
	// waits in the fake until the other tenant's arrives.
	arrived := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	node.Handle("Produce", func(ctx context.Context, req any) (any, error) {
		tenant := req.(*heraldpb.ProduceRequest).GetEvents()[0].GetTenantId()
		close(arrived[tenant])
		other := "a"
		if tenant == "a" {
			other = "b"
		}
		select {
		case <-arrived[other]:
		case <-ctx.Done():
			return nil, errors.New("the other tenant's request never came while this one was in flight")
		}
		return node.Default(ctx, req)
	})
	for _, tenant := range []string{"a", "b"} {
		wg.Go(func() {
			_, err := p.Send(context.Background(), events(tenant)...)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestProducerWaitForALaneEndsWithTheContext(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs())
	p := newProducer(t, c, "orders")
	node := cluster.Nodes[0]
	entered, release := make(chan struct{}), make(chan struct{})
	node.Handle("Produce", func(ctx context.Context, req any) (any, error) {
		close(entered)
		<-release
		return node.Default(ctx, req)
	})

	done := make(chan error, 1)
	go func() {
		_, err := p.Send(context.Background(), events("acme")...)
		done <- err
	}()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the lane is held: this Send can only wait, and its context has ended
	_, err := p.Send(ctx, events("acme")...)
	require.ErrorIs(t, err, context.Canceled)
	close(release)
	require.NoError(t, <-done)
	assert.Equal(t, 1, node.Calls("Produce"), "the cancelled Send never sent")

	node.Handle("Produce", nil)
	_, err = p.Send(context.Background(), events("acme")...)
	require.NoError(t, err, "the lane was given back")
	_, seqs := storedSeqs(cluster, "orders", 0, "acme")
	assert.Equal(t, []uint64{1, 2}, seqs)
}

func TestProducerValidatesAndCloses(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs())
	ctx := context.Background()

	_, err := c.NewProducer(ctx, "")
	assert.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = c.NewProducer(ctx, "missing")
	assert.ErrorIs(t, err, client.ErrTopicNotFound)
	assert.Equal(t, 0, cluster.ProducerIDs(), "no id for a missing topic")

	p, err := c.NewProducer(ctx, "orders")
	require.NoError(t, err)
	_, err = p.Send(ctx, &client.Event{})
	assert.ErrorIs(t, err, client.ErrInvalidArgument)
	res, err := p.Send(ctx)
	assert.NoError(t, err)
	assert.Empty(t, res)
	assert.Equal(t, 0, totalCalls(cluster, "Produce"))

	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close is idempotent")
	_, err = p.Send(ctx, events("acme")...)
	assert.ErrorIs(t, err, client.ErrClosed)
}
