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
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
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
		{[]string{"topic", "create", "t", "--partitions", "1", "--replication", "1", "--retention-age", "7x"}, `invalid argument "7x" for "--retention-age" flag`},
		{[]string{"topic", "create", "t", "--partitions", "1", "--replication", "1", "--default-ttl", "-1s"}, `"--default-ttl" flag: want a non-negative duration`},
		{[]string{"topic", "create", "t", "--partitions", "1", "--replication", "1", "--dedupe-window", "1500us"}, `"--dedupe-window" flag: want a whole number of milliseconds`},
		{[]string{"topic", "create", "t", "--partitions", "1", "--replication", "1", "--ordering", "sideways"}, `"--ordering" flag: want per-tenant, per-key or none`},
		{[]string{"topic", "create", "t", "--partitions", "1", "--replication", "1", "--schema", "s", "--schema-versions", "1,x"}, `"--schema-versions" flag: "x" is not a schema version`},
		{[]string{"topic", "create", "t", "--partitions", "1", "--replication", "1", "--schema-versions", "0"}, `"--schema-versions" flag`},
		{[]string{"topic", "create", "t", "--partitions", "1", "--replication", "1", "--schema-versions", "1"}, "--schema-versions needs --schema"},
		{[]string{"topic", "create", "t", "--partitions", "1", "--replication", "1", "--required-fields", "key,colour"}, `"--required-fields" flag: "colour" is not an envelope field`},
		{[]string{"topic", "create", "t", "--partitions", "1", "--replication", "1", "--default-ttl", "2d", "--max-ttl", "1d"}, "--default-ttl 2d is over --max-ttl 1d"},
		{[]string{"topic", "create", "t", "--partitions", "1", "--replication", "1", "--retention-bytes", "-5"}, `"--retention-bytes" flag`},
		{[]string{"topic", "alter", "t"}, "nothing to alter"},
		{[]string{"topic", "alter", "t", "--max-ttl", "forever"}, `"--max-ttl" flag`},
		{[]string{"topic", "alter", "t", "--partitions", "3"}, "unknown flag: --partitions"},
		{[]string{"topic", "delete"}, "accepts 1 arg(s)"},
		{[]string{"tenant", "create"}, "accepts 1 arg(s)"},
		{[]string{"tenant", "create", "acme", "--burst", "lots"}, `"--burst" flag`},
		{[]string{"tenant", "set-quota", "acme"}, "nothing to set"},
		{[]string{"tenant", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"produce", "--topic", "t", "--tenant", "a", "--event-id-suffix-line"}, "--event-id-suffix-line needs --event-id"},
		{[]string{"produce", "--topic", "t", "--tenant", "a", "--schema-version", "2"}, "--schema-version needs --schema"},
		{[]string{"produce", "--topic", "t", "--tenant", "a", "--ttl", "5y"}, `"--ttl" flag`},
		{[]string{"produce", "--topic", "t", "--tenant", "a", "--retries", "-1"}, "--retries -1"},
		{[]string{"consume", "--topic", "t", "--partition", "0", "--from", "time:yesterday"}, "not an RFC 3339 time"},
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
		assert.Equal(t, false, p["duplicate"])
		assert.Len(t, p, 5, "exactly the documented keys")
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

	// An ambiguous failure has its own exit code, once the retries of the
	// idempotent producer run out.
	callsBefore := cluster.Nodes[0].Calls("Produce")
	cluster.Nodes[0].Handle("Produce", func(context.Context, any) (any, error) {
		return nil, client.UnknownOutcome("apply timed out")
	})
	res = runCLI(t, "x\n", env, "produce", "--topic", "small", "--tenant", "acme", "--retries", "1")
	assert.Equal(t, exitUnknownOutcome, res.code, res.stderr)
	assert.Contains(t, res.stderr, "unknown outcome")
	assert.Equal(t, 1+1, cluster.Nodes[0].Calls("Produce")-callsBefore, "the batch was resent --retries times")
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

