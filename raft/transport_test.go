package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/raft/raftpb"
)

// transportPair is a sending and a receiving Transport of one group on two
// nodes, without Raft: the test plays Raft on the receiving side.
type transportPair struct {
	sender, receiver         *Transport
	senderNode, receiverNode *testNode
}

func newTransportPair(t *testing.T, groupID uint64, mutate func(*MuxOptions)) *transportPair {
	a := startNode(t, nil, "a", mutate)
	b := startNode(t, nil, "b", mutate)
	sender, err := a.mux.Transport(groupID)
	require.NoError(t, err)
	receiver, err := b.mux.Transport(groupID)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sender.Close(); _ = receiver.Close() })
	return &transportPair{sender: sender, receiver: receiver, senderNode: a, receiverNode: b}
}

func (p *transportPair) target() hraft.ServerAddress { return hraft.ServerAddress(p.receiverNode.addr) }

// rawClient is a gRPC client of the raft service at addr, for speaking the
// protocol the way a faulty or foreign peer might.
func rawClient(t *testing.T, addr string) raftpb.RaftTransportClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return raftpb.NewRaftTransportClient(conn)
}

// answer plays Raft for one RPC from the receiver's consumer.
func answer(t *testing.T, tr *Transport, respond func(hraft.RPC)) {
	t.Helper()
	select {
	case rpc := <-tr.Consumer():
		respond(rpc)
	case <-time.After(10 * time.Second):
		t.Fatal("no rpc reached the consumer")
	}
}

func heartbeatRequest() *hraft.AppendEntriesRequest {
	return &hraft.AppendEntriesRequest{
		RPCHeader: hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte("a"), Addr: []byte("a-addr")},
		Term:      3,
	}
}

func TestUnknownGroupIsRefusedAtOnce(t *testing.T) {
	n := startNode(t, nil, "n", nil)
	c := rawClient(t, n.addr)
	// The deadline is far away: a refusal is NotFound, not a timeout.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, err := c.AppendEntries(ctx, &raftpb.AppendEntriesRequest{GroupId: 99, Term: 1})
	require.Equal(t, codes.NotFound, status.Code(err), "AppendEntries: %v", err)
	require.Contains(t, status.Convert(err).Message(), "group 99")
	_, err = c.RequestVote(ctx, &raftpb.RequestVoteRequest{GroupId: 99, Term: 1})
	require.Equal(t, codes.NotFound, status.Code(err), "RequestVote: %v", err)
	_, err = c.RequestPreVote(ctx, &raftpb.RequestPreVoteRequest{GroupId: 99, Term: 1})
	require.Equal(t, codes.NotFound, status.Code(err), "RequestPreVote: %v", err)
	_, err = c.TimeoutNow(ctx, &raftpb.TimeoutNowRequest{GroupId: 99})
	require.Equal(t, codes.NotFound, status.Code(err), "TimeoutNow: %v", err)

	pipe, err := c.AppendEntriesPipeline(ctx)
	require.NoError(t, err)
	require.NoError(t, pipe.Send(&raftpb.AppendEntriesRequest{GroupId: 99, Term: 1}))
	_, err = pipe.Recv()
	require.Equal(t, codes.NotFound, status.Code(err), "AppendEntriesPipeline: %v", err)

	snap, err := c.InstallSnapshot(ctx)
	require.NoError(t, err)
	require.NoError(t, snap.Send(&raftpb.InstallSnapshotChunk{Payload: &raftpb.InstallSnapshotChunk_Request{
		Request: &raftpb.InstallSnapshotRequest{GroupId: 99, Size: 1}}}))
	_, err = snap.CloseAndRecv()
	require.Equal(t, codes.NotFound, status.Code(err), "InstallSnapshot: %v", err)

	require.Equal(t, 6.0, counterValue(n.mux.metrics.unknownGroup))

	// Through a Transport, the refusal is a RemoteError matching ErrUnknownGroup.
	other := startNode(t, nil, "o", nil)
	tr, err := other.mux.Transport(99)
	require.NoError(t, err)
	defer tr.Close()
	err = tr.RequestVote("n", hraft.ServerAddress(n.addr), &hraft.RequestVoteRequest{Term: 1}, &hraft.RequestVoteResponse{})
	require.ErrorIs(t, err, ErrUnknownGroup)
	var remote *RemoteError
	require.ErrorAs(t, err, &remote)
	require.Equal(t, codes.NotFound, remote.Code)
	require.Equal(t, uint64(99), remote.GroupID)
}

