package raft

import (
	"context"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldlog/herald/raft/raftpb"
)

// batchingTestFSM is a testFSM that Raft drives through ApplyBatch, as it
// drives partition FSMs: the kind of FSM whose leader pushes commits.
type batchingTestFSM struct{ testFSM }

var _ hraft.BatchingFSM = (*batchingTestFSM)(nil)

func (f *batchingTestFSM) ApplyBatch(logs []*hraft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		if l.Type == hraft.LogCommand { // batching FSMs also get configurations
			out[i] = f.Apply(l)
		}
	}
	return out
}

// slowCommitConfig never lets hashicorp/raft tell followers the commit
// index by its own timer within a test: only a later append, or a push.
func slowCommitConfig(nodeID string) *hraft.Config {
	c := testConfig(nodeID)
	c.CommitTimeout = time.Hour
	return c
}

// openBatchingOnAll opens group groupID with batching FSMs and
// slowCommitConfig on every node and bootstraps it.
func openBatchingOnAll(t *testing.T, nodes []*testNode, groupID uint64) ([]*Group, []*testFSM) {
	groups := make([]*Group, len(nodes))
	fsms := make([]*testFSM, len(nodes))
	for i, n := range nodes {
		f := &batchingTestFSM{}
		fsms[i] = &f.testFSM
		groups[i] = openTestGroup(t, n, groupID, f, slowCommitConfig(n.id))
	}
	for _, g := range groups {
		require.NoError(t, g.BootstrapIfNew(servers(nodes...)))
	}
	return groups, fsms
}

// The last entry of a burst reaches the followers' FSMs although no
// append follows it and CommitTimeout is an hour: the leader pushed the
// commit index. (Without the push this fails: the followers hold the
// entry but never learn it is committed.)
func TestCommitPushAppliesLastEntryOnFollowers(t *testing.T) {
	_, nodes := threeNodes(t)
	groups, fsms := openBatchingOnAll(t, nodes, 3)
	leader := waitLeader(t, groups...)
	applyAll(t, groups[leader], "a", "b")
	applyAll(t, groups[leader], "c")
	requireConverged(t, []string{"a", "b", "c"}, fsms...)
	require.Positive(t, counterValue(nodes[leader].mux.metrics.commitPushes.WithLabelValues(pushSent)))
}

