package raft

import (
	"context"
	"errors"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/raft/raftpb"
)

// idleConfig has timeouts twice DefaultConfig's (2 s heartbeat and
// election timeouts, heartbeats every 200–400 ms), so that an idle test
// with many groups under -race on a loaded two-core machine sees no
// election it did not cause, and testConfig's short CommitTimeout.
func idleConfig(nodeID string) *hraft.Config {
	c := DefaultConfig(nodeID)
	c.HeartbeatTimeout = 2 * time.Second
	c.ElectionTimeout = 2 * time.Second
	c.LeaderLeaseTimeout = time.Second
	c.CommitTimeout = 5 * time.Millisecond
	return c
}

// histogramCount reads how many observations a Prometheus histogram has.
func histogramCount(h histogramObserver) uint64 {
	var m dto.Metric
	if err := h.(interface{ Write(*dto.Metric) error }).Write(&m); err != nil {
		panic(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// histogramObserver is what HistogramVec.WithLabelValues returns.
type histogramObserver = interface{ Observe(float64) }

// heartbeatCounts sums, over nodes, the coalesced heartbeats sent, the
// Heartbeat messages they went in, and the per-group heartbeats sent.
func heartbeatCounts(nodes []*testNode) (coalesced, messages, unary float64) {
	for _, n := range nodes {
		coalesced += counterValue(n.mux.metrics.heartbeatsCoalesced.WithLabelValues(sideSend))
		messages += counterValue(n.mux.metrics.sent.WithLabelValues(rpcHeartbeatBatch))
		unary += counterValue(n.mux.metrics.sent.WithLabelValues(rpcHeartbeat))
	}
	return coalesced, messages, unary
}

// Many idle groups on three nodes: their heartbeats travel together (far
// fewer Heartbeat messages than heartbeats, none alone as AppendEntries),
// every follower keeps its leader, and no group holds an election.
func TestIdleGroupsShareHeartbeatMessages(t *testing.T) {
	const groupCount = 16
	network := newTestNetwork()
	// A linger of half the shortest heartbeat interval: every message
	// should carry more than one group's heartbeat.
	linger := func(o *MuxOptions) { o.HeartbeatLinger = 100 * time.Millisecond }
	nodes := []*testNode{
		startNode(t, network, "n1", linger),
		startNode(t, network, "n2", linger),
		startNode(t, network, "n3", linger),
	}
	all := make([][]*Group, groupCount)
	for g := range all {
		all[g] = make([]*Group, len(nodes))
		for i, n := range nodes {
			all[g][i] = openTestGroup(t, n, uint64(100+g), &testFSM{}, idleConfig(n.id))
		}
		for _, grp := range all[g] {
			require.NoError(t, grp.BootstrapIfNew(servers(nodes...)))
		}
	}
	leaders := make([]int, groupCount)
	terms := make([]uint64, groupCount)
	for g := range all {
		leaders[g] = waitLeader(t, all[g]...)
		terms[g] = all[g][leaders[g]].Raft().CurrentTerm()
	}

	coalesced0, messages0, unary0 := heartbeatCounts(nodes)
	time.Sleep(3 * time.Second) // idle: what is measured is what happens meanwhile
	coalesced, messages, unary := heartbeatCounts(nodes)
	coalesced, messages, unary = coalesced-coalesced0, messages-messages0, unary-unary0

	t.Logf("idle 3 s: %.0f heartbeats in %.0f Heartbeat messages, %.0f sent alone", coalesced, messages, unary)
	// 16 groups, 2 followers each, a heartbeat every 200–400 ms: about
	// 480 on an idle machine (fewer under -race on a loaded one).
	require.Greater(t, coalesced, float64(groupCount), "heartbeats were not sent coalesced")
	require.Less(t, messages, coalesced*3/4, "heartbeats did not share messages")
	require.Zero(t, unary, "heartbeats were sent one per group")
	for g := range all {
		leaderAddr, _ := all[g][leaders[g]].Raft().LeaderWithID()
		for i, grp := range all[g] {
			r := grp.Raft()
			require.Equal(t, terms[g], r.CurrentTerm(), "group %d on %s held an election while idle", 100+g, nodes[i].id)
			got, _ := r.LeaderWithID()
			require.Equal(t, leaderAddr, got, "group %d on %s", 100+g, nodes[i].id)
		}
		require.NoError(t, all[g][leaders[g]].Raft().VerifyLeader().Error())
	}
	for _, n := range nodes {
		h := n.mux.metrics.heartbeatBatchSize
		require.Equal(t, uint64(counterValue(n.mux.metrics.sent.WithLabelValues(rpcHeartbeatBatch))), histogramCount(h.WithLabelValues(sideSend)))
		require.Equal(t, uint64(counterValue(n.mux.metrics.received.WithLabelValues(rpcHeartbeatBatch))), histogramCount(h.WithLabelValues(sideReceive)))
	}
}

// A leader cut off from its followers loses its groups: the followers
// elect new leaders, and VerifyLeader on the old one fails (its
// coalesced heartbeats fail, so it cannot prove it still leads).
func TestCutOffLeaderIsReplacedAndCannotVerify(t *testing.T) {
	network, nodes := threeNodes(t)
	const groupCount = 4
	all := make([][]*Group, groupCount)
	for g := range all {
		all[g], _ = openOnAll(t, nodes, uint64(200+g))
	}
	oldLeader := waitLeader(t, all[0]...)
	for g := range all {
		waitLeader(t, all[g]...)
	}
	require.NoError(t, all[0][oldLeader].Raft().VerifyLeader().Error())
	// (VerifyLeader may be answered by appends alone: wait for heartbeats.)
	require.Eventually(t, func() bool {
		return counterValue(nodes[oldLeader].mux.metrics.heartbeatsCoalesced.WithLabelValues(sideSend)) > 0
	}, 10*time.Second, 10*time.Millisecond, "the leader sent no coalesced heartbeats")

	network.isolate(nodes[oldLeader].addr)
	for g := range all {
		var majority []*Group
		for i, grp := range all[g] {
			if i != oldLeader {
				majority = append(majority, grp)
			}
		}
		waitLeader(t, majority...)
	}
	// Asked only now: hashicorp/raft counts for a VerifyLeader any
	// successful heartbeat or append whose answer it handles after the
	// call, even one sent before it, so a call made right at the cut may
	// succeed (it does, now and then, with per-group heartbeats too).
	err := all[0][oldLeader].Raft().VerifyLeader().Error()
	require.Error(t, err, "an isolated leader verified its leadership after its followers elected another")
	require.True(t, errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost), "VerifyLeader: %v", err)
	require.Eventually(t, func() bool { return all[0][oldLeader].Raft().State() != hraft.Leader },
		10*time.Second, 10*time.Millisecond, "the isolated leader did not step down")
}

// heartbeatFor is a heartbeat of group groupID in term 7 from "leader".
func heartbeatFor(groupID uint64) *raftpb.AppendEntriesRequest {
	return &raftpb.AppendEntriesRequest{
		GroupId: groupID,
		Header:  headerToProto(hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte("leader"), Addr: []byte("leader-addr")}),
		Term:    7,
		Leader:  []byte("leader-addr"),
	}
}

// One Heartbeat message for several groups: each group gets its own
// answer. A group the node does not host fails alone (NOT_FOUND), so does
// an append that is not a heartbeat (INVALID_ARGUMENT) and a group whose
// Raft has not set a heartbeat handler (UNAVAILABLE); the hosted group's
// answer is its Raft's (its term moved to the heartbeat's).
func TestHeartbeatMessageAnswersEachGroupAlone(t *testing.T) {
	n := startNode(t, nil, "n", nil)
	g := openTestGroup(t, n, 5, &testFSM{}, nil)
	noRaft, err := n.mux.Transport(6)
	require.NoError(t, err)
	t.Cleanup(func() { _ = noRaft.Close() })

	notHeartbeat := heartbeatFor(5)
	notHeartbeat.LeaderCommitIndex = 3
	client := rawClient(t, n.addr)
	out, err := client.Heartbeat(context.Background(), &raftpb.HeartbeatRequest{Heartbeats: []*raftpb.AppendEntriesRequest{
		heartbeatFor(5), heartbeatFor(99), notHeartbeat, heartbeatFor(6),
	}})
	require.NoError(t, err)
	require.Len(t, out.GetResults(), 4)

	ok := out.GetResults()[0]
	require.Equal(t, uint32(codes.OK), ok.GetCode(), ok.GetMessage())
	require.True(t, ok.GetResponse().GetSuccess())
	require.Equal(t, uint64(7), ok.GetResponse().GetTerm())
	require.Equal(t, uint64(7), g.Raft().CurrentTerm(), "the heartbeat did not reach the group's Raft")

	require.Equal(t, uint32(codes.NotFound), out.GetResults()[1].GetCode())
	require.Contains(t, out.GetResults()[1].GetMessage(), "group 99")
	require.Nil(t, out.GetResults()[1].GetResponse())
	require.Equal(t, uint32(codes.InvalidArgument), out.GetResults()[2].GetCode())
	require.Equal(t, uint32(codes.Unavailable), out.GetResults()[3].GetCode())

	metrics := n.mux.metrics
	require.Equal(t, 1.0, counterValue(metrics.unknownGroup))
	require.Equal(t, 4.0, counterValue(metrics.heartbeatsCoalesced.WithLabelValues(sideReceive)))
	require.Equal(t, 1.0, counterValue(metrics.received.WithLabelValues(rpcHeartbeatBatch)))
	require.Equal(t, 3.0, counterValue(metrics.errors.WithLabelValues(rpcHeartbeat, sideReceive)))

	// The old per-group heartbeat is still served, by the same handler.
	resp, err := client.AppendEntries(context.Background(), heartbeatFor(5))
	require.NoError(t, err)
	require.True(t, resp.GetSuccess())
	require.Equal(t, 1.0, counterValue(metrics.received.WithLabelValues(rpcHeartbeat)))
}

// legacyService is the raft service of a node that predates coalesced
// heartbeats: Heartbeat is UNIMPLEMENTED.
type legacyService struct{ *service }

func (legacyService) Heartbeat(context.Context, *raftpb.HeartbeatRequest) (*raftpb.HeartbeatResponse, error) {
	return nil, status.Error(codes.Unimplemented, "method Heartbeat not implemented")
}

// startLegacyNode is startNode for a node whose service lacks Heartbeat.
func startLegacyNode(t *testing.T, id string) *testNode {
	return startNodeServing(t, nil, id, func(o *MuxOptions) { o.NoHeartbeatCoalescing = true },
		func(s *grpc.Server, m *Mux) { raftpb.RegisterRaftTransportServer(s, legacyService{&service{mux: m}}) })
}

// Mixed versions: a leader whose follower does not serve Heartbeat sends
// it one AppendEntries per heartbeat instead, and the group stays up.
func TestLegacyPeerGetsOneHeartbeatPerGroup(t *testing.T) {
	nodes := []*testNode{startNode(t, nil, "n1", nil), startNode(t, nil, "n2", nil), startLegacyNode(t, "old")}
	groups := make([]*Group, len(nodes))
	for i, n := range nodes {
		groups[i] = openTestGroup(t, n, 8, &testFSM{}, idleConfig(n.id))
	}
	for _, g := range groups {
		require.NoError(t, g.BootstrapIfNew(servers(nodes...)))
	}
	leader := waitLeader(t, groups...)
	if leader == 2 { // the legacy node leads: hand the group to n1
		require.NoError(t, groups[2].Raft().LeadershipTransferToServer("n1", hraft.ServerAddress(nodes[0].addr)).Error())
		leader = waitLeader(t, groups...)
	}
	term := groups[leader].Raft().CurrentTerm()
	legacy := nodes[2].mux.metrics
	require.Eventually(t, func() bool {
		return counterValue(legacy.received.WithLabelValues(rpcHeartbeat)) >= 10
	}, 10*time.Second, 20*time.Millisecond, "the legacy follower got no per-group heartbeats")
	require.Zero(t, counterValue(legacy.received.WithLabelValues(rpcHeartbeatBatch)), "the legacy node served Heartbeat")
	require.Equal(t, term, groups[leader].Raft().CurrentTerm(), "an election happened")
	require.NoError(t, groups[leader].Raft().VerifyLeader().Error())
	other := 1 - leader // the new-version follower still gets coalesced heartbeats
	require.Eventually(t, func() bool {
		return counterValue(nodes[other].mux.metrics.heartbeatsCoalesced.WithLabelValues(sideReceive)) > 0
	}, 10*time.Second, 20*time.Millisecond)
}
