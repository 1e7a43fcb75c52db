package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/server/proccluster"
)

func TestDevLayout(t *testing.T) {
	nodes, err := devLayout(3, "data", 7700)
	require.NoError(t, err)
	assert.Equal(t, []proccluster.Node{
		{ID: "n1", GRPCAddr: "127.0.0.1:7701", HTTPAddr: "127.0.0.1:7801", AdminAddr: "127.0.0.1:7901", DataDir: filepath.Join("data", "n1"), LogPath: filepath.Join("data", "n1", "node.log")},
		{ID: "n2", GRPCAddr: "127.0.0.1:7702", HTTPAddr: "127.0.0.1:7802", AdminAddr: "127.0.0.1:7902", DataDir: filepath.Join("data", "n2"), LogPath: filepath.Join("data", "n2", "node.log")},
		{ID: "n3", GRPCAddr: "127.0.0.1:7703", HTTPAddr: "127.0.0.1:7803", AdminAddr: "127.0.0.1:7903", DataDir: filepath.Join("data", "n3"), LogPath: filepath.Join("data", "n3", "node.log")},
	}, nodes)
	assert.Equal(t, "n1=127.0.0.1:7701,n2=127.0.0.1:7702,n3=127.0.0.1:7703", proccluster.Peers(nodes))

	five, err := devLayout(5, "/tmp/x", 9000)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9005", five[4].GRPCAddr)
	assert.Equal(t, "127.0.0.1:9105", five[4].HTTPAddr)
	assert.Equal(t, "127.0.0.1:9205", five[4].AdminAddr)

	for _, bad := range []struct {
		nodes, base int
		data        string
	}{{0, 7700, "d"}, {devNodesMax + 1, 7700, "d"}, {3, 65500, "d"}, {3, 65333, "d"}, {3, 0, "d"}, {3, 7700, ""}} {
		_, err := devLayout(bad.nodes, bad.data, bad.base)
		assert.Equal(t, exitUsage, exitCode(err), "%+v", bad)
	}
}

// lineReader hands out a supervisor's output lines as they are printed.
type lineReader struct {
	lines chan string
}

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{lines: make(chan string, 64)}
	go func() { // ends when the writer side of the pipe is closed
		defer close(lr.lines)
		s := bufio.NewScanner(r)
		for s.Scan() {
			lr.lines <- s.Text()
		}
	}()
	return lr
}

func (lr *lineReader) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-lr.lines:
		require.True(t, ok, "output ended")
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("no output line within 30s")
		return ""
	}
}

// TestSupervisor runs the test binary itself as the dev nodes: they report,
// a crashing node is restarted, and cancelling stops all of them.
func TestSupervisor(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	dir := t.TempDir()
	nodes, err := devLayout(2, dir, 7700)
	require.NoError(t, err)
	crashes := 1 // n2 crashes once, then serves

	outR, outW := io.Pipe()
	lines := newLineReader(outR)
	ready := make(chan struct{})
	s := &supervisor{
		cluster: proccluster.Config{Binary: exe, Nodes: nodes, StopTimeout: 10 * time.Second,
			Env: func(i int) []string {
				mode := "serve"
				if nodes[i].ID == "n2" && crashes > 0 {
					crashes-- // only run's goroutine starts nodes
					mode = "crash"
				}
				return append(os.Environ(), childModeEnv+"="+mode)
			}},
		ready: func(ctx context.Context) error {
			select {
			case <-ready:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		restart:      true,
		restartDelay: 10 * time.Millisecond,
		out:          outW,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx); _ = outW.Close() }()

	pidLine := regexp.MustCompile(`^(n[12]) pid=(\d+) grpc=127\.0\.0\.1:770[12] http=127\.0\.0\.1:780[12] admin=127\.0\.0\.1:790[12] data=` + regexp.QuoteMeta(dir) + `/n[12]$`)
	started := map[string]int{}
	for range 2 {
		m := pidLine.FindStringSubmatch(lines.next(t))
		require.NotNil(t, m)
		started[m[1]]++
	}
	assert.Equal(t, map[string]int{"n1": 1, "n2": 1}, started)
	assert.Equal(t, "n2 exited: exit status 3", lines.next(t))
	assert.Regexp(t, `^n2 pid=\d+ `, lines.next(t), "restarted after the delay")
	close(ready)
	assert.Equal(t, "ready", lines.next(t))
	assert.FileExists(t, filepath.Join(dir, "n1", "node.log"))

	cancel()
	require.NoError(t, <-done, "a signal stops every node and exits cleanly")
	_, open := <-lines.lines
	assert.False(t, open, "nothing printed while stopping")
}

func TestSupervisorWithoutRestartEndsWhenEveryNodeExits(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	nodes, err := devLayout(1, t.TempDir(), 7700)
	require.NoError(t, err)
	outR, outW := io.Pipe()
	lines := newLineReader(outR)
	s := &supervisor{
		cluster: proccluster.Config{Binary: exe, Nodes: nodes, StopTimeout: time.Second,
			Env: func(int) []string { return append(os.Environ(), childModeEnv+"=crash") }},
		ready:        func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
		restartDelay: time.Millisecond,
		out:          outW,
	}
	done := make(chan error, 1)
	go func() { done <- s.run(context.Background()); _ = outW.Close() }()
	assert.Regexp(t, `^n1 pid=\d+ `, lines.next(t))
	assert.Equal(t, "n1 exited: exit status 3", lines.next(t))
	err = <-done
	require.Error(t, err)
	assert.False(t, errors.Is(err, context.Canceled))
	assert.Contains(t, err.Error(), "every node exited")
}