func TestTenantVerbs(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	env := map[string]string{serverEnv: cluster.Nodes[0].Addr}

	res := runCLI(t, "", env, "tenant", "create", "acme", "--display-name", "Acme Corp", "--events-per-sec", "100", "--burst", "20")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "tenant acme: display name Acme Corp")
	assert.Contains(t, res.stdout, "quota: events/s 100, bytes/s unlimited, burst 20, max inflight bytes unlimited")
	res = runCLI(t, "", env, "tenant", "create", "acme")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `tenant "acme" already exists`)
	res = runCLI(t, "", env, "tenant", "create", "globex")
	require.Equal(t, exitOK, res.code, res.stderr)

	res = runCLI(t, "", env, "tenant", "list")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Regexp(t, `(?m)^NAME\s+DISPLAY NAME\s+EVENTS/S\s+BYTES/S\s+BURST\s+MAX INFLIGHT BYTES\s+CREATED$`, res.stdout)
	assert.Regexp(t, `(?m)^acme\s+Acme Corp\s+100\s+unlimited\s+20\s+unlimited\s+\d{4}-`, res.stdout)
	assert.Regexp(t, `(?m)^globex\s+-\s+unlimited`, res.stdout)

	res = runCLI(t, "", env, "tenant", "list", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var tenants []tenantView
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &tenants))
	require.Len(t, tenants, 2)
	assert.Equal(t, quotaView{EventsPerSec: 100, Burst: 20}, tenants[0].Quota)

	// set-quota keeps the limits not given.
	res = runCLI(t, "", env, "tenant", "set-quota", "acme", "--bytes-per-sec", "4096", "--burst", "default")
	require.Equal(t, exitOK, res.code, res.stderr)
	res = runCLI(t, "", env, "tenant", "describe", "acme", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var described tenantView
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &described))
	assert.Equal(t, "Acme Corp", described.DisplayName)
	assert.Equal(t, quotaView{EventsPerSec: 100, BytesPerSec: 4096}, described.Quota)
	assert.NotEmpty(t, described.CreatedAt)

	res = runCLI(t, "", env, "tenant", "describe", "initech")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `tenant "initech" not found`)
	res = runCLI(t, "", env, "tenant", "set-quota", "initech", "--burst", "1")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `tenant "initech" not found`)
}

func TestTopicCreateAlterDelete(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	env := map[string]string{serverEnv: cluster.Nodes[0].Addr}

	res := runCLI(t, "", env, "topic", "create", "orders", "--partitions", "2", "--replication", "1",
		"--ordering", "per-key", "--retention-age", "7d", "--retention-bytes", "1000000", "--retention-events", "500",
		"--default-ttl", "1h30m", "--max-ttl", "1d12h", "--dedupe-window", "10m", "--auto-tenants",
		"--schema", "order", "--schema-versions", "1,2", "--required-fields", "correlation_id,key")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "ordering: per-key\n")
	assert.Contains(t, res.stdout, "retention: age 7d, bytes 1000000, events 500\n")
	assert.Contains(t, res.stdout, "ttl: default 1h30m0s, max 36h0m0s\n")
	assert.Contains(t, res.stdout, "dedupe window: 10m0s\n")
	assert.Contains(t, res.stdout, "schema: order (versions 1,2)\n")
	assert.Contains(t, res.stdout, "required fields: correlation_id,key\n")
	assert.Contains(t, res.stdout, "auto tenants: yes\n")
	cfg := cluster.TopicConfig("orders")
	assert.Equal(t, client.OrderingPerKey, cfg.GetOrdering())
	assert.Equal(t, int64(7*24*3600*1000), cfg.GetRetentionAgeMs())
	assert.Equal(t, int64(90*60*1000), cfg.GetDefaultTtlMs())
	assert.Equal(t, int64(36*3600*1000), cfg.GetMaxTtlMs())
	assert.Equal(t, int64(600_000), cfg.GetDedupeWindowMs())
	assert.Equal(t, []uint32{1, 2}, cfg.GetSchemaVersions())
	assert.Equal(t, []string{"correlation_id", "key"}, cfg.GetRequiredFields())

	res = runCLI(t, "", env, "topic", "list")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Regexp(t, `(?m)^NAME\s+PARTITIONS\s+REPLICATION\s+MAX EVENT BYTES\s+CREATED\s+ORDERING\s+RETENTION AGE\s+DEFAULT TTL\s+MAX TTL\s+DEDUPE WINDOW\s+AUTO TENANTS$`, res.stdout)
	assert.Regexp(t, `(?m)^orders\s+2\s+1\s+default\s+\S+\s+per-key\s+7d\s+1h30m0s\s+36h0m0s\s+10m0s\s+yes$`, res.stdout)

	// Only the settings given are sent.
	res = runCLI(t, "", env, "topic", "alter", "orders", "--retention-age", "1d", "--auto-tenants=false", "--schema-versions", "2,3", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var altered topicView
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &altered))
	assert.Equal(t, int64(24*3600*1000), altered.RetentionAgeMs)
	assert.False(t, altered.AutoTenants)
	assert.Equal(t, []uint32{2, 3}, altered.SchemaVersions)
	assert.Equal(t, int64(90*60*1000), altered.DefaultTTLMs, "not given, not changed")
	assert.Equal(t, uint64(1000000), altered.RetentionBytes)
	assert.Equal(t, "per-key", altered.Ordering)
	res = runCLI(t, "", env, "topic", "alter", "orders", "--max-ttl", "0")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "ttl: default 1h30m0s, max none\n")
	res = runCLI(t, "", env, "topic", "alter", "nope", "--max-ttl", "1h")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `topic "nope" not found`)

	// A topic just produced to is deleted only with --force.
	res = runCLI(t, "x\n", env, "produce", "--topic", "orders", "--tenant", "acme", "--key", "k")
	require.Equal(t, exitFailure, res.code, "correlation_id is required")
	assert.Contains(t, res.stderr, "missing correlation_id")
	cluster.CreateTopic("busy", 1, 0)
	res = runCLI(t, "x\n", env, "produce", "--topic", "busy", "--tenant", "acme")
	require.Equal(t, exitOK, res.code, res.stderr)
	res = runCLI(t, "", env, "topic", "delete", "busy")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `topic "busy" is in use`)
	res = runCLI(t, "", env, "topic", "delete", "busy", "--force")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Equal(t, "topic busy deleted\n", res.stdout)
	res = runCLI(t, "", env, "topic", "delete", "orders")
	require.Equal(t, exitOK, res.code, res.stderr)
	res = runCLI(t, "", env, "topic", "describe", "busy")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `topic "busy" not found`)
}

