package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/heraldtest"
)

// newClient connects to servers with fast retries; it closes with the test.
func newClient(t *testing.T, servers []string, edit ...func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{
		Servers:        servers,
		DialTimeout:    2 * time.Second,
		RequestTimeout: 5 * time.Second,
		BackoffMin:     time.Millisecond,
		BackoffMax:     5 * time.Millisecond,
	}
	for _, e := range edit {
		e(&cfg)
	}
	c, err := client.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	return c
}

// deadAddr returns an address on which nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

func events(tenants ...string) []*client.Event {
	evs := make([]*client.Event, len(tenants))
	for i, tenant := range tenants {
		evs[i] = &client.Event{TenantId: tenant, Payload: []byte(fmt.Sprintf("payload-%d", i))}
	}
	return evs
}

// tenantFor finds a tenant that routes to partition.
func tenantFor(t *testing.T, partition, partitions uint32) string {
	t.Helper()
	for i := range 1000 {
		tenant := fmt.Sprintf("tenant-%d", i)
		if client.PartitionForTenant(tenant, partitions) == partition {
			return tenant
		}
	}
	t.Fatalf("no tenant routes to partition %d of %d", partition, partitions)
	return ""
}

func totalCalls(c *heraldtest.Cluster, method string) int {
	n := 0
	for _, node := range c.Nodes {
		n += node.Calls(method)
	}
	return n
}

func TestNewUsesTheFirstServerThatAnswers(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	cluster.CreateTopic("orders", 1, 1)
	c := newClient(t, []string{deadAddr(t), cluster.Nodes[0].Addr})

	res, err := c.Produce(context.Background(), "orders", events("acme")...)
	require.NoError(t, err)
	require.Len(t, res, 1)
	assert.Equal(t, 1, cluster.Nodes[1].Calls("Produce"), "the leader named by the metadata got the produce")
	assert.Equal(t, 0, cluster.Nodes[0].Calls("Produce"))
}

func TestNewFailsNamingTheAddressesWhenNoServerAnswers(t *testing.T) {
	a, b := deadAddr(t), deadAddr(t)
	_, err := client.New(context.Background(), client.Config{Servers: []string{a, b}, DialTimeout: 2 * time.Second})
	require.Error(t, err)
	assert.ErrorIs(t, err, client.ErrUnavailable)
	var unreachable *client.UnreachableError
	require.ErrorAs(t, err, &unreachable)
	assert.Equal(t, []string{a, b}, unreachable.Servers)
	assert.Contains(t, err.Error(), "no node answered at "+a+","+b)
}

func TestNewRejectsAnInvalidConfig(t *testing.T) {
	_, err := client.New(context.Background(), client.Config{BackoffMin: -1})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "server address is required")
	assert.Contains(t, err.Error(), "backoff min")
}

func TestProduceSendsEachPartitionToItsLeaderAndKeepsOrder(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 3)
	cluster.CreateTopic("orders", 3, 0, 1, 2)
	c := newClient(t, cluster.Addrs()[:1])

	tenants := []string{tenantFor(t, 0, 3), tenantFor(t, 1, 3), tenantFor(t, 2, 3)}
	var order []string
	for i := range 12 {
		order = append(order, tenants[(i*7)%3])
	}
	res, err := c.Produce(context.Background(), "orders", events(order...)...)
	require.NoError(t, err)
	require.Len(t, res, len(order))

	seq := map[string]uint64{}
	for i, r := range res {
		require.NotNil(t, r, "event %d", i)
		assert.Equal(t, client.PartitionForTenant(order[i], 3), r.GetPartition(), "event %d", i)
		seq[order[i]]++
		assert.Equal(t, seq[order[i]], r.GetSequence(), "event %d: the tenant's sequence counts in request order", i)
		stored := cluster.Events("orders", r.GetPartition())[r.GetOffset()]
		assert.Equal(t, fmt.Sprintf("payload-%d", i), string(stored.GetPayload()), "result %d names its own event", i)
	}
	for i, node := range cluster.Nodes {
		assert.Equal(t, 1, node.Calls("Produce"), "node %d got exactly its partition's group, with no redirect", i)
	}
}

