package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

// Bad group command lines exit 2 before contacting any node.
func TestGroupUsageErrorsExitTwo(t *testing.T) {
	dead := deadAddr(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"group", "create", "g"}, `required flag(s) "topic" not set`},
		{[]string{"group", "create", "--topic", "t"}, "accepts 1 arg(s)"},
		{[]string{"group", "create", "g", "--topic", "t", "--start", "middle"}, `"--start" flag: want earliest, latest, offset:N or time:RFC3339`},
		{[]string{"group", "create", "g", "--topic", "t", "--start", "offset:-1"}, `"--start" flag`},
		{[]string{"group", "create", "g", "--topic", "t", "--start", "time:yesterday"}, "not an RFC 3339 time"},
		{[]string{"group", "create", "g", "--topic", "t", "--ack-wait", "-1s"}, `"--ack-wait" flag`},
		{[]string{"group", "reset", "g", "--topic", "t"}, `required flag(s) "to" not set`},
		{[]string{"group", "list"}, `required flag(s) "topic" not set`},
		{[]string{"group", "describe", "--topic", "t"}, "accepts 1 arg(s)"},
		{[]string{"group", "frobnicate"}, `unknown command "frobnicate"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			res := runCLI(t, "", map[string]string{serverEnv: dead}, tc.args...)
			assert.Equal(t, exitUsage, res.code, res.stderr)
			assert.Contains(t, res.stderr, tc.want)
			assert.NotContains(t, res.stderr, "no node answered")
			assert.Empty(t, res.stdout)
		})
	}
}

// The group verbs against a real three-node cluster: create, describe
// (table and JSON) with lag per partition, list, reset, create again,
// errors and their exit codes, delete; and a topic's dead-letter topic.
func TestGroupVerbs(t *testing.T) {
	_, addrs := startFollowCluster(t, 3)
	env := map[string]string{serverEnv: strings.Join(addrs, ",")}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Servers: addrs})
	require.NoError(t, err)
	defer c.Close()

	res := runCLI(t, "", env, "topic", "create", "orders-dlq", "--partitions", "1", "--replication", "3")
	require.Equal(t, exitOK, res.code, res.stderr)
	res = runCLI(t, "", env, "topic", "create", "orders", "--partitions", "3", "--replication", "3", "--auto-tenants", "--dead-letter-topic", "orders-dlq")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "dead-letter topic: orders-dlq\n")
	res = runCLI(t, "", env, "topic", "alter", "orders", "--dead-letter-topic", "nope")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `dead-letter topic "nope" of topic orders does not exist`)

	res = runCLI(t, "", env, "group", "create", "billing", "--topic", "orders", "--ack-wait", "10s", "--max-deliveries", "4", "--start", "earliest")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "group billing of topic orders: ack wait 10s, max deliveries 4, max pending 1000\n")
	assert.Regexp(t, `(?m)^PARTITION\s+FLOOR\s+CURSOR\s+PENDING\s+DEAD-LETTERED\s+LAG EVENTS\s+LAG TIME\s+GENERATION\s+MEMBER\s+LEADER$`, res.stdout)

	evs := make([]*client.Event, 24)
	for i := range evs {
		evs[i] = &client.Event{TenantId: fmt.Sprintf("t%d", i%6), Payload: []byte("x")}
	}
	results, err := c.Produce(ctx, "orders", evs...)
	require.NoError(t, err)
	want := map[uint32]uint64{}
	for _, r := range results {
		want[r.GetPartition()]++
	}

	res = runCLI(t, "", env, "group", "describe", "billing", "--topic", "orders", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var described groupView
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &described))
	assert.Equal(t, uint64(24), described.LagEvents)
	require.Len(t, described.Partitions, 3)
	for _, p := range described.Partitions {
		assert.True(t, p.Present)
		assert.Equal(t, want[p.Partition], p.LagEvents, "partition %d", p.Partition)
		assert.Equal(t, want[p.Partition], p.HighWatermark-p.Floor)
	}
	res = runCLI(t, "", env, "group", "describe", "billing", "--topic", "orders")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "lag: 24 events, ")
	assert.Regexp(t, fmt.Sprintf(`(?m)^0\s+0\s+0\s+0\s+0\s+%d\s+\S+\s+0\s+-\s+n\d$`, want[0]), res.stdout)

	res = runCLI(t, "", env, "group", "list", "--topic", "orders")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Regexp(t, `(?m)^NAME\s+ACK WAIT\s+MAX DELIVERIES\s+MAX PENDING\s+PENDING\s+LAG EVENTS\s+LAG TIME$`, res.stdout)
	assert.Regexp(t, `(?m)^billing\s+10s\s+4\s+1000\s+0\s+24\s+\S+$`, res.stdout)
	res = runCLI(t, "", env, "group", "list", "--topic", "orders", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var listed []groupView
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &listed))
	require.Len(t, listed, 1)
	assert.Equal(t, uint64(24), listed[0].LagEvents)
	assert.Nil(t, listed[0].Partitions)

	res = runCLI(t, "", env, "group", "reset", "billing", "--topic", "orders", "--to", "latest", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &described))
	assert.Zero(t, described.LagEvents)
	res = runCLI(t, "", env, "group", "reset", "billing", "--topic", "orders", "--to", "time:2000-01-01T00:00:00Z", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &described))
	assert.Equal(t, uint64(24), described.LagEvents)

	// Same settings again: fine. Other settings: refused, exit 1.
	res = runCLI(t, "", env, "group", "create", "billing", "--topic", "orders", "--ack-wait", "10s", "--max-deliveries", "4")
	require.Equal(t, exitOK, res.code, res.stderr)
	res = runCLI(t, "", env, "group", "create", "billing", "--topic", "orders", "--ack-wait", "20s")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `consumer group "billing" of topic "orders" already exists`)
	res = runCLI(t, "", env, "group", "describe", "nope", "--topic", "orders")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `consumer group "nope" of topic "orders" not found`)
	res = runCLI(t, "", env, "group", "list", "--topic", "nope")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `topic "nope" not found`)

	res = runCLI(t, "", env, "group", "delete", "billing", "--topic", "orders")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Equal(t, "group billing of topic orders deleted\n", res.stdout)
	res = runCLI(t, "", env, "group", "describe", "billing", "--topic", "orders")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, "not found")
}
