package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

// consume --group --idempotent prints each event once per group: a run
// after herald group reset --to earliest prints none of what the first
// run printed, and still acknowledges them all.
func TestConsumeGroupIdempotentSkipsAfterReset(t *testing.T) {
	ctx, env, c, evs := consumeGroupFixture(t, 9)

	first := runCLI(t, "", env, "consume", "--topic", "orders", "--group", "g", "--idempotent", "--idle-exit", "5s")
	require.Equal(t, exitOK, first.code, first.stderr)
	printed := map[string]int{}
	for _, l := range jsonLines(t, first.stdout) {
		printed[l["payload"].(string)]++
	}
	for _, e := range evs {
		assert.GreaterOrEqual(t, printed[string(e.GetPayload())], 1, "event %s not printed", e.GetPayload())
	}

	_, err := c.ResetGroup(ctx, "orders", "g", client.GroupStartEarliest())
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
