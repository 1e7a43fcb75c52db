package client

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) read() time.Time { return c.now }

func TestPacerHoldsEachPartitionUntilItsLongestPause(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p := newPacer(slog.New(slog.DiscardHandler))
	p.now = clock.read

	p.hold("orders", 0, 100*time.Millisecond, "")
	p.hold("orders", 0, 40*time.Millisecond, LimitTenantQuota)
	left, limit := p.remaining("orders", 0)
	assert.Equal(t, 100*time.Millisecond, left, "a shorter pause does not shorten a longer one")
	assert.Equal(t, "", limit)
	left, _ = p.remaining("orders", 1)
	assert.Zero(t, left, "partitions are paused apart")
	left, _ = p.remaining("other", 0)
	assert.Zero(t, left, "so are topics")

	clock.now = clock.now.Add(60 * time.Millisecond)
	p.hold("orders", 0, 200*time.Millisecond, LimitConsumerLag)
	left, limit = p.remaining("orders", 0)
	assert.Equal(t, 200*time.Millisecond, left, "a longer pause extends it")
	assert.Equal(t, LimitConsumerLag, limit)

	clock.now = clock.now.Add(200 * time.Millisecond)
	left, _ = p.remaining("orders", 0)
	assert.Zero(t, left)
	p.mu.Lock()
	assert.Empty(t, p.mu.pauses, "a pause that is over is forgotten")
	p.mu.Unlock()

	p.hold("orders", 0, 1000*time.Hour, "")
	left, _ = p.remaining("orders", 0)
	assert.Equal(t, pauseMax, left, "a hint is capped")
	p.hold("orders", 2, 0, "")
	p.hold("orders", 2, -time.Second, "")
	left, _ = p.remaining("orders", 2)
	assert.Zero(t, left, "no pause from a zero or negative hint")
}

func TestPacerSweepsPausesThatAreOver(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p := newPacer(slog.New(slog.DiscardHandler))
	p.now = clock.read
	for i := range pacerSweepEntries {
		p.hold("orders", uint32(i), time.Millisecond, "")
	}
	clock.now = clock.now.Add(time.Second)
	p.hold("orders", 9999, time.Second, "")
	p.mu.Lock()
	defer p.mu.Unlock()
	assert.Len(t, p.mu.pauses, 1, "the pauses that were over went when the map was full")
}

func TestPacerWaitEndsWithTheContext(t *testing.T) {
	p := newPacer(slog.New(slog.DiscardHandler))
	p.hold("orders", 0, time.Minute, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.wait(ctx, "produce to orders/0", "orders", 0)
	require.ErrorIs(t, err, context.Canceled)
	assert.NoError(t, p.wait(ctx, "produce to orders/1", "orders", 1), "an unpaused partition does not wait")
}

func TestThrottledLocallyCarriesItsHint(t *testing.T) {
	err := throttledLocally("produce to orders/0", LimitPacing, 1500*time.Microsecond, "paused")
	assert.ErrorIs(t, err, ErrThrottled)
	d, limit, ok := RetryAfter(err)
	assert.True(t, ok)
	assert.Equal(t, 2*time.Millisecond, d, "rounded up to whole milliseconds")
	assert.Equal(t, LimitPacing, limit)

	err = throttledLocally("produce to orders", LimitPendingBytes, 0, "full")
	assert.ErrorIs(t, err, ErrThrottled)
	_, limit, ok = RetryAfter(err)
	assert.False(t, ok)
	assert.Equal(t, LimitPendingBytes, limit)
}

func TestPendingAdmitsUnderTheLimitOrAlone(t *testing.T) {
	p := newPending(100, nil)
	ok, _ := p.tryAdd(500)
	assert.True(t, ok, "a call larger than the limit goes alone")
	ok, freed := p.tryAdd(1)
	assert.False(t, ok)
	p.release(500)
	select {
	case <-freed:
	default:
		t.Fatal("a release wakes the waiters")
	}
	ok, _ = p.tryAdd(60)
	assert.True(t, ok)
	ok, _ = p.tryAdd(40)
	assert.True(t, ok, "up to the limit")
	err := p.acquire(context.Background(), "produce to orders", 1, true)
	assert.ErrorIs(t, err, ErrThrottled)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, p.acquire(ctx, "produce to orders", 1, false), context.Canceled)
	assert.Equal(t, int64(100), p.load())

	unbounded := newPending(0, nil)
	require.NoError(t, unbounded.acquire(context.Background(), "x", 1<<40, true))
	require.NoError(t, unbounded.acquire(context.Background(), "x", 1<<40, true))
}
