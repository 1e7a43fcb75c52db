//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/server/proccluster"
)

// Bounds of the end-to-end test. Each is a ceiling, not an expectation.
const (
	e2eReadyTimeout   = 45 * time.Second
	e2eCommandTimeout = 45 * time.Second
	// e2eExitTimeout is how long `herald dev` may take to stop after
	// SIGINT: its own SIGTERM-then-SIGKILL deadline is 10s.
	e2eExitTimeout = 30 * time.Second
	// e2eStatusTimeout bounds waiting for `cluster status` to name a
	// leader for every partition (a leadership transfer may be under way).
	e2eStatusTimeout = 20 * time.Second
	// e2ePortBaseAttempts bounds the search for a free port base, and the
	// starts of the first cluster (a port may be taken between the check
	// and the nodes' listen).
	e2ePortBaseAttempts = 50
	e2eStartAttempts    = 3
	// e2eOutputLinesMax bounds the buffered output lines of `herald dev`;
	// it prints a handful.
	e2eOutputLinesMax = 1024
)

// TestEndToEnd builds the herald binary, runs `herald dev` with three real
// node processes and drives the documented CLI contract against it as a
// user would (README "Try it"): create a topic, produce, consume by offset,
// tenant sequence and partition, cluster status, the error cases; then
// stops the cluster with SIGINT, checks that no node process is left, and
// starts it again on the same data to find the topic and the events there.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds the binary and runs a 3-node cluster of processes")
	}
	bin := proccluster.TestBinary(t)
	dataDir := t.TempDir()
	dev, portBase := startDevOnFreePorts(t, bin, dataDir)
	t.Logf("herald dev ready: port base %d, nodes %v", portBase, dev.pids)
	servers := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", portBase+1, portBase+2, portBase+3)
	cli := func(stdin string, args ...string) cliResult {
		t.Helper()
		return runHerald(t, bin, stdin, append(args, "--server", servers)...)
	}

	// Create the topic.
	res := cli("", "topic", "create", "orders", "--partitions", "3", "--replication", "3")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "topic orders: 3 partitions, replication 3")
	// The topic takes the events of registered tenants only.
	res = cli("", "tenant", "create", "acme")
	require.Equal(t, exitOK, res.code, res.stderr)

	// Produce three events for one tenant: one JSON line each, in order.
	partition := client.PartitionForTenant("acme", 3)
	res = cli("a\nb\nc\n", "produce", "--topic", "orders", "--tenant", "acme")
	require.Equal(t, exitOK, res.code, res.stderr)
	produced := decodeLines[producedLine](t, res.stdout)
	require.Len(t, produced, 3, res.stdout)
	eventIDs := make([]string, len(produced))
	for i, p := range produced {
		assert.Equal(t, partition, p.Partition, "line %d", i)
		assert.Equal(t, uint64(i), p.Offset, "line %d", i)
		assert.Equal(t, uint64(i+1), p.Sequence, "line %d", i)
		assert.NotEmpty(t, p.EventID, "line %d", i)
		eventIDs[i] = p.EventID
	}
	assert.Len(t, uniq(eventIDs), 3, "event ids are distinct: %v", eventIDs)

	// Consume by tenant from offset 0, and from a tenant sequence.
	res = cli("", "consume", "--topic", "orders", "--tenant", "acme", "--from", "offset:0", "--limit", "3")
	require.Equal(t, exitOK, res.code, res.stderr)
	assertEvents(t, res.stdout, partition, []string{"a", "b", "c"}, 0, eventIDs)

	res = cli("", "consume", "--topic", "orders", "--tenant", "acme", "--from", "seq:2")
	require.Equal(t, exitOK, res.code, res.stderr)
	assertEvents(t, res.stdout, partition, []string{"b", "c"}, 1, eventIDs[1:])

	// Consume a whole partition from the earliest offset; another
	// partition is empty.
	p := strconv.FormatUint(uint64(partition), 10)
	res = cli("", "consume", "--topic", "orders", "--partition", p, "--from", "earliest")
	require.Equal(t, exitOK, res.code, res.stderr)
	assertEvents(t, res.stdout, partition, []string{"a", "b", "c"}, 0, eventIDs)
	other := strconv.FormatUint(uint64((partition+1)%3), 10)
	res = cli("", "consume", "--topic", "orders", "--partition", other, "--from", "earliest")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Empty(t, res.stdout)

	// Cluster status names the three nodes and a leader per partition.
	assertClusterStatus(t, cli)

	// Bad input: a non-zero exit and a message that names the problem,
	// nothing on stdout.
	dead := deadAddr(t)
	tooLong := strings.Repeat("x", 1<<20+1) + "\n"
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"unknown topic produce", "x\n", []string{"produce", "--topic", "nope", "--tenant", "acme"}, exitFailure, `topic "nope" not found`},
		{"unknown topic consume", "", []string{"consume", "--topic", "nope", "--tenant", "acme"}, exitFailure, `topic "nope" not found`},
		{"empty tenant", "x\n", []string{"produce", "--topic", "orders", "--tenant", ""}, exitUsage, "--tenant is required and must not be empty"},
		{"payload over 1 MiB", tooLong, []string{"produce", "--topic", "orders", "--tenant", "acme"}, exitFailure, "payload too large: 1048577 bytes, max 1048576"},
		{"malformed from", "", []string{"consume", "--topic", "orders", "--tenant", "acme", "--from", "offset:abc"}, exitUsage, `--from "offset:abc"`},
		{"malformed from kind", "", []string{"consume", "--topic", "orders", "--tenant", "acme", "--from", "sequence:2"}, exitUsage, `--from "sequence:2"`},
	} {
		res := cli(tc.stdin, tc.args...)
		assert.Equal(t, tc.code, res.code, "%s: %s", tc.name, res.stderr)
		assert.Contains(t, res.stderr, tc.want, tc.name)
		assert.Empty(t, res.stdout, tc.name)
	}
	// A server that is down. The later --server wins over cli's.
	res = runHerald(t, bin, "", "topic", "list", "--timeout", "2s", "--server", dead)
	assert.Equal(t, exitUnavailable, res.code, res.stderr)
	assert.Contains(t, res.stderr, "herald: no node answered at "+dead)
	assert.Empty(t, res.stdout)

	// Stop with SIGINT: exit 0 and no node process left.
	dev.interrupt(t)

	// Start again on the same data and ports: the topic and the events
	// are still there, and the tenant's numbering carries on.
	dev, err := startDev(t, bin, dataDir, portBase)
	require.NoError(t, err, "restarting herald dev on the same data")
	res = cli("", "topic", "describe", "orders", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var described struct {
		Name        string `json:"name"`
		Partitions  uint32 `json:"partitions"`
		Replication uint32 `json:"replication_factor"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &described), res.stdout)
	assert.Equal(t, "orders", described.Name)
	assert.Equal(t, uint32(3), described.Partitions)
	assert.Equal(t, uint32(3), described.Replication)

	res = cli("", "consume", "--topic", "orders", "--tenant", "acme")
	require.Equal(t, exitOK, res.code, res.stderr)
	assertEvents(t, res.stdout, partition, []string{"a", "b", "c"}, 0, eventIDs)
	res = cli("", "consume", "--topic", "orders", "--partition", p)
	require.Equal(t, exitOK, res.code, res.stderr)
	assertEvents(t, res.stdout, partition, []string{"a", "b", "c"}, 0, eventIDs)

	res = cli("d\n", "produce", "--topic", "orders", "--tenant", "acme")
	require.Equal(t, exitOK, res.code, res.stderr)
	more := decodeLines[producedLine](t, res.stdout)
	require.Len(t, more, 1, res.stdout)
	assert.Equal(t, producedLine{Partition: partition, Offset: 3, Sequence: 4, EventID: more[0].EventID}, more[0])

	dev.interrupt(t)
}

// freePortBase returns a port base in [20000, 40000) whose six dev ports
// (base+1..3 for gRPC, base+101..103 for HTTP) could be listened on just
// now.
func freePortBase(t *testing.T, rng *rand.Rand) int {
	t.Helper()
	for range e2ePortBaseAttempts {
		base := 20000 + rng.IntN(20000-200)
		if portsFree(base+1, base+2, base+3, base+101, base+102, base+103) {
			return base
		}
	}
	t.Fatalf("no free port base found in %d attempts", e2ePortBaseAttempts)
	return 0
}

// portsFree reports whether every port can be listened on at 127.0.0.1.
func portsFree(ports ...int) bool {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for _, p := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		held = append(held, l)
	}
	return true
}

// runHerald runs the binary with args and stdin, bounded by
// e2eCommandTimeout, and returns its output and exit code.
func runHerald(t *testing.T, bin, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), serverEnv+"=")
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("herald %s: %v", strings.Join(args, " "), err)
	}
	require.NoError(t, ctx.Err(), "herald %s did not finish within %s", strings.Join(args, " "), e2eCommandTimeout)
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// devProcess is a running `herald dev`. The test goroutine owns it; one
// reader goroutine forwards its stdout lines and one waiter goroutine
// reaps it, both ending when it exits.
type devProcess struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer // read only after exited is closed
	lines  chan string   // stdout lines; closed at EOF
	exited chan struct{} // closed once the process was reaped
	err    error         // Wait's result; read only after exited is closed
	pids   map[string]int
	// contextFile is the context file dev printed (--tls, --auth).
	contextFile string
}

var devNodeLine = regexp.MustCompile(`^(n\d+) pid=(\d+) grpc=`)

// startDevOnFreePorts runs startDev on a random free port base (seeded,
// the seed logged), trying another base, on an emptied dataDir, when the
// start fails (a port taken between the check and the nodes' listen).
func startDevOnFreePorts(t *testing.T, bin, dataDir string, extraArgs ...string) (*devProcess, int) {
	t.Helper()
	seed := time.Now().UnixNano()
	t.Logf("port base seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for attempt := 1; ; attempt++ {
		portBase := freePortBase(t, rng)
		dev, err := startDev(t, bin, dataDir, portBase, extraArgs...)
		if err == nil {
			return dev, portBase
		}
		require.Less(t, attempt, e2eStartAttempts, "herald dev %v did not become ready: %v", extraArgs, err)
		t.Logf("herald dev on port base %d: %v; trying another base", portBase, err)
		require.NoError(t, os.RemoveAll(dataDir))
		require.NoError(t, os.MkdirAll(dataDir, 0o755))
	}
}

// startDev runs `herald dev --nodes 3` on dataDir and portBase and waits
// for its "ready" line. On error the process is stopped and reaped. Either
// way a cleanup stops it (and, if it cannot, its nodes) when the test ends.
func startDev(t *testing.T, bin, dataDir string, portBase int, extraArgs ...string) (*devProcess, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"dev", "--nodes", "3", "--data", dataDir, "--port-base", strconv.Itoa(portBase)}, extraArgs...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	d := &devProcess{cmd: cmd, stderr: &bytes.Buffer{}, lines: make(chan string, e2eOutputLinesMax),
		exited: make(chan struct{}), pids: map[string]int{}}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(d.lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			select {
			case d.lines <- s.Text():
			default: // over e2eOutputLinesMax unread lines: drop, never block
			}
		}
	}()
	go func() {
		<-readerDone // all reads from the pipe are done before Wait
		d.err = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() { d.kill(t) })

	if err := d.awaitReady(); err != nil {
		d.kill(t)
		return nil, fmt.Errorf("%w; stderr: %s; node logs: %s", err, d.stderr.String(), nodeLogs(dataDir))
	}
	return d, nil
}

// awaitReady reads the node lines (recording their pids) up to "ready".
// A node that exits first, or the end of the output, is an error.
func (d *devProcess) awaitReady() error {
	deadline := time.NewTimer(e2eReadyTimeout)
	defer deadline.Stop()
	for {
		select {
		case line, ok := <-d.lines:
			if !ok {
				return errors.New("herald dev ended before ready")
			}
			if m := devNodeLine.FindStringSubmatch(line); m != nil {
				pid, err := strconv.Atoi(m[2])
				if err != nil {
					return fmt.Errorf("line %q: %w", line, err)
				}
				d.pids[m[1]] = pid
				continue
			}
			if p, ok := strings.CutPrefix(line, "context export "+configEnv+"="); ok {
				d.contextFile = p
				continue
			}
			if line == "ready" {
				if len(d.pids) != 3 {
					return fmt.Errorf("ready after %d node lines, want 3", len(d.pids))
				}
				return nil
			}
			if strings.Contains(line, " exited: ") {
				return fmt.Errorf("before ready: %s", line)
			}
		case <-deadline.C:
			return fmt.Errorf("no ready line within %s", e2eReadyTimeout)
		}
	}
}

// interrupt sends SIGINT and checks that herald dev exits 0 in time and
// that none of its node processes is left.
func (d *devProcess) interrupt(t *testing.T) {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(os.Interrupt))
	select {
	case <-d.exited:
	case <-time.After(e2eExitTimeout):
		t.Fatalf("herald dev still running %s after SIGINT", e2eExitTimeout)
	}
	require.NoError(t, d.err, "herald dev exit; stderr: %s", d.stderr.String())
	for id, pid := range d.pids {
		assert.False(t, processExists(pid), "node %s (pid %d) outlived herald dev", id, pid)
	}
}

// kill stops a herald dev that is still running when the test ends early:
// SIGINT, and after e2eExitTimeout SIGKILL to it and to its nodes (they are
// in their own process groups, so they would otherwise survive it).
func (d *devProcess) kill(t *testing.T) {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.exited:
		return
	case <-time.After(e2eExitTimeout):
	}
	t.Logf("herald dev ignored SIGINT for %s; killing it and its nodes %v", e2eExitTimeout, d.pids)
	for _, pid := range d.pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
}

// processExists reports whether a process with pid exists (a zombie
// counts: its parent has not reaped it).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// nodeLogs returns the tail of every node.log under dataDir, for failure
// messages.
func nodeLogs(dataDir string) string {
	const tailBytesMax = 2000
	var b strings.Builder
	paths, _ := filepath.Glob(filepath.Join(dataDir, "n*", "node.log"))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if len(data) > tailBytesMax {
			data = data[len(data)-tailBytesMax:]
		}
		fmt.Fprintf(&b, "\n--- %s ---\n%s", p, data)
	}
	return b.String()
}

// decodeLines decodes one JSON document of type T per line, refusing
// unknown keys (the output keys are a contract).
func decodeLines[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		var v T
		require.NoError(t, dec.Decode(&v), line)
		out = append(out, v)
	}
	return out
}

// assertEvents checks consume output: the payloads in order, on partition,
// for tenant acme, with dense offsets and sequences from firstOffset (a
// single tenant holds the partition here) and the given event ids.
func assertEvents(t *testing.T, stdout string, partition uint32, payloads []string, firstOffset uint64, eventIDs []string) {
	t.Helper()
	lines := jsonLines(t, stdout)
	require.Len(t, lines, len(payloads), stdout)
	for i, l := range lines {
		assert.Equal(t, payloads[i], l["payload"], "line %d", i)
		assert.Equal(t, float64(partition), l["partition"], "line %d", i)
		assert.Equal(t, float64(firstOffset+uint64(i)), l["offset"], "line %d", i)
		assert.Equal(t, float64(firstOffset+uint64(i)+1), l["sequence"], "line %d", i)
		assert.Equal(t, "acme", l["tenant"], "line %d", i)
		assert.Equal(t, eventIDs[i], l["event_id"], "line %d", i)
		assert.Regexp(t, `^\d{4}-\d\d-\d\dT`, l["produced_at"], "line %d", i)
	}
}

// e2eClusterStatus is the part of `cluster status --json` the test reads,
// spelled independently of clusterView so that a renamed key is caught.
type e2eClusterStatus struct {
	ControllerLeaderID string `json:"controller_leader_id"`
	Nodes              []struct {
		ID        string `json:"id"`
		Address   string `json:"address"`
		Reachable bool   `json:"reachable"`
	} `json:"nodes"`
	Partitions []struct {
		Topic    string   `json:"topic"`
		Index    uint32   `json:"index"`
		Replicas []string `json:"replicas"`
		LeaderID string   `json:"leader_id"`
	} `json:"partitions"`
}

// assertClusterStatus checks `cluster status --json`: three reachable
// nodes, a controller leader, and the topic's three partitions each led by
// one of its replicas. A leader may be briefly unknown while the
// reconciler moves it to the preferred replica, so the status is asked
// again, within e2eStatusTimeout, until every partition names one.
func assertClusterStatus(t *testing.T, cli func(stdin string, args ...string) cliResult) {
	t.Helper()
	var st e2eClusterStatus
	deadline := time.Now().Add(e2eStatusTimeout)
	for {
		res := cli("", "cluster", "status", "--json")
		require.Equal(t, exitOK, res.code, res.stderr)
		st = e2eClusterStatus{}
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &st), res.stdout)
		allLed := len(st.Partitions) == 3
		for _, p := range st.Partitions {
			allLed = allLed && p.LeaderID != ""
		}
		if allLed || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	assert.NotEmpty(t, st.ControllerLeaderID)
	require.Len(t, st.Nodes, 3)
	for i, n := range st.Nodes {
		assert.Equal(t, fmt.Sprintf("n%d", i+1), n.ID)
		assert.True(t, n.Reachable, "node %s", n.ID)
		assert.NotEmpty(t, n.Address, "node %s", n.ID)
	}
	require.Len(t, st.Partitions, 3)
	for i, p := range st.Partitions {
		assert.Equal(t, "orders", p.Topic)
		assert.Equal(t, uint32(i), p.Index)
		assert.ElementsMatch(t, []string{"n1", "n2", "n3"}, p.Replicas, "partition %d", i)
		assert.Contains(t, p.Replicas, p.LeaderID, "partition %d is led by one of its replicas", i)
	}
}

// uniq returns the distinct strings of s.
func uniq(s []string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}
