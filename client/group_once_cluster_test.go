package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

// handled records the events a ConsumeGroupOnce handler saw.
type handled struct {
	mu     sync.Mutex
	events []*client.Event
}

func (h *handled) handler(ctx context.Context, m *client.GroupMessage) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, m.Event)
	return nil
}

func (h *handled) snapshot() []*client.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*client.Event(nil), h.events...)
}

// runOnce runs ConsumeGroupOnce as member until the group has caught up
// with want events, then stops it.
func runOnce(ctx context.Context, t *testing.T, c *client.Client, member string, want uint64, h *handled) {
	t.Helper()
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeGroupOnce(mctx, "orders", "billing", client.GroupConsumerOptions{MemberID: member}, h.handler)
	}()
	awaitGroupCaughtUp(ctx, t, c, want)
	cancel()
	require.NoError(t, <-done)
}

// An idempotent consumer processes every event once; an event written
// twice with one event id (a producer retry) is processed once; two
// events of one causation id are both processed. After a reset to
// earliest a new member (another process) sees none of them again: the
// marks written with the first member's acks, read by the partition
// leaders, make it skip and acknowledge each.
func TestConsumeGroupOnceSkipsWhatTheGroupProcessed(t *testing.T) {
	_, c, ctx := groupConsumerSetup(t, &client.GroupConfig{AckWaitMs: 30_000, MaxDeliveries: 10})
	const spread = 60
	require.NoError(t, produceSpread(ctx, c, "e", spread))
	// A producer retry that wrote one event twice (same event id, no
	// causation id), and two events caused by one command.
	for range 2 {
		_, err := c.Produce(ctx, "orders", &client.Event{TenantId: "t1", EventId: "retried-1", Payload: []byte("retried")})
		require.NoError(t, err)
	}
	_, err := c.Produce(ctx, "orders",
		&client.Event{TenantId: "t2", CausationId: "cmd-7", Payload: []byte("first of cmd-7")},
		&client.Event{TenantId: "t2", CausationId: "cmd-7", Payload: []byte("second of cmd-7")})
	require.NoError(t, err)
	const total = spread + 4

	var first handled
	runOnce(ctx, t, c, "member-a", total, &first)
	seen := first.snapshot()
	payloads := map[string]int{}
	for _, e := range seen {
		payloads[string(e.GetPayload())]++
	}
	require.Len(t, seen, total-1, "the handler sees every event but the retried copy")
	require.Equal(t, 1, payloads["retried"], "an event written twice under one event id is processed once")
	require.Equal(t, 1, payloads["first of cmd-7"])
	require.Equal(t, 1, payloads["second of cmd-7"])
	for i := range spread {
		require.Equal(t, 1, payloads[fmt.Sprint("e", i)], "event e%d", i)
	}

	_, err = c.ResetGroup(ctx, "orders", "billing", client.GroupStartEarliest())
	require.NoError(t, err)
	var second handled
	runOnce(ctx, t, c, "member-b", total, &second)
	require.Empty(t, second.snapshot(), "after a reset to earliest a new member processes nothing again")
}