// A pushed commit is only a hint: the follower's Raft checks it like an
// append. One whose entry term does not match the follower's log is
// refused and commits nothing; one naming an entry the follower lacks
// waits until an append brings it; the true one commits.
func TestCommitPushIsCheckedByRaft(t *testing.T) {
	network := newTestNetwork()
	noPush := func(o *MuxOptions) { o.NoCommitPush = true }
	nodes := []*testNode{
		startNode(t, network, "n1", noPush),
		startNode(t, network, "n2", noPush),
		startNode(t, network, "n3", noPush),
	}
	groups, fsms := openBatchingOnAll(t, nodes, 4)
	leader := waitLeader(t, groups...)
	follower := (leader + 1) % len(nodes)
	applyAll(t, groups[leader], "a")
	applyAll(t, groups[leader], "b")
	// The follower has "b" in its log (it acknowledged it) and learnt the
	// commit of "a" with the append of "b", not the commit of "b".
	requireConverged(t, []string{"a", "b"}, fsms[leader])
	requireConverged(t, []string{"a"}, fsms[follower])
	lr := groups[leader].Raft()
	index, term := lr.LastIndex(), lr.CurrentTerm()
	require.Eventually(t, func() bool { return groups[follower].Raft().LastIndex() == index }, 10*time.Second, 10*time.Millisecond)

	conn, err := grpc.NewClient(nodes[follower].addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := raftpb.NewRaftTransportClient(conn)
	tr := groups[leader].transport
	push := func(index, indexTerm uint64) {
		t.Helper()
		_, err := client.Commit(context.Background(), &raftpb.CommitRequest{Commits: []*raftpb.GroupCommit{{
			GroupId: 4, Header: headerToProto(hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte(nodes[leader].id), Addr: []byte(tr.LocalAddr())}),
			Leader: []byte(tr.LocalAddr()), Term: term, Index: index, IndexTerm: indexTerm,
		}}})
		require.NoError(t, err)
	}
	metrics := nodes[follower].mux.metrics.commitPushes
	fr := groups[follower].Raft()
	commitBefore := fr.CommitIndex()

	push(index, term+1) // the entry at index is of term, not term+1
	require.Eventually(t, func() bool { return counterValue(metrics.WithLabelValues(pushRefused)) == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, commitBefore, fr.CommitIndex())

	push(index+5, term) // the follower has no such entry yet: it waits
	require.Equal(t, float64(1), counterValue(metrics.WithLabelValues(pushDeferred)))
	require.Equal(t, commitBefore, fr.CommitIndex())

	push(index, term)
	requireConverged(t, []string{"a", "b"}, fsms[leader], fsms[follower])
	require.Equal(t, float64(1), counterValue(metrics.WithLabelValues(pushApplied)))
	require.Equal(t, index, fr.CommitIndex())

	// The waiting push is handed to Raft once an append brings its entry:
	// five more entries, whose appends tell the follower at most the
	// commit of those before them, and the follower applies all five (a
	// push that overtook its append, as under load, is not lost).
	applyAll(t, groups[leader], "c", "d", "e", "f", "g")
	requireConverged(t, []string{"a", "b", "c", "d", "e", "f", "g"}, fsms[follower])
	require.Equal(t, index+5, fr.CommitIndex())
	require.Equal(t, float64(2), counterValue(metrics.WithLabelValues(pushApplied)))
}

// configStoreTestFSM is a testFSM that is also a ConfigurationStore, like
// the controller's FSM.
type configStoreTestFSM struct{ testFSM }

func (f *configStoreTestFSM) StoreConfiguration(uint64, hraft.Configuration) {}

// batchingConfigStoreTestFSM is both a BatchingFSM and a ConfigurationStore.
type batchingConfigStoreTestFSM struct{ batchingTestFSM }

func (f *batchingConfigStoreTestFSM) StoreConfiguration(uint64, hraft.Configuration) {}

// Every kind of FSM gets commit pushes, through a wrapper with exactly its
// optional interfaces (Raft drives the FSM by them), and the followers
// apply the last entry of a burst with CommitTimeout at an hour. Before
// the push covered ConfigurationStores (the controller), their followers
// waited for CommitTimeout: this failed for both "config store" kinds.
func TestCommitPushReachesEveryKindOfFSM(t *testing.T) {
	kinds := []struct {
		name                  string
		fsm                   func() (hraft.FSM, *testFSM)
		batching, configStore bool
	}{
		{"plain", func() (hraft.FSM, *testFSM) { f := &testFSM{}; return f, f }, false, false},
		{"batching", func() (hraft.FSM, *testFSM) { f := &batchingTestFSM{}; return f, &f.testFSM }, true, false},
		{"config store", func() (hraft.FSM, *testFSM) { f := &configStoreTestFSM{}; return f, &f.testFSM }, false, true},
		{"batching config store", func() (hraft.FSM, *testFSM) {
			f := &batchingConfigStoreTestFSM{}
			return f, &f.testFSM
		}, true, true},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			inner, _ := k.fsm()
			wrapped := withCommitPush(inner, nil)
			_, batching := wrapped.(hraft.BatchingFSM)
			_, configStore := wrapped.(hraft.ConfigurationStore)
			require.Equal(t, k.batching, batching, "BatchingFSM")
			require.Equal(t, k.configStore, configStore, "ConfigurationStore")

			_, nodes := threeNodes(t)
			groups := make([]*Group, len(nodes))
			fsms := make([]*testFSM, len(nodes))
			for i, n := range nodes {
				var f hraft.FSM
				f, fsms[i] = k.fsm()
				groups[i] = openTestGroup(t, n, 9, f, slowCommitConfig(n.id))
			}
			for _, g := range groups {
				require.NoError(t, g.BootstrapIfNew(servers(nodes...)))
			}
			leader := waitLeader(t, groups...)
			applyAll(t, groups[leader], "a", "b")
			applyAll(t, groups[leader], "c")
			requireConverged(t, []string{"a", "b", "c"}, fsms...)
		})
	}
}
