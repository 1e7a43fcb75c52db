package raft

import (
	"context"
	"errors"
	"fmt"
	"io"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/heraldlog/herald/raft/raftpb"
)

var _ raftpb.RaftTransportServer = (*service)(nil)

// service is the receive side of a Mux: the gRPC RaftTransport service. Each
// handler looks up the message's group (refusing unknown ones at once with
// codes.NotFound), hands the RPC to that group's Transport and returns
// Raft's answer. Errors become statuses in one place, toStatus.
type service struct {
	raftpb.UnimplementedRaftTransportServer
	mux *Mux
}

// AppendEntries serves one append or heartbeat.
func (s *service) AppendEntries(ctx context.Context, req *raftpb.AppendEntriesRequest) (*raftpb.AppendEntriesResponse, error) {
	t, err := s.mux.lookup(req.GetGroupId())
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := t.serveAppendEntries(ctx, req, false)
	return out, toStatus(err)
}

// serveAppendEntries serves one append for the unary call or a pipeline.
func (t *Transport) serveAppendEntries(ctx context.Context, req *raftpb.AppendEntriesRequest, pipelined bool) (*raftpb.AppendEntriesResponse, error) {
	if err := checkLogTypes(req.GetEntries()); err != nil {
		rpcType := rpcAppendEntries
		if pipelined {
			rpcType = rpcAppendEntriesPipeline
		}
		t.mux.metrics.observeReceive(rpcType, err)
		return nil, err
	}
	cmd := appendEntriesRequestFromProto(req)
	heartbeat := isHeartbeat(cmd)
	rpcType := rpcAppendEntries
	switch {
	case pipelined:
		rpcType = rpcAppendEntriesPipeline
	case heartbeat:
		rpcType = rpcHeartbeat
	}
	resp, err := t.serve(ctx, cmd, heartbeat)
	var out *raftpb.AppendEntriesResponse
	if err == nil {
		r, ok := resp.(*hraft.AppendEntriesResponse)
		if !ok {
			err = fmt.Errorf("raft: group %d answered AppendEntries with %T", t.groupID, resp)
		} else {
			out = appendEntriesResponseToProto(r)
			if r.Success && !heartbeat {
				t.appendServed()
			}
		}
	}
	t.mux.metrics.observeReceive(rpcType, err)
	return out, err
}

// AppendEntriesPipeline serves a pipeline: requests of one group, answered
// one at a time in arrival order (which is what keeps responses matched to
// requests). The stream ends at the first error.
func (s *service) AppendEntriesPipeline(stream grpc.BidiStreamingServer[raftpb.AppendEntriesRequest, raftpb.AppendEntriesResponse]) error {
	var t *Transport
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if t == nil {
			if t, err = s.mux.lookup(req.GetGroupId()); err != nil {
				return toStatus(err)
			}
		} else if req.GetGroupId() != t.groupID {
			return toStatus(fmt.Errorf("%w: pipeline of group %d carried group %d", ErrProtocol, t.groupID, req.GetGroupId()))
		}
		out, err := t.serveAppendEntries(stream.Context(), req, true)
		if err != nil {
			return toStatus(err)
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}

// Commit serves pushed commits (commit_push.go): each group's is handed to
// its transport; a group not open here is skipped.
func (s *service) Commit(_ context.Context, req *raftpb.CommitRequest) (*raftpb.CommitResponse, error) {
	for _, c := range req.GetCommits() {
		if t, err := s.mux.lookup(c.GetGroupId()); err == nil {
			t.receiveCommit(c)
		}
	}
	s.mux.metrics.observeReceive(rpcCommit, nil)
	return &raftpb.CommitResponse{}, nil
}

// RequestVote serves a vote request.
func (s *service) RequestVote(ctx context.Context, req *raftpb.RequestVoteRequest) (*raftpb.RequestVoteResponse, error) {
	t, err := s.mux.lookup(req.GetGroupId())
	if err != nil {
		return nil, toStatus(err)
	}
	resp, err := t.serve(ctx, requestVoteRequestFromProto(req), false)
	var out *raftpb.RequestVoteResponse
	if err == nil {
		if r, ok := resp.(*hraft.RequestVoteResponse); ok {
			out = requestVoteResponseToProto(r)
		} else {
			err = fmt.Errorf("raft: group %d answered RequestVote with %T", t.groupID, resp)
		}
	}
	t.mux.metrics.observeReceive(rpcRequestVote, err)
	return out, toStatus(err)
}

// RequestPreVote serves a pre-vote request.
func (s *service) RequestPreVote(ctx context.Context, req *raftpb.RequestPreVoteRequest) (*raftpb.RequestPreVoteResponse, error) {
	t, err := s.mux.lookup(req.GetGroupId())
	if err != nil {
		return nil, toStatus(err)
	}
	resp, err := t.serve(ctx, requestPreVoteRequestFromProto(req), false)
	var out *raftpb.RequestPreVoteResponse
	if err == nil {
		if r, ok := resp.(*hraft.RequestPreVoteResponse); ok {
			out = requestPreVoteResponseToProto(r)
		} else {
			err = fmt.Errorf("raft: group %d answered RequestPreVote with %T", t.groupID, resp)
		}
	}
	t.mux.metrics.observeReceive(rpcRequestPreVote, err)
	return out, toStatus(err)
}

// TimeoutNow serves a leadership-transfer request.
func (s *service) TimeoutNow(ctx context.Context, req *raftpb.TimeoutNowRequest) (*raftpb.TimeoutNowResponse, error) {
	t, err := s.mux.lookup(req.GetGroupId())
	if err != nil {
		return nil, toStatus(err)
	}
	resp, err := t.serve(ctx, timeoutNowRequestFromProto(req), false)
	var out *raftpb.TimeoutNowResponse
	if err == nil {
		if r, ok := resp.(*hraft.TimeoutNowResponse); ok {
			out = timeoutNowResponseToProto(r)
		} else {
			err = fmt.Errorf("raft: group %d answered TimeoutNow with %T", t.groupID, resp)
		}
	}
	t.mux.metrics.observeReceive(rpcTimeoutNow, err)
	return out, toStatus(err)
}

// InstallSnapshot serves a snapshot stream; see Transport.receiveSnapshot.
func (s *service) InstallSnapshot(stream grpc.ClientStreamingServer[raftpb.InstallSnapshotChunk, raftpb.InstallSnapshotResponse]) error {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return toStatus(fmt.Errorf("%w: empty InstallSnapshot stream", ErrProtocol))
	}
	if err != nil {
		return err
	}
	req := first.GetRequest()
	if req == nil {
		return toStatus(fmt.Errorf("%w: InstallSnapshot must start with the request", ErrProtocol))
	}
	t, err := s.mux.lookup(req.GetGroupId())
	if err != nil {
		return toStatus(err)
	}
	out, err := t.receiveSnapshot(stream, req)
	t.mux.metrics.observeReceive(rpcInstallSnapshot, err)
	if err != nil {
		return toStatus(err)
	}
	return stream.SendAndClose(out)
}
