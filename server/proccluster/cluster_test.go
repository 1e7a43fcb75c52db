//go:build unix

package proccluster

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

func TestMain(m *testing.M) {
	RemoveBuiltAndExit(m.Run())
}

func TestLayoutAndValidate(t *testing.T) {
	nodes, err := Layout("/d", 3)
	require.NoError(t, err)
	require.Len(t, nodes, 3)
	seen := map[string]bool{}
	for i, n := range nodes {
		assert.Equal(t, filepath.Join("/d", n.ID), n.DataDir, "node %d", i)
		assert.Equal(t, filepath.Join("/d", n.ID+".log"), n.LogPath, "node %d", i)
		seen[n.GRPCAddr], seen[n.HTTPAddr] = true, true
	}
	assert.Len(t, seen, 6, "six distinct addresses")
	assert.Equal(t, "n1="+nodes[0].GRPCAddr+",n2="+nodes[1].GRPCAddr+",n3="+nodes[2].GRPCAddr, Peers(nodes))

	cfg := Config{Nodes: []Node{{ID: "n1"}, {ID: "n1"}}, StopTimeout: -1}
	err = cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{"Binary is required", "node 0:", `node id "n1" twice`, "negative"} {
		assert.Contains(t, err.Error(), want)
	}
}

// WithAdminAddrs gives every node a distinct free loopback admin address
// (keeping one already set), and a node with one is started with
// --admin-addr (a stand-in for herald records its arguments).
func TestAdminAddrs(t *testing.T) {
	nodes, err := Layout("/d", 2)
	require.NoError(t, err)
	nodes[1].AdminAddr = "127.0.0.1:9"
	with, err := WithAdminAddrs(nodes)
	require.NoError(t, err)
	assert.Empty(t, nodes[0].AdminAddr, "the layout given is not changed")
	assert.Equal(t, "127.0.0.1:9", with[1].AdminAddr)
	assert.True(t, strings.HasPrefix(with[0].AdminAddr, "127.0.0.1:"), with[0].AdminAddr)
	assert.NotContains(t, []string{with[0].GRPCAddr, with[0].HTTPAddr, with[1].GRPCAddr, with[1].HTTPAddr}, with[0].AdminAddr)

	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-herald")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\"\n"), 0o755))
	exits := make(chan Exit, 2)
	c, err := New(Config{Binary: bin, OnExit: func(e Exit) { exits <- e }, Nodes: []Node{
		{ID: "n1", GRPCAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", AdminAddr: "127.0.0.1:3", DataDir: filepath.Join(dir, "n1"), LogPath: filepath.Join(dir, "n1.log")},
		{ID: "n2", GRPCAddr: "127.0.0.1:4", HTTPAddr: "127.0.0.1:5", DataDir: filepath.Join(dir, "n2"), LogPath: filepath.Join(dir, "n2.log")},
	}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.StartAll())
	for range 2 {
		select {
		case e := <-exits:
			require.NoError(t, e.Err)
		case <-time.After(10 * time.Second):
			t.Fatal("fake node did not exit")
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "n1.log"))
	require.NoError(t, err)
	assert.Contains(t, string(b), " --admin-addr 127.0.0.1:3")
	b, err = os.ReadFile(filepath.Join(dir, "n2.log"))
	require.NoError(t, err)
	assert.NotContains(t, string(b), "--admin-addr")
}

// A stand-in for herald that records its arguments: Wipe keeps the log,
// removes the data and makes the next start, only that one, pass --rejoin.
func TestWipeKeepsLogInsideDataDirAndRejoinsOnce(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-herald")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\"\n"), 0o755))
	data := filepath.Join(dir, "n1")
	exits := make(chan Exit, 1)
	c, err := New(Config{Binary: bin, Nodes: []Node{{ID: "n1", GRPCAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2",
		DataDir: data, LogPath: filepath.Join(data, "node.log")}}, OnExit: func(e Exit) { exits <- e }})
	require.NoError(t, err)
	defer c.Close()
	start := func(extra ...string) {
		require.NoError(t, c.Start(0, extra...))
		select {
		case e := <-exits:
			require.NoError(t, e.Err)
			require.Same(t, c.Process(0), e.Process)
		case <-time.After(10 * time.Second):
			t.Fatal("fake node did not exit")
		}
	}
	start("--extra")
	require.NoError(t, os.WriteFile(filepath.Join(data, "state"), nil, 0o644))
	require.NoError(t, c.Wipe(0))
	_, err = os.Stat(filepath.Join(data, "state"))
	require.True(t, errors.Is(err, os.ErrNotExist), "data still there: %v", err)
	start()
	start()
	b, err := os.ReadFile(filepath.Join(data, "node.log"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 3)
	assert.True(t, strings.HasPrefix(lines[0], "serve --id n1 --data "+data+" --grpc 127.0.0.1:1 --http 127.0.0.1:2 --peers n1=127.0.0.1:1"), lines[0])
	for k, want := range []bool{false, true, false} {
		assert.Equal(t, want, strings.Contains(lines[k], "--rejoin"), "start %d: %s", k, lines[k])
	}
	assert.Contains(t, lines[0], "--extra")
	assert.NotContains(t, lines[1], "--extra", "extra flags are for one start")
}