func TestUnaryRPCsRoundTrip(t *testing.T) {
	p := newTransportPair(t, 4, nil)
	done := make(chan error, 6)
	go func() {
		var resp hraft.RequestVoteResponse
		done <- p.sender.RequestVote("b", p.target(), &hraft.RequestVoteRequest{Term: 9, LastLogIndex: 4, LeadershipTransfer: true}, &resp)
		if resp.Term != 9 || !resp.Granted {
			done <- errors.New("wrong vote response")
		}
		var pre hraft.RequestPreVoteResponse
		done <- p.sender.RequestPreVote("b", p.target(), &hraft.RequestPreVoteRequest{Term: 10}, &pre)
		if pre.Term != 10 || !pre.Granted {
			done <- errors.New("wrong pre-vote response")
		}
		done <- p.sender.TimeoutNow("b", p.target(), &hraft.TimeoutNowRequest{RPCHeader: hraft.RPCHeader{ID: []byte("a")}}, &hraft.TimeoutNowResponse{})
		close(done)
	}()
	answer(t, p.receiver, func(rpc hraft.RPC) {
		req := rpc.Command.(*hraft.RequestVoteRequest)
		require.Equal(t, uint64(4), req.LastLogIndex)
		require.True(t, req.LeadershipTransfer)
		rpc.Respond(&hraft.RequestVoteResponse{Term: req.Term, Granted: true}, nil)
	})
	answer(t, p.receiver, func(rpc hraft.RPC) {
		req := rpc.Command.(*hraft.RequestPreVoteRequest)
		rpc.Respond(&hraft.RequestPreVoteResponse{Term: req.Term, Granted: true}, nil)
	})
	answer(t, p.receiver, func(rpc hraft.RPC) {
		req := rpc.Command.(*hraft.TimeoutNowRequest)
		require.Equal(t, []byte("a"), req.ID)
		rpc.Respond(&hraft.TimeoutNowResponse{}, nil)
	})
	for err := range done {
		require.NoError(t, err)
	}
}

func TestRaftErrorReachesSender(t *testing.T) {
	p := newTransportPair(t, 4, nil)
	done := make(chan error, 1)
	go func() {
		done <- p.sender.AppendEntries("b", p.target(), &hraft.AppendEntriesRequest{Term: 1, PrevLogEntry: 5}, &hraft.AppendEntriesResponse{})
	}()
	answer(t, p.receiver, func(rpc hraft.RPC) { rpc.Respond(nil, errors.New("disk on fire")) })
	err := <-done
	var remote *RemoteError
	require.ErrorAs(t, err, &remote)
	require.Equal(t, codes.Unknown, remote.Code)
	require.Contains(t, remote.Message, "disk on fire")
}

// The per-group heartbeat (one AppendEntries each, as nodes without
// coalesced heartbeats send them) still takes the fast path.
func TestHeartbeatFastPath(t *testing.T) {
	p := newTransportPair(t, 4, func(o *MuxOptions) { o.NoHeartbeatCoalescing = true })
	handled := make(chan *hraft.AppendEntriesRequest, 1)
	p.receiver.SetHeartbeatHandler(func(rpc hraft.RPC) {
		req := rpc.Command.(*hraft.AppendEntriesRequest)
		handled <- req
		rpc.Respond(&hraft.AppendEntriesResponse{Term: req.Term, Success: true}, nil)
	})

	// A heartbeat is answered by the handler while nobody reads Consumer().
	var resp hraft.AppendEntriesResponse
	require.NoError(t, p.sender.AppendEntries("b", p.target(), heartbeatRequest(), &resp))
	require.True(t, resp.Success)
	require.Equal(t, uint64(3), (<-handled).Term)

	// An append with entries goes to Consumer(), not the handler.
	done := make(chan error, 1)
	go func() {
		req := heartbeatRequest()
		req.Entries = []*hraft.Log{{Index: 1, Term: 3, Data: []byte("x")}}
		done <- p.sender.AppendEntries("b", p.target(), req, &hraft.AppendEntriesResponse{})
	}()
	answer(t, p.receiver, func(rpc hraft.RPC) {
		require.Len(t, rpc.Command.(*hraft.AppendEntriesRequest).Entries, 1)
		rpc.Respond(&hraft.AppendEntriesResponse{Success: true}, nil)
	})
	require.NoError(t, <-done)
	require.Empty(t, handled)

	// Without a handler, heartbeats go to Consumer() too.
	p.receiver.SetHeartbeatHandler(nil)
	go func() {
		done <- p.sender.AppendEntries("b", p.target(), heartbeatRequest(), &hraft.AppendEntriesResponse{})
	}()
	answer(t, p.receiver, func(rpc hraft.RPC) { rpc.Respond(&hraft.AppendEntriesResponse{Success: true}, nil) })
	require.NoError(t, <-done)
	require.Equal(t, 1.0, counterValue(p.receiverNode.mux.metrics.received.WithLabelValues(rpcAppendEntries)))
	require.Equal(t, 2.0, counterValue(p.receiverNode.mux.metrics.received.WithLabelValues(rpcHeartbeat)))
}

