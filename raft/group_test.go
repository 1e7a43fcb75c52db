package raft

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// openSingle opens a one-replica group on n in dir and makes it leader.
func openSingle(t *testing.T, n *testNode, dir string, fsm hraft.FSM) *Group {
	t.Helper()
	tr, err := n.mux.Transport(1)
	require.NoError(t, err)
	conf := testConfig(n.id)
	conf.SnapshotInterval = time.Hour
	conf.SnapshotThreshold = 1 << 20
	g, err := OpenGroup(GroupConfig{GroupID: 1, NodeID: n.id, Dir: dir, FSM: fsm, Transport: tr,
		Logger: testLogger(t), Config: conf})
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	require.NoError(t, g.BootstrapIfNew(servers(n)))
	waitLeader(t, g)
	return g
}

// An IndexedFSM whose store lost its data (here: a fresh FSM) is caught up
// from the newest snapshot before Raft starts; Raft then replays only the
// entries after the snapshot, and the FSM skips those it already has.
func TestIndexedFSMBehindSnapshotIsRestoredBeforeStart(t *testing.T) {
	n := startNode(t, nil, "n", nil)
	dir := filepath.Join(n.dir, "g")
	fsm := &indexedTestFSM{}
	g := openSingle(t, n, dir, fsm)
	snapshotted := entryRange("a", 0, 20)
	applyAll(t, g, snapshotted...)
	require.NoError(t, g.Raft().Snapshot().Error())
	after := entryRange("b", 0, 5)
	applyAll(t, g, after...)
	want := append(append([]string(nil), snapshotted...), after...)
	require.Equal(t, want, fsm.Entries())
	require.NoError(t, g.Close())
	require.NoError(t, g.Close(), "close is idempotent")

	// Reopen with an FSM that lost everything.
	fresh := &indexedTestFSM{}
	g2 := openSingle(t, n, dir, fresh)
	require.Equal(t, 1, fresh.Restores(), "the newest snapshot was not restored into the fsm")
	require.Eventually(t, func() bool { return equalStrings(fresh.Entries(), want) }, 10*time.Second, 10*time.Millisecond,
		"fsm has %v", fresh.Entries())
	// Existing state: bootstrapping again is a no-op.
	require.NoError(t, g2.BootstrapIfNew(servers(n)))
	require.NoError(t, g2.Close())

	// Reopen with an FSM that kept its data: nothing is restored and no
	// entry is applied twice.
	kept := &indexedTestFSM{}
	kept.entries, kept.applied = fresh.Entries(), fresh.AppliedIndex()
	g3 := openSingle(t, n, dir, kept)
	applyAll(t, g3, "c")
	require.Equal(t, 0, kept.Restores())
	require.Equal(t, append(want, "c"), kept.Entries())
}

// brokenIndexedFSM restores data but not its applied index.
type brokenIndexedFSM struct{ indexedTestFSM }

func (f *brokenIndexedFSM) Restore(rc io.ReadCloser) error {
	err := f.indexedTestFSM.Restore(rc)
	f.mu.Lock()
	f.applied = 0
	f.mu.Unlock()
	return err
}

func TestIndexedFSMStillBehindAfterRestoreFailsOpen(t *testing.T) {
	n := startNode(t, nil, "n", nil)
	dir := filepath.Join(n.dir, "g")
	g := openSingle(t, n, dir, &indexedTestFSM{})
	applyAll(t, g, entryRange("a", 0, 5)...)
	require.NoError(t, g.Raft().Snapshot().Error())
	require.NoError(t, g.Close())

	tr, err := n.mux.Transport(1)
	require.NoError(t, err)
	_, err = OpenGroup(GroupConfig{GroupID: 1, NodeID: n.id, Dir: dir, FSM: &brokenIndexedFSM{}, Transport: tr,
		Logger: testLogger(t), Config: testConfig(n.id)})
	require.ErrorIs(t, err, ErrFSMBehindSnapshot)
	// OpenGroup owned the transport and closed it: the group can be opened again.
	tr2, err := n.mux.Transport(1)
	require.NoError(t, err)
	require.NoError(t, tr2.Close())
}

func TestGroupWritesRaftDBAndSnapshotsInDir(t *testing.T) {
	n := startNode(t, nil, "n", nil)
	dir := filepath.Join(n.dir, "g")
	g := openSingle(t, n, dir, &testFSM{})
	applyAll(t, g, "x")
	require.NoError(t, g.Raft().Snapshot().Error())
	_, err := os.Stat(filepath.Join(dir, "raft.db"))
	require.NoError(t, err)
	snaps, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	require.NoError(t, err)
	require.Len(t, snaps, 1)
	require.Equal(t, uint64(1), g.ID())
}

