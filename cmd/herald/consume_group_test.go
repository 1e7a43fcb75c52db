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

// consumeGroupFixture starts a three-node cluster with topic "orders" (3
// partitions), group "g" at earliest and events events of three tenants
// (payloads 'a', 'b', ...); it returns a context for the test, the CLI's
// environment naming the cluster, an SDK client of it and the events.
func consumeGroupFixture(t *testing.T, events int) (context.Context, map[string]string, *client.Client, []*client.Event) {
	t.Helper()
	_, addrs := startFollowCluster(t, 3)
	env := map[string]string{serverEnv: strings.Join(addrs, ",")}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	c, err := client.New(ctx, client.Config{Servers: addrs})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 3, AutoTenants: true})
	require.NoError(t, err)
	_, err = c.CreateGroup(ctx, "orders", "g", nil, client.GroupStartEarliest())
	require.NoError(t, err)
	evs := make([]*client.Event, events)
	for i := range evs {
		evs[i] = &client.Event{TenantId: []string{"acme", "globex", "tenant-42"}[i%3], Payload: []byte{'a' + byte(i)}}
	}
	_, err = c.Produce(ctx, "orders", evs...)
	require.NoError(t, err)
	return ctx, env, c, evs
}

// consume --group prints and acknowledges: 10 events, a run with --limit
// 6 then one with --limit 10 and --idle-exit print each event exactly
// once between them, and the group's floors end at the high watermarks.
func TestConsumeGroupTwoRunsPrintEachEventOnce(t *testing.T) {
	ctx, env, c, evs := consumeGroupFixture(t, 10)

	first := runCLI(t, "", env, "consume", "--topic", "orders", "--group", "g", "--limit", "6", "--member", "cli")
	require.Equal(t, exitOK, first.code, first.stderr)
	second := runCLI(t, "", env, "consume", "--topic", "orders", "--group", "g", "--limit", "10", "--idle-exit", "3s")
	require.Equal(t, exitOK, second.code, second.stderr)
	lines1, lines2 := jsonLines(t, first.stdout), jsonLines(t, second.stdout)
	assert.Len(t, lines1, 6)
	seen := map[string]int{}
	for _, l := range append(lines1, lines2...) {
		seen[l["payload"].(string)]++
	}
	for _, e := range evs {
		assert.Equal(t, 1, seen[string(e.GetPayload())], "event %s printed %d times", e.GetPayload(), seen[string(e.GetPayload())])
	}
	assert.Len(t, lines2, 4)
	info, err := c.DescribeGroup(ctx, "orders", "g")
	require.NoError(t, err)
	for _, p := range info.GetPartitions() {
		assert.Equal(t, p.GetHighWatermark(), p.GetFloor(), "partition %d", p.GetPartition())
	}
}

// consume --group refuses flags of the other modes before connecting.
func TestConsumeGroupUsageErrors(t *testing.T) {
	dead := deadAddr(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"consume", "--topic", "t", "--group", "g", "--partition", "0"}, "--partition does not apply to --group"},
		{[]string{"consume", "--topic", "t", "--group", "g", "--follow"}, "--follow does not apply to --group"},
		{[]string{"consume", "--topic", "t", "--group", ""}, "--group must not be empty"},
		{[]string{"consume", "--group", "g"}, "--topic is required"},
		{[]string{"consume", "--topic", "t", "--partition", "0", "--member", "m"}, "--member and --idle-exit need --group"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			res := runCLI(t, "", map[string]string{serverEnv: dead}, tc.args...)
			assert.Equal(t, exitUsage, res.code, res.stderr)
			assert.Contains(t, res.stderr, tc.want)
		})
	}
}
