package raft

import (
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/raft/raftpb"
)

var testHeader = hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte("node-1"), Addr: []byte("127.0.0.1:7000")}

// wire marshals and unmarshals m, as the network would.
func wire[M proto.Message](t *testing.T, m M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	out := m.ProtoReflect().New().Interface().(M)
	require.NoError(t, proto.Unmarshal(b, out))
	return out
}

func TestConvertRoundTripsEveryField(t *testing.T) {
	appended := time.Unix(1700000000, 123456789)
	ae := &hraft.AppendEntriesRequest{
		RPCHeader: testHeader, Term: 5, Leader: []byte("leader"), PrevLogEntry: 10, PrevLogTerm: 4, LeaderCommitIndex: 9,
		Entries: []*hraft.Log{
			{Index: 11, Term: 5, Type: hraft.LogCommand, Data: []byte("d"), Extensions: []byte("e"), AppendedAt: appended},
			{Index: 12, Term: 5, Type: hraft.LogConfiguration, Data: []byte("c")}, // zero AppendedAt stays zero
		},
	}
	pb := wire(t, appendEntriesRequestToProto(42, ae))
	require.Equal(t, uint64(42), pb.GetGroupId())
	got := appendEntriesRequestFromProto(pb)
	require.True(t, got.Entries[0].AppendedAt.Equal(appended))
	require.True(t, got.Entries[1].AppendedAt.IsZero())
	got.Entries[0].AppendedAt = appended // drop the monotonic/location difference
	require.Equal(t, ae, got)

	aeResp := &hraft.AppendEntriesResponse{RPCHeader: testHeader, Term: 5, LastLog: 12, Success: true, NoRetryBackoff: true}
	var aeRespGot hraft.AppendEntriesResponse
	appendEntriesResponseFromProto(wire(t, appendEntriesResponseToProto(aeResp)), &aeRespGot)
	require.Equal(t, *aeResp, aeRespGot)

	rv := &hraft.RequestVoteRequest{RPCHeader: testHeader, Term: 6, Candidate: []byte("c"), LastLogIndex: 12, LastLogTerm: 5, LeadershipTransfer: true}
	require.Equal(t, rv, requestVoteRequestFromProto(wire(t, requestVoteRequestToProto(1, rv))))
	rvResp := &hraft.RequestVoteResponse{RPCHeader: testHeader, Term: 6, Peers: []byte("p"), Granted: true}
	var rvRespGot hraft.RequestVoteResponse
	requestVoteResponseFromProto(wire(t, requestVoteResponseToProto(rvResp)), &rvRespGot)
	require.Equal(t, *rvResp, rvRespGot)

	pv := &hraft.RequestPreVoteRequest{RPCHeader: testHeader, Term: 7, LastLogIndex: 12, LastLogTerm: 5}
	require.Equal(t, pv, requestPreVoteRequestFromProto(wire(t, requestPreVoteRequestToProto(1, pv))))
	pvResp := &hraft.RequestPreVoteResponse{RPCHeader: testHeader, Term: 7, Granted: true}
	var pvRespGot hraft.RequestPreVoteResponse
	requestPreVoteResponseFromProto(wire(t, requestPreVoteResponseToProto(pvResp)), &pvRespGot)
	require.Equal(t, *pvResp, pvRespGot)

	tn := &hraft.TimeoutNowRequest{RPCHeader: testHeader}
	require.Equal(t, tn, timeoutNowRequestFromProto(wire(t, timeoutNowRequestToProto(1, tn))))
	tnResp := &hraft.TimeoutNowResponse{RPCHeader: testHeader}
	var tnRespGot hraft.TimeoutNowResponse
	timeoutNowResponseFromProto(wire(t, timeoutNowResponseToProto(tnResp)), &tnRespGot)
	require.Equal(t, *tnResp, tnRespGot)

	is := &hraft.InstallSnapshotRequest{RPCHeader: testHeader, SnapshotVersion: hraft.SnapshotVersionMax, Term: 8,
		Leader: []byte("l"), LastLogIndex: 100, LastLogTerm: 7, Peers: []byte("p"), Configuration: []byte("c"),
		ConfigurationIndex: 90, Size: 1 << 40}
	require.Equal(t, is, installSnapshotRequestFromProto(wire(t, installSnapshotRequestToProto(1, is))))
	isResp := &hraft.InstallSnapshotResponse{RPCHeader: testHeader, Term: 8, Success: true}
	var isRespGot hraft.InstallSnapshotResponse
	installSnapshotResponseFromProto(wire(t, installSnapshotResponseToProto(isResp)), &isRespGot)
	require.Equal(t, *isResp, isRespGot)
}

func TestLogTypeNumbersMatchRaft(t *testing.T) {
	require.Equal(t, int32(hraft.LogCommand), int32(raftpb.LogType_LOG_TYPE_COMMAND))
	require.Equal(t, int32(hraft.LogNoop), int32(raftpb.LogType_LOG_TYPE_NOOP))
	require.Equal(t, int32(hraft.LogAddPeerDeprecated), int32(raftpb.LogType_LOG_TYPE_ADD_PEER_DEPRECATED))
	require.Equal(t, int32(hraft.LogRemovePeerDeprecated), int32(raftpb.LogType_LOG_TYPE_REMOVE_PEER_DEPRECATED))
	require.Equal(t, int32(hraft.LogBarrier), int32(raftpb.LogType_LOG_TYPE_BARRIER))
	require.Equal(t, int32(hraft.LogConfiguration), int32(raftpb.LogType_LOG_TYPE_CONFIGURATION))
}

func TestIsHeartbeatMatchesNetworkTransport(t *testing.T) {
	hb := func(mutate func(*hraft.AppendEntriesRequest)) *hraft.AppendEntriesRequest {
		r := &hraft.AppendEntriesRequest{RPCHeader: hraft.RPCHeader{Addr: []byte("a")}, Term: 2}
		mutate(r)
		return r
	}
	for _, tc := range []struct {
		name string
		req  *hraft.AppendEntriesRequest
		want bool
	}{
		{"heartbeat", hb(func(*hraft.AppendEntriesRequest) {}), true},
		{"legacy leader field", hb(func(r *hraft.AppendEntriesRequest) { r.Addr = nil; r.Leader = []byte("a") }), true},
		{"no term", hb(func(r *hraft.AppendEntriesRequest) { r.Term = 0 }), false},
		{"no leader", hb(func(r *hraft.AppendEntriesRequest) { r.Addr = nil }), false},
		{"prev entry", hb(func(r *hraft.AppendEntriesRequest) { r.PrevLogEntry = 1 }), false},
		{"prev term", hb(func(r *hraft.AppendEntriesRequest) { r.PrevLogTerm = 1 }), false},
		{"commit index", hb(func(r *hraft.AppendEntriesRequest) { r.LeaderCommitIndex = 1 }), false},
		{"entries", hb(func(r *hraft.AppendEntriesRequest) { r.Entries = []*hraft.Log{{}} }), false},
	} {
		require.Equal(t, tc.want, isHeartbeat(tc.req), tc.name)
		// The test must survive the wire, where empty bytes come back nil.
		require.Equal(t, tc.want, isHeartbeat(appendEntriesRequestFromProto(wire(t, appendEntriesRequestToProto(1, tc.req)))), tc.name)
	}
}