func TestGroupConfigValidateReportsEveryProblem(t *testing.T) {
	n := startNode(t, nil, "n", nil)
	tr, err := n.mux.Transport(5)
	require.NoError(t, err)
	bad := *DefaultConfig("x")
	bad.ElectionTimeout = bad.HeartbeatTimeout / 2
	cfg := GroupConfig{GroupID: 6, Transport: tr, SnapshotRetain: -1, Config: &bad}
	err = cfg.Validate()
	require.ErrorIs(t, err, ErrInvalidOptions)
	for _, want := range []string{"NodeID", "Dir", "FSM", "Transport carries group 5", "SnapshotRetain"} {
		require.ErrorContains(t, err, want)
	}
	cfg.NodeID = "x"
	require.ErrorContains(t, cfg.Validate(), "ElectionTimeout")

	_, err = OpenGroup(cfg)
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = n.mux.Transport(5)
	require.NoError(t, err, "a failed OpenGroup closes (unregisters) its transport")
}

func TestDefaultConfigIsValid(t *testing.T) {
	c := DefaultConfig("node-1")
	require.NoError(t, hraft.ValidateConfig(c))
	require.Equal(t, hraft.ServerID("node-1"), c.LocalID)
	require.Equal(t, 64, c.MaxAppendEntries)
	require.True(t, c.BatchApplyCh)
	require.NoError(t, hraft.ValidateConfig(testConfig("t")))
}

// hashicorp/raft's snapshot index counts entries the FSM never sees (a
// Barrier is applied by Raft alone), so a snapshot taken right after one has
// an index above the FSM's applied index, though the FSM holds all of it. A
// restart must not take that FSM for one that is behind: it opens without a
// restore, with its data, and carries on.
func TestIndexedFSMAtASnapshotEndingInABarrierIsNotBehind(t *testing.T) {
	n := startNode(t, nil, "n", nil)
	dir := filepath.Join(n.dir, "g")
	fsm := &indexedTestFSM{}
	g := openSingle(t, n, dir, fsm)
	want := entryRange("a", 0, 10)
	applyAll(t, g, want...)
	require.NoError(t, g.Raft().Barrier(5*time.Second).Error())
	require.NoError(t, g.Raft().Snapshot().Error())
	metas, err := g.snapshots.List()
	require.NoError(t, err)
	require.Greater(t, metas[0].Index, fsm.AppliedIndex(), "the snapshot should end in the barrier, above the fsm")
	require.NoError(t, g.Close())

	for restart := range 2 { // the second start finds the same state again
		kept := &indexedTestFSM{}
		kept.entries, kept.applied = fsm.Entries(), fsm.AppliedIndex()
		g := openSingle(t, n, dir, kept)
		require.Equal(t, 0, kept.Restores(), "start %d restored a snapshot into an fsm that was not behind", restart)
		require.Equal(t, want, kept.Entries())
		require.NoError(t, g.Close())
	}

	// An fsm that lost its data is still restored, and is then not behind.
	fresh := &indexedTestFSM{}
	g = openSingle(t, n, dir, fresh)
	require.Equal(t, 1, fresh.Restores())
	applyAll(t, g, "b")
	require.Equal(t, append(want, "b"), fresh.Entries())
}

// A store written before the log store claimed monotonic may hold a
// follower's old entries below a hole up to its newest snapshot. They are
// stale (possibly entries of a deposed leader that never committed), and
// Raft would send them to a follower that asks for those indexes; OpenGroup
// drops them, as hashicorp/raft now does after an install.
func TestOpenGroupDropsStaleEntriesBelowAHole(t *testing.T) {
	dir := writeStore(t, 500, 300) // entries 151..500 of node n1, snapshot at 300
	punchHole(t, dir, 200, 260)    // stale 151..199, hole, then 261..500
	require.NoError(t, VerifyStore(dir, checkPayload))

	n := startNode(t, nil, "n1", nil)
	fsm := &indexedTestFSM{}
	fsm.applied = 500 // holds everything: no restore, no replay
	tr, err := n.mux.Transport(1)
	require.NoError(t, err)
	g, err := OpenGroup(GroupConfig{GroupID: 1, NodeID: n.id, Dir: dir, FSM: fsm, Transport: tr, Logger: testLogger(t), Config: testConfig(n.id)})
	require.NoError(t, err)
	first, err := g.logs.FirstIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(261), first, "the entries below the hole are still there")
	last, err := g.logs.LastIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(500), last)
	require.NoError(t, g.Close())
	require.NoError(t, VerifyStore(dir, checkPayload))

	// A hole above the snapshot is damage, not stale entries: left alone.
	dir = writeStore(t, 500, 300)
	punchHole(t, dir, 350, 360)
	require.NoError(t, dropEntriesBelowHole(filepath.Join(dir, raftDBFile), 300, testLogger(t)))
	requireDamaged(t, VerifyStore(dir, checkPayload), "log gap: index 361 follows 349")
}