// A group closes its raft-boltdb store right after its transport, and
// hraft's heartbeat handler writes the term to that store: Close must not
// return while a handler call is still running, and no handler call may
// start after it. (Before this, partition tests panicked now and then with
// "failed to save current term: database not open" from processHeartbeat.)
func TestCloseWaitsForHeartbeatHandlerInProgress(t *testing.T) {
	p := newTransportPair(t, 4, nil)
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	p.receiver.SetHeartbeatHandler(func(rpc hraft.RPC) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		rpc.Respond(&hraft.AppendEntriesResponse{Success: true}, nil)
	})
	sent := make(chan error, 1)
	go func() {
		sent <- p.sender.AppendEntries("b", p.target(), heartbeatRequest(), &hraft.AppendEntriesResponse{})
	}()
	<-entered

	closed := make(chan struct{})
	go func() {
		_ = p.receiver.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a heartbeat handler was running")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the handler did")
	}
	<-sent // answered or failed: either way the sender is done

	// After Close the handler is never called again, even by a caller that
	// loaded it before the transport closed.
	err := p.receiver.handleHeartbeat(func(hraft.RPC) { t.Error("handler called after Close") },
		hraft.RPC{Command: heartbeatRequest(), RespChan: make(chan hraft.RPCResponse, 1)})
	require.ErrorIs(t, err, ErrTransportClosed)
	require.Equal(t, int32(1), calls.Load())
}

func TestClosingReceiverFailsPendingRPCsAndUnregisters(t *testing.T) {
	p := newTransportPair(t, 4, nil)
	done := make(chan error, 1)
	go func() {
		done <- p.sender.RequestVote("b", p.target(), &hraft.RequestVoteRequest{Term: 1}, &hraft.RequestVoteResponse{})
	}()
	// Raft takes the RPC but never answers; then the transport closes.
	select {
	case <-p.receiver.Consumer():
	case <-time.After(10 * time.Second):
		t.Fatal("no rpc reached the consumer")
	}
	require.NoError(t, p.receiver.Close())
	var remote *RemoteError
	require.ErrorAs(t, <-done, &remote)
	require.Equal(t, codes.Unavailable, remote.Code)

	err := p.sender.RequestVote("b", p.target(), &hraft.RequestVoteRequest{Term: 1}, &hraft.RequestVoteResponse{})
	require.ErrorIs(t, err, ErrUnknownGroup)

	// The group may be registered again once closed, but not twice.
	again, err := p.receiverNode.mux.Transport(4)
	require.NoError(t, err)
	_, err = p.receiverNode.mux.Transport(4)
	require.ErrorIs(t, err, ErrGroupRegistered)
	require.NoError(t, again.Close())
}

func TestClosedSenderFailsWithErrTransportClosed(t *testing.T) {
	p := newTransportPair(t, 4, nil)
	require.NoError(t, p.sender.Close())
	err := p.sender.RequestVote("b", p.target(), &hraft.RequestVoteRequest{Term: 1}, &hraft.RequestVoteResponse{})
	require.ErrorIs(t, err, ErrTransportClosed)
	_, err = p.sender.AppendEntriesPipeline("b", p.target())
	require.ErrorIs(t, err, ErrTransportClosed)
}

func TestMuxCloseClosesTransports(t *testing.T) {
	n := startNode(t, nil, "n", nil)
	tr, err := n.mux.Transport(1)
	require.NoError(t, err)
	require.NoError(t, n.mux.Close())
	require.Error(t, tr.ctx.Err(), "transport still open")
	_, err = n.mux.Transport(2)
	require.ErrorIs(t, err, ErrMuxClosed)
	require.NoError(t, n.mux.Close())
}

