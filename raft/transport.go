package raft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/heraldlog/herald/raft/raftpb"
)

// Compile-time checks: Transport is everything hashicorp/raft can use.
var (
	_ hraft.Transport   = (*Transport)(nil)
	_ hraft.WithClose   = (*Transport)(nil)
	_ hraft.WithPreVote = (*Transport)(nil)
)

// Transport is one Raft group's hraft.Transport over its Mux. It is created
// by Mux.Transport and handed to hraft.NewRaft.
//
// Sending: every call dials (lazily) the peer's shared connection and is
// bounded by MuxOptions.RPCTimeout (SnapshotTimeout and SnapshotRestoreTimeout
// for InstallSnapshot), so
// a dead peer costs its own callers a timeout and never blocks calls to other
// peers; failures are returned to Raft, which backs off.
//
// Receiving: each incoming RPC is served on its own gRPC handler goroutine,
// which hands an hraft.RPC to Consumer() (or, for heartbeats, to the handler
// set by SetHeartbeatHandler) and waits for Raft's answer, bounded by the
// caller's deadline, the receive-side timeout, and Close.
//
// All methods are safe for concurrent use.
type Transport struct {
	mux       *Mux
	groupID   uint64
	consumeCh chan hraft.RPC
	heartbeat atomic.Pointer[func(hraft.RPC)]
	// raft is the group's Raft instance once OpenGroup has started it; the
	// RejoinReplica handler asks it for membership changes.
	raft atomic.Pointer[hraft.Raft]

	// ctx is cancelled by Close: it fails outgoing calls and pipelines and
	// the incoming RPCs still waiting for Raft.
	ctx    context.Context
	cancel context.CancelFunc

	mu struct {
		sync.Mutex
		closed    bool
		pipelines map[*pipeline]struct{}
		// sent: the appends this node sent as leader (commit_push.go).
		sent sentAppends
		// commitIn is the newest pushed commit not yet handed to Raft;
		// injecting is set while injectCommits runs.
		commitIn  *raftpb.GroupCommit
		injecting bool
		// commitLater is the newest pushed commit that arrived before the
		// entry it names; appendServed hands it on.
		commitLater *raftpb.GroupCommit
	}
	// injectors counts injectCommits goroutines; Close waits for them.
	injectors sync.WaitGroup

	// heartbeatMu is held for reading while a heartbeat handler runs and
	// for writing by Close, so Close returns only after every handler call
	// has returned and no new one can start. The handler (hraft's
	// processHeartbeat) writes the term to the group's stable store; the
	// group closes that store right after the transport, and a handler
	// still running would write to a closed database (bbolt: "database not
	// open", which hraft turns into a panic).
	heartbeatMu      sync.RWMutex
	heartbeatsClosed bool
}

func newTransport(m *Mux, groupID uint64) *Transport {
	t := &Transport{mux: m, groupID: groupID, consumeCh: make(chan hraft.RPC)}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.pipelines = make(map[*pipeline]struct{})
	return t
}

// GroupID is the Raft group this transport carries.
func (t *Transport) GroupID() uint64 { return t.groupID }

// Consumer returns the channel of incoming RPCs for Raft to answer. It is
// unbuffered: a sender waits until Raft takes its RPC.
func (t *Transport) Consumer() <-chan hraft.RPC { return t.consumeCh }

// LocalAddr is the node's advertised address (MuxOptions.LocalAddr).
func (t *Transport) LocalAddr() hraft.ServerAddress { return t.mux.LocalAddr() }

// SetHeartbeatHandler sets the fast path for incoming heartbeats (see
// isHeartbeat): they are given to cb on the receiving goroutine instead of
// waiting in line on Consumer() behind appends that touch the disk. A nil cb
// sends heartbeats to Consumer() again.
func (t *Transport) SetHeartbeatHandler(cb func(rpc hraft.RPC)) {
	if cb == nil {
		t.heartbeat.Store(nil)
		return
	}
	t.heartbeat.Store(&cb)
}