func TestProduceFollowsNotLeaderAndCachesTheLeader(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs())
	cluster.SetLeader("orders", 0, 1) // the cached leader is now stale

	_, err := c.Produce(context.Background(), "orders", events("acme")...)
	require.NoError(t, err)
	assert.Equal(t, 1, cluster.Nodes[0].Calls("Produce"), "the stale leader answered NOT_LEADER once")
	assert.Equal(t, 1, cluster.Nodes[1].Calls("Produce"))

	_, err = c.Produce(context.Background(), "orders", events("acme")...)
	require.NoError(t, err)
	assert.Equal(t, 1, cluster.Nodes[0].Calls("Produce"), "the new leader was cached")
	assert.Equal(t, 2, cluster.Nodes[1].Calls("Produce"))
	assert.Len(t, cluster.Events("orders", 0), 2)
}

func TestProduceRefreshesMetadataOnNotLeaderWithoutAddress(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs())
	cluster.SetLeader("orders", 0, 1)
	cluster.Nodes[0].Handle("Produce", func(context.Context, any) (any, error) {
		return nil, client.NotLeader("", "")
	})
	metadataBefore := totalCalls(cluster, "Metadata")

	_, err := c.Produce(context.Background(), "orders", events("acme")...)
	require.NoError(t, err)
	assert.Equal(t, 1, cluster.Nodes[0].Calls("Produce"))
	assert.Equal(t, 1, cluster.Nodes[1].Calls("Produce"))
	assert.Greater(t, totalCalls(cluster, "Metadata"), metadataBefore, "the SDK asked who leads now")
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestProduceRetriesNoLeaderWithBackoffAndLogsAtDebug(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 3)
	cluster.CreateTopic("orders", 1, 0)
	var calls atomic.Int32
	for _, node := range cluster.Nodes {
		node.Handle("Produce", func(ctx context.Context, req any) (any, error) {
			if calls.Add(1) <= 3 {
				return nil, client.NoLeader("orders/0")
			}
			return node.Default(ctx, req)
		})
	}
	var logs syncBuffer
	c := newClient(t, cluster.Addrs()[:1], func(cfg *client.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})

	res, err := c.Produce(context.Background(), "orders", events("acme")...)
	require.NoError(t, err)
	assert.Equal(t, uint64(0), res[0].GetOffset())
	assert.Equal(t, int32(4), calls.Load())
	assert.Len(t, cluster.Events("orders", 0), 1, "appended once")
	assert.Contains(t, logs.String(), "herald: retrying")
	assert.Contains(t, logs.String(), "level=DEBUG")
}

func TestProduceGivesUpAfterMaxRetries(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	cluster.CreateTopic("orders", 1, -1)
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.MaxRetries = 2 })

	_, err := c.Produce(context.Background(), "orders", events("acme")...)
	require.Error(t, err)
	assert.ErrorIs(t, err, client.ErrNoLeader)
	assert.NotErrorIs(t, err, client.ErrUnknownOutcome)
	assert.Contains(t, err.Error(), "gave up after 3 attempts")
	assert.Equal(t, 3, totalCalls(cluster, "Produce"))
}

// cancelOnRetry is a slog handler that cancels a context when the SDK logs
// its nth retry, i.e. between an attempt and the backoff that follows it.
type cancelOnRetry struct {
	n      int64
	seen   *atomic.Int64
	cancel context.CancelFunc
}

func (h cancelOnRetry) Enabled(context.Context, slog.Level) bool { return true }
func (h cancelOnRetry) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "herald: retrying" && h.seen.Add(1) == h.n {
		h.cancel()
	}
	return nil
}
func (h cancelOnRetry) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h cancelOnRetry) WithGroup(string) slog.Handler      { return h }

