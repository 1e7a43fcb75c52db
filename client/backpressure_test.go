package client_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/heraldtest"
	"github.com/heraldlog/herald/client/wire"
)

// answer is what a fake node does with one Produce: refuse it (err, with
// nothing written), or append it and answer with throttle_ms; lose makes
// it append and then fail as a lost reply would (Unavailable).
type answer struct {
	throttleMs uint32
	err        error
	lose       bool
}

// produceRecord is one Produce as a fake node saw it: when it arrived,
// when its answer was on its way, and the pause that answer asked for
// (throttle_ms, or a refusal's retry-after).
type produceRecord struct {
	received, answered time.Time
	pause              time.Duration
	tenant             string
	events             int
}

// produceRecorder answers and records the Produce calls of fake nodes, in
// the order they arrive. Safe for concurrent use by the nodes' handlers.
type produceRecorder struct {
	mu      sync.Mutex
	records []produceRecord
}

// install makes every node answer Produce with decide(n), n counting the
// calls from 0 over all nodes, and record it.
func (r *produceRecorder) install(cluster *heraldtest.Cluster, decide func(n int) answer) {
	for _, node := range cluster.Nodes {
		node.Handle("Produce", func(ctx context.Context, req any) (any, error) {
			pr := req.(*heraldpb.ProduceRequest)
			rec := produceRecord{received: time.Now(), tenant: pr.GetEvents()[0].GetTenantId(), events: len(pr.GetEvents())}
			r.mu.Lock()
			a := decide(len(r.records))
			r.records = append(r.records, rec) // a placeholder, so that n counts arrivals
			k := len(r.records) - 1
			r.mu.Unlock()

			var (
				resp any
				err  error
			)
			switch {
			case a.err != nil:
				err = a.err
				rec.pause, _, _ = client.RetryAfter(a.err)
			default:
				resp, err = node.Default(ctx, req)
				if err == nil && a.lose {
					resp, err = nil, status.Error(codes.Unavailable, "reply lost")
				} else if err == nil {
					resp.(*heraldpb.ProduceResponse).ThrottleMs = a.throttleMs
					rec.pause = time.Duration(a.throttleMs) * time.Millisecond
				}
			}
			// Taken before the answer leaves: the client learns of the
			// pause after this instant, so its next request may not
			// arrive before answered + pause.
			rec.answered = time.Now()
			r.mu.Lock()
			r.records[k] = rec
			r.mu.Unlock()
			return resp, err
		})
	}
}

// all returns the records in arrival order.
func (r *produceRecorder) all() []produceRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.records)
}

// assertPaced checks, for requests that the client sent one at a time,
// that each arrived no earlier than the previous answer plus the pause it
// asked for. It is a lower bound on waiting, never on speed.
func assertPaced(t *testing.T, records []produceRecord) {
	t.Helper()
	for i := 1; i < len(records); i++ {
		prev := records[i-1]
		earliest := prev.answered.Add(prev.pause)
		assert.False(t, records[i].received.Before(earliest),
			"request %d arrived %s after answer %d, which asked for a pause of %s",
			i, records[i].received.Sub(prev.answered), i-1, prev.pause)
	}
}

// storedOnce checks that each event id appears exactly once over the
// topic's partitions, and that every one of ids is there.
func storedOnce(t *testing.T, cluster *heraldtest.Cluster, topic string, partitions uint32, ids []string) {
	t.Helper()
	seen := map[string]int{}
	for p := range partitions {
		for _, e := range cluster.Events(topic, p) {
			seen[e.GetEventId()]++
		}
	}
	for _, id := range ids {
		assert.Equal(t, 1, seen[id], "event %s stored once", id)
	}
	assert.Len(t, seen, len(ids), "no event stored that was not sent")
}

