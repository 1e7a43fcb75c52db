package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldtest"
)

type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs herald in-process with the given stdin and environment.
func runCLI(t *testing.T, stdin string, env map[string]string, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr, func(k string) string { return env[k] })
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// jsonLines decodes one JSON object per line.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

func TestUsageErrorsExitTwoBeforeConnecting(t *testing.T) {
	dead := deadAddr(t) // a usage error must not even try the network
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"consume", "--topic", "t", "--tenant", "a", "--partition", "1"}, "exactly one of --tenant and --partition"},
		{[]string{"consume", "--topic", "t"}, "exactly one of --tenant and --partition"},
		{[]string{"consume", "--topic", "t", "--partition", "0", "--from", "offset:x"}, `--from "offset:x"`},
		{[]string{"consume", "--topic", "t", "--partition", "0", "--from", "seq:3"}, "needs --tenant"},
		{[]string{"consume", "--topic", "t", "--tenant", "a", "--from", "foo"}, `--from "foo"`},
		{[]string{"consume", "--topic", "t", "--tenant", ""}, "--tenant must not be empty"},
		{[]string{"consume", "--partition", "0"}, "--topic is required"},
		{[]string{"produce", "--topic", "t"}, "--tenant is required"},
		{[]string{"produce", "--topic", "t", "--tenant", "a", "--batch", "0"}, "--batch 0"},
		{[]string{"produce", "--topic", "t", "--tenant", "a", "--nope"}, "unknown flag: --nope"},
		{[]string{"topic", "create", "t", "--partitions", "3"}, `required flag(s) "replication" not set`},
		{[]string{"topic", "create", "--partitions", "3", "--replication", "3"}, "accepts 1 arg(s)"},
		{[]string{"topic", "create", "t", "--partitions", "0", "--replication", "3"}, "at least 1"},
		{[]string{"topic", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"topic", "list", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"serve", "--id", "n1"}, "data dir is required"},
		{[]string{"serve", "--id", "n1", "--data", "d", "--grpc", "127.0.0.1:1", "--http", "127.0.0.1:2", "--log-format", "xml"}, `--log-format "xml"`},
		{[]string{"dev", "--nodes", "0"}, "--nodes 0"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			res := runCLI(t, "", map[string]string{serverEnv: dead}, tc.args...)
			assert.Equal(t, exitUsage, res.code, res.stderr)
			assert.Contains(t, res.stderr, tc.want)
			assert.True(t, strings.HasPrefix(res.stderr, "herald: "), res.stderr)
			assert.NotContains(t, res.stderr, "no node answered")
			assert.Empty(t, res.stdout)
		})
	}
}

func TestNoNodeAnswered(t *testing.T) {
	dead := deadAddr(t)
	for _, args := range [][]string{
		{"topic", "list", "--server", dead},
		{"cluster", "status", "--server", dead},
		{"consume", "--topic", "t", "--partition", "0", "--server", dead},
		{"produce", "--topic", "t", "--tenant", "a", "--server", dead},
	} {
		res := runCLI(t, "x\n", nil, args...)
		assert.Equal(t, exitUnavailable, res.code, "%v: %s", args, res.stderr)
		assert.True(t, strings.HasPrefix(res.stderr, "herald: no node answered at "+dead+": "), res.stderr)
	}
	// HERALD_SERVER is the default of --server.
	res := runCLI(t, "", map[string]string{serverEnv: dead}, "topic", "list")
	assert.Contains(t, res.stderr, "no node answered at "+dead+": ")
}

func TestTopicVerbs(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 3)
	env := map[string]string{serverEnv: strings.Join(cluster.Addrs(), ",")}

	res := runCLI(t, "", env, "topic", "create", "orders", "--partitions", "3", "--replication", "3", "--max-event-bytes", "4096")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "topic orders: 3 partitions, replication 3, max event bytes 4096")
	assert.Regexp(t, `(?m)^PARTITION\s+GROUP\s+LEADER\s+REPLICAS$`, res.stdout)
	assert.Regexp(t, `(?m)^2\s+3\s+n3\s+n1,n2,n3$`, res.stdout)

	res = runCLI(t, "", env, "topic", "create", "orders", "--partitions", "3", "--replication", "3")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `topic "orders" already exists`)

	res = runCLI(t, "", env, "topic", "list")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Regexp(t, `(?m)^orders\s+3\s+3\s+4096\s+\d{4}-`, res.stdout)

	res = runCLI(t, "", env, "topic", "list", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var topics []topicView
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &topics))
	require.Len(t, topics, 1)
	assert.Equal(t, uint32(3), topics[0].Partitions)
	assert.Len(t, topics[0].Assignments, 3)

	res = runCLI(t, "", env, "topic", "describe", "orders", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var described topicView
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &described))
	assert.Equal(t, "orders", described.Name)
	assert.Equal(t, "n2", described.Assignments[1].LeaderID)

	res = runCLI(t, "", env, "topic", "describe", "nope")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `topic "nope" not found`)
}

