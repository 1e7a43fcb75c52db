package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client/heraldtest"
)

// runBench runs `herald bench args...` through newBenchCmd alone (so the
// test does not depend on root.go registering it) and returns the exit
// code run would give.
func runBench(t *testing.T, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := newBenchCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		stderr.WriteString("herald: " + err.Error() + "\n")
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: exitCode(err)}
}

func TestBenchRefusesBadFlagsAsUsageErrors(t *testing.T) {
	dead := deadAddr(t) // nothing may be contacted, nor a cluster started
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"produce", "--count", "0"}, "--count 0"},
		{[]string{"produce", "--size", "0"}, "--size 0"},
		{[]string{"replay", "--producers", "0", "--server", dead}, "--producers 0"},
		{[]string{"produce", "--rate", "10"}, "--rate applies to e2e only"},
		{[]string{"e2e", "--clients", "pooled"}, `--clients "pooled"`},
		{[]string{"produce", "--http-addrs", "127.0.0.1:1"}, "--http-addrs needs --server"},
		{[]string{"produce", "--server", " , "}, "--server: at least one address"},
		{[]string{"produce", "--server", dead, "--timeout", "0s"}, "--timeout"},
		{[]string{"noisy-tenant", "--quota", "0"}, "--quota 0"},
		{[]string{"noisy-tenant", "--phase", "100ms", "--server", dead}, "--phase 100ms"},
		{[]string{"noisy-tenant", "--http-addrs", "127.0.0.1:1"}, "--http-addrs needs --server"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			res := runBench(t, tc.args...)
			assert.Equal(t, exitUsage, res.code, res.stderr)
			assert.Contains(t, res.stderr, tc.want)
			assert.Empty(t, res.stdout)
		})
	}
}

func TestBenchJSONIsTheLastLineOfStdout(t *testing.T) {
	// One fake node leads every partition, which is then its preferred
	// replica: bench starts at once.
	fake := heraldtest.NewCluster(t, 1)
	res := runBench(t, "produce", "--server", fake.Nodes[0].Addr, "--count", "300", "--batch", "50", "--size", "16", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	require.NotEmpty(t, lines)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &m), res.stdout)
	for _, k := range []string{"scenario", "events", "events_per_sec", "mb_per_sec", "p50_ms", "p99_ms", "p999_ms", "cpu_us_per_event", "producers", "size", "sync", "partitions", "duration_s"} {
		assert.Contains(t, m, k)
	}
	assert.Equal(t, "produce", m["scenario"])
	assert.EqualValues(t, 300, m["events"])
	assert.EqualValues(t, 16, m["size"])
	assert.EqualValues(t, -1, m["cpu_us_per_event"], "--server without --http-addrs")
	assert.Contains(t, res.stderr, "herald bench produce: 300 events", "the human summary goes to stderr with --json")

	res = runBench(t, "produce", "--server", fake.Nodes[0].Addr, "--count", "100", "--sync", "--producers", "1")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "sync, one event per request")
	assert.NotContains(t, res.stdout, "{")
}
