//go:build unix

package bench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/server/proccluster"
)

func TestLocalClusterNodeThatExitsFailsTheStart(t *testing.T) {
	exe, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false(1) on PATH")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	_, err = StartLocalCluster(t.Context(), exe, localNodes, nil, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exited before it was ready")
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	assert.Empty(t, entries, "the cluster directory is removed")
}

// TestSmokeProduceOnLocalCluster builds herald and runs `produce` with a
// tiny count on a cluster bench starts itself: three real node processes.
// It checks the run's figures are there, then that the nodes are gone and
// their directory removed. Not a performance test: nothing about speed is
// asserted.
func TestSmokeProduceOnLocalCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke: builds herald and runs a 3-node cluster of processes")
	}
	bin := proccluster.TestBinary(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)

	opts := DefaultOptions(ScenarioProduce)
	opts.Executable = bin
	opts.Count = 2_000
	opts.Batch = 100
	var progress lockedBuffer
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	res, err := Run(ctx, opts, &progress)
	t.Logf("bench output:\n%s", progress.String())
	require.NoError(t, err)

	assert.Equal(t, int64(2_000), res.Events)
	assert.Equal(t, "local", res.Cluster)
	assert.Greater(t, res.EventsPerSec, 0.0)
	assert.Greater(t, res.P99Ms, 0.0)
	assert.GreaterOrEqual(t, res.CPUSeconds, 0.0, "node CPU read from /proc: %s", res.CPUNote)
	assert.GreaterOrEqual(t, res.CPUUsPerEvent, 0.0)

	pids := startedPIDs(t, progress.String())
	require.Len(t, pids, localNodes)
	for _, pid := range pids {
		err := syscall.Kill(pid, 0)
		assert.True(t, errors.Is(err, syscall.ESRCH), "node pid %d is gone: %v", pid, err)
	}
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	assert.Empty(t, entries, "the cluster directory is removed")
}

// startedPIDs reads the pids from bench's "started n1 pid=..." lines.
func startedPIDs(t *testing.T, out string) []int {
	t.Helper()
	re := regexp.MustCompile(`started n\d+ pid=(\d+)`)
	var pids []int
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			pid, err := strconv.Atoi(m[1])
			require.NoError(t, err)
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestSmokeGroupOnLocalCluster runs `group` with a tiny count on a local
// cluster of processes: three members consume every event with acks.
// Nothing about speed is asserted.
func TestSmokeGroupOnLocalCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke: builds herald and runs a 3-node cluster of processes")
	}
	bin := proccluster.TestBinary(t)
	t.Setenv("TMPDIR", t.TempDir())

	opts := DefaultOptions(ScenarioGroup)
	opts.Executable = bin
	opts.Count = 3_000
	opts.Batch = 100
	var progress lockedBuffer
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	res, err := Run(ctx, opts, &progress)
	t.Logf("bench output:\n%s", progress.String())
	require.NoError(t, err)
	assert.Equal(t, int64(3_000), res.Events, "every event acknowledged by the group")
	assert.Greater(t, res.EventsPerSec, 0.0)
}

// A node that died during a run fails the run, which then reports no
// figures; a run that failed already keeps its own error. The cluster is
// closed either way.
func TestFinishRunReportsANodeThatDied(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke: runs a 3-node cluster of processes")
	}
	bin := proccluster.TestBinary(t)
	t.Setenv("TMPDIR", t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	run := func(kill bool, runErr error) (res *Result, err error) {
		cluster, err := startRunCluster(ctx, bin, nil, io.Discard)
		require.NoError(t, err)
		defer finishRun(cluster, &res, &err)
		if kill {
			require.NoError(t, cluster.procs.Kill(0))
			require.Eventually(t, func() bool { return !cluster.procs.Running(0) }, 10*time.Second, 10*time.Millisecond)
		}
		return &Result{Events: 1}, runErr
	}
	res, err := run(false, nil)
	require.NoError(t, err)
	require.NotNil(t, res)
	res, err = run(true, nil)
	require.ErrorContains(t, err, "exited")
	require.Nil(t, res, "figures reported from a run whose node died")
	failed := errors.New("the run's own failure")
	_, err = run(true, failed)
	require.ErrorIs(t, err, failed)
}
