package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

// The SDK's consumer group calls against a real three-node cluster: typed
// results, lag per partition, resets, idempotent create, typed errors.
func TestGroupAdminThroughTheSDK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), readerTestTimeout)
	defer cancel()
	rc := startRealCluster(t, 3)
	c, err := client.New(ctx, client.Config{Servers: rc.addrs})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 3, AutoTenants: true})
	require.NoError(t, err)

	info, err := c.CreateGroup(ctx, "orders", "billing", &client.GroupConfig{MaxDeliveries: 5}, client.GroupStartEarliest())
	require.NoError(t, err)
	require.Len(t, info.GetPartitions(), 3)
	assert.Equal(t, int64(30_000), info.GetConfig().GetAckWaitMs(), "the default ack wait")
	assert.Equal(t, uint32(5), info.GetConfig().GetMaxDeliveries())

	evs := make([]*client.Event, 40)
	for i := range evs {
		evs[i] = &client.Event{TenantId: fmt.Sprintf("t%d", i%7), Payload: []byte("x")}
	}
	results, err := c.Produce(ctx, "orders", evs...)
	require.NoError(t, err)
	want := map[uint32]uint64{}
	for _, r := range results {
		want[r.GetPartition()]++
	}

	info, err = c.DescribeGroup(ctx, "orders", "billing")
	require.NoError(t, err)
	assert.Equal(t, uint64(40), info.GetLagEvents())
	for _, p := range info.GetPartitions() {
		assert.True(t, p.GetPresent())
		assert.Equal(t, want[p.GetPartition()], p.GetLagEvents(), "partition %d", p.GetPartition())
	}
	groups, err := c.ListGroups(ctx, "orders")
	require.NoError(t, err)
	require.Len(t, groups, 1)
	assert.Equal(t, uint64(40), groups[0].GetLagEvents())

	info, err = c.ResetGroup(ctx, "orders", "billing", client.GroupStartLatest())
	require.NoError(t, err)
	assert.Zero(t, info.GetLagEvents())
	info, err = c.ResetGroup(ctx, "orders", "billing", client.GroupStartTime(time.Unix(0, 0)))
	require.NoError(t, err)
	assert.Equal(t, uint64(40), info.GetLagEvents(), "a time before every event is the start of each partition")
	info, err = c.ResetGroup(ctx, "orders", "billing", client.GroupStartOffset(1))
	require.NoError(t, err)
	assert.Equal(t, uint64(40-3), info.GetLagEvents())

	_, err = c.CreateGroup(ctx, "orders", "billing", &client.GroupConfig{MaxDeliveries: 5}, nil)
	require.NoError(t, err, "same config: created already")
	_, err = c.CreateGroup(ctx, "orders", "billing", &client.GroupConfig{MaxDeliveries: 6}, nil)
	require.ErrorIs(t, err, client.ErrGroupExists)
	assert.NotErrorIs(t, err, client.ErrUnknownOutcome, "a refusal, nothing written")
	_, err = c.DescribeGroup(ctx, "orders", "nope")
	require.ErrorIs(t, err, client.ErrGroupNotFound)
	_, err = c.ListGroups(ctx, "nope")
	require.ErrorIs(t, err, client.ErrTopicNotFound)
	_, err = c.CreateGroup(ctx, "orders", "bad name", nil, nil)
	require.ErrorIs(t, err, client.ErrInvalidArgument)

	require.NoError(t, c.DeleteGroup(ctx, "orders", "billing"))
	require.ErrorIs(t, c.DeleteGroup(ctx, "orders", "billing"), client.ErrGroupNotFound)
	groups, err = c.ListGroups(ctx, "orders")
	require.NoError(t, err)
	assert.Empty(t, groups)
}
