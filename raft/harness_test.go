package raft

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
)

// testNetwork sits under every test node's outgoing gRPC connections (as a
// grpc.WithContextDialer) so that a test can isolate a node: dials from or
// to it are refused and open connections with it are closed.
type testNetwork struct {
	mu       sync.Mutex
	isolated map[string]bool           // node address
	conns    map[*trackedConn]struct{} // open connections
}

type trackedConn struct {
	net.Conn
	from, to string
	network  *testNetwork
}

func (c *trackedConn) Close() error {
	c.network.mu.Lock()
	delete(c.network.conns, c)
	c.network.mu.Unlock()
	return c.Conn.Close()
}

func newTestNetwork() *testNetwork {
	return &testNetwork{isolated: map[string]bool{}, conns: map[*trackedConn]struct{}{}}
}

// dialer returns the dial function of the node at from.
func (n *testNetwork) dialer(from string) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, to string) (net.Conn, error) {
		n.mu.Lock()
		refused := n.isolated[from] || n.isolated[to]
		n.mu.Unlock()
		if refused {
			return nil, fmt.Errorf("test network: link %s -> %s is cut", from, to)
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", to)
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: conn, from: from, to: to, network: n}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.isolated[from] || n.isolated[to] { // cut while dialling
			_ = conn.Close()
			return nil, fmt.Errorf("test network: link %s -> %s is cut", from, to)
		}
		n.conns[tc] = struct{}{}
		return tc, nil
	}
}

// isolate cuts every link of the node at addr.
func (n *testNetwork) isolate(addr string) {
	n.mu.Lock()
	n.isolated[addr] = true
	var victims []*trackedConn
	for c := range n.conns {
		if c.from == addr || c.to == addr {
			victims = append(victims, c)
		}
	}
	n.mu.Unlock()
	for _, c := range victims {
		_ = c.Close()
	}
}

// heal restores the links of the node at addr.
func (n *testNetwork) heal(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.isolated, addr)
}

// testNode is one in-process node: a gRPC server on 127.0.0.1:0 and a Mux.
type testNode struct {
	id        string
	addr      string
	server    *grpc.Server
	mux       *Mux
	serveDone chan struct{}
	dir       string
	stopOnce  sync.Once
}

func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("RAFT_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

// testWriter sends log lines to t.Log, so they show only for failing tests.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func startNode(t testing.TB, network *testNetwork, id string, mutate func(*MuxOptions)) *testNode {
	t.Helper()
	return startNodeServing(t, network, id, mutate, func(s *grpc.Server, m *Mux) { m.Register(s) })
}

// startNodeServing is startNode with the node's Raft service registered
// on its server by register.
func startNodeServing(t testing.TB, network *testNetwork, id string, mutate func(*MuxOptions), register func(*grpc.Server, *Mux)) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	opts := MuxOptions{
		LocalAddr:         addr,
		Logger:            testLogger(t).With("node", id),
		RPCTimeout:        2 * time.Second,
		ReconnectDelayMax: 200 * time.Millisecond,
	}
	if network != nil {
		opts.DialOptions = []grpc.DialOption{grpc.WithContextDialer(network.dialer(addr))}
	}
	if mutate != nil {
		mutate(&opts)
	}
	mux, err := NewMux(opts)
	require.NoError(t, err)
	server := grpc.NewServer(ServerOptions(mux.opts.MaxMessageBytes)...)
	register(server, mux)
	n := &testNode{id: id, addr: addr, server: server, mux: mux, serveDone: make(chan struct{}), dir: t.TempDir()}
	go func() {
		defer close(n.serveDone)
		_ = server.Serve(lis)
	}()
	t.Cleanup(n.stop)
	return n
}

// stop closes the Mux and stops the server. Idempotent.
func (n *testNode) stop() {
	n.stopOnce.Do(func() {
		_ = n.mux.Close()
		n.server.Stop()
		<-n.serveDone
	})
}

// testConfig is DefaultConfig with timeouts short enough for quick tests but
// long enough not to flap under -race on two cores.
func testConfig(nodeID string) *hraft.Config {
	c := DefaultConfig(nodeID)
	c.HeartbeatTimeout = 300 * time.Millisecond
	c.ElectionTimeout = 300 * time.Millisecond
	c.LeaderLeaseTimeout = 150 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	return c
}