// The idempotent Producer in blocking mode: every answer asks for a pause
// or refuses (tenant quota, partition queue) with a retry-after; the
// requests of one lane, serialised, each wait for the pause the previous
// answer asked for, every event is stored once with consecutive sequences,
// and the pending bytes fall back to zero.
func TestProducerBlockModePacesAndResendsRefusals(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	var rec produceRecorder
	rec.install(cluster, func(n int) answer {
		switch n % 3 {
		case 1:
			return answer{err: wire.QuotaExceeded("acme", "events/s", 20)}
		case 2:
			return answer{err: wire.TenantQueueFull("acme", 2048, 1024, 10)}
		}
		return answer{throttleMs: 15}
	})
	var logs syncBuffer
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	p := newProducer(t, c, "orders")

	const senders, sends = 4, 5
	var (
		mu  sync.Mutex
		ids []string
		wg  sync.WaitGroup
	)
	for range senders {
		wg.Go(func() {
			for range sends {
				evs := events("acme", "acme", "acme")
				res, err := p.Send(context.Background(), evs...)
				if !assert.NoError(t, err) {
					return
				}
				for i, r := range res {
					assert.False(t, r.GetDuplicate())
					mu.Lock()
					ids = append(ids, evs[i].GetEventId())
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()

	records := rec.all()
	assert.Len(t, records, 3*senders*sends-2, "each request admitted after two refusals, bar the first")
	assertPaced(t, records)
	storedOnce(t, cluster, "orders", 1, ids)
	_, seqs := storedSeqs(cluster, "orders", 0, "acme")
	for i, s := range seqs {
		assert.Equal(t, uint64(i+1), s, "refusals consume no sequence")
	}
	assert.Zero(t, p.PendingBytes())
	assert.Zero(t, c.PendingBytes())
	assert.Contains(t, logs.String(), "herald: throttled, resending after the hint")
	assert.Contains(t, logs.String(), "herald: pacing")
}

// Client.Produce, which never resends an ambiguous write, resends a
// refusal after its hint: nothing was written, so the outcome is known.
func TestProduceBlockModeResendsRefusalsWithoutUnknownOutcome(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	var rec produceRecorder
	rec.install(cluster, func(n int) answer {
		if n%2 == 0 {
			return answer{err: wire.QueueFull(4096, 1024, 12)}
		}
		return answer{throttleMs: 8}
	})
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.MaxRetries = -1 })

	var ids []string
	for range 6 {
		evs := events("acme", "acme")
		_, err := c.Produce(context.Background(), "orders", evs...)
		require.NoError(t, err, "a refusal is resent even with no retries for other failures")
		for _, e := range evs {
			ids = append(ids, e.GetEventId())
		}
	}
	records := rec.all()
	assert.Len(t, records, 12)
	assertPaced(t, records)
	storedOnce(t, cluster, "orders", 1, ids)
}

// A request refused more often than MaxThrottleRetries fails with the
// refusal: it matches ErrThrottled, carries its hint, and is not an
// unknown outcome.
func TestThrottleRetriesAreBounded(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	var rec produceRecorder
	rec.install(cluster, func(int) answer { return answer{err: wire.QuotaExceeded("acme", "events/s", 1)} })
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.MaxThrottleRetries = 3 })

	_, err := c.Produce(context.Background(), "orders", events("acme")...)
	require.ErrorIs(t, err, client.ErrThrottled)
	assert.NotErrorIs(t, err, client.ErrUnknownOutcome)
	assert.ErrorContains(t, err, "still throttled after 3 resends")
	_, limit, ok := client.RetryAfter(err)
	assert.True(t, ok)
	assert.Equal(t, client.LimitTenantQuota, limit)
	assert.Len(t, rec.all(), 4)
	assert.Empty(t, cluster.Events("orders", 0))
}

// Randomised: a Producer in blocking mode sends from several goroutines
// to three partitions while the fake throttles, refuses (every kind of
// backpressure) and loses replies at random; every event is stored exactly
// once. The seed is printed, and SEED-independent assertions hold for any.
func TestProducerBlockModeDeliversEveryEventExactlyOnce(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	var rngMu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	cluster := heraldtest.NewCluster(t, 3)
	cluster.CreateTopic("orders", 3)
	var rec produceRecorder
	rec.install(cluster, func(int) answer {
		rngMu.Lock()
		defer rngMu.Unlock()
		switch x := rng.IntN(100); {
		case x < 10:
			return answer{err: wire.QuotaExceeded("t", "events/s", int64(rng.IntN(5)))}
		case x < 18:
			return answer{err: wire.QueueFull(2, 1, int64(rng.IntN(5)))}
		case x < 24:
			return answer{err: wire.ConsumerLagExceeded("orders", "billing", 10, 5, int64(rng.IntN(5)))}
		case x < 28:
			return answer{err: wire.NodeLimit("produce_bytes", "in flight", int64(rng.IntN(5)))}
		case x < 34:
			return answer{lose: true}
		case x < 60:
			return answer{throttleMs: uint32(rng.IntN(4))}
		}
		return answer{}
	})
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.MaxRetries = 1000 })
	p := newProducer(t, c, "orders")

	tenants := []string{tenantFor(t, 0, 3), tenantFor(t, 1, 3), tenantFor(t, 2, 3), "acme", "globex"}
	const senders, sends = 5, 20
	var (
		mu  sync.Mutex
		ids []string
		wg  sync.WaitGroup
	)
	for s := range senders {
		wg.Go(func() {
			for k := range sends {
				evs := events(tenants[s], tenants[(s+k)%len(tenants)])
				_, err := p.Send(context.Background(), evs...)
				if !assert.NoError(t, err, "seed %d", seed) {
					return
				}
				mu.Lock()
				for _, e := range evs {
					ids = append(ids, e.GetEventId())
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	storedOnce(t, cluster, "orders", 3, ids)
	assert.Len(t, ids, senders*sends*2)
	assert.Zero(t, p.PendingBytes())
	assert.Zero(t, c.PendingBytes())
}

// Fail-fast mode: a send to a partition whose last answer asked for a
// pause fails at once, without reaching the cluster, with an error that
// matches ErrThrottled and gives the time left; a refusal is returned
// as is, not resent, and pauses the partition for the next send.
func TestFailFastReturnsErrThrottledWithoutSending(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 2, 0)
	var rec produceRecorder
	pausedMs := uint32(time.Hour / time.Millisecond)
	rec.install(cluster, func(n int) answer {
		if n == 0 {
			return answer{throttleMs: pausedMs}
		}
		return answer{err: wire.QuotaExceeded("t", "events/s", 3_600_000)}
	})
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.Backpressure = client.BackpressureFailFast })
	t0, t1 := tenantFor(t, 0, 2), tenantFor(t, 1, 2)

	_, err := c.Produce(context.Background(), "orders", events(t0)...)
	require.NoError(t, err, "admitted, with a pause for next time")
	_, err = c.Produce(context.Background(), "orders", events(t0)...)
	require.ErrorIs(t, err, client.ErrThrottled)
	assert.NotErrorIs(t, err, client.ErrUnknownOutcome)
	left, limit, ok := client.RetryAfter(err)
	require.True(t, ok)
	assert.Equal(t, client.LimitPacing, limit)
	assert.Greater(t, left, time.Duration(0))
	assert.LessOrEqual(t, left, time.Minute, "a pause is capped")
	assert.Equal(t, 1, cluster.Nodes[0].Calls("Produce"), "nothing sent while paused")

	// The other partition is not paused: its refusal comes back as is.
	_, err = c.Produce(context.Background(), "orders", events(t1)...)
	require.ErrorIs(t, err, client.ErrThrottled)
	_, limit, _ = client.RetryAfter(err)
	assert.Equal(t, client.LimitTenantQuota, limit)
	assert.Equal(t, 2, cluster.Nodes[0].Calls("Produce"), "a refusal is not resent")
	_, err = c.Produce(context.Background(), "orders", events(t1)...)
	require.ErrorIs(t, err, client.ErrThrottled)
	_, limit, _ = client.RetryAfter(err)
	assert.Equal(t, client.LimitTenantQuota, limit, "the refusal paused the partition")
	assert.Equal(t, 2, cluster.Nodes[0].Calls("Produce"))
	assert.Len(t, cluster.Events("orders", 1), 0)
	assert.Zero(t, c.PendingBytes())
}

// A fail-fast Producer's refused Send consumes no sequence number: once
// the partition takes events again, the next Send starts at 1.
func TestFailFastProducerRefusalConsumesNoSequence(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	var rec produceRecorder
	rec.install(cluster, func(n int) answer {
		if n == 0 {
			return answer{err: wire.QuotaExceeded("acme", "events/s", 5)}
		}
		return answer{}
	})
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.Backpressure = client.BackpressureFailFast })
	p := newProducer(t, c, "orders")

	_, err := p.Send(context.Background(), events("acme", "acme")...)
	require.ErrorIs(t, err, client.ErrThrottled)
	require.Eventually(t, func() bool {
		_, err := p.Send(context.Background(), events("acme", "acme")...)
		if err != nil {
			require.ErrorIs(t, err, client.ErrThrottled, "only throttled while the pause lasts")
		}
		return err == nil
	}, 10*time.Second, time.Millisecond)
	_, seqs := storedSeqs(cluster, "orders", 0, "acme")
	assert.Equal(t, []uint64{1, 2}, seqs)
	assert.Equal(t, 2, cluster.Nodes[0].Calls("Produce"), "the sends during the pause were not sent")
}

