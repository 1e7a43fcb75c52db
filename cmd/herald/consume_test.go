package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/server"
	"github.com/heraldlog/herald/server/proccluster"
)

func TestParseFrom(t *testing.T) {
	cases := []struct {
		in      string
		tenant  bool
		want    client.Start
		wantErr string
	}{
		{in: "earliest", want: client.FromEarliest()},
		{in: "earliest", tenant: true, want: client.FromSequence(1)}, // a tenant's earliest is seq:1
		{in: "latest", tenant: true, want: client.FromLatest()},
		{in: "offset:0", want: client.FromOffset(0)},
		{in: "offset:18446744073709551615", want: client.FromOffset(1<<64 - 1)},
		{in: "seq:7", tenant: true, want: client.FromSequence(7)},
		{in: "offset:x", wantErr: `"x" is not a non-negative integer`},
		{in: "offset:-1", wantErr: "not a non-negative integer"},
		{in: "offset:", wantErr: "not a non-negative integer"},
		{in: "seq:", tenant: true, wantErr: "not a non-negative integer"},
		{in: "seq:3", wantErr: "needs --tenant"},
		{in: "seq:0", tenant: true, wantErr: "start at 1"},
		{in: "time:2025-01-02T03:04:05Z", want: client.FromTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))},
		{in: "time:2025-01-02T03:04:05.5+01:00", tenant: true, want: client.FromTime(time.Date(2025, 1, 2, 2, 4, 5, 5e8, time.UTC))},
		{in: "foo", wantErr: "want earliest, latest, offset:N, seq:N or time:RFC3339"},
		{in: "time:3", wantErr: `"3" is not an RFC 3339 time`},
		{in: "time:2025-01-02", wantErr: "not an RFC 3339 time"},
		{in: "time:", wantErr: "not an RFC 3339 time"},
		{in: "time:2999-01-01T00:00:00Z", wantErr: "want a time from 1677-09-21T00:12:43Z to 2262-04-11T23:47:16Z"},
		{in: "", wantErr: "want earliest"},
		{in: "Earliest", wantErr: "want earliest"},
	}
	for _, tc := range cases {
		got, err := parseFrom(tc.in, tc.tenant)
		if tc.wantErr != "" {
			require.Error(t, err, tc.in)
			assert.Contains(t, err.Error(), tc.wantErr, tc.in)
			var usage usageError
			assert.True(t, errors.As(err, &usage), "%q is a usage error", tc.in)
			assert.Equal(t, exitUsage, exitCode(err))
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

// syncLines is a concurrency-safe stdout for a CLI run in a goroutine: it
// keeps what was written and wakes awaitLines at each write.
type syncLines struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{} // capacity 1: something was written
}

func newSyncLines() *syncLines { return &syncLines{wrote: make(chan struct{}, 1)} }

func (s *syncLines) Write(p []byte) (int, error) {
	s.mu.Lock()
	n, err := s.buf.Write(p)
	s.mu.Unlock()
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return n, err
}

func (s *syncLines) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// awaitLines waits until n complete lines were written.
func (s *syncLines) awaitLines(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for strings.Count(s.String(), "\n") < n {
		select {
		case <-s.wrote:
		case <-deadline.C:
			t.Fatalf("%d lines after %s, want %d:\n%s", strings.Count(s.String(), "\n"), timeout, n, s.String())
		}
	}
}

// startFollowCluster starts size real nodes (Raft, Pebble, gRPC) in this
// process on loopback ports and waits until each is ready; they are closed
// when the test ends.
func startFollowCluster(t *testing.T, size int) ([]*server.Node, []string) {
	t.Helper()
	return startFollowClusterConfig(t, size, nil)
}

// startFollowClusterConfig is startFollowCluster with each node's config
// changed by mutate (when not nil) before it starts.
func startFollowClusterConfig(t *testing.T, size int, mutate func(*server.Config)) ([]*server.Node, []string) {
	t.Helper()
	peers := map[string]string{}
	lis := make([]net.Listener, size)
	for i := range size {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lis[i] = l
		peers[fmt.Sprintf("n%d", i+1)] = l.Addr().String()
	}
	// The data directory first: cleanups run last-registered first, so the
	// nodes are closed before their directory is removed.
	root := t.TempDir()
	nodes := make([]*server.Node, size)
	t.Cleanup(func() {
		for _, n := range nodes {
			if n != nil {
				n.Close()
			}
		}
	})
	var addrs []string
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		httpLis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		cfg := server.Config{
			NodeID: id, DataDir: filepath.Join(root, id),
			GRPCAddr: peers[id], HTTPAddr: httpLis.Addr().String(), Peers: peers,
			GRPCListener: lis[i], HTTPListener: httpLis,
			Logger: slog.New(slog.DiscardHandler),
		}
		if mutate != nil {
			mutate(&cfg)
		}
		n, err := server.StartNode(cfg)
		require.NoError(t, err, "start %s", id)
		nodes[i] = n
		addrs = append(addrs, peers[id])
	}
	for _, n := range nodes {
		require.Eventually(t, func() bool { return httpGet(n.HTTPAddr(), "/readyz") != "" }, 60*time.Second, 50*time.Millisecond)
	}
	return nodes, addrs
}

// httpGet returns the body of a 200 answer from the node's HTTP path, or
// "". A node with TLS is asked over https (readiness only: the test's
// probe does not verify the node).
func httpGet(addr, path string) string {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + addr + path)
	if err == nil && resp.StatusCode == http.StatusBadRequest {
		// Go's TLS server answers a plaintext request with 400.
		resp.Body.Close()
		hc.Transport = &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // a readiness probe in a test
		resp, err = hc.Get("https://" + addr + path)
	}
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(body)
}

