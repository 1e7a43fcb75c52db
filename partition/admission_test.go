package partition

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/partition/partitionpb"
)

// level returns tenant's current tokens (events, bytes) on this partition,
// and whether it has buckets here.
func (a *admission) level(tenant string) (events, bytes float64, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	tb := a.buckets[tenant]
	if tb == nil {
		return 0, 0, false
	}
	return tb.events.tokens, tb.bytes.tokens, true
}

// fakeClock is a settable clock for the admission controller.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// The buckets admit the burst at once, then admit into debt with a hint
// that says how long the debt takes to repay, then refuse (taking
// nothing) past half a bucket of debt; waiting out the hints holds the
// tenant to its rate; a tenant without a quota is never held.
func TestAdmissionBucketsThrottleThenRefuse(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	limits := func(tenant string, _ uint64) (TenantLimit, bool) {
		if tenant != "a" {
			return TenantLimit{}, false
		}
		return TenantLimit{EventsPerSec: 100}, true // burst: one second's worth
	}
	a := newAdmission(1, limits, NewMetrics(), clock.now)
	cost := func(tenant string, n float64) []tenantCost {
		return []tenantCost{{tenant: tenant, events: n, bytes: n}}
	}

	// The burst: 100 events without a hint.
	for range 10 {
		_, throttle, err := a.take(cost("a", 10))
		require.NoError(t, err)
		require.Zero(t, throttle)
	}
	// Into debt: admitted with the time the debt takes to repay.
	_, throttle, err := a.take(cost("a", 20))
	require.NoError(t, err)
	require.Equal(t, 200*time.Millisecond, throttle)
	_, throttle, err = a.take(cost("a", 30))
	require.NoError(t, err)
	require.Equal(t, 500*time.Millisecond, throttle)
	// Past half a bucket of debt: refused, with the wait until it is not.
	_, _, err = a.take(cost("a", 10))
	var qe *QuotaError
	require.ErrorAs(t, err, &qe)
	require.ErrorIs(t, err, ErrThrottled)
	require.Equal(t, "a", qe.Tenant)
	require.Equal(t, 100*time.Millisecond, qe.RetryAfter)
	events, _, _ := a.level("a")
	require.Equal(t, -50.0, events, "a refusal took tokens")
	// After the hint, it goes.
	clock.advance(qe.RetryAfter)
	_, _, err = a.take(cost("a", 10))
	require.NoError(t, err)

	// Another tenant, without a quota, is never held back.
	for range 100 {
		_, throttle, err := a.take(cost("b", 1000))
		require.NoError(t, err)
		require.Zero(t, throttle)
	}

	// A producer that waits out every hint runs at the rate, never refused.
	clock.advance(10 * time.Second)
	start, admitted := clock.t, 0.0
	for clock.t.Sub(start) < 60*time.Second {
		_, throttle, err := a.take(cost("a", 25))
		require.NoError(t, err, "a paced producer was refused")
		admitted += 25
		clock.advance(throttle)
	}
	rate := admitted / clock.t.Sub(start).Seconds()
	require.InDelta(t, 100, rate, 100*0.05, "paced rate %.1f/s against a quota of 100/s (burst of 100 included)", rate)
}

// A call of several tenants is admitted all or nothing; a refused call
// gives back nothing it did not take, and a ticket given back restores
// the tokens taken.
func TestAdmissionAllOrNothingAndGiveBack(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	limits := func(tenant string, _ uint64) (TenantLimit, bool) {
		return TenantLimit{EventsPerSec: 10, BytesPerSec: 1000}, true
	}
	a := newAdmission(1, limits, nil, clock.now)
	_, _, err := a.take([]tenantCost{{tenant: "a", events: 10, bytes: 10}})
	require.NoError(t, err)
	_, _, err = a.take([]tenantCost{{tenant: "a", events: 5, bytes: 5}}) // debt -5: the floor
	require.NoError(t, err)
	// b would go, a would not: neither is taken.
	_, _, err = a.take([]tenantCost{{tenant: "b", events: 5, bytes: 5}, {tenant: "a", events: 1, bytes: 1}})
	require.ErrorIs(t, err, ErrThrottled)
	events, _, ok := a.level("b")
	require.True(t, ok)
	require.Equal(t, 10.0, events, "tenant b's tokens were taken by a refused call")
	// A ticket given back: the tokens return.
	tk, _, err := a.take([]tenantCost{{tenant: "b", events: 4, bytes: 400}})
	require.NoError(t, err)
	tk.giveBack()
	events, bytes, _ := a.level("b")
	require.Equal(t, 10.0, events)
	require.Equal(t, 1000.0, bytes)
	// The bytes bucket refuses on its own.
	_, _, err = a.take([]tenantCost{{tenant: "b", events: 1, bytes: 1000}})
	require.NoError(t, err)
	_, _, err = a.take([]tenantCost{{tenant: "b", events: 1, bytes: 600}})
	var qe *QuotaError
	require.ErrorAs(t, err, &qe)
	require.Contains(t, qe.Detail, "bytes/s")
}