func TestProduceRetriesALostReplyAndPrintsDuplicates(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	env := map[string]string{serverEnv: cluster.Nodes[0].Addr}
	node := cluster.Nodes[0]
	lost := false
	node.Handle("Produce", func(ctx context.Context, req any) (any, error) {
		resp, err := node.Default(ctx, req)
		if err == nil && !lost { // one call at a time: the CLI sends one batch
			lost = true
			return nil, client.UnknownOutcome("reply lost after commit")
		}
		return resp, err
	})

	res := runCLI(t, "a\nb\n", env, "produce", "--topic", "orders", "--tenant", "acme", "--batch", "2")
	require.Equal(t, exitOK, res.code, res.stderr)
	lines := jsonLines(t, res.stdout)
	require.NotEmpty(t, lines)
	assert.Equal(t, true, lines[0]["duplicate"], "the first batch was committed before its reply was lost")
	assert.Equal(t, float64(0), lines[0]["offset"], "its original offset")
	for i, l := range lines {
		assert.Equal(t, float64(i), l["offset"])
	}
	assert.Len(t, cluster.Events("orders", 0), 2, "each line is in the log once")
}

func TestProduceEventIDsTTLAndSchema(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopicWith(&heraldpb.TopicConfig{Name: "orders", Partitions: 1, DedupeWindowMs: 60_000}, 0)
	env := map[string]string{serverEnv: cluster.Nodes[0].Addr}
	args := []string{"produce", "--topic", "orders", "--tenant", "acme", "--event-id", "import-7", "--event-id-suffix-line",
		"--ttl", "2h", "--schema", "order", "--schema-version", "3"}

	res := runCLI(t, "a\nb\nc\n", env, args...)
	require.Equal(t, exitOK, res.code, res.stderr)
	first := jsonLines(t, res.stdout)
	require.Len(t, first, 3)
	for i, l := range first {
		assert.Equal(t, fmt.Sprintf("import-7-%d", i+1), l["event_id"])
		assert.Equal(t, false, l["duplicate"])
	}
	stored := cluster.Events("orders", 0)
	require.Len(t, stored, 3)
	assert.Equal(t, int64(2*3600*1000), stored[0].GetTtlMs())
	assert.Equal(t, "order", stored[0].GetSchema())
	assert.Equal(t, uint32(3), stored[0].GetSchemaVersion())
	assert.NotEmpty(t, stored[0].GetProducerId())

	// A re-run reproduces the ids; the topic's dedupe window drops them.
	res = runCLI(t, "a\nb\nc\n", env, args...)
	require.Equal(t, exitOK, res.code, res.stderr)
	second := jsonLines(t, res.stdout)
	require.Len(t, second, 3)
	for i, l := range second {
		assert.Equal(t, true, l["duplicate"], "line %d", i)
		assert.Equal(t, first[i]["offset"], l["offset"], "line %d: the original offset", i)
	}
	assert.Len(t, cluster.Events("orders", 0), 3)

	// Without the suffix every line has the same id.
	res = runCLI(t, "x\ny\n", env, "produce", "--topic", "orders", "--tenant", "acme", "--event-id", "same")
	require.Equal(t, exitOK, res.code, res.stderr)
	same := jsonLines(t, res.stdout)
	require.Len(t, same, 2)
	assert.Equal(t, "same", same[1]["event_id"])
	assert.Equal(t, true, same[1]["duplicate"])

	// consume shows when an event expires.
	res = runCLI(t, "", env, "consume", "--topic", "orders", "--tenant", "acme", "--limit", "1")
	require.Equal(t, exitOK, res.code, res.stderr)
	consumed := jsonLines(t, res.stdout)
	require.Len(t, consumed, 1)
	producedAt, err := time.Parse(time.RFC3339Nano, consumed[0]["produced_at"].(string))
	require.NoError(t, err)
	assert.Equal(t, producedAt.Add(2*time.Hour).UTC().Format(time.RFC3339Nano), consumed[0]["expires_at"])
}