func TestProduceStopsRetryingWhenTheContextEnds(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, -1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) {
		cfg.MaxRetries = 1000
		cfg.Logger = slog.New(cancelOnRetry{n: 5, seen: new(atomic.Int64), cancel: cancel})
	})

	_, err := c.Produce(ctx, "orders", events("acme")...)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, client.ErrNoLeader, "the last attempt's error is kept")
	assert.NotErrorIs(t, err, client.ErrUnknownOutcome, "a refused write is not ambiguous")
	assert.Equal(t, 5, cluster.Nodes[0].Calls("Produce"))
}

func TestProduceRetriesAnUnreachableLeaderOnAnotherNode(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	cluster.CreateTopic("orders", 1, 0)
	// Bootstrap from node 1, so that node 0 (the cached leader) has never
	// been connected to: its failure happens before anything is sent.
	c := newClient(t, []string{cluster.Nodes[1].Addr})
	cluster.Nodes[0].Stop()
	cluster.SetLeader("orders", 0, 1)

	res, err := c.Produce(context.Background(), "orders", events("acme")...)
	require.NoError(t, err, "a request that never left may go elsewhere")
	assert.Equal(t, uint64(0), res[0].GetOffset())
	assert.Equal(t, 1, cluster.Nodes[1].Calls("Produce"))
}

func TestProduceNeverResendsAnAmbiguousWrite(t *testing.T) {
	cases := []struct {
		name   string
		handle func(t *testing.T, node *heraldtest.Node) heraldtest.Handler
		also   error
	}{
		{
			name: "UNKNOWN_OUTCOME answer",
			handle: func(*testing.T, *heraldtest.Node) heraldtest.Handler {
				return func(context.Context, any) (any, error) { return nil, client.UnknownOutcome("apply timed out") }
			},
		},
		{
			name: "attempt deadline after sending",
			handle: func(*testing.T, *heraldtest.Node) heraldtest.Handler {
				return func(ctx context.Context, _ any) (any, error) {
					<-ctx.Done() // the client's attempt deadline cancels the call
					return nil, ctx.Err()
				}
			},
			also: context.DeadlineExceeded,
		},
		{
			name: "internal error",
			handle: func(*testing.T, *heraldtest.Node) heraldtest.Handler {
				return func(context.Context, any) (any, error) { return nil, errors.New("disk on fire") }
			},
		},
		{
			name: "connection lost mid-call",
			handle: func(t *testing.T, node *heraldtest.Node) heraldtest.Handler {
				return func(ctx context.Context, _ any) (any, error) {
					stopped := make(chan struct{})
					go func() { defer close(stopped); node.Stop() }() // Stop waits for this handler
					<-ctx.Done()
					t.Cleanup(func() { <-stopped })
					return nil, ctx.Err()
				}
			},
			also: client.ErrUnavailable,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cluster := heraldtest.NewCluster(t, 2)
			cluster.CreateTopic("orders", 1, 0)
			cluster.Nodes[0].Handle("Produce", tc.handle(t, cluster.Nodes[0]))
			c := newClient(t, []string{cluster.Nodes[1].Addr}, func(cfg *client.Config) {
				cfg.RequestTimeout = 200 * time.Millisecond
			})

			res, err := c.Produce(context.Background(), "orders", events("acme")...)
			require.Error(t, err)
			assert.ErrorIs(t, err, client.ErrUnknownOutcome)
			if tc.also != nil {
				assert.ErrorIs(t, err, tc.also)
			}
			assert.Nil(t, res[0], "no result for an unacknowledged event")
			assert.Equal(t, 1, totalCalls(cluster, "Produce"), "the write was not resent")
		})
	}
}

func TestProduceValidatesBeforeSending(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs())
	ctx := context.Background()

	_, err := c.Produce(ctx, "", events("acme")...)
	assert.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = c.Produce(ctx, "orders", &client.Event{Payload: []byte("x")})
	assert.ErrorIs(t, err, client.ErrInvalidArgument)
	assert.ErrorContains(t, err, "tenant")
	_, err = c.Produce(ctx, "orders", nil)
	assert.ErrorIs(t, err, client.ErrInvalidArgument)
	res, err := c.Produce(ctx, "orders")
	assert.NoError(t, err)
	assert.Empty(t, res)
	assert.Equal(t, 0, totalCalls(cluster, "Produce"))
}