// EncodePeer encodes a peer's address as its bytes.
func (t *Transport) EncodePeer(_ hraft.ServerID, addr hraft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer decodes what EncodePeer produced.
func (t *Transport) DecodePeer(buf []byte) hraft.ServerAddress {
	return hraft.ServerAddress(buf)
}

// Close closes the transport: it unregisters the group from the Mux (later
// messages for it are refused with codes.NotFound), fails the incoming RPCs
// still waiting for Raft and the outgoing calls in progress with
// ErrTransportClosed, waits for heartbeat handler calls in progress to
// return (so the group may close its stores afterwards), and closes its
// pipelines. Idempotent; always nil.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return nil
	}
	t.mu.closed = true
	pipelines := t.mu.pipelines
	t.mu.pipelines = nil
	t.mu.Unlock()

	t.cancel()
	t.injectors.Wait()
	t.heartbeatMu.Lock()
	t.heartbeatsClosed = true
	t.heartbeatMu.Unlock()
	t.mux.unregister(t)
	for p := range pipelines {
		_ = p.Close()
	}
	return nil
}

// AppendEntries sends one AppendEntries (or heartbeat) and waits for the
// answer. A heartbeat goes in the target's next coalesced Heartbeat
// message (heartbeat.go) unless MuxOptions.NoHeartbeatCoalescing is set or
// the target does not serve them. When args's entries do not fit in one message, it sends the
// longest prefix that does and cuts args.Entries to it (see
// appendEntriesMessage).
func (t *Transport) AppendEntries(_ hraft.ServerID, target hraft.ServerAddress, args *hraft.AppendEntriesRequest, resp *hraft.AppendEntriesResponse) error {
	rpcType := rpcAppendEntries
	if isHeartbeat(args) {
		rpcType = rpcHeartbeat
	}
	msg, err := appendEntriesMessage(t.groupID, args, t.mux.opts.MaxMessageBytes)
	if err != nil {
		t.mux.metrics.errors.WithLabelValues(rpcType, sideSend).Inc()
		return err
	}
	t.recordAppend(target, args)
	if rpcType == rpcHeartbeat && !t.mux.opts.NoHeartbeatCoalescing {
		err := t.sendHeartbeat(target, msg, resp)
		if !errors.Is(err, errHeartbeatUnsupported) {
			return err
		}
	}
	return t.unary(rpcType, "AppendEntries", target, func(ctx context.Context, c raftpb.RaftTransportClient) error {
		out, err := c.AppendEntries(ctx, msg)
		if err == nil {
			appendEntriesResponseFromProto(out, resp)
		}
		return err
	})
}

// RequestVote sends a vote request and waits for the answer.
func (t *Transport) RequestVote(_ hraft.ServerID, target hraft.ServerAddress, args *hraft.RequestVoteRequest, resp *hraft.RequestVoteResponse) error {
	return t.unary(rpcRequestVote, "RequestVote", target, func(ctx context.Context, c raftpb.RaftTransportClient) error {
		out, err := c.RequestVote(ctx, requestVoteRequestToProto(t.groupID, args))
		if err == nil {
			requestVoteResponseFromProto(out, resp)
		}
		return err
	})
}

// RequestPreVote sends a pre-vote request and waits for the answer.
func (t *Transport) RequestPreVote(_ hraft.ServerID, target hraft.ServerAddress, args *hraft.RequestPreVoteRequest, resp *hraft.RequestPreVoteResponse) error {
	return t.unary(rpcRequestPreVote, "RequestPreVote", target, func(ctx context.Context, c raftpb.RaftTransportClient) error {
		out, err := c.RequestPreVote(ctx, requestPreVoteRequestToProto(t.groupID, args))
		if err == nil {
			requestPreVoteResponseFromProto(out, resp)
		}
		return err
	})
}

// TimeoutNow asks the target to start an election at once (leadership transfer).
func (t *Transport) TimeoutNow(_ hraft.ServerID, target hraft.ServerAddress, args *hraft.TimeoutNowRequest, resp *hraft.TimeoutNowResponse) error {
	return t.unary(rpcTimeoutNow, "TimeoutNow", target, func(ctx context.Context, c raftpb.RaftTransportClient) error {
		out, err := c.TimeoutNow(ctx, timeoutNowRequestToProto(t.groupID, args))
		if err == nil {
			timeoutNowResponseFromProto(out, resp)
		}
		return err
	})
}

// unary runs one call on target's shared connection, bounded by RPCTimeout
// and by Close, and records it.
func (t *Transport) unary(rpcType, method string, target hraft.ServerAddress, call func(context.Context, raftpb.RaftTransportClient) error) error {
	start := time.Now()
	client, err := t.mux.client(target)
	if err == nil {
		ctx, cancel := context.WithTimeout(t.ctx, t.mux.opts.RPCTimeout)
		err = call(ctx, client)
		cancel()
	}
	t.mux.metrics.observeSend(rpcType, start, err)
	return t.sendError(method, target, err)
}