// TestConsumeFollowSurvivesNodeStop: consume --follow on a real cluster
// streams a subscription; when the node serving it stops it goes on from
// another replica at the next event; Ctrl-C (its context ending) exits 0;
// the lines are exactly those consume prints. A tenant follower started
// while a node is down ends by itself at --limit.
func TestConsumeFollowSurvivesNodeStop(t *testing.T) {
	nodes, addrs := startFollowCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Servers: addrs})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "feed", Partitions: 1, ReplicationFactor: 3, AutoTenants: true})
	require.NoError(t, err)
	produce := func(tenant, prefix string, n int) {
		t.Helper()
		evs := make([]*client.Event, n)
		for i := range evs {
			evs[i] = &client.Event{TenantId: tenant, Payload: fmt.Appendf(nil, "%s %d", prefix, i)}
		}
		_, err := c.Produce(ctx, "feed", evs...)
		require.NoError(t, err)
	}
	produce("acme", "old", 3)
	produce("globex", "old", 2)

	env := map[string]string{serverEnv: strings.Join(addrs, ",")}
	followCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	stdout, stderr := newSyncLines(), newSyncLines()
	exit := make(chan int, 1)
	go func() {
		exit <- run(followCtx, []string{"consume", "--topic", "feed", "--partition", "0", "--follow"},
			strings.NewReader(""), stdout, stderr, func(k string) string { return env[k] })
	}()
	stdout.awaitLines(t, 5, 30*time.Second)

	// The node whose replica serves the stream, by its metrics.
	serving := -1
	require.Eventually(t, func() bool {
		for i, n := range nodes {
			if strings.Contains(httpGet(n.HTTPAddr(), "/metrics"), "\nherald_subscriptions_active 1\n") {
				serving = i
			}
		}
		return serving >= 0
	}, 20*time.Second, 50*time.Millisecond)
	t.Logf("stopping %s, which serves the follower", addrs[serving])
	nodes[serving].Close()
	nodes[serving] = nil
	// A tenant follower, filtered on the server, ends at --limit.
	tenantDone := make(chan cliResult, 1)
	go func() {
		tenantDone <- runCLI(t, "", env, "consume", "--topic", "feed", "--tenant", "acme", "--from", "seq:2", "--follow", "--limit", "4")
	}()

	produce("acme", "new", 3)
	produce("globex", "new", 2)
	stdout.awaitLines(t, 10, 60*time.Second)
	interrupt()
	select {
	case code := <-exit:
		require.Equal(t, exitOK, code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("consume --follow did not exit after the interrupt")
	}

	var alive []string
	for i, a := range addrs {
		if nodes[i] != nil {
			alive = append(alive, a)
		}
	}
	res := runCLI(t, "", map[string]string{serverEnv: strings.Join(alive, ",")}, "consume", "--topic", "feed", "--partition", "0")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Equal(t, res.stdout, stdout.String(), "the same lines as consume, each event once, in offset order")
	lines := jsonLines(t, stdout.String())
	for i, l := range lines {
		assert.Equal(t, float64(i), l["offset"])
	}

	tenant := <-tenantDone
	require.Equal(t, exitOK, tenant.code, tenant.stderr)
	got := jsonLines(t, tenant.stdout)
	require.Len(t, got, 4)
	for i, want := range []string{"old 1", "old 2", "new 0", "new 1"} {
		assert.Equal(t, want, got[i]["payload"])
		assert.Equal(t, "acme", got[i]["tenant"])
		assert.Equal(t, float64(i+2), got[i]["sequence"])
	}
}

// TestConsumeFollowBinaryExitsZeroOnInterrupt: the built binary following
// a real node prints each event as it is produced (written out per event,
// not at exit) and exits 0 on SIGINT.
func TestConsumeFollowBinaryExitsZeroOnInterrupt(t *testing.T) {
	if testing.Short() || runtime.GOOS == "windows" {
		t.Skip("builds the binary and sends it SIGINT")
	}
	bin := proccluster.TestBinary(t)
	_, addrs := startFollowCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Servers: addrs})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "feed", Partitions: 1, ReplicationFactor: 1, AutoTenants: true})
	require.NoError(t, err)

	cmd := exec.CommandContext(ctx, bin, "consume", "--topic", "feed", "--partition", "0", "--from", "latest", "--follow", "--server", addrs[0])
	cmd.Env = append(os.Environ(), serverEnv+"=")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	lines := make(chan string, 16)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			select {
			case lines <- s.Text():
			default: // the test reads two; never block the scanner
			}
		}
	}()

	// "latest" is fixed when the subscription starts: produce until the
	// follower prints (bounded), then once more, one event per line.
	var first string
	for i := 0; first == ""; i++ {
		require.Less(t, i, 100, "the follower printed nothing")
		_, err := c.Produce(ctx, "feed", &client.Event{TenantId: "acme", Payload: fmt.Appendf(nil, "e%d", i)})
		require.NoError(t, err)
		select {
		case first = <-lines:
		case <-time.After(200 * time.Millisecond):
		}
	}
	_, err = c.Produce(ctx, "feed", &client.Event{TenantId: "acme", Payload: []byte("last")})
	require.NoError(t, err)
	var second string
	select {
	case second = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("the second event was not printed while the follower runs")
	}
	assert.Contains(t, second, `"payload":"last"`)

	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	<-scanned
	err = cmd.Wait()
	require.NoError(t, err, "exit 0 on SIGINT; stderr: %s", stderr.String())
	assert.Empty(t, stderr.String())
}