func TestConsumeFromTime(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	cluster.CreateTopicWith(&heraldpb.TopicConfig{Name: "by-key", Partitions: 2, Ordering: client.OrderingPerKey}, 0)
	env := map[string]string{serverEnv: cluster.Nodes[0].Addr}
	for _, tenant := range []string{"a", "b", "a", "b"} {
		res := runCLI(t, tenant+"\n", env, "produce", "--topic", "orders", "--tenant", tenant)
		require.Equal(t, exitOK, res.code, res.stderr)
	}
	from := time.Unix(0, cluster.Events("orders", 0)[1].GetProducedAtUnixNano()).UTC().Format(time.RFC3339Nano)

	res := runCLI(t, "", env, "consume", "--topic", "orders", "--partition", "0", "--from", "time:"+from)
	require.Equal(t, exitOK, res.code, res.stderr)
	got := jsonLines(t, res.stdout)
	require.Len(t, got, 3)
	assert.Equal(t, float64(1), got[0]["offset"])
	assert.NotContains(t, got[0], "expires_at", "no TTL")

	res = runCLI(t, "", env, "consume", "--topic", "orders", "--tenant", "a", "--from", "time:"+from)
	require.Equal(t, exitOK, res.code, res.stderr)
	got = jsonLines(t, res.stdout)
	require.Len(t, got, 1)
	assert.Equal(t, float64(2), got[0]["offset"])

	res = runCLI(t, "", env, "consume", "--topic", "orders", "--partition", "0", "--from", "time:2200-01-01T00:00:00Z")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Empty(t, res.stdout)

	res = runCLI(t, "", env, "consume", "--topic", "by-key", "--tenant", "a")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `topic "by-key" is ordered per-key: a tenant's events span partitions`)
}

// TestConsumeFollow: --follow prints what exists, then events produced
// while it waits, and stops at --limit; --from latest prints only new ones.
func TestConsumeFollow(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("feed", 1)
	env := map[string]string{serverEnv: cluster.Nodes[0].Addr}
	res := runCLI(t, "old 1\nold 2\n", env, "produce", "--topic", "feed", "--tenant", "acme")
	require.Equal(t, exitOK, res.code, res.stderr)

	type result struct{ all, latest cliResult }
	done := make(chan result, 1)
	go func() {
		var r result
		latestDone := make(chan cliResult, 1)
		go func() {
			latestDone <- runCLI(t, "", env, "consume", "--topic", "feed", "--partition", "0", "--from", "latest", "--follow", "--limit", "1")
		}()
		r.all = runCLI(t, "", env, "consume", "--topic", "feed", "--tenant", "acme", "--follow", "--limit", "3")
		r.latest = <-latestDone
		done <- r
	}()
	// Produce until both followers have their events: the "latest" one
	// may start after a first new event, so keep producing (bounded).
	var r result
	for i := 0; ; i++ {
		require.Less(t, i, 100, "followers did not finish")
		res := runCLI(t, fmt.Sprintf("new %d\n", i), env, "produce", "--topic", "feed", "--tenant", "acme")
		require.Equal(t, exitOK, res.code, res.stderr)
		select {
		case r = <-done:
		case <-time.After(200 * time.Millisecond):
			continue
		}
		break
	}
	require.Equal(t, exitOK, r.all.code, r.all.stderr)
	all := jsonLines(t, r.all.stdout)
	require.Len(t, all, 3)
	assert.Equal(t, "old 1", all[0]["payload"])
	assert.Equal(t, "old 2", all[1]["payload"])
	assert.Equal(t, "new 0", all[2]["payload"])
	require.Equal(t, exitOK, r.latest.code, r.latest.stderr)
	latest := jsonLines(t, r.latest.stdout)
	require.Len(t, latest, 1)
	assert.Regexp(t, `^new \d+$`, latest[0]["payload"], "only events produced after it started")
}