func TestDeadPeerFailsCallsWithinTimeout(t *testing.T) {
	n := startNode(t, nil, "n", func(o *MuxOptions) { o.RPCTimeout = 300 * time.Millisecond })
	tr, err := n.mux.Transport(1)
	require.NoError(t, err)
	defer tr.Close()
	// A listener that accepts TCP but never speaks HTTP/2: calls must give up.
	dead := startSilentListener(t)
	err = tr.AppendEntries("x", hraft.ServerAddress(dead), heartbeatRequest(), &hraft.AppendEntriesResponse{})
	var remote *RemoteError
	require.ErrorAs(t, err, &remote)
	require.Contains(t, []codes.Code{codes.DeadlineExceeded, codes.Unavailable}, remote.Code, "%v", err)
	_, err = tr.AppendEntriesPipeline("x", hraft.ServerAddress(dead))
	require.Error(t, err)
}

func TestPipelineKeepsOrder(t *testing.T) {
	p := newTransportPair(t, 4, nil)
	pipe, err := p.sender.AppendEntriesPipeline("b", p.target())
	require.NoError(t, err)
	defer pipe.Close()

	const appends = 50
	served := make(chan struct{})
	go func() {
		defer close(served)
		for range appends {
			rpc := <-p.receiver.Consumer()
			req := rpc.Command.(*hraft.AppendEntriesRequest)
			rpc.Respond(&hraft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry, Success: true}, nil)
		}
	}()
	for i := range appends {
		req := &hraft.AppendEntriesRequest{Term: 2, PrevLogEntry: uint64(i + 1), LeaderCommitIndex: 1,
			Entries: []*hraft.Log{{Index: uint64(i + 2), Term: 2, Data: []byte("x")}}}
		_, err := pipe.AppendEntries(req, &hraft.AppendEntriesResponse{})
		require.NoError(t, err)
	}
	for i := range appends {
		f := <-pipe.Consumer()
		require.NoError(t, f.Error())
		require.Equal(t, uint64(i+1), f.Request().PrevLogEntry)
		require.Equal(t, uint64(i+1), f.Response().LastLog, "response matched to the wrong request")
		require.True(t, f.Response().Success)
	}
	<-served
}

func TestPipelineCloseFailsInFlightAppends(t *testing.T) {
	p := newTransportPair(t, 4, nil)
	pipe, err := p.sender.AppendEntriesPipeline("b", p.target())
	require.NoError(t, err)
	req := &hraft.AppendEntriesRequest{Term: 2, PrevLogEntry: 1, LeaderCommitIndex: 1}
	f1, err := pipe.AppendEntries(req, &hraft.AppendEntriesResponse{})
	require.NoError(t, err)
	f2, err := pipe.AppendEntries(req, &hraft.AppendEntriesResponse{})
	require.NoError(t, err)
	// Raft takes the first append and never answers.
	<-p.receiver.Consumer()
	require.NoError(t, pipe.Close())
	require.ErrorIs(t, f1.Error(), ErrPipelineClosed)
	require.ErrorIs(t, f2.Error(), ErrPipelineClosed)
	require.False(t, f1.(*appendFuture).Response().Success)
	_, err = pipe.AppendEntries(req, &hraft.AppendEntriesResponse{})
	require.ErrorIs(t, err, ErrPipelineClosed)
	require.NoError(t, pipe.Close(), "close is idempotent")
}

func TestPipelineBoundsInFlightAppends(t *testing.T) {
	p := newTransportPair(t, 4, func(o *MuxOptions) {
		o.PipelineInFlightMax = 2
		o.RPCTimeout = 300 * time.Millisecond
	})
	pipe, err := p.sender.AppendEntriesPipeline("b", p.target())
	require.NoError(t, err)
	defer pipe.Close()
	req := &hraft.AppendEntriesRequest{Term: 2, PrevLogEntry: 1, LeaderCommitIndex: 1}
	var futures []hraft.AppendFuture
	for range 2 {
		f, err := pipe.AppendEntries(req, &hraft.AppendEntriesResponse{})
		require.NoError(t, err)
		futures = append(futures, f)
	}
	// Nobody answers: the third append finds no slot (or a pipeline broken
	// by the unanswered first one) and fails instead of blocking for ever.
	_, err = pipe.AppendEntries(req, &hraft.AppendEntriesResponse{})
	require.Error(t, err)
	// The unanswered appends complete with errors and reach Consumer(),
	// which is how Raft learns to fall back.
	for _, want := range futures {
		got := <-pipe.Consumer()
		require.Same(t, want, got)
		require.Error(t, got.Error())
		require.False(t, got.Response().Success)
	}
}