func TestProduceReturnsServerRefusalsTyped(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	c := newClient(t, cluster.Addrs())
	ctx := context.Background()

	_, err := c.Produce(ctx, "nope", events("acme")...)
	assert.ErrorIs(t, err, client.ErrTopicNotFound)

	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "small", Partitions: 1, ReplicationFactor: 1, MaxEventBytes: 4})
	require.NoError(t, err)
	_, err = c.Produce(ctx, "small", &client.Event{TenantId: "acme", Payload: []byte("too long")})
	require.ErrorIs(t, err, client.ErrPayloadTooLarge)
	var herr *client.Error
	require.ErrorAs(t, err, &herr)
	assert.Equal(t, "8", herr.Metadata[client.MetadataSize])
	assert.Equal(t, 1, cluster.Nodes[0].Calls("Produce"), "a refusal is not retried")
}

func TestProduceReportsPartialResults(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	cluster.CreateTopic("orders", 2, 0, -1) // partition 1 has no leader
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.MaxRetries = 1 })
	ok, stuck := tenantFor(t, 0, 2), tenantFor(t, 1, 2)

	res, err := c.Produce(context.Background(), "orders", events(ok, stuck, ok)...)
	require.ErrorIs(t, err, client.ErrNoLeader)
	require.Len(t, res, 3)
	assert.NotNil(t, res[0])
	assert.Nil(t, res[1])
	assert.NotNil(t, res[2])
	assert.Equal(t, uint64(1), res[2].GetOffset())
}

func TestProduceConcurrently(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 3)
	cluster.CreateTopic("orders", 4)
	c := newClient(t, cluster.Addrs())
	const producers, perProducer = 8, 25

	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				_, err := c.Produce(context.Background(), "orders", events(fmt.Sprintf("t%d", p), fmt.Sprintf("t%d-%d", p, i))...)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	total := 0
	for p := range uint32(4) {
		for i, e := range cluster.Events("orders", p) {
			assert.Equal(t, uint64(i), e.GetOffset(), "dense offsets")
		}
		total += len(cluster.Events("orders", p))
	}
	assert.Equal(t, producers*perProducer*2, total)
}

func TestFetchLatestGoesToTheLeader(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 3)
	cluster.CreateTopic("orders", 1, 2)
	c := newClient(t, cluster.Addrs()[:1])
	_, err := c.Produce(context.Background(), "orders", events("acme", "acme")...)
	require.NoError(t, err)

	resp, err := c.Fetch(context.Background(), &client.FetchRequest{Topic: "orders", Start: &client.FetchFromPosition{Position: client.Latest}})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), resp.GetHighWatermark())
	assert.Empty(t, resp.GetEvents())
	assert.Equal(t, 1, cluster.Nodes[2].Calls("Fetch"))
	assert.Equal(t, 1, totalCalls(cluster, "Fetch"))
}

func TestFetchReadsByOffsetAndTenantSequence(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs())
	ctx := context.Background()
	_, err := c.Produce(ctx, "orders", events("a", "b", "a", "b", "a")...)
	require.NoError(t, err)

	resp, err := c.Fetch(ctx, &client.FetchRequest{Topic: "orders", Start: &client.FetchFromOffset{Offset: 1}, MaxEvents: 2})
	require.NoError(t, err)
	require.Len(t, resp.GetEvents(), 2)
	assert.Equal(t, []uint64{1, 2}, []uint64{resp.GetEvents()[0].GetOffset(), resp.GetEvents()[1].GetOffset()})
	assert.Equal(t, uint64(3), resp.GetNextOffset())

	resp, err = c.Fetch(ctx, &client.FetchRequest{Topic: "orders", TenantId: "a", Start: &client.FetchFromSequence{Sequence: 2}})
	require.NoError(t, err)
	require.Len(t, resp.GetEvents(), 2)
	assert.Equal(t, uint64(2), resp.GetEvents()[0].GetSequence())
	assert.Equal(t, uint64(4), resp.GetNextSequence())

	_, err = c.Fetch(ctx, &client.FetchRequest{Topic: "orders", Start: &client.FetchFromSequence{Sequence: 1}})
	assert.ErrorIs(t, err, client.ErrInvalidArgument, "a sequence read needs a tenant")
	_, err = c.Fetch(ctx, &client.FetchRequest{})
	assert.ErrorIs(t, err, client.ErrInvalidArgument)
}