// The fair queue hands calls out by deficit round-robin: a tenant with a
// long queue gets no more bytes per round than a tenant with one call, and
// each tenant's calls keep their order.
func TestFairQueueRoundRobinsTenants(t *testing.T) {
	q := newFairQueue(100, 1000)
	ctx := context.Background()
	call := func(tenant string, bytes int) *produceCall {
		c := newProduceCall(ctx, []*partitionpb.AppendRecord{{TenantId: tenant}})
		c.bytes = bytes
		return c
	}
	flood := make([]*produceCall, 50)
	for i := range flood {
		flood[i] = call("flood", 100)
		require.NoError(t, q.push(ctx, flood[i]))
	}
	quiet := []*produceCall{call("quiet", 100), call("quiet", 100)}
	for _, c := range quiet {
		require.NoError(t, q.push(ctx, c))
	}
	var order []*produceCall
	for {
		c, _ := q.pop()
		if c == nil {
			break
		}
		order = append(order, c)
	}
	require.Len(t, order, 52)
	// The quiet tenant's calls come second and fourth, not after the flood.
	require.Same(t, quiet[0], order[1])
	require.Same(t, quiet[1], order[3])
	fi := 0
	for _, c := range order {
		if c.tenant == "flood" {
			require.Same(t, flood[fi], c, "the flooding tenant's calls out of order")
			fi++
		}
	}
	// Bounded: a full queue makes push wait, until its context ends.
	small := newFairQueue(100, 1)
	require.NoError(t, small.push(ctx, call("a", 1)))
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, small.push(cctx, call("a", 1)), context.DeadlineExceeded)
	left := small.close()
	require.Len(t, left, 1)
	require.ErrorIs(t, small.push(ctx, call("a", 1)), ErrClosed)
}

// A call whose caller gives up while it waits for a slot is withdrawn: the
// caller gets its context's error alone (not an unknown outcome) and the
// call is never proposed.
func TestBatcherDropsAWithdrawnCall(t *testing.T) {
	r, _ := singleNodeRaft(t)
	b, err := NewBatcher(1, r, DefaultBatcherOptions(), testLogger(t), NewMetrics())
	require.NoError(t, err)
	t.Cleanup(b.Close)
	require.NoError(t, r.Barrier(10*time.Second).Error())
	for range cap(b.inflight) {
		b.inflight <- struct{}{}
	}
	before := r.LastIndex()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err = b.Submit(ctx, records("a", 3), 0)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, errors.Is(err, ErrUnknownOutcome), "a call never proposed reported as unknown: %v", err)
	for range cap(b.inflight) {
		<-b.inflight
	}
	// A later call goes; the withdrawn one never does.
	_, _, err = b.Submit(context.Background(), records("a", 1), 0)
	require.NoError(t, err)
	require.Equal(t, before+1, r.LastIndex(), "the withdrawn call was proposed")
	require.Eventually(t, func() bool { return b.queuedBytes.Load() == 0 }, 5*time.Second, time.Millisecond)
}