func TestProduceThenConsume(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 2)
	cluster.CreateTopic("orders", 2)
	env := map[string]string{serverEnv: cluster.Nodes[0].Addr}
	long := strings.Repeat("x", 100<<10) // over bufio.Scanner's 64 KiB, under the 1 MiB topic max
	var in strings.Builder
	const lines = 1203 // several batches and several consume pages
	for i := range lines {
		switch i {
		case 7:
			in.WriteString(long + "\n")
		case 8:
			in.WriteString("\n") // an empty payload
		case 9:
			in.WriteString("caf\xe9\n") // not UTF-8
		default:
			fmt.Fprintf(&in, "event %d\n", i)
		}
	}
	in.WriteString("last line without newline")

	res := runCLI(t, in.String(), env, "produce", "--topic", "orders", "--tenant", "acme", "--key", "k", "--causation-id", "c1")
	require.Equal(t, exitOK, res.code, res.stderr)
	produced := jsonLines(t, res.stdout)
	require.Len(t, produced, lines+1)
	partition := float64(client.PartitionForTenant("acme", 2))
	for i, p := range produced {
		assert.Equal(t, partition, p["partition"])
		assert.Equal(t, float64(i), p["offset"], "in input order")
		assert.Equal(t, float64(i+1), p["sequence"])
		assert.NotEmpty(t, p["event_id"])
		assert.Len(t, p, 4, "exactly the documented keys")
	}

	res = runCLI(t, "", env, "consume", "--topic", "orders", "--tenant", "acme")
	require.Equal(t, exitOK, res.code, res.stderr)
	consumed := jsonLines(t, res.stdout)
	require.Len(t, consumed, lines+1, "pages through the whole tenant")
	assert.Equal(t, "event 0", consumed[0]["payload"])
	assert.Equal(t, "acme", consumed[0]["tenant"])
	assert.Equal(t, "c1", consumed[0]["causation_id"])
	assert.Equal(t, "k", consumed[0]["key"])
	assert.Equal(t, long, consumed[7]["payload"])
	assert.Equal(t, "", consumed[8]["payload"])
	assert.Equal(t, "Y2Fm6Q==", consumed[9]["payload_b64"])
	assert.NotContains(t, consumed[9], "payload")
	assert.Equal(t, "last line without newline", consumed[lines]["payload"])
	assert.Regexp(t, `^\d{4}-\d\d-\d\dT`, consumed[0]["produced_at"])

	res = runCLI(t, "", env, "consume", "--topic", "orders", "--tenant", "acme", "--from", "seq:1200", "--limit", "2")
	require.Equal(t, exitOK, res.code, res.stderr)
	got := jsonLines(t, res.stdout)
	require.Len(t, got, 2)
	assert.Equal(t, float64(1200), got[0]["sequence"])

	res = runCLI(t, "", env, "consume", "--topic", "orders", "--partition", fmt.Sprint(partition), "--from", "offset:1000")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Len(t, jsonLines(t, res.stdout), lines+1-1000)

	res = runCLI(t, "", env, "consume", "--topic", "orders", "--tenant", "acme", "--from", "offset:1201")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Len(t, jsonLines(t, res.stdout), 3)

	res = runCLI(t, "", env, "consume", "--topic", "orders", "--partition", fmt.Sprint(partition), "--from", "latest")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Empty(t, res.stdout, "latest starts at the end")

	other := 1 - uint32(partition)
	res = runCLI(t, "", env, "consume", "--topic", "orders", "--partition", fmt.Sprint(other))
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Empty(t, res.stdout, "an empty partition prints nothing")

	res = runCLI(t, "", env, "consume", "--topic", "orders", "--partition", "9")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, "no partition 9")
}