// openTestGroup opens group groupID on n with fsm, in n's directory.
func openTestGroup(t testing.TB, n *testNode, groupID uint64, fsm hraft.FSM, conf *hraft.Config) *Group {
	t.Helper()
	tr, err := n.mux.Transport(groupID)
	require.NoError(t, err)
	if conf == nil {
		conf = testConfig(n.id)
	}
	g, err := OpenGroup(GroupConfig{
		GroupID:   groupID,
		NodeID:    n.id,
		Dir:       filepath.Join(n.dir, fmt.Sprintf("group-%d", groupID)),
		FSM:       fsm,
		Transport: tr,
		Logger:    testLogger(t).With("node", n.id),
		Config:    conf,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	return g
}

func servers(nodes ...*testNode) []hraft.Server {
	out := make([]hraft.Server, len(nodes))
	for i, n := range nodes {
		out[i] = hraft.Server{Suffrage: hraft.Voter, ID: hraft.ServerID(n.id), Address: hraft.ServerAddress(n.addr)}
	}
	return out
}

// waitLeader waits until exactly one of groups is leader and every other
// one agrees on it, and returns the leader's index in groups.
func waitLeader(t testing.TB, groups ...*Group) int {
	t.Helper()
	leader := -1
	require.Eventually(t, func() bool {
		leader = -1
		for i, g := range groups {
			if g.Raft().State() == hraft.Leader {
				if leader >= 0 {
					return false
				}
				leader = i
			}
		}
		if leader < 0 {
			return false
		}
		addr, _ := groups[leader].Raft().LeaderWithID()
		for _, g := range groups {
			if got, _ := g.Raft().LeaderWithID(); got != addr {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "no single agreed leader")
	return leader
}

// applyAll applies each entry on g and waits for all of them.
func applyAll(t testing.TB, g *Group, entries ...string) {
	t.Helper()
	futures := make([]hraft.ApplyFuture, len(entries))
	for i, e := range entries {
		futures[i] = g.Raft().Apply([]byte(e), 5*time.Second)
	}
	for i, f := range futures {
		require.NoError(t, f.Error(), "apply %q", entries[i])
	}
}

func entryRange(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%04d", prefix, i))
	}
	return out
}

// requireConverged waits until every fsm holds exactly want, in order.
func requireConverged(t testing.TB, want []string, fsms ...*testFSM) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, f := range fsms {
			if !equalStrings(f.Entries(), want) {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "fsms did not converge to %d entries", len(want))
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// testFSM is a list of the applied commands. Safe for concurrent use.
type testFSM struct {
	mu       sync.Mutex
	entries  []string
	applied  uint64 // index of the last applied entry
	restores int
}

var _ hraft.FSM = (*testFSM)(nil)

func (f *testFSM) Apply(l *hraft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	f.applied = l.Index
	return len(f.entries)
}

type testFSMState struct {
	Entries []string `json:"entries"`
	Applied uint64   `json:"applied"`
}

func (f *testFSM) Snapshot() (hraft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &testFSMSnapshot{state: testFSMState{Entries: append([]string(nil), f.entries...), Applied: f.applied}}, nil
}

func (f *testFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s testFSMState
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries, f.applied = s.Entries, s.Applied
	f.restores++
	return nil
}

func (f *testFSM) Entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.entries...)
}

func (f *testFSM) Restores() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restores
}

type testFSMSnapshot struct{ state testFSMState }

func (s *testFSMSnapshot) Persist(sink hraft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.state); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *testFSMSnapshot) Release() {}

// indexedTestFSM is a testFSM that reports its applied index, so OpenGroup
// treats it as an IndexedFSM: it skips entries at or below it, as the
// contract requires.
type indexedTestFSM struct{ testFSM }

var _ IndexedFSM = (*indexedTestFSM)(nil)

func (f *indexedTestFSM) Apply(l *hraft.Log) any {
	f.mu.Lock()
	skip := l.Index <= f.applied
	f.mu.Unlock()
	if skip {
		return nil
	}
	return f.testFSM.Apply(l)
}

func (f *indexedTestFSM) AppliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// SnapshotAppliedIndex reads the applied index a testFSMSnapshot recorded.
func (f *indexedTestFSM) SnapshotAppliedIndex(r io.Reader) (uint64, error) {
	var s testFSMState
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return 0, err
	}
	return s.Applied, nil
}

// counterValue reads a Prometheus counter (without the testutil package,
// whose dependencies are not in this module's go.sum).
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// startSilentListener accepts TCP connections on 127.0.0.1:0 and never
// answers: a peer that is up but hung.
func startSilentListener(t testing.TB) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return lis.Addr().String()
}
