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

// payloadCounts counts the handled events by payload.
func payloadCounts(events []*client.Event) map[string]int {
	counts := map[string]int{}
	for _, e := range events {
		counts[string(e.GetPayload())]++
	}
	return counts
}

// An idempotent consumer processes every event; a later member (another
// process) skips what the group processed: the copy of an event written
// again under its event id (a producer retry) and, after a reset to
// earliest, everything, including an event of a causation id below its
// mark. Repeats by the first member are allowed only as at least once (a
// stream that ended before an ack applied, under load): each is logged.
func TestConsumeGroupOnceSkipsWhatTheGroupProcessed(t *testing.T) {
	_, c, ctx := groupConsumerSetup(t, &client.GroupConfig{AckWaitMs: 30_000, MaxDeliveries: 10})
	const spread = 60
	require.NoError(t, produceSpread(ctx, c, "e", spread))
	_, err := c.Produce(ctx, "orders",
		&client.Event{TenantId: "t1", EventId: "retried-1", Payload: []byte("retried")},
		&client.Event{TenantId: "t2", CausationId: "cmd-7", Payload: []byte("first of cmd-7")})
	require.NoError(t, err)
	total := uint64(spread + 2)

	var first handled
	runOnce(ctx, t, c, "member-a", total, &first)
	counts := payloadCounts(first.snapshot())
	for _, p := range append([]string{"retried", "first of cmd-7"}, func() (ps []string) {
		for i := range spread {
			ps = append(ps, fmt.Sprint("e", i))
		}
		return ps
	}()...) {
		require.GreaterOrEqual(t, counts[p], 1, "event %q never handled", p)
		if counts[p] > 1 {
			t.Logf("event %q handled %d times (at least once: its ack did not apply before a stream ended)", p, counts[p])
		}
	}

	// A producer retry writes "retried-1" again (same event id, a higher
	// sequence), and the command cmd-7 causes a second event.
	_, err = c.Produce(ctx, "orders",
		&client.Event{TenantId: "t1", EventId: "retried-1", Payload: []byte("retried")},
		&client.Event{TenantId: "t2", CausationId: "cmd-7", Payload: []byte("second of cmd-7")})
	require.NoError(t, err)
	total += 2
	var second handled
	runOnce(ctx, t, c, "member-b", total, &second)
	counts = payloadCounts(second.snapshot())
	require.Zero(t, counts["retried"], "the copy of an event processed under its event id is skipped")
	require.GreaterOrEqual(t, counts["second of cmd-7"], 1, "a later event of a processed cause is processed")
	require.Len(t, counts, 1, "member-b handled %v", counts)

	_, err = c.ResetGroup(ctx, "orders", "billing", client.GroupStartEarliest())
	require.NoError(t, err)
	var third handled
	runOnce(ctx, t, c, "member-c", total, &third)
	require.Empty(t, third.snapshot(), "after a reset to earliest a new member processes nothing again")
}
