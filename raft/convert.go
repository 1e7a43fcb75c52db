package raft

import (
	"fmt"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/heraldlog/herald/raft/raftpb"
)

// This file converts between hashicorp/raft's RPC structs and their protobuf
// mirrors. Each pair of functions must round-trip every field; the test in
// convert_test.go checks that for every message.

func headerToProto(h hraft.RPCHeader) *raftpb.RPCHeader {
	return &raftpb.RPCHeader{ProtocolVersion: int32(h.ProtocolVersion), Id: h.ID, Addr: h.Addr}
}

func headerFromProto(h *raftpb.RPCHeader) hraft.RPCHeader {
	return hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersion(h.GetProtocolVersion()), ID: h.GetId(), Addr: h.GetAddr()}
}

// timeToUnixNanos maps Go's zero time to 0, which UnixNano cannot represent.
func timeToUnixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeFromUnixNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func logsToProto(logs []*hraft.Log) []*raftpb.Log {
	if len(logs) == 0 {
		return nil
	}
	out := make([]*raftpb.Log, len(logs))
	for i, l := range logs {
		out[i] = &raftpb.Log{
			Index:               l.Index,
			Term:                l.Term,
			Type:                raftpb.LogType(l.Type),
			Data:                l.Data,
			Extensions:          l.Extensions,
			AppendedAtUnixNanos: timeToUnixNanos(l.AppendedAt),
		}
	}
	return out
}

// logTypeMax is the highest hraft.LogType this transport carries
// (LogConfiguration); raftpb.LogType mirrors the same numbers.
const logTypeMax = raftpb.LogType_LOG_TYPE_CONFIGURATION

// checkLogTypes refuses entries of a type Raft does not know, with
// ErrProtocol, before they are converted: hraft.LogType is a byte, so
// type 256 would arrive as LogCommand, and an entry of an unknown type is
// stored and then panics the node when it commits (hashicorp/raft's
// prepareLog). FuzzConvert checks that what passes converts both ways
// without loss (type 256 did not).
func checkLogTypes(logs []*raftpb.Log) error {
	for i, l := range logs {
		if t := l.GetType(); t < 0 || t > logTypeMax {
			return fmt.Errorf("%w: entry %d (index %d) has unknown log type %d", ErrProtocol, i, l.GetIndex(), t)
		}
	}
	return nil
}

func logsFromProto(logs []*raftpb.Log) []*hraft.Log {
	if len(logs) == 0 {
		return nil
	}
	out := make([]*hraft.Log, len(logs))
	for i, l := range logs {
		out[i] = &hraft.Log{
			Index:      l.GetIndex(),
			Term:       l.GetTerm(),
			Type:       hraft.LogType(l.GetType()),
			Data:       l.GetData(),
			Extensions: l.GetExtensions(),
			AppendedAt: timeFromUnixNanos(l.GetAppendedAtUnixNanos()),
		}
	}
	return out
}

func appendEntriesRequestToProto(groupID uint64, r *hraft.AppendEntriesRequest) *raftpb.AppendEntriesRequest {
	return &raftpb.AppendEntriesRequest{
		GroupId:           groupID,
		Header:            headerToProto(r.RPCHeader),
		Term:              r.Term,
		Leader:            r.Leader,
		PrevLogEntry:      r.PrevLogEntry,
		PrevLogTerm:       r.PrevLogTerm,
		Entries:           logsToProto(r.Entries),
		LeaderCommitIndex: r.LeaderCommitIndex,
	}
}

func appendEntriesRequestFromProto(r *raftpb.AppendEntriesRequest) *hraft.AppendEntriesRequest {
	return &hraft.AppendEntriesRequest{
		RPCHeader:         headerFromProto(r.GetHeader()),
		Term:              r.GetTerm(),
		Leader:            r.GetLeader(),
		PrevLogEntry:      r.GetPrevLogEntry(),
		PrevLogTerm:       r.GetPrevLogTerm(),
		Entries:           logsFromProto(r.GetEntries()),
		LeaderCommitIndex: r.GetLeaderCommitIndex(),
	}
}

func appendEntriesResponseToProto(r *hraft.AppendEntriesResponse) *raftpb.AppendEntriesResponse {
	return &raftpb.AppendEntriesResponse{
		Header:         headerToProto(r.RPCHeader),
		Term:           r.Term,
		LastLog:        r.LastLog,
		Success:        r.Success,
		NoRetryBackoff: r.NoRetryBackoff,
	}
}

func appendEntriesResponseFromProto(r *raftpb.AppendEntriesResponse, out *hraft.AppendEntriesResponse) {
	*out = hraft.AppendEntriesResponse{
		RPCHeader:      headerFromProto(r.GetHeader()),
		Term:           r.GetTerm(),
		LastLog:        r.GetLastLog(),
		Success:        r.GetSuccess(),
		NoRetryBackoff: r.GetNoRetryBackoff(),
	}
}

func requestVoteRequestToProto(groupID uint64, r *hraft.RequestVoteRequest) *raftpb.RequestVoteRequest {
	return &raftpb.RequestVoteRequest{
		GroupId:            groupID,
		Header:             headerToProto(r.RPCHeader),
		Term:               r.Term,
		Candidate:          r.Candidate,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		LeadershipTransfer: r.LeadershipTransfer,
	}
}

func requestVoteRequestFromProto(r *raftpb.RequestVoteRequest) *hraft.RequestVoteRequest {
	return &hraft.RequestVoteRequest{
		RPCHeader:          headerFromProto(r.GetHeader()),
		Term:               r.GetTerm(),
		Candidate:          r.GetCandidate(),
		LastLogIndex:       r.GetLastLogIndex(),
		LastLogTerm:        r.GetLastLogTerm(),
		LeadershipTransfer: r.GetLeadershipTransfer(),
	}
}

