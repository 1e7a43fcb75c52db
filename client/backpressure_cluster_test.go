package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

// countingHandler is a slog handler that counts the records of each
// message; safe for concurrent use.
type countingHandler struct {
	mu     *sync.Mutex
	counts map[string]int
}

func newCountingHandler() countingHandler {
	return countingHandler{mu: &sync.Mutex{}, counts: map[string]int{}}
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[r.Message]++
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

func (h countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[msg]
}

// An idempotent Producer in blocking mode against a real three-node
// cluster whose admission controller holds a tenant to 200 events/s: a
// few goroutines send 2,000 of its events, the leader throttles and
// refuses, the SDK paces itself and resends, and every event is
// acknowledged and stored exactly once. The elapsed time is logged as a
// sanity check of pacing against the quota, not asserted.
func TestProducerBlockModeUnderATenantQuota(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	rc := startRealCluster(t, 3)
	logs := newCountingHandler()
	c, err := client.New(ctx, client.Config{Servers: rc.addrs, Logger: slog.New(logs)})
	require.NoError(t, err)
	defer c.Close()

	const (
		tenant       = "noisy"
		eventsPerSec = 200
		senders      = 4
		sendsEach    = 50
		perSend      = 10
		total        = senders * sendsEach * perSend
	)
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "paced", Partitions: 3, ReplicationFactor: 3})
	require.NoError(t, err)
	_, err = c.CreateTenant(ctx, &client.Tenant{Id: tenant})
	require.NoError(t, err)
	_, err = c.SetTenantQuota(ctx, tenant, &client.TenantQuota{EventsPerSec: eventsPerSec})
	require.NoError(t, err)
	p, err := c.NewProducer(ctx, "paced")
	require.NoError(t, err)
	defer p.Close()

	var (
		mu      sync.Mutex
		ids     = map[string]int{}
		offsets = map[uint64]int{}
		wg      sync.WaitGroup
	)
	start := time.Now()
	for s := range senders {
		wg.Go(func() {
			for k := range sendsEach {
				evs := make([]*client.Event, perSend)
				for i := range evs {
					evs[i] = &client.Event{TenantId: tenant, Payload: fmt.Appendf(nil, "s%d-k%d-i%d", s, k, i)}
				}
				res, err := p.Send(ctx, evs...)
				if !assert.NoError(t, err, "sender %d, send %d", s, k) {
					return
				}
				mu.Lock()
				for i, r := range res {
					ids[evs[i].GetEventId()]++
					offsets[r.GetOffset()]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	require.Len(t, ids, total, "every event acknowledged")
	require.Len(t, offsets, total, "each at its own offset")
	assert.Zero(t, p.PendingBytes())

	paced, resent := logs.count("herald: pacing"), logs.count("herald: throttled, resending after the hint")
	t.Logf("%d events of a %d events/s tenant acknowledged in %s (%.0f events/s); %d waits for a partition's pause, %d resends after a refusal",
		total, eventsPerSec, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), paced, resent)
	assert.Positive(t, paced+resent, "the cluster's backpressure reached the producer")

	// Read back: every event in the tenant's partition exactly once.
	r, err := c.TenantReader(ctx, "paced", tenant, client.ReaderConfig{})
	require.NoError(t, err)
	stored := map[string]int{}
	for n := 0; n < total; {
		page, err := r.Next(ctx)
		require.NoError(t, err)
		require.False(t, len(page.GetEvents()) == 0 && r.AtEnd(), "the log ends after %d of %d events", n, total)
		for _, e := range page.GetEvents() {
			stored[e.GetEventId()]++
			n++
		}
	}
	for id := range ids {
		assert.Equal(t, 1, stored[id], "event %s stored once", id)
	}
	assert.Len(t, stored, total, "nothing stored that was not acknowledged")
}
