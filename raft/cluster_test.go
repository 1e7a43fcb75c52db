package raft

import (
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// threeNodes starts three nodes on one test network.
func threeNodes(t *testing.T) (*testNetwork, []*testNode) {
	network := newTestNetwork()
	return network, []*testNode{
		startNode(t, network, "n1", nil),
		startNode(t, network, "n2", nil),
		startNode(t, network, "n3", nil),
	}
}

// openOnAll opens group groupID on every node, bootstraps it, and returns
// the groups and their FSMs in node order.
func openOnAll(t *testing.T, nodes []*testNode, groupID uint64) ([]*Group, []*testFSM) {
	groups := make([]*Group, len(nodes))
	fsms := make([]*testFSM, len(nodes))
	for i, n := range nodes {
		fsms[i] = &testFSM{}
		groups[i] = openTestGroup(t, n, groupID, fsms[i], nil)
	}
	for _, g := range groups {
		require.NoError(t, g.BootstrapIfNew(servers(nodes...)))
	}
	return groups, fsms
}

// Two groups share the three nodes' servers and connections; each elects a
// leader and replicates independently.
func TestTwoGroupsElectLeadersOverSharedConnections(t *testing.T) {
	network, nodes := threeNodes(t)
	groupsA, fsmsA := openOnAll(t, nodes, 1)
	groupsB, fsmsB := openOnAll(t, nodes, 2)

	leaderA := waitLeader(t, groupsA...)
	leaderB := waitLeader(t, groupsB...)
	applyAll(t, groupsA[leaderA], "a-1", "a-2")
	applyAll(t, groupsB[leaderB], "b-1")
	requireConverged(t, []string{"a-1", "a-2"}, fsmsA...)
	requireConverged(t, []string{"b-1"}, fsmsB...)

	// One connection per peer, whatever the number of groups: no node has
	// more than one open TCP connection to each of its two peers, and the
	// leaders have theirs.
	outgoing := map[string]map[string]int{}
	network.mu.Lock()
	for c := range network.conns {
		if outgoing[c.from] == nil {
			outgoing[c.from] = map[string]int{}
		}
		outgoing[c.from][c.to]++
	}
	network.mu.Unlock()
	for from, perPeer := range outgoing {
		for to, conns := range perPeer {
			require.Equal(t, 1, conns, "%s -> %s", from, to)
		}
	}
	require.Len(t, outgoing[nodes[leaderA].addr], 2)
	require.Len(t, outgoing[nodes[leaderB].addr], 2)
}

// Entries applied on the leader reach every FSM, in order, and the steady
// state uses the pipeline.
func TestReplicationConvergesThroughPipeline(t *testing.T) {
	_, nodes := threeNodes(t)
	groups, fsms := openOnAll(t, nodes, 7)
	leader := waitLeader(t, groups...)

	var want []string
	for round := range 5 {
		batch := entryRange("e", round*100, (round+1)*100)
		applyAll(t, groups[leader], batch...)
		want = append(want, batch...)
	}
	requireConverged(t, want, fsms...)

	var pipelinedSent, pipelinedReceived float64
	for _, n := range nodes {
		pipelinedSent += counterValue(n.mux.metrics.sent.WithLabelValues(rpcAppendEntriesPipeline))
		pipelinedReceived += counterValue(n.mux.metrics.received.WithLabelValues(rpcAppendEntriesPipeline))
	}
	require.Positive(t, pipelinedSent, "leader never pipelined")
	require.Positive(t, pipelinedReceived, "followers never served a pipelined append")
}

// A replica that joins after the leader compacted its log catches up through
// a streamed InstallSnapshot.
func TestLaggingFollowerCatchesUpBySnapshot(t *testing.T) {
	_, nodes := threeNodes(t)
	conf := func(id string) *hraft.Config {
		c := testConfig(id)
		c.SnapshotThreshold = 16
		c.TrailingLogs = 4
		c.SnapshotInterval = time.Hour // only the forced snapshot below
		return c
	}
	fsms := []*testFSM{{}, {}, {}}
	var groups []*Group
	for i, n := range nodes[:2] {
		groups = append(groups, openTestGroup(t, n, 3, fsms[i], conf(n.id)))
	}
	for _, g := range groups {
		require.NoError(t, g.BootstrapIfNew(servers(nodes...)))
	}
	leader := groups[waitLeader(t, groups...)]

	want := entryRange("s", 0, 200)
	applyAll(t, leader, want...)
	require.NoError(t, leader.Raft().Snapshot().Error())
	more := entryRange("t", 0, 10)
	applyAll(t, leader, more...)
	want = append(want, more...)
	first, err := leader.logs.FirstIndex()
	require.NoError(t, err)
	require.Greater(t, first, uint64(2), "leader log not compacted; the test would not need a snapshot")

	late := openTestGroup(t, nodes[2], 3, fsms[2], conf(nodes[2].id))
	require.NoError(t, late.BootstrapIfNew(servers(nodes...)))
	requireConverged(t, want, fsms...)
	require.Positive(t, fsms[2].Restores(), "late follower was not sent a snapshot")
	require.Positive(t, counterValue(nodes[2].mux.metrics.snapshotBytes.WithLabelValues(sideReceive)))
}

// Cutting the leader off: the majority elects a new leader and commits; on
// healing, the old leader steps down and converges. Afterwards nothing leaks.
func TestPartitionedLeaderIsReplacedAndHeals(t *testing.T) {
	network, nodes := threeNodes(t)
	groups, fsms := openOnAll(t, nodes, 5)
	oldLeader := waitLeader(t, groups...)
	want := entryRange("before", 0, 10)
	applyAll(t, groups[oldLeader], want...)
	requireConverged(t, want, fsms...)

	network.isolate(nodes[oldLeader].addr)
	var majority []*Group
	var majorityFSMs []*testFSM
	for i := range groups {
		if i != oldLeader {
			majority = append(majority, groups[i])
			majorityFSMs = append(majorityFSMs, fsms[i])
		}
	}
	newLeader := majority[waitLeader(t, majority...)]
	during := entryRange("during", 0, 10)
	applyAll(t, newLeader, during...)
	want = append(want, during...)
	requireConverged(t, want, majorityFSMs...)
	require.Len(t, fsms[oldLeader].Entries(), 10, "the isolated node applied entries it could not have")

	network.heal(nodes[oldLeader].addr)
	requireConverged(t, want, fsms...)
	require.Eventually(t, func() bool { return groups[oldLeader].Raft().State() == hraft.Follower },
		20*time.Second, 20*time.Millisecond, "old leader did not step down")

	for _, g := range groups {
		require.NoError(t, g.Close())
	}
	for _, n := range nodes {
		n.stop()
	}
	goleak.VerifyNone(t)
}

// A follower held down while the leader compacts its log catches up by
// InstallSnapshot; then every replica restarts. raft-boltdb alone is not a
// MonotonicLogStore to hashicorp/raft, which then keeps the follower's old
// entries below a hole up to the snapshot: VerifyStore called that damage
// and the node would have wiped a healthy replica. Every replica must verify
// clean, reopen, and hold all the data.
func TestSnapshotInstallThenRestartOfEveryReplicaVerifiesClean(t *testing.T) {
	network, nodes := threeNodes(t)
	conf := func(id string) *hraft.Config {
		c := testConfig(id)
		c.SnapshotThreshold = 16
		c.TrailingLogs = 4
		c.SnapshotInterval = time.Hour // only the forced snapshot below
		return c
	}
	open := func() ([]*Group, []*testFSM) {
		groups := make([]*Group, len(nodes))
		fsms := make([]*testFSM, len(nodes))
		for i, n := range nodes {
			fsms[i] = &testFSM{}
			groups[i] = openTestGroup(t, n, 4, fsms[i], conf(n.id))
		}
		return groups, fsms
	}
	groups, fsms := open()
	for _, g := range groups {
		require.NoError(t, g.BootstrapIfNew(servers(nodes...)))
	}
	leader := waitLeader(t, groups...)
	want := entryRange("a", 0, 20)
	applyAll(t, groups[leader], want...)
	requireConverged(t, want, fsms...)

	held := (leader + 1) % len(nodes)
	network.isolate(nodes[held].addr)
	var majority []*Group
	for i, g := range groups {
		if i != held {
			majority = append(majority, g)
		}
	}
	leaderGroup := majority[waitLeader(t, majority...)]
	more := entryRange("b", 0, 200)
	applyAll(t, leaderGroup, more...)
	want = append(want, more...)
	require.NoError(t, leaderGroup.Raft().Snapshot().Error())
	first, err := leaderGroup.logs.FirstIndex()
	require.NoError(t, err)
	heldLast, err := groups[held].logs.LastIndex()
	require.NoError(t, err)
	require.Greater(t, first, heldLast+1, "leader log not compacted past the held follower; it would not need a snapshot")

	network.heal(nodes[held].addr)
	after := entryRange("c", 0, 10)
	applyAll(t, leaderGroup, after...)
	want = append(want, after...)
	requireConverged(t, want, fsms...)
	require.Positive(t, fsms[held].Restores(), "held follower was not sent a snapshot")

	for _, g := range groups {
		require.NoError(t, g.Close())
	}
	for _, n := range nodes {
		require.NoError(t, VerifyStore(filepath.Join(n.dir, "group-4"), nil), "replica on %s", n.id)
	}
	groups, fsms = open()
	waitLeader(t, groups...)
	requireConverged(t, want, fsms...)
}

// slowRestoreFSM is a testFSM whose Restore takes restoreDuration, as a
// large snapshot restored onto a slow disk does. (The delay simulates work,
// it does not wait for a condition.)
type slowRestoreFSM struct {
	testFSM
	restoreDuration time.Duration
	started         atomic.Int32
}

func (f *slowRestoreFSM) Restore(rc io.ReadCloser) error {
	f.started.Add(1)
	time.Sleep(f.restoreDuration)
	return f.testFSM.Restore(rc)
}

// A snapshot whose restore on the follower takes longer than
// SnapshotTimeout is installed once: the follower restores it, the leader
// waits for the answer (SnapshotTimeout bounds the transfer of the bytes,
// not the restore) and carries on with appends. Before, the leader gave up
// at SnapshotTimeout while the follower restored and sent the snapshot
// again from scratch, forever.
func TestSnapshotRestoreLongerThanSnapshotTimeoutIsInstalledOnce(t *testing.T) {
	const snapshotTimeout = 2 * time.Second
	network := newTestNetwork()
	short := func(o *MuxOptions) { o.SnapshotTimeout = snapshotTimeout }
	nodes := []*testNode{startNode(t, network, "n1", short), startNode(t, network, "n2", short), startNode(t, network, "n3", short)}
	conf := func(id string) *hraft.Config {
		c := testConfig(id)
		c.SnapshotThreshold = 16
		c.TrailingLogs = 4
		c.SnapshotInterval = time.Hour // only the forced snapshot below
		return c
	}
	fsms := []*testFSM{{}, {}}
	var groups []*Group
	for i, n := range nodes[:2] {
		groups = append(groups, openTestGroup(t, n, 6, fsms[i], conf(n.id)))
	}
	for _, g := range groups {
		require.NoError(t, g.BootstrapIfNew(servers(nodes...)))
	}
	leader := groups[waitLeader(t, groups...)]
	want := entryRange("s", 0, 100)
	applyAll(t, leader, want...)
	require.NoError(t, leader.Raft().Snapshot().Error())
	more := entryRange("t", 0, 10)
	applyAll(t, leader, more...)
	want = append(want, more...)

	slow := &slowRestoreFSM{restoreDuration: snapshotTimeout + time.Second}
	late := openTestGroup(t, nodes[2], 6, slow, conf(nodes[2].id))
	require.NoError(t, late.BootstrapIfNew(servers(nodes...)))
	// Entries after the snapshot reach the late follower only once the
	// leader knows the snapshot is installed.
	if !assert.Eventually(t, func() bool { return equalStrings(slow.Entries(), want) }, 30*time.Second, 20*time.Millisecond) {
		t.Fatalf("late follower has %d of %d entries after %d restores", len(slow.Entries()), len(want), slow.started.Load())
	}
	require.Equal(t, int32(1), slow.started.Load(), "the snapshot was restored more than once")
}