// TestThreeRealNodes drives the real binary: start three, kill one and
// restart it, pause and resume one, wipe one and let it rejoin, stop all.
func TestThreeRealNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three herald processes")
	}
	bin := TestBinary(t)
	dir := t.TempDir()
	nodes, err := Layout(dir, 3)
	require.NoError(t, err)
	c, err := New(Config{Binary: bin, Nodes: nodes, ServeArgs: []string{"--log-level", "warn"}})
	require.NoError(t, err)
	closed := false
	defer func() {
		if !closed {
			_ = c.Close()
		}
		if t.Failed() {
			for i := range nodes {
				t.Logf("--- %s\n%s", nodes[i].ID, c.LogTail(i))
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	require.NoError(t, c.StartAll())
	require.NoError(t, c.AwaitReady(ctx))

	// Kill: the process is gone at once; a restart serves again.
	first := c.Process(0)
	require.NoError(t, c.Kill(0))
	assert.False(t, c.Running(0))
	assert.Error(t, first.Err(), "killed by a signal")
	require.NoError(t, c.Start(0))
	assert.NotEqual(t, first.Pid(), c.Process(0).Pid())
	require.NoError(t, c.AwaitReady(ctx, 0))

	// Pause: the node stops answering; resume: it answers again.
	require.NoError(t, c.Pause(1))
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	_, err = hc.Get("http://" + nodes[1].HTTPAddr + "/readyz")
	assert.Error(t, err, "a paused node does not answer")
	assert.True(t, c.Running(1), "a paused node still runs")
	require.NoError(t, c.Resume(1))
	require.NoError(t, c.AwaitReady(ctx, 1))

	// Wipe: the data goes, the log stays, the node rejoins.
	require.NoError(t, c.Wipe(2))
	_, err = os.Stat(nodes[2].DataDir)
	assert.True(t, errors.Is(err, os.ErrNotExist))
	assert.FileExists(t, nodes[2].LogPath)
	require.NoError(t, c.Start(2))
	require.NoError(t, c.AwaitReady(ctx, 2))

	// Restart with SIGTERM: a clean exit.
	before := c.Process(1)
	require.NoError(t, c.Restart(1))
	require.NoError(t, before.Err(), "SIGTERM is a clean exit")
	require.NoError(t, c.AwaitReady(ctx))

	procs := []*Process{c.Process(0), c.Process(1), c.Process(2)}
	require.NoError(t, c.Close())
	closed = true
	for i, p := range procs {
		assert.False(t, c.Running(i))
		assert.NoError(t, p.Err(), "%s stopped by SIGTERM", nodes[i].ID)
	}
	assert.ErrorIs(t, c.Start(0), ErrClosed)
	assert.ErrorIs(t, c.Pause(0), ErrNotRunning)
}

// A node that cannot run fails AwaitReady at once with its log.
func TestAwaitReadyFailsWhenANodeExits(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-herald")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\necho broken >&2\nexit 2\n"), 0o755))
	nodes, err := Layout(dir, 2)
	require.NoError(t, err)
	c, err := New(Config{Binary: bin, Nodes: nodes})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.StartAll())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.AwaitReady(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exited before it was ready")
	assert.Contains(t, err.Error(), "broken")
}

// Three real nodes with TLSDir: the certificates are made, every node
// serves TLS (AwaitReady probes https), and a client with ClientTLS
// produces; one with ClusterSecretFile makes the secret once and keeps it.
func TestRealNodesTLSAndSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	bin := TestBinary(t)
	for _, mode := range []string{"tls", "secret"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			nodes, err := Layout(dir, 3)
			require.NoError(t, err)
			cfg := Config{Binary: bin, Nodes: nodes, ServeArgs: []string{"--log-level", "warn"}}
			secretFile := filepath.Join(dir, "cluster.secret")
			if mode == "tls" {
				cfg.TLSDir = filepath.Join(dir, "tls")
			} else {
				cfg.ClusterSecretFile = secretFile
			}
			c, err := New(cfg)
			require.NoError(t, err)
			defer func() {
				_ = c.Close()
				if t.Failed() {
					for i := range nodes {
						t.Logf("--- %s\n%s", nodes[i].ID, c.LogTail(i))
					}
				}
			}()
			if mode == "tls" {
				require.NotNil(t, c.ClientTLS())
				assert.True(t, strings.HasPrefix(c.WebSocketURL(0), "wss://"))
			} else {
				require.Nil(t, c.ClientTLS())
				secret, err := os.ReadFile(secretFile)
				require.NoError(t, err)
				require.Len(t, strings.TrimSpace(string(secret)), 64)
				_, err = New(cfg)
				require.NoError(t, err)
				again, _ := os.ReadFile(secretFile)
				require.Equal(t, secret, again, "the secret is made once")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			require.NoError(t, c.StartAll())
			require.NoError(t, c.AwaitReady(ctx))
			cl, err := client.New(ctx, client.Config{Servers: c.GRPCAddrs(), TLS: c.ClientTLS(), MaxRetries: 100})
			require.NoError(t, err)
			defer cl.Close()
			_, err = cl.CreateTopic(ctx, &client.TopicConfig{Name: "t", Partitions: 1, ReplicationFactor: 3, AutoTenants: true})
			require.NoError(t, err)
			_, err = cl.Produce(ctx, "t", &client.Event{TenantId: "acme", Payload: []byte("x")})
			require.NoError(t, err)
		})
	}
}
