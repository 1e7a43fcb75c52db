package client

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestProducer() *Producer {
	p := &Producer{topic: "t", initSlot: make(chan struct{}, 1)}
	p.mu.next = make(map[laneKey]uint64)
	p.mu.lanes = make(map[laneKey]*lane)
	return p
}

func TestProducerLanesAreExclusiveAndDroppedWhenIdle(t *testing.T) {
	p := newTestProducer()
	a, b := laneKey{0, "a"}, laneKey{0, "b"}
	require.NoError(t, p.acquire(context.Background(), []laneKey{a, b}))
	assert.Len(t, p.mu.lanes, 2)

	// A lane that is held cannot be taken: the wait ends with the context,
	// and gives back what it took on the way.
	c := laneKey{0, "0-first"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.acquire(ctx, []laneKey{c, a})
	require.ErrorIs(t, err, context.Canceled)
	assert.Len(t, p.mu.lanes, 2, "the lane of c was dropped again")
	assert.Equal(t, 1, p.mu.lanes[a].users, "the failed waiter left a")

	p.release([]laneKey{a, b})
	assert.Empty(t, p.mu.lanes, "idle lanes are dropped")
	require.NoError(t, p.acquire(ctx, nil), "no lanes, nothing to wait for")
}

func TestProducerRenewDropsOnlyTheCurrentEpoch(t *testing.T) {
	p := newTestProducer()
	p.mu.id = "p1"
	p.mu.next[laneKey{0, "a"}] = 5

	p.renew(1) // an older request's epoch: ignored
	assert.Equal(t, "p1", p.mu.id)
	p.renew(0)
	assert.Empty(t, p.mu.id)
	assert.Empty(t, p.mu.next, "sequences restart at 1")
	assert.Equal(t, uint64(1), p.mu.epoch)

	p.commit(0, map[laneKey]uint64{{0, "a"}: 9}) // numbered under the dropped id
	assert.Empty(t, p.mu.next)
	_, ok := p.number("p1", 0, 0, 0, nil, nil)
	assert.False(t, ok, "a stale id is not used to number")
}
