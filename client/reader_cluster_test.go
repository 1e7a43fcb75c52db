package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/server"
)

// readerTestTimeout bounds what one Reader test does with its cluster.
const readerTestTimeout = 60 * time.Second

// realCluster is a cluster of real Herald nodes (Raft, Pebble, gRPC) in
// this process, on 127.0.0.1 ports chosen by the kernel.
type realCluster struct {
	nodes []*server.Node // nil once stopped
	addrs []string       // gRPC addresses, by node index
}

// startRealCluster starts size nodes n1..n<size> and waits until each
// answers /readyz; they are closed when the test ends.
func startRealCluster(t *testing.T, size int) *realCluster {
	t.Helper()
	if size == 1 {
		addr, stop, err := tryStartExampleCluster()
		require.NoError(t, err)
		t.Cleanup(stop)
		return &realCluster{addrs: []string{addr}}
	}
	peers := map[string]string{}
	grpcLis := make([]net.Listener, size)
	for i := range size {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		grpcLis[i] = l
		peers[fmt.Sprintf("n%d", i+1)] = l.Addr().String()
	}
	// The directory first: cleanups run last-registered first, so the nodes
	// close before their data is removed.
	root := t.TempDir()
	c := &realCluster{nodes: make([]*server.Node, size)}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n != nil {
				n.Close()
			}
		}
	})
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		httpLis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		n, err := server.StartNode(server.Config{
			NodeID: id, DataDir: filepath.Join(root, id),
			GRPCAddr: peers[id], HTTPAddr: httpLis.Addr().String(), Peers: peers,
			GRPCListener: grpcLis[i], HTTPListener: httpLis,
			Logger: slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err, "start %s", id)
		c.nodes[i] = n
		c.addrs = append(c.addrs, peers[id])
	}
	for _, n := range c.nodes {
		require.NoError(t, waitReady(n.HTTPAddr(), readerTestTimeout))
	}
	return c
}

// stop closes the node with the given gRPC address.
func (c *realCluster) stop(t *testing.T, addr string) {
	for i, a := range c.addrs {
		if a == addr && c.nodes[i] != nil {
			c.nodes[i].Close()
			c.nodes[i] = nil
			return
		}
	}
	t.Fatalf("no running node at %s", addr)
}

// readerSetup starts a cluster of size nodes, connects a client and
// creates topic "orders" (one partition, replicated on every node, any
// tenant accepted).
func readerSetup(t *testing.T, size int) (*realCluster, *client.Client, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readerTestTimeout)
	t.Cleanup(cancel)
	rc := startRealCluster(t, size)
	c, err := client.New(ctx, client.Config{Servers: rc.addrs})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 1, ReplicationFactor: uint32(size), AutoTenants: true})
	require.NoError(t, err)
	return rc, c, ctx
}

// produceN produces n events of tenant, with payloads prefix0..prefix<n-1>.
func produceN(ctx context.Context, t *testing.T, c *client.Client, tenant, prefix string, n int) {
	t.Helper()
	evs := make([]*client.Event, n)
	for i := range evs {
		evs[i] = &client.Event{TenantId: tenant, Payload: fmt.Appendf(nil, "%s%d", prefix, i)}
	}
	_, err := c.Produce(ctx, "orders", evs...)
	require.NoError(t, err)
}

// readUntil calls r.Next until it has want events (or ctx ends) and
// returns their offsets.
func readUntil(ctx context.Context, t *testing.T, r *client.Reader, want int) []uint64 {
	t.Helper()
	var offsets []uint64
	for len(offsets) < want {
		page, err := r.Next(ctx)
		require.NoError(t, err)
		for _, e := range page.GetEvents() {
			offsets = append(offsets, e.GetOffset())
		}
	}
	return offsets
}

func span(from, to uint64) []uint64 {
	var out []uint64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}

// Pages follow each other; Position after a page resumes, in a new
// Reader, at exactly the next event.
func TestReaderReadsAcrossPagesAndResumesFromPosition(t *testing.T) {
	_, c, ctx := readerSetup(t, 1)
	produceN(ctx, t, c, "acme", "e", 7)

	r, err := client.NewReader(c, client.ReaderConfig{Topic: "orders", PageEventsMax: 3})
	require.NoError(t, err)
	page, err := r.Next(ctx)
	require.NoError(t, err)
	require.Len(t, page.GetEvents(), 3)
	assert.Equal(t, client.FromOffset(3), r.Position())
	assert.False(t, r.AtEnd())

	resumed, err := client.NewReader(c, client.ReaderConfig{Topic: "orders", PageEventsMax: 3, Start: r.Position()})
	require.NoError(t, err)
	assert.Equal(t, span(3, 7), readUntil(ctx, t, resumed, 4), "no gap, no repeat")
	assert.True(t, resumed.AtEnd())
	assert.Equal(t, client.FromOffset(7), resumed.Position())

	// At the end, a read without a wait answers an empty page at once.
	page, err = resumed.Next(ctx)
	require.NoError(t, err)
	assert.Empty(t, page.GetEvents())
	assert.True(t, resumed.AtEnd())
	assert.Equal(t, uint64(7), page.GetHighWatermark())
}