// sendError gives an outgoing call's error its context: ErrTransportClosed
// when Close cut the call short, a *RemoteError for a gRPC status.
func (t *Transport) sendError(method string, target hraft.ServerAddress, err error) error {
	if err == nil {
		return nil
	}
	if t.ctx.Err() != nil {
		return fmt.Errorf("raft: %s to %s (group %d): %w", method, target, t.groupID, ErrTransportClosed)
	}
	return fromStatus(method, target, t.groupID, err)
}

// AppendEntriesPipeline opens a pipeline to target: one bidirectional stream
// carrying this group's appends in order (see pipeline).
func (t *Transport) AppendEntriesPipeline(_ hraft.ServerID, target hraft.ServerAddress) (hraft.AppendPipeline, error) {
	client, err := t.mux.client(target)
	if err != nil {
		return nil, t.sendError("AppendEntriesPipeline", target, err)
	}
	ctx, cancel := context.WithCancel(t.ctx)
	// Opening the stream waits for a connection; bound that like a call.
	watchdog := time.AfterFunc(t.mux.opts.RPCTimeout, cancel)
	stream, err := client.AppendEntriesPipeline(ctx)
	if !watchdog.Stop() && err == nil {
		err = fmt.Errorf("raft: open pipeline: %w", context.DeadlineExceeded)
	}
	if err != nil {
		cancel()
		t.mux.metrics.errors.WithLabelValues(rpcAppendEntriesPipeline, sideSend).Inc()
		return nil, t.sendError("AppendEntriesPipeline", target, err)
	}
	p := newPipeline(t, target, stream, cancel)

	t.mu.Lock()
	closed := t.mu.closed
	if !closed {
		t.mu.pipelines[p] = struct{}{}
	}
	t.mu.Unlock()
	if closed {
		_ = p.Close()
		return nil, ErrTransportClosed
	}
	return p, nil
}

// forgetPipeline drops a closed pipeline from the transport's set.
func (t *Transport) forgetPipeline(p *pipeline) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.mu.pipelines, p)
}

// InstallSnapshot streams a snapshot to target: the request, then data in
// chunks of SnapshotChunkBytes. data must yield exactly args.Size bytes;
// otherwise the stream is aborted (the receiver never sees a complete
// snapshot) and the error wraps ErrSnapshotSize. Sending every byte is
// bounded by SnapshotTimeout; the wait for the receiver to install it after
// that, by SnapshotRestoreTimeout.
func (t *Transport) InstallSnapshot(_ hraft.ServerID, target hraft.ServerAddress, args *hraft.InstallSnapshotRequest, resp *hraft.InstallSnapshotResponse, data io.Reader) error {
	start := time.Now()
	sent, err := t.installSnapshot(target, args, resp, data)
	t.mux.metrics.snapshotBytes.WithLabelValues(sideSend).Add(float64(sent))
	t.mux.metrics.observeSend(rpcInstallSnapshot, start, err)
	return t.sendError("InstallSnapshot", target, err)
}