// Pending bytes count the events of Sends not yet answered, on the
// Producer and on its Client, and fall to zero once answered; with
// MaxPendingBytes, a Send past it waits for room (blocking mode) or fails
// with ErrThrottled (fail-fast).
func TestPendingBytesRiseAndFallAndBound(t *testing.T) {
	for _, mode := range []client.Backpressure{client.BackpressureBlock, client.BackpressureFailFast} {
		t.Run(mode.String(), func(t *testing.T) {
			cluster := heraldtest.NewCluster(t, 2)
			cluster.CreateTopic("orders", 2)
			gate := make(chan struct{})
			var rec produceRecorder
			rec.install(cluster, func(int) answer { return answer{} })
			first := cluster.Nodes[0]
			first.Handle("Produce", func(ctx context.Context, req any) (any, error) {
				select {
				case <-gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return first.Default(ctx, req)
			})
			var logs syncBuffer
			evsA := events(tenantFor(t, 0, 2), tenantFor(t, 0, 2))
			evsB := events(tenantFor(t, 1, 2))
			c := newClient(t, cluster.Addrs(), func(cfg *client.Config) {
				cfg.Backpressure = mode
				cfg.MaxPendingBytes = 1 // any call past the first waits
				cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			})
			p := newProducer(t, c, "orders")

			var wg sync.WaitGroup
			wg.Go(func() {
				_, err := p.Send(context.Background(), evsA...)
				assert.NoError(t, err)
			})
			require.Eventually(t, func() bool { return first.Calls("Produce") == 1 }, 10*time.Second, time.Millisecond)
			size := int64(proto.Size(evsA[0]) + proto.Size(evsA[1]))
			assert.Equal(t, p.PendingBytes(), c.PendingBytes())
			assert.InDelta(t, size, p.PendingBytes(), 64, "the events' bytes, sized before numbering")

			if mode == client.BackpressureFailFast {
				_, err := p.Send(context.Background(), evsB...)
				require.ErrorIs(t, err, client.ErrThrottled)
				_, limit, ok := client.RetryAfter(err)
				assert.False(t, ok, "no hint for the client's own bound")
				assert.Equal(t, client.LimitPendingBytes, limit)
				assert.Empty(t, rec.all(), "the second send was not sent")
				close(gate)
			} else {
				wg.Go(func() {
					_, err := p.Send(context.Background(), evsB...)
					assert.NoError(t, err)
				})
				require.Eventually(t, func() bool {
					return strings.Contains(logs.String(), "herald: waiting for room under max pending bytes")
				}, 10*time.Second, time.Millisecond)
				assert.Empty(t, rec.all(), "the second send waits for room, unsent")
				close(gate)
			}
			wg.Wait()
			assert.Zero(t, p.PendingBytes())
			assert.Zero(t, c.PendingBytes())
			if mode == client.BackpressureBlock {
				assert.Len(t, rec.all(), 1, "the second send went once the first was answered")
			}
		})
	}
}

// In ignore mode every call is sent, whatever the partition's pause, and a
// refusal comes back as it came, not resent.
func TestIgnoreModeSendsThroughPausesAndReturnsRefusals(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	var rec produceRecorder
	rec.install(cluster, func(n int) answer {
		if n%2 == 0 {
			return answer{throttleMs: uint32(time.Hour / time.Millisecond)}
		}
		return answer{err: wire.QuotaExceeded("t", "events/s", 3_600_000)}
	})
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.Backpressure = client.BackpressureIgnore })
	t0 := tenantFor(t, 0, 1)
	for i := range 4 {
		_, err := c.Produce(context.Background(), "orders", events(t0)...)
		if i%2 == 0 {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, client.ErrThrottled)
			_, limit, _ := client.RetryAfter(err)
			assert.Equal(t, client.LimitTenantQuota, limit)
		}
		assert.Equal(t, i+1, cluster.Nodes[0].Calls("Produce"), "call %d waited for a pause or was resent", i)
	}
	assert.Zero(t, c.PendingBytes())
}