func TestProduceErrors(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	env := map[string]string{serverEnv: cluster.Nodes[0].Addr}
	res := runCLI(t, "", env, "topic", "create", "small", "--partitions", "1", "--replication", "1", "--max-event-bytes", "8")
	require.Equal(t, exitOK, res.code, res.stderr)

	res = runCLI(t, "a\n", env, "produce", "--topic", "missing", "--tenant", "acme")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `topic "missing" not found`)

	res = runCLI(t, "ok\nfine\nthis line is too long\nnever sent\n", env, "produce", "--topic", "small", "--tenant", "acme")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, "stdin line 3")
	assert.Contains(t, res.stderr, "payload too large: 21 bytes, max 8")
	assert.Len(t, jsonLines(t, res.stdout), 2, "the lines before the bad one were produced")
	assert.Len(t, cluster.Events("small", 0), 2)

	// An ambiguous failure has its own exit code.
	cluster.Nodes[0].Handle("Produce", func(context.Context, any) (any, error) {
		return nil, client.UnknownOutcome("apply timed out")
	})
	res = runCLI(t, "x\n", env, "produce", "--topic", "small", "--tenant", "acme")
	assert.Equal(t, exitUnknownOutcome, res.code, res.stderr)
	assert.Contains(t, res.stderr, "unknown outcome")
}

func TestProduceBatches(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	env := map[string]string{serverEnv: cluster.Nodes[0].Addr}
	in := strings.Repeat("e\n", 25)

	res := runCLI(t, in, env, "produce", "--topic", "orders", "--tenant", "acme", "--batch", "10")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Len(t, jsonLines(t, res.stdout), 25)
	assert.GreaterOrEqual(t, cluster.Nodes[0].Calls("Produce"), 3, "at most 10 lines per request")
}

func TestClusterStatus(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 3)
	cluster.CreateTopic("orders", 2)
	env := map[string]string{serverEnv: cluster.Nodes[1].Addr}

	res := runCLI(t, "", env, "cluster", "status")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Regexp(t, `(?m)^NODE\s+ADDRESS\s+REACHABLE\s+CONTROLLER$`, res.stdout)
	assert.Regexp(t, `(?m)^n1\s+127\.0\.0\.1:\d+\s+yes\s+Leader$`, res.stdout)
	assert.Regexp(t, `(?m)^TOPIC\s+PARTITION\s+GROUP\s+REPLICAS\s+LEADER\s+COMMIT INDEX\s+HIGH WATERMARK$`, res.stdout)
	assert.Regexp(t, `(?m)^orders\s+1\s+2\s+n1,n2,n3\s+n2\s+0\s+0$`, res.stdout)

	res = runCLI(t, "", env, "cluster", "status", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var v clusterView
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &v))
	assert.Equal(t, "n1", v.ControllerLeaderID)
	assert.Len(t, v.Nodes, 3)
	require.Len(t, v.Partitions, 2)
	assert.Equal(t, uint32(0), v.Partitions[0].Index)
}

func TestReadLine(t *testing.T) {
	cases := []struct {
		in    string
		max   int
		lines []string
		err   string
	}{
		{in: "a\nbb\n", max: 2, lines: []string{"a", "bb"}},
		{in: "a\r\n", max: 5, lines: []string{"a\r"}},
		{in: "abc", max: 3, lines: []string{"abc"}},
		{in: "abcd\n", max: 3, err: "payload too large: 4 bytes, max 3"},
		{in: "\n\n", max: 3, lines: []string{"", ""}},
		{in: "", max: 3},
	}
	for _, tc := range cases {
		r := newSmallReader(tc.in)
		var got []string
		var err error
		for {
			var line []byte
			line, err = readLine(r, tc.max)
			if err != nil {
				break
			}
			got = append(got, string(line))
		}
		assert.Equal(t, tc.lines, got, "%q", tc.in)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, "%q", tc.in)
		}
	}
	// A line much longer than the read buffer.
	long := strings.Repeat("z", 1000)
	line, err := readLine(newSmallReader(long+"\nnext\n"), 1000)
	require.NoError(t, err)
	assert.Equal(t, long, string(line))
	_, err = readLine(newSmallReader(long+"\n"), 999)
	assert.ErrorIs(t, err, client.ErrPayloadTooLarge)
}

// newSmallReader reads s through the smallest bufio buffer, so that lines
// span many ReadSlice calls.
func newSmallReader(s string) *bufio.Reader {
	return bufio.NewReaderSize(strings.NewReader(s), 16)
}