func TestPipelineRefusesASecondGroupOnOneStream(t *testing.T) {
	n := startNode(t, nil, "n", nil)
	tr, err := n.mux.Transport(1)
	require.NoError(t, err)
	defer tr.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			select {
			case rpc := <-tr.Consumer():
				rpc.Respond(&hraft.AppendEntriesResponse{Success: true}, nil)
			case <-tr.ctx.Done():
				return
			}
		}
	}()
	defer func() { _ = tr.Close(); <-served }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := rawClient(t, n.addr).AppendEntriesPipeline(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&raftpb.AppendEntriesRequest{GroupId: 1, Term: 1, PrevLogEntry: 1}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	require.True(t, resp.GetSuccess())
	require.NoError(t, stream.Send(&raftpb.AppendEntriesRequest{GroupId: 2, Term: 1, PrevLogEntry: 1}))
	_, err = stream.Recv()
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
}

// readSnapshot plays Raft for one InstallSnapshot: it reads the data to the
// end and answers Success, or the read error.
func readSnapshot(t *testing.T, tr *Transport) (data []byte, readErr error) {
	t.Helper()
	answer(t, tr, func(rpc hraft.RPC) {
		req := rpc.Command.(*hraft.InstallSnapshotRequest)
		data, readErr = io.ReadAll(rpc.Reader)
		if readErr != nil {
			rpc.Respond(nil, readErr)
			return
		}
		rpc.Respond(&hraft.InstallSnapshotResponse{Term: req.Term, Success: true}, nil)
	})
	return data, readErr
}

func TestInstallSnapshotStreamsExactBytes(t *testing.T) {
	for _, size := range []int{0, 12340} { // empty; 12 chunks and a bit
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			p := newTransportPair(t, 4, func(o *MuxOptions) { o.SnapshotChunkBytes = 1000 })
			payload := bytes.Repeat([]byte("0123456789"), size/10)
			done := make(chan error, 1)
			var resp hraft.InstallSnapshotResponse
			go func() {
				args := &hraft.InstallSnapshotRequest{Term: 7, LastLogIndex: 100, LastLogTerm: 6, Configuration: []byte("conf"),
					ConfigurationIndex: 3, Size: int64(len(payload)), SnapshotVersion: hraft.SnapshotVersionMax}
				done <- p.sender.InstallSnapshot("b", p.target(), args, &resp, bytes.NewReader(payload))
			}()
			got, err := readSnapshot(t, p.receiver)
			require.NoError(t, err)
			require.NoError(t, <-done)
			require.Equal(t, len(payload), len(got))
			require.True(t, bytes.Equal(payload, got))
			require.True(t, resp.Success)
			require.Equal(t, uint64(7), resp.Term)
			require.Equal(t, float64(len(payload)), counterValue(p.receiverNode.mux.metrics.snapshotBytes.WithLabelValues(sideReceive)))
			require.Equal(t, float64(len(payload)), counterValue(p.senderNode.mux.metrics.snapshotBytes.WithLabelValues(sideSend)))
		})
	}
}

func TestInstallSnapshotSenderChecksSize(t *testing.T) {
	for _, tc := range []struct {
		name     string
		size     int64
		dataSize int
	}{
		{"source too short", 5000, 4000},
		{"source too long", 4000, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTransportPair(t, 4, func(o *MuxOptions) { o.SnapshotChunkBytes = 1000 })
			// Raft's side: the stream is aborted, so the receiver gets the
			// RPC or not (a race with the cancellation), but never reads a
			// complete snapshot.
			stop := make(chan struct{})
			reads := make(chan error, 1)
			go func() {
				for {
					select {
					case rpc := <-p.receiver.Consumer():
						_, err := io.ReadAll(rpc.Reader)
						reads <- err
						rpc.Respond(nil, err)
					case <-stop:
						close(reads)
						return
					}
				}
			}()
			args := &hraft.InstallSnapshotRequest{Term: 1, Size: tc.size}
			err := p.sender.InstallSnapshot("b", p.target(), args, &hraft.InstallSnapshotResponse{},
				bytes.NewReader(make([]byte, tc.dataSize)))
			require.ErrorIs(t, err, ErrSnapshotSize)
			var remote *RemoteError
			require.False(t, errors.As(err, &remote), "the sender itself must notice: %v", err)
			// A handler still running fails its read once the stream is gone;
			// closing the receiver ends any wait.
			require.NoError(t, p.receiver.Close())
			close(stop)
			for readErr := range reads {
				require.Error(t, readErr, "receiver read a complete snapshot")
			}
		})
	}
}

func TestInstallSnapshotReceiverChecksSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int64
		chunks []string
	}{
		{"too few bytes", 10, []string{"abc", "def"}},
		{"too many bytes", 5, []string{"abc", "def"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, nil, "n", nil)
			tr, err := n.mux.Transport(1)
			require.NoError(t, err)
			defer tr.Close()
			readErrs := make(chan error, 1)
			go func() {
				rpc := <-tr.Consumer()
				_, err := io.ReadAll(rpc.Reader)
				readErrs <- err
				rpc.Respond(nil, err)
			}()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stream, err := rawClient(t, n.addr).InstallSnapshot(ctx)
			require.NoError(t, err)
			require.NoError(t, stream.Send(&raftpb.InstallSnapshotChunk{Payload: &raftpb.InstallSnapshotChunk_Request{
				Request: &raftpb.InstallSnapshotRequest{GroupId: 1, Term: 1, Size: tc.size}}}))
			for _, c := range tc.chunks {
				if err := stream.Send(&raftpb.InstallSnapshotChunk{Payload: &raftpb.InstallSnapshotChunk_Data{Data: []byte(c)}}); err != nil {
					break // the server already refused; CloseAndRecv has the status
				}
			}
			_, err = stream.CloseAndRecv()
			require.Equal(t, codes.OutOfRange, status.Code(err), "%v", err)
			require.ErrorIs(t, <-readErrs, ErrSnapshotSize)
		})
	}
}

func TestInstallSnapshotRequiresADeadline(t *testing.T) {
	n := startNode(t, nil, "n", nil)
	tr, err := n.mux.Transport(1)
	require.NoError(t, err)
	defer tr.Close()
	stream, err := rawClient(t, n.addr).InstallSnapshot(context.Background())
	require.NoError(t, err)
	require.NoError(t, stream.Send(&raftpb.InstallSnapshotChunk{Payload: &raftpb.InstallSnapshotChunk_Request{
		Request: &raftpb.InstallSnapshotRequest{GroupId: 1, Term: 1, Size: 1}}}))
	_, err = stream.CloseAndRecv()
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.True(t, strings.Contains(status.Convert(err).Message(), "deadline"))
}

func TestEncodeDecodePeer(t *testing.T) {
	p := newTransportPair(t, 4, nil)
	addr := hraft.ServerAddress("10.0.0.1:7000")
	require.Equal(t, addr, p.sender.DecodePeer(p.sender.EncodePeer("x", addr)))
	require.Equal(t, hraft.ServerAddress(p.senderNode.addr), p.sender.LocalAddr())
}

// SnapshotTimeout still bounds moving the bytes: a receiver whose Raft
// stops reading fails the sender at SnapshotTimeout, not after the far
// longer SnapshotRestoreTimeout that bounds the install after the last byte.
func TestInstallSnapshotTransferIsBoundedBySnapshotTimeout(t *testing.T) {
	const snapshotTimeout = 2 * time.Second
	p := newTransportPair(t, 4, func(o *MuxOptions) {
		o.SnapshotTimeout = snapshotTimeout
		o.SnapshotChunkBytes = 1 << 10
	})
	payload := make([]byte, 1<<20) // far more than the buffers between the two
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		args := &hraft.InstallSnapshotRequest{Term: 7, LastLogIndex: 100, LastLogTerm: 6, Size: int64(len(payload)), SnapshotVersion: hraft.SnapshotVersionMax}
		done <- p.sender.InstallSnapshot("b", p.target(), args, &hraft.InstallSnapshotResponse{}, bytes.NewReader(payload))
	}()
	answer(t, p.receiver, func(rpc hraft.RPC) {
		_, _ = rpc.Reader.Read(make([]byte, 10)) // then Raft stalls
		err := <-done
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorContains(t, err, "SnapshotTimeout")
		require.Less(t, time.Since(start), p.senderNode.mux.opts.SnapshotRestoreTimeout)
		_, _ = io.Copy(io.Discard, rpc.Reader) // the receiver's stream ended too
		rpc.Respond(nil, errors.New("abandoned"))
	})
}