func TestFetchRetriesTransientFailuresEvenAfterSending(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs())
	node := cluster.Nodes[0]
	var calls atomic.Int32
	node.Handle("Fetch", func(ctx context.Context, req any) (any, error) {
		if calls.Add(1) == 1 {
			return nil, status.Error(codes.Unavailable, "shutting down")
		}
		return node.Default(ctx, req)
	})

	_, err := c.Fetch(context.Background(), &client.FetchRequest{Topic: "orders", Start: &client.FetchFromPosition{Position: client.Earliest}})
	require.NoError(t, err)
	assert.Equal(t, int32(2), calls.Load())
}

func TestFetchFallsBackToAnotherReplicaWhenTheLeaderIsDown(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	cluster.CreateTopic("orders", 1, 1)
	c := newClient(t, []string{cluster.Nodes[0].Addr})
	_, err := c.Produce(context.Background(), "orders", events("acme")...)
	require.NoError(t, err)
	cluster.Nodes[1].Stop()

	resp, err := c.Fetch(context.Background(), &client.FetchRequest{Topic: "orders", Start: &client.FetchFromOffset{Offset: 0}})
	require.NoError(t, err)
	assert.Len(t, resp.GetEvents(), 1)
	assert.Equal(t, 1, cluster.Nodes[0].Calls("Fetch"))
}

func TestFetchOffsetOutOfRangeIsTypedAndNotRetried(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs())

	_, err := c.Fetch(context.Background(), &client.FetchRequest{Topic: "orders", Start: &client.FetchFromOffset{Offset: 7}})
	var oor *client.OffsetOutOfRangeError
	require.ErrorAs(t, err, &oor)
	assert.Equal(t, client.OffsetOutOfRangeError{Requested: 7, Low: 0, High: 0}, *oor)
	assert.Equal(t, 1, cluster.Nodes[0].Calls("Fetch"))
}

func TestAdminCalls(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 3)
	c := newClient(t, cluster.Addrs())
	ctx := context.Background()

	info, err := c.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 3})
	require.NoError(t, err)
	assert.Len(t, info.GetPartitions(), 3)
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 3})
	assert.ErrorIs(t, err, client.ErrTopicExists)
	_, err = c.CreateTopic(ctx, &client.TopicConfig{})
	assert.ErrorIs(t, err, client.ErrInvalidArgument)

	topics, err := c.ListTopics(ctx)
	require.NoError(t, err)
	require.Len(t, topics, 1)
	assert.Equal(t, "orders", topics[0].GetConfig().GetName())

	_, err = c.DescribeTopic(ctx, "missing")
	assert.ErrorIs(t, err, client.ErrTopicNotFound)
	described, err := c.DescribeTopic(ctx, "orders")
	require.NoError(t, err)
	assert.Equal(t, uint32(3), described.GetConfig().GetPartitions())

	md, err := c.Metadata(ctx, "orders")
	require.NoError(t, err)
	assert.Len(t, md.GetNodes(), 3)
	assert.Equal(t, "n1", md.GetControllerLeaderId())

	st, err := c.ClusterStatus(ctx)
	require.NoError(t, err)
	assert.Len(t, st.GetNodes(), 3)
	assert.Len(t, st.GetPartitions(), 3)
}

func TestCreateTopicIsNotResentAfterAnAmbiguousFailure(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	for _, node := range cluster.Nodes {
		node.Handle("CreateTopic", func(context.Context, any) (any, error) {
			return nil, status.Error(codes.Internal, "controller crashed")
		})
	}
	c := newClient(t, []string{cluster.Nodes[0].Addr})

	_, err := c.CreateTopic(context.Background(), &client.TopicConfig{Name: "orders", Partitions: 1, ReplicationFactor: 1})
	assert.ErrorIs(t, err, client.ErrUnknownOutcome)
	assert.Equal(t, 1, totalCalls(cluster, "CreateTopic"))
}

