package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

// consume --group --idempotent prints each event once per group: a run
// after herald group reset --to earliest prints none of what the first
// run printed, and still acknowledges them all.
func TestConsumeGroupIdempotentSkipsAfterReset(t *testing.T) {
	_, addrs := startFollowCluster(t, 3)
	env := map[string]string{serverEnv: strings.Join(addrs, ",")}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Servers: addrs})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 3, AutoTenants: true})
	require.NoError(t, err)
	_, err = c.CreateGroup(ctx, "orders", "g", nil, client.GroupStartEarliest())
	require.NoError(t, err)
	evs := make([]*client.Event, 9)
	for i := range evs {
		evs[i] = &client.Event{TenantId: []string{"acme", "globex", "tenant-42"}[i%3], Payload: []byte{'a' + byte(i)}}
	}
	_, err = c.Produce(ctx, "orders", evs...)
	require.NoError(t, err)

	first := runCLI(t, "", env, "consume", "--topic", "orders", "--group", "g", "--idempotent", "--idle-exit", "5s")
	require.Equal(t, exitOK, first.code, first.stderr)
	printed := map[string]int{}
	for _, l := range jsonLines(t, first.stdout) {
		printed[l["payload"].(string)]++
	}
	for _, e := range evs {
		assert.GreaterOrEqual(t, printed[string(e.GetPayload())], 1, "event %s not printed", e.GetPayload())
	}

	_, err = c.ResetGroup(ctx, "orders", "g", client.GroupStartEarliest())
	require.NoError(t, err)
	second := runCLI(t, "", env, "consume", "--topic", "orders", "--group", "g", "--idempotent", "--idle-exit", "3s")
	require.Equal(t, exitOK, second.code, second.stderr)
	assert.Empty(t, strings.TrimSpace(second.stdout), "the run after the reset prints nothing again")
	info, err := c.DescribeGroup(ctx, "orders", "g")
	require.NoError(t, err)
	for _, p := range info.GetPartitions() {
		assert.Equal(t, p.GetHighWatermark(), p.GetFloor(), "partition %d: the skipped events are acknowledged", p.GetPartition())
	}

	usage := runCLI(t, "", map[string]string{serverEnv: deadAddr(t)}, "consume", "--topic", "t", "--partition", "0", "--idempotent")
	assert.Equal(t, exitUsage, usage.code, usage.stderr)
	assert.Contains(t, usage.stderr, "--idempotent needs --group")
}