// A tenant holding its share of the queue (half of the bound, or less by
// its quota's max_inflight_bytes) is refused with nothing proposed, while
// another tenant's call still finds room.
func TestBatcherHoldsATenantToItsShare(t *testing.T) {
	r, _ := singleNodeRaft(t)
	opts := DefaultBatcherOptions()
	opts.BatchBytesMax = 4 << 10
	opts.EntryBytesMax = 8 << 10
	opts.QueueBytesMax = 32 << 10 // share: 16 KiB
	b, err := NewBatcher(1, r, opts, testLogger(t), NewMetrics())
	require.NoError(t, err)
	t.Cleanup(b.Close)
	require.NoError(t, r.Barrier(10*time.Second).Error())
	for range cap(b.inflight) {
		b.inflight <- struct{}{}
	}
	call := func(tenant string) []*partitionpb.AppendRecord {
		return []*partitionpb.AppendRecord{{TenantId: tenant, Event: make([]byte, 5<<10)}}
	}
	held := make(chan error, 4)
	for range 3 { // 15 KiB and more of tenant a: within its share
		go func() {
			_, _, err := b.Submit(context.Background(), call("a"), 0)
			held <- err
		}()
	}
	require.Eventually(t, func() bool { return b.queuedBytes.Load() >= 15<<10 }, 5*time.Second, time.Millisecond)
	before := r.LastIndex()
	_, _, err = b.Submit(context.Background(), call("a"), 0)
	var full *QueueFullError
	require.ErrorAs(t, err, &full)
	require.ErrorIs(t, err, ErrThrottled)
	require.Equal(t, "a", full.Tenant)
	// Tenant b has a quota capping it at 4 KiB: its first call goes (an
	// idle tenant always gets one in), its second is refused.
	go func() {
		_, _, err := b.Submit(context.Background(), call("b"), 4<<10)
		held <- err
	}()
	require.Eventually(t, func() bool { return b.queuedBytes.Load() >= 20<<10 }, 5*time.Second, time.Millisecond)
	_, _, err = b.Submit(context.Background(), call("b"), 4<<10)
	require.ErrorAs(t, err, &full)
	require.Equal(t, "b", full.Tenant)
	require.Equal(t, before, r.LastIndex(), "a refused call was proposed")
	for range cap(b.inflight) {
		<-b.inflight
	}
	for range 4 {
		require.NoError(t, <-held)
	}
}

// Activity counts the partitions a tenant's events were applied to within
// the window, the asking partition among them, and says when the tenant
// has none (a fresh start).
func TestTenantActivityCountsPartitions(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	a := NewTenantActivity(10 * time.Second)
	a.now = clock.now
	n, active := a.Partitions("a", 1)
	require.Equal(t, 1, n)
	require.False(t, active)
	a.record(1, []string{"a", "b"})
	a.record(2, []string{"a"})
	n, active = a.Partitions("a", 1)
	require.Equal(t, 2, n)
	require.True(t, active)
	n, _ = a.Partitions("a", 3) // about to start on a third
	require.Equal(t, 3, n)
	n, _ = a.Partitions("b", 1)
	require.Equal(t, 1, n)
	clock.advance(11 * time.Second)
	n, active = a.Partitions("a", 1)
	require.Equal(t, 1, n)
	require.False(t, active, "activity older than the window still counted")
	require.Zero(t, a.entries, "swept entries still counted")
}

// A ticket carries the queue cap of the call's first tenant (its key in
// the fair queue), also for a tenant whose quota caps only its bytes held.
func TestAdmissionTicketCarriesTheFirstTenantsQueueCap(t *testing.T) {
	limits := func(tenant string, _ uint64) (TenantLimit, bool) {
		switch tenant {
		case "capped":
			return TenantLimit{QueuedBytesMax: 4096}, true
		case "rated":
			return TenantLimit{EventsPerSec: 10, QueuedBytesMax: 512}, true
		}
		return TenantLimit{}, false
	}
	a := newAdmission(1, limits, nil, time.Now)
	for _, tc := range []struct {
		first string
		want  int
	}{{"capped", 4096}, {"rated", 512}, {"free", 0}} {
		tk, _, err := a.take([]tenantCost{{tenant: tc.first, events: 1, bytes: 1}, {tenant: "capped", events: 1, bytes: 1}})
		require.NoError(t, err)
		require.Equal(t, tc.want, tk.queuedBytesMax, "first tenant %s", tc.first)
	}
}