func TestCallsAfterCloseFail(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c, err := client.New(context.Background(), client.Config{Servers: cluster.Addrs()})
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")

	_, err = c.Produce(context.Background(), "orders", events("acme")...)
	assert.ErrorIs(t, err, client.ErrClosed)
	_, err = c.ListTopics(context.Background())
	assert.ErrorIs(t, err, client.ErrClosed)
}

func TestProduceRoutesByTheTopicsOrdering(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	cluster.CreateTopicWith(&heraldpb.TopicConfig{Name: "by-key", Partitions: 4, Ordering: client.OrderingPerKey})
	cluster.CreateTopicWith(&heraldpb.TopicConfig{Name: "spread", Partitions: 4, Ordering: client.OrderingNone})
	c := newClient(t, cluster.Addrs())
	ctx := context.Background()

	var keyed []*client.Event
	for i := range 12 {
		e := &client.Event{TenantId: "acme", Payload: []byte("x")}
		if i%4 != 0 {
			e.Key = fmt.Appendf(nil, "order-%d", i)
		}
		keyed = append(keyed, e)
	}
	res, err := c.Produce(ctx, "by-key", keyed...)
	require.NoError(t, err)
	for i, r := range res {
		assert.Equal(t, client.PartitionFor(client.OrderingPerKey, "acme", keyed[i].GetKey(), "", 4), r.GetPartition(), "event %d", i)
	}

	spread := events(repeat("acme", 16)...)
	spread[3].EventId = "given-id"
	res, err = c.Produce(ctx, "spread", spread...)
	require.NoError(t, err)
	partitions := map[uint32]bool{}
	for i, r := range res {
		id := spread[i].GetEventId()
		require.NotEmpty(t, id, "event %d got an id before routing", i)
		assert.Equal(t, id, r.GetEventId())
		assert.Equal(t, client.PartitionFor(client.OrderingNone, "acme", nil, id, 4), r.GetPartition(), "event %d goes by its id", i)
		partitions[r.GetPartition()] = true
		if i != 3 {
			parsed, err := uuid.Parse(id)
			require.NoError(t, err)
			assert.Equal(t, uuid.Version(7), parsed.Version())
		}
	}
	assert.Equal(t, "given-id", spread[3].GetEventId(), "a given id is kept")
	assert.Greater(t, len(partitions), 1, "one tenant's events spread over partitions")
}

func TestFetchFromTime(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs())
	ctx := context.Background()
	for _, tenant := range []string{"a", "b", "a", "b"} {
		_, err := c.Produce(ctx, "orders", events(tenant)...)
		require.NoError(t, err)
	}
	stored := cluster.Events("orders", 0)
	from := stored[1].GetProducedAtUnixNano()

	resp, err := c.Fetch(ctx, &client.FetchRequest{Topic: "orders", Start: &client.FetchFromTime{TimeUnixNano: from}})
	require.NoError(t, err)
	require.Len(t, resp.GetEvents(), 3)
	assert.Equal(t, uint64(1), resp.GetEvents()[0].GetOffset(), "the first event produced at or after the time")

	resp, err = c.Fetch(ctx, &client.FetchRequest{Topic: "orders", TenantId: "a", Start: &client.FetchFromTime{TimeUnixNano: from}})
	require.NoError(t, err)
	require.Len(t, resp.GetEvents(), 1)
	assert.Equal(t, uint64(2), resp.GetEvents()[0].GetOffset(), "only the tenant's")

	resp, err = c.Fetch(ctx, &client.FetchRequest{Topic: "orders", Start: &client.FetchFromTime{TimeUnixNano: stored[3].GetProducedAtUnixNano() + 1}})
	require.NoError(t, err)
	assert.Empty(t, resp.GetEvents(), "nothing after the last event")
	assert.Equal(t, uint64(4), resp.GetNextOffset())
}
