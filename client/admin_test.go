package client_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldtest"
)

func TestTenantCalls(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	c := newClient(t, cluster.Addrs())
	ctx := context.Background()

	created, err := c.CreateTenant(ctx, &client.Tenant{Id: "acme", DisplayName: "Acme Corp", Quota: &client.TenantQuota{EventsPerSec: 100}})
	require.NoError(t, err)
	assert.Equal(t, "Acme Corp", created.GetDisplayName())
	assert.NotZero(t, created.GetCreatedAtUnixNano())
	_, err = c.CreateTenant(ctx, &client.Tenant{Id: "acme"})
	assert.ErrorIs(t, err, client.ErrTenantExists)
	_, err = c.CreateTenant(ctx, &client.Tenant{})
	assert.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = c.CreateTenant(ctx, &client.Tenant{Id: "globex"})
	require.NoError(t, err)

	tenants, err := c.ListTenants(ctx)
	require.NoError(t, err)
	require.Len(t, tenants, 2)
	assert.Equal(t, "acme", tenants[0].GetId())

	got, err := c.DescribeTenant(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, uint64(100), got.GetQuota().GetEventsPerSec())
	_, err = c.DescribeTenant(ctx, "initech")
	assert.ErrorIs(t, err, client.ErrTenantNotFound)
	_, err = c.DescribeTenant(ctx, "")
	assert.ErrorIs(t, err, client.ErrInvalidArgument)

	updated, err := c.SetTenantQuota(ctx, "acme", &client.TenantQuota{EventsPerSec: 5, BytesPerSec: 1024})
	require.NoError(t, err)
	assert.Equal(t, uint64(5), updated.GetQuota().GetEventsPerSec())
	assert.Equal(t, uint64(1024), updated.GetQuota().GetBytesPerSec())
	_, err = c.SetTenantQuota(ctx, "initech", &client.TenantQuota{})
	assert.ErrorIs(t, err, client.ErrTenantNotFound)
}

func TestAlterTopicChangesOnlyTheNamedFields(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	c := newClient(t, cluster.Addrs())
	ctx := context.Background()
	_, err := c.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 2, ReplicationFactor: 1, RetentionBytes: 1 << 20, MaxTtlMs: 1000})
	require.NoError(t, err)

	info, err := c.AlterTopic(ctx, &client.TopicConfig{Name: "orders", RetentionAgeMs: 3_600_000, MaxTtlMs: 99, SchemaVersions: []uint32{2, 3}},
		"retention_age_ms", "schema_versions")
	require.NoError(t, err)
	cfg := info.GetConfig()
	assert.Equal(t, int64(3_600_000), cfg.GetRetentionAgeMs())
	assert.Equal(t, []uint32{2, 3}, cfg.GetSchemaVersions())
	assert.Equal(t, int64(1000), cfg.GetMaxTtlMs(), "not named, not changed")
	assert.Equal(t, uint64(1<<20), cfg.GetRetentionBytes())

	_, err = c.AlterTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 9}, "partitions")
	assert.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = c.AlterTopic(ctx, &client.TopicConfig{Name: "orders"})
	assert.ErrorIs(t, err, client.ErrInvalidArgument, "no field named")
	_, err = c.AlterTopic(ctx, &client.TopicConfig{Name: "missing"}, "max_ttl_ms")
	assert.ErrorIs(t, err, client.ErrTopicNotFound)
}

func TestDeleteTopicRefusesARecentlyUsedTopicWithoutForce(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	cluster.CreateTopic("idle", 1, 0)
	c := newClient(t, cluster.Addrs())
	ctx := context.Background()
	_, err := c.Produce(ctx, "orders", events("acme")...)
	require.NoError(t, err)

	err = c.DeleteTopic(ctx, "orders", false)
	require.ErrorIs(t, err, client.ErrTopicInUse)
	var herr *client.Error
	require.ErrorAs(t, err, &herr)
	assert.NotEmpty(t, herr.Metadata[client.MetadataLastProduceUnixNano])

	require.NoError(t, c.DeleteTopic(ctx, "orders", true))
	require.NoError(t, c.DeleteTopic(ctx, "idle", false), "never produced to")
	_, err = c.Produce(ctx, "orders", events("acme")...)
	assert.ErrorIs(t, err, client.ErrTopicNotFound, "the cache forgot the topic")
	assert.ErrorIs(t, c.DeleteTopic(ctx, "orders", true), client.ErrTopicNotFound)
	assert.ErrorIs(t, c.DeleteTopic(ctx, "", true), client.ErrInvalidArgument)
}

func TestMutatingAdminCallsAreNotResentAfterAnAmbiguousFailure(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	cluster.CreateTopic("orders", 1, 0)
	for _, method := range []string{"AlterTopic", "DeleteTopic", "CreateTenant", "SetTenantQuota", "InitProducer"} {
		for _, node := range cluster.Nodes {
			node.Handle(method, func(context.Context, any) (any, error) {
				return nil, status.Error(codes.Internal, "controller crashed")
			})
		}
	}
	c := newClient(t, []string{cluster.Nodes[0].Addr})
	ctx := context.Background()

	_, err := c.AlterTopic(ctx, &client.TopicConfig{Name: "orders"}, "max_ttl_ms")
	assert.ErrorIs(t, err, client.ErrUnknownOutcome)
	assert.ErrorIs(t, c.DeleteTopic(ctx, "orders", true), client.ErrUnknownOutcome)
	_, err = c.CreateTenant(ctx, &client.Tenant{Id: "acme"})
	assert.ErrorIs(t, err, client.ErrUnknownOutcome)
	_, err = c.SetTenantQuota(ctx, "acme", &client.TenantQuota{})
	assert.ErrorIs(t, err, client.ErrUnknownOutcome)
	_, err = c.InitProducer(ctx)
	assert.ErrorIs(t, err, client.ErrUnknownOutcome)
	for _, method := range []string{"AlterTopic", "DeleteTopic", "CreateTenant", "SetTenantQuota", "InitProducer"} {
		assert.Equal(t, 1, totalCalls(cluster, method), method)
	}
}

func TestInitProducerGivesDistinctIDs(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	c := newClient(t, cluster.Addrs())
	a, err := c.InitProducer(context.Background())
	require.NoError(t, err)
	b, err := c.InitProducer(context.Background())
	require.NoError(t, err)
	assert.NotEmpty(t, a)
	assert.NotEqual(t, a, b)
}