func requestVoteResponseToProto(r *hraft.RequestVoteResponse) *raftpb.RequestVoteResponse {
	return &raftpb.RequestVoteResponse{Header: headerToProto(r.RPCHeader), Term: r.Term, Peers: r.Peers, Granted: r.Granted}
}

func requestVoteResponseFromProto(r *raftpb.RequestVoteResponse, out *hraft.RequestVoteResponse) {
	*out = hraft.RequestVoteResponse{
		RPCHeader: headerFromProto(r.GetHeader()),
		Term:      r.GetTerm(),
		Peers:     r.GetPeers(),
		Granted:   r.GetGranted(),
	}
}

func requestPreVoteRequestToProto(groupID uint64, r *hraft.RequestPreVoteRequest) *raftpb.RequestPreVoteRequest {
	return &raftpb.RequestPreVoteRequest{
		GroupId:      groupID,
		Header:       headerToProto(r.RPCHeader),
		Term:         r.Term,
		LastLogIndex: r.LastLogIndex,
		LastLogTerm:  r.LastLogTerm,
	}
}

func requestPreVoteRequestFromProto(r *raftpb.RequestPreVoteRequest) *hraft.RequestPreVoteRequest {
	return &hraft.RequestPreVoteRequest{
		RPCHeader:    headerFromProto(r.GetHeader()),
		Term:         r.GetTerm(),
		LastLogIndex: r.GetLastLogIndex(),
		LastLogTerm:  r.GetLastLogTerm(),
	}
}

func requestPreVoteResponseToProto(r *hraft.RequestPreVoteResponse) *raftpb.RequestPreVoteResponse {
	return &raftpb.RequestPreVoteResponse{Header: headerToProto(r.RPCHeader), Term: r.Term, Granted: r.Granted}
}

func requestPreVoteResponseFromProto(r *raftpb.RequestPreVoteResponse, out *hraft.RequestPreVoteResponse) {
	*out = hraft.RequestPreVoteResponse{
		RPCHeader: headerFromProto(r.GetHeader()),
		Term:      r.GetTerm(),
		Granted:   r.GetGranted(),
	}
}

func timeoutNowRequestToProto(groupID uint64, r *hraft.TimeoutNowRequest) *raftpb.TimeoutNowRequest {
	return &raftpb.TimeoutNowRequest{GroupId: groupID, Header: headerToProto(r.RPCHeader)}
}

func timeoutNowRequestFromProto(r *raftpb.TimeoutNowRequest) *hraft.TimeoutNowRequest {
	return &hraft.TimeoutNowRequest{RPCHeader: headerFromProto(r.GetHeader())}
}

func timeoutNowResponseToProto(r *hraft.TimeoutNowResponse) *raftpb.TimeoutNowResponse {
	return &raftpb.TimeoutNowResponse{Header: headerToProto(r.RPCHeader)}
}

func timeoutNowResponseFromProto(r *raftpb.TimeoutNowResponse, out *hraft.TimeoutNowResponse) {
	*out = hraft.TimeoutNowResponse{RPCHeader: headerFromProto(r.GetHeader())}
}

func installSnapshotRequestToProto(groupID uint64, r *hraft.InstallSnapshotRequest) *raftpb.InstallSnapshotRequest {
	return &raftpb.InstallSnapshotRequest{
		GroupId:            groupID,
		Header:             headerToProto(r.RPCHeader),
		SnapshotVersion:    int32(r.SnapshotVersion),
		Term:               r.Term,
		Leader:             r.Leader,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		Peers:              r.Peers,
		Configuration:      r.Configuration,
		ConfigurationIndex: r.ConfigurationIndex,
		Size:               r.Size,
	}
}

func installSnapshotRequestFromProto(r *raftpb.InstallSnapshotRequest) *hraft.InstallSnapshotRequest {
	return &hraft.InstallSnapshotRequest{
		RPCHeader:          headerFromProto(r.GetHeader()),
		SnapshotVersion:    hraft.SnapshotVersion(r.GetSnapshotVersion()),
		Term:               r.GetTerm(),
		Leader:             r.GetLeader(),
		LastLogIndex:       r.GetLastLogIndex(),
		LastLogTerm:        r.GetLastLogTerm(),
		Peers:              r.GetPeers(),
		Configuration:      r.GetConfiguration(),
		ConfigurationIndex: r.GetConfigurationIndex(),
		Size:               r.GetSize(),
	}
}

func installSnapshotResponseToProto(r *hraft.InstallSnapshotResponse) *raftpb.InstallSnapshotResponse {
	return &raftpb.InstallSnapshotResponse{Header: headerToProto(r.RPCHeader), Term: r.Term, Success: r.Success}
}

func installSnapshotResponseFromProto(r *raftpb.InstallSnapshotResponse, out *hraft.InstallSnapshotResponse) {
	*out = hraft.InstallSnapshotResponse{
		RPCHeader: headerFromProto(r.GetHeader()),
		Term:      r.GetTerm(),
		Success:   r.GetSuccess(),
	}
}

// isHeartbeat reports whether an AppendEntries request is a heartbeat, with
// the same test as hashicorp/raft's NetworkTransport: a term and a leader
// address, no entries, and zero previous entry, previous term and commit index.
func isHeartbeat(r *hraft.AppendEntriesRequest) bool {
	leaderAddr := r.RPCHeader.Addr
	if len(leaderAddr) == 0 {
		leaderAddr = r.Leader
	}
	return r.Term != 0 && len(leaderAddr) != 0 &&
		r.PrevLogEntry == 0 && r.PrevLogTerm == 0 &&
		len(r.Entries) == 0 && r.LeaderCommitIndex == 0
}
