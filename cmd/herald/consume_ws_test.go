package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wsclient"
	"github.com/heraldlog/herald/server/proccluster"
)

// syncBuffer is a bytes.Buffer that a test reads while the CLI writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestWSSubscribeOptions(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		from string
		want wsclient.SubscribeOptions
	}{
		{"earliest", wsclient.SubscribeOptions{Start: wsclient.StartEarliest}},
		{"latest", wsclient.SubscribeOptions{Start: wsclient.StartLatest}},
		{"offset:7", wsclient.SubscribeOptions{Start: wsclient.StartOffset, Offset: 7}},
		{"time:2025-01-02T03:04:05Z", wsclient.SubscribeOptions{Start: wsclient.StartTime, Time: at}},
	}
	for _, tc := range cases {
		from, err := parseFrom(tc.from, false)
		require.NoError(t, err)
		got, err := wsSubscribeOptions("t", 2, "", from, tc.from)
		require.NoError(t, err)
		tc.want.Topic, tc.want.Partition = "t", 2
		assert.Equal(t, tc.want, got, tc.from)
	}
	from, err := parseFrom("earliest", true)
	require.NoError(t, err)
	got, err := wsSubscribeOptions("t", 1, "acme", from, "earliest")
	require.NoError(t, err)
	assert.Equal(t, wsclient.SubscribeOptions{Topic: "t", Partition: 1, TenantID: "acme", Start: wsclient.StartSequence, Sequence: 1}, got)

	res := runCLI(t, "", map[string]string{serverEnv: deadAddr(t)}, "consume", "--topic", "t", "--partition", "0", "--ws-url", "ws://x/v1/ws")
	assert.Equal(t, exitUsage, res.code)
	assert.Contains(t, res.stderr, "--ws-url needs --ws")
}

var readingFrom = regexp.MustCompile(`consume: reading feed/0 from (\S+) at offset (\d+)`)

// herald consume --ws prints the same lines as a gRPC consume and goes on
// by itself when the node it reads from is killed: every offset once, in
// order.
func TestConsumeWSResumesAfterNodeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three herald processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes, err := proccluster.Layout(t.TempDir(), 3)
	require.NoError(t, err)
	c, err := proccluster.New(proccluster.Config{Binary: proccluster.TestBinary(t), Nodes: nodes, ServeArgs: []string{"--log-level", "warn"}})
	require.NoError(t, err)
	defer func() {
		_ = c.Close()
		if t.Failed() {
			for i := range nodes {
				t.Logf("--- %s\n%s", nodes[i].ID, c.LogTail(i))
			}
		}
	}()
	require.NoError(t, c.StartAll())
	require.NoError(t, c.AwaitReady(ctx))
	var urls []string
	for _, n := range nodes {
		urls = append(urls, "ws://"+n.HTTPAddr+"/v1/ws")
	}
	cl, err := client.New(ctx, client.Config{Servers: c.GRPCAddrs()})
	require.NoError(t, err)
	defer cl.Close()
	_, err = cl.CreateTopic(ctx, &heraldpb.TopicConfig{Name: "feed", Partitions: 1, ReplicationFactor: 3,
		DedupeWindowMs: int64(10 * time.Minute / time.Millisecond)})
	require.NoError(t, err)
	_, err = cl.CreateTenant(ctx, &heraldpb.Tenant{Id: "acme"})
	require.NoError(t, err)
	produced := 0
	produce := func(n int) {
		t.Helper()
		for range n {
			ev := &heraldpb.Event{TenantId: "acme", EventId: fmt.Sprintf("e%d", produced), Payload: fmt.Appendf(nil, "event %d", produced)}
			var err error
			for attempt := 0; attempt < 100; attempt++ { // resent as is after an unknown outcome: the dedupe window
				if _, err = cl.Produce(ctx, "feed", ev); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			require.NoError(t, err)
			produced++
		}
	}
	produce(100)

	env := map[string]string{serverEnv: strings.Join(c.GRPCAddrs(), ",")}
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"consume", "--topic", "feed", "--partition", "0", "--ws", "--limit", "200"},
			strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	}()
	awaitText := func(what string, cond func() bool) {
		t.Helper()
		require.Eventually(t, cond, 60*time.Second, 10*time.Millisecond, "%s; stderr:\n%s", what, stderr.String())
	}
	awaitText("the first 100 events", func() bool { return strings.Count(stdout.String(), "\n") >= 100 })
	m := readingFrom.FindStringSubmatch(stderr.String())
	require.NotNil(t, m, stderr.String())
	victim := -1
	for i, u := range urls {
		if u == m[1] {
			victim = i
		}
	}
	require.GreaterOrEqual(t, victim, 0, "reading from %s", m[1])
	require.NoError(t, c.Kill(victim))
	produce(100)

	select {
	case got := <-code:
		require.Equal(t, exitOK, got, stderr.String())
	case <-ctx.Done():
		t.Fatalf("consume --ws did not finish; stderr:\n%s", stderr.String())
	}
	lines := jsonLines(t, stdout.String())
	require.Len(t, lines, 200)
	for i, l := range lines {
		require.Equal(t, float64(i), l["offset"], "line %d", i)
		require.Equal(t, fmt.Sprintf("event %d", i), l["payload"], "line %d", i)
		require.Equal(t, fmt.Sprintf("e%d", i), l["event_id"], "line %d", i)
		require.Equal(t, "acme", l["tenant"], "line %d", i)
		require.NotEmpty(t, l["produced_at"], "line %d", i)
	}
	moves := readingFrom.FindAllStringSubmatch(stderr.String(), -1)
	require.GreaterOrEqual(t, len(moves), 2, "it did not move off the killed node; stderr:\n%s", stderr.String())
	assert.NotEqual(t, m[1], moves[len(moves)-1][1])
	t.Logf("stderr:\n%s", stderr.String())
}

// --ws learns the nodes' WebSocket URLs from the HTTP addresses they
// report in the cluster status: unreachable nodes are left out, a node
// listening on every interface is reached at its gRPC host.
func TestWSURLsFromStatus(t *testing.T) {
	st := &client.ClusterStatusResponse{Nodes: []*heraldpb.NodeStatusInfo{
		{Id: "n1", GrpcAddr: "10.0.0.1:7701", HttpAddr: "10.0.0.1:7801", Reachable: true},
		{Id: "n2", GrpcAddr: "10.0.0.2:7701", HttpAddr: "0.0.0.0:7801", Reachable: true},
		{Id: "n3", GrpcAddr: "[fd00::3]:7701", HttpAddr: ":7801", Reachable: true},
		{Id: "n4", GrpcAddr: "10.0.0.4:7701", HttpAddr: "10.0.0.4:7801", Reachable: false},
		{Id: "n5", GrpcAddr: "10.0.0.5:7701", Reachable: true},
	}}
	urls, err := wsURLsFromStatus(st, "ws")
	require.NoError(t, err)
	assert.Equal(t, []string{"ws://10.0.0.1:7801/v1/ws", "ws://10.0.0.2:7801/v1/ws", "ws://[fd00::3]:7801/v1/ws"}, urls)
	_, err = wsURLsFromStatus(&client.ClusterStatusResponse{Nodes: []*heraldpb.NodeStatusInfo{{Id: "n1", Reachable: true}}}, "ws")
	assert.ErrorContains(t, err, "--ws-url")
}