func (t *Transport) installSnapshot(target hraft.ServerAddress, args *hraft.InstallSnapshotRequest, resp *hraft.InstallSnapshotResponse, data io.Reader) (int64, error) {
	if args.Size < 0 {
		return 0, fmt.Errorf("%w: negative size %d", ErrSnapshotSize, args.Size)
	}
	client, err := t.mux.client(target)
	if err != nil {
		return 0, err
	}
	// The stream's deadline covers the transfer and the restore; the
	// transfer alone is bounded by SnapshotTimeout, with a watchdog that
	// cancels the stream unless every byte was sent in time.
	ctx, cancel := context.WithTimeout(t.ctx, t.mux.opts.SnapshotTimeout+t.mux.opts.SnapshotRestoreTimeout)
	defer cancel()
	var transferLate atomic.Bool
	watchdog := time.AfterFunc(t.mux.opts.SnapshotTimeout, func() {
		transferLate.Store(true)
		cancel()
	})
	defer watchdog.Stop()
	late := func(err error) error {
		if transferLate.Load() {
			return fmt.Errorf("raft: snapshot not sent within SnapshotTimeout %s: %w", t.mux.opts.SnapshotTimeout, context.DeadlineExceeded)
		}
		return err
	}
	stream, err := client.InstallSnapshot(ctx)
	if err != nil {
		return 0, late(err)
	}
	// A failed Send means the stream is over; its status comes from
	// CloseAndRecv.
	sendFailed := func() error {
		_, err := stream.CloseAndRecv()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return late(err)
	}
	first := &raftpb.InstallSnapshotChunk{Payload: &raftpb.InstallSnapshotChunk_Request{
		Request: installSnapshotRequestToProto(t.groupID, args),
	}}
	if err := stream.Send(first); err != nil {
		return 0, sendFailed()
	}

	// Read one byte past Size to notice a source that is too long. The
	// buffer is reused: Send has encoded the message when it returns.
	src := io.LimitReader(data, args.Size+1)
	buf := make([]byte, min(int64(t.mux.opts.SnapshotChunkBytes), args.Size+1))
	var sent int64
	for {
		n, readErr := io.ReadFull(src, buf)
		if n > 0 {
			if sent+int64(n) > args.Size {
				// cancel (deferred) aborts the stream: the receiver fails it.
				return sent, fmt.Errorf("%w: source has more than %d bytes", ErrSnapshotSize, args.Size)
			}
			chunk := &raftpb.InstallSnapshotChunk{Payload: &raftpb.InstallSnapshotChunk_Data{Data: buf[:n]}}
			if err := stream.Send(chunk); err != nil {
				return sent, sendFailed()
			}
			sent += int64(n)
		}
		if readErr == io.EOF || readErr == io.ErrUnexpectedEOF {
			break
		}
		if readErr != nil {
			return sent, fmt.Errorf("raft: read snapshot: %w", readErr)
		}
	}
	if sent != args.Size {
		return sent, fmt.Errorf("%w: source has %d bytes, request says %d", ErrSnapshotSize, sent, args.Size)
	}
	// Every byte is handed to gRPC; closing the send side makes the
	// receiver see the end. From here SnapshotRestoreTimeout bounds the wait.
	if err := stream.CloseSend(); err != nil {
		return sent, late(err)
	}
	if !watchdog.Stop() {
		return sent, late(nil)
	}
	out := new(raftpb.InstallSnapshotResponse)
	if err := stream.RecvMsg(out); err != nil {
		return sent, err
	}
	installSnapshotResponseFromProto(out, resp)
	return sent, nil
}

// enqueue hands rpc to Raft: to the heartbeat handler when it is a heartbeat
// and one is set (the handler answers on rpc.RespChan before returning, or
// not at all when Raft is shutting down), else to Consumer(). It gives up
// when ctx ends or the transport closes.
func (t *Transport) enqueue(ctx context.Context, rpc hraft.RPC, heartbeat bool) error {
	if heartbeat {
		if cb := t.heartbeat.Load(); cb != nil {
			return t.handleHeartbeat(*cb, rpc)
		}
	}
	select {
	case t.consumeCh <- rpc:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("raft: group %d: waiting for raft to take the rpc: %w", t.groupID, ctx.Err())
	case <-t.ctx.Done():
		return fmt.Errorf("group %d: %w", t.groupID, ErrTransportClosed)
	}
}

// handleHeartbeat runs the heartbeat handler cb on rpc unless the
// transport is closed; Close waits for it (see heartbeatMu).
func (t *Transport) handleHeartbeat(cb func(hraft.RPC), rpc hraft.RPC) error {
	t.heartbeatMu.RLock()
	defer t.heartbeatMu.RUnlock()
	if t.heartbeatsClosed {
		return fmt.Errorf("group %d: %w", t.groupID, ErrTransportClosed)
	}
	cb(rpc)
	return nil
}

// await waits for Raft's answer to an enqueued RPC.
func (t *Transport) await(ctx context.Context, respCh <-chan hraft.RPCResponse) (any, error) {
	select {
	case r := <-respCh:
		return r.Response, r.Error
	case <-ctx.Done():
		return nil, fmt.Errorf("raft: group %d: waiting for raft to answer: %w", t.groupID, ctx.Err())
	case <-t.ctx.Done():
		return nil, fmt.Errorf("group %d: %w", t.groupID, ErrTransportClosed)
	}
}

// serve hands one request-response RPC to Raft and returns its answer,
// bounded by ctx, RPCTimeout and Close.
func (t *Transport) serve(ctx context.Context, command any, heartbeat bool) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, t.mux.opts.RPCTimeout)
	defer cancel()
	// Buffered so that Raft's Respond never blocks, even after we gave up.
	respCh := make(chan hraft.RPCResponse, 1)
	if err := t.enqueue(ctx, hraft.RPC{Command: command, RespChan: respCh}, heartbeat); err != nil {
		return nil, err
	}
	return t.await(ctx, respCh)
}