// A tenant reader reads only its tenant's events, by sequence, and
// resumes by sequence.
func TestReaderTenantStream(t *testing.T) {
	_, c, ctx := readerSetup(t, 1)
	for range 3 {
		produceN(ctx, t, c, "acme", "a", 1)
		produceN(ctx, t, c, "globex", "g", 1)
	}

	r, err := c.TenantReader(ctx, "orders", "acme", client.ReaderConfig{PageEventsMax: 2})
	require.NoError(t, err)
	page, err := r.Next(ctx)
	require.NoError(t, err)
	require.Len(t, page.GetEvents(), 2)
	for i, e := range page.GetEvents() {
		assert.Equal(t, "acme", e.GetTenantId())
		assert.Equal(t, uint64(i+1), e.GetSequence())
	}
	assert.Equal(t, client.FromSequence(3), r.Position())

	resumed, err := c.TenantReader(ctx, "orders", "acme", client.ReaderConfig{Start: r.Position()})
	require.NoError(t, err)
	page, err = resumed.Next(ctx)
	require.NoError(t, err)
	require.Len(t, page.GetEvents(), 1)
	assert.Equal(t, uint64(3), page.GetEvents()[0].GetSequence())
	assert.Equal(t, uint64(4), page.GetEvents()[0].GetOffset())
	page, err = resumed.Next(ctx)
	require.NoError(t, err)
	assert.Empty(t, page.GetEvents())
	assert.True(t, resumed.AtEnd())

	_, err = c.TenantReader(ctx, "orders", "", client.ReaderConfig{})
	assert.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = c.TenantReader(ctx, "no-such-topic", "acme", client.ReaderConfig{})
	assert.ErrorIs(t, err, client.ErrTopicNotFound)
}

// A long-polling Reader at the end of the log wakes when an event is
// produced, well before its wait is over.
func TestReaderLongPollWakesOnNewEvent(t *testing.T) {
	_, c, ctx := readerSetup(t, 1)
	produceN(ctx, t, c, "acme", "old", 2)

	const wait = 20 * time.Second
	r, err := client.NewReader(c, client.ReaderConfig{Topic: "orders", Start: client.FromLatest(), Wait: wait})
	require.NoError(t, err)
	page, err := r.Next(ctx)
	require.NoError(t, err)
	assert.Empty(t, page.GetEvents())
	assert.Equal(t, client.FromOffset(2), r.Position())

	type result struct {
		page *client.FetchResponse
		err  error
	}
	done := make(chan result, 1)
	began := time.Now()
	go func() {
		p, err := r.Next(ctx)
		done <- result{p, err}
	}()
	produceN(ctx, t, c, "acme", "new", 1)
	got := <-done
	require.NoError(t, got.err)
	require.Len(t, got.page.GetEvents(), 1)
	assert.Equal(t, "new0", string(got.page.GetEvents()[0].GetPayload()))
	assert.Less(t, time.Since(began), wait, "the long poll ended with the event, not the wait")
	assert.Equal(t, client.FromOffset(3), r.Position())
}

// An offset the partition does not hold is a typed error with the bounds,
// and the Reader does not move.
func TestReaderOffsetOutOfRangeIsTyped(t *testing.T) {
	_, c, ctx := readerSetup(t, 1)
	produceN(ctx, t, c, "acme", "e", 2)

	r, err := client.NewReader(c, client.ReaderConfig{Topic: "orders", Start: client.FromOffset(9)})
	require.NoError(t, err)
	_, err = r.Next(ctx)
	var oor *client.OffsetOutOfRangeError
	require.ErrorAs(t, err, &oor)
	assert.Equal(t, client.OffsetOutOfRangeError{Requested: 9, Low: 0, High: 2}, *oor)
	assert.ErrorIs(t, err, client.ErrOffsetOutOfRange)
	assert.Equal(t, client.FromOffset(9), r.Position())
}

// The partition's leader dies between two pages: the Reader goes on from
// another replica, and after the new leader is elected reads what it
// accepted, with no gap and no repeat.
func TestReaderSurvivesLeaderFailover(t *testing.T) {
	rc, c, ctx := readerSetup(t, 3)
	produceN(ctx, t, c, "acme", "before", 10)

	// A replica that has not applied everything yet makes the read wait
	// rather than answer empty pages at once.
	r, err := client.NewReader(c, client.ReaderConfig{Topic: "orders", PageEventsMax: 4, Wait: 2 * time.Second})
	require.NoError(t, err)
	offsets := readUntil(ctx, t, r, 4)
	require.Equal(t, span(0, 4), offsets)

	md, err := c.Metadata(ctx, "orders")
	require.NoError(t, err)
	leader := md.GetTopics()[0].GetPartitions()[0].GetLeaderAddr()
	require.NotEmpty(t, leader)
	rc.stop(t, leader)

	// The rest of what was committed, from the surviving replicas.
	offsets = append(offsets, readUntil(ctx, t, r, 6)...)
	require.Equal(t, span(0, 10), offsets)

	// New events through the new leader, read on.
	produceN(ctx, t, c, "acme", "after", 5)
	offsets = append(offsets, readUntil(ctx, t, r, 5)...)
	assert.Equal(t, span(0, 15), offsets)
}
