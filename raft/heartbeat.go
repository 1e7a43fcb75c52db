package raft

import (
	"context"
	"errors"
	"fmt"
	"time"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/raft/raftpb"
)

// Coalesced heartbeats: one message per peer carries the heartbeats of
// every group that has one due for that peer.
//
// hashicorp/raft's leader runs one heartbeat goroutine per follower per
// group; each sends an AppendEntries without entries every
// HeartbeatTimeout/10 to HeartbeatTimeout/5 and waits for its answer
// (Transport.AppendEntries). A node leading hundreds of groups sent as many
// unary RPCs, each a new HTTP/2 stream with its own interceptors, syscalls
// and garbage: most of an idle node's CPU.
//
// Instead, Transport.AppendEntries hands a heartbeat to the Mux's
// heartbeater of the target peer and waits. The heartbeater lingers
// MuxOptions.HeartbeatLinger so that other groups' heartbeats join, then
// sends up to heartbeatBatchMax of them in one Heartbeat RPC and gives each
// waiting caller its own group's result. At most one message per peer is
// in flight; heartbeats due meanwhile wait for the next one.
//
// The receiving service hands each heartbeat to its group's heartbeat
// handler (hraft's processHeartbeat, the fast path that does not wait
// behind appends), one after the other on the handler goroutine, and
// returns every group's real answer (term, success): hraft's VerifyLeader
// and leader lease count them, so a heartbeat is never answered by the
// transport itself. A group the node does not host, or an entry that is
// not a heartbeat, fails for that group only (NOT_FOUND, INVALID_ARGUMENT).
//
// Mixed versions: a peer that answers UNIMPLEMENTED (an older node) is sent
// one AppendEntries per heartbeat, as before, for heartbeatLegacyRetry
// before the Heartbeat method is tried again; every node still serves the
// per-group AppendEntries heartbeat.
//
// Bounds: a group's heartbeat goroutine waits for its answer before it
// sends the next, so a peer's queue holds at most one heartbeat per group
// it leads with that peer as follower; heartbeatQueueMax bounds it anyway
// (a heartbeat beyond it fails, and Raft backs off). Each message is
// bounded by RPCTimeout, so a caller waits at most HeartbeatLinger plus
// RPCTimeout for each message ahead of its own (heartbeatQueueMax /
// heartbeatBatchMax of them). A heartbeater goroutine runs while its peer
// has heartbeats queued and exits when none are, or when the Mux closes.

const (
	// heartbeatBatchMax bounds the heartbeats of one Heartbeat message
	// (about 100 bytes each).
	heartbeatBatchMax = 1024
	// heartbeatQueueMax bounds the heartbeats waiting for one peer.
	heartbeatQueueMax = 4 * heartbeatBatchMax
	// heartbeatLegacyRetry is how long a peer that does not serve
	// Heartbeat is sent per-group heartbeats before it is tried again.
	heartbeatLegacyRetry = time.Minute
)

// errHeartbeatUnsupported tells Transport.AppendEntries to send the
// heartbeat on its own: the peer does not serve coalesced heartbeats.
var errHeartbeatUnsupported = errors.New("raft: peer does not serve coalesced heartbeats")

// heartbeatCall is one group's heartbeat waiting for its answer.
type heartbeatCall struct {
	req *raftpb.AppendEntriesRequest
	// done receives the answer exactly once; buffered, so the heartbeater
	// never waits for a caller that gave up.
	done chan heartbeatResult
}

// heartbeatResult is a group's answer: resp, or the error it failed with
// (a gRPC status for the group's own failure).
type heartbeatResult struct {
	resp *raftpb.AppendEntriesResponse
	err  error
}

// heartbeater sends one peer's coalesced heartbeats. Its fields other than
// m and addr are guarded by m.beat.
type heartbeater struct {
	m       *Mux
	addr    hraft.ServerAddress
	pending []*heartbeatCall
	running bool
	// legacyUntil: the peer answered UNIMPLEMENTED; until then its
	// heartbeats go one per group.
	legacyUntil time.Time
}

// sendHeartbeat sends one group's heartbeat to target in the peer's next
// coalesced message and waits for the group's answer. It returns
// errHeartbeatUnsupported when the peer needs per-group heartbeats.
func (t *Transport) sendHeartbeat(target hraft.ServerAddress, msg *raftpb.AppendEntriesRequest, resp *hraft.AppendEntriesResponse) error {
	m := t.mux
	call := &heartbeatCall{req: msg, done: make(chan heartbeatResult, 1)}
	if err := m.queueHeartbeat(target, call); err != nil {
		return err
	}
	select {
	case r := <-call.done:
		if r.err != nil {
			if errors.Is(r.err, errHeartbeatUnsupported) {
				return r.err
			}
			m.metrics.errors.WithLabelValues(rpcHeartbeat, sideSend).Inc()
			return t.sendError("Heartbeat", target, r.err)
		}
		appendEntriesResponseFromProto(r.resp, resp)
		return nil
	case <-t.ctx.Done():
		return t.sendError("Heartbeat", target, ErrTransportClosed)
	}
}

// queueHeartbeat adds call to the queue of the peer at addr and starts its
// heartbeater if idle.
func (m *Mux) queueHeartbeat(addr hraft.ServerAddress, call *heartbeatCall) error {
	m.beat.Lock()
	defer m.beat.Unlock()
	if m.beat.closed {
		return ErrMuxClosed
	}
	h := m.beat.peers[addr]
	if h == nil {
		h = &heartbeater{m: m, addr: addr}
		m.beat.peers[addr] = h
	}
	if time.Now().Before(h.legacyUntil) {
		return errHeartbeatUnsupported
	}
	if len(h.pending) >= heartbeatQueueMax {
		return fmt.Errorf("raft: heartbeats to %s: %d queued: %w", addr, len(h.pending), context.DeadlineExceeded)
	}
	h.pending = append(h.pending, call)
	if !h.running {
		h.running = true
		m.beatersWG.Add(1)
		go h.run()
	}
	return nil
}

// run lingers, sends what is queued, and repeats until nothing is queued
// or the Mux closes (then it fails what is queued with ErrMuxClosed).
func (h *heartbeater) run() {
	m := h.m
	defer m.beatersWG.Done()
	linger := time.NewTimer(m.opts.HeartbeatLinger)
	defer linger.Stop()
	for {
		m.beat.Lock()
		full := len(h.pending) >= heartbeatBatchMax
		m.beat.Unlock()
		if !full {
			linger.Reset(m.opts.HeartbeatLinger)
			select {
			case <-linger.C:
			case <-m.ctx.Done():
			}
		}
		m.beat.Lock()
		if m.beat.closed {
			pending := h.pending
			h.pending, h.running = nil, false
			m.beat.Unlock()
			for _, c := range pending {
				c.done <- heartbeatResult{err: ErrMuxClosed}
			}
			return
		}
		if len(h.pending) == 0 {
			h.running = false
			m.beat.Unlock()
			return
		}
		n := min(len(h.pending), heartbeatBatchMax)
		batch := h.pending[:n:n]
		h.pending = append([]*heartbeatCall(nil), h.pending[n:]...)
		m.beat.Unlock()
		h.send(batch)
	}
}

// send sends one Heartbeat message and answers every call in batch.
func (h *heartbeater) send(batch []*heartbeatCall) {
	m := h.m
	req := &raftpb.HeartbeatRequest{Heartbeats: make([]*raftpb.AppendEntriesRequest, len(batch))}
	for i, c := range batch {
		req.Heartbeats[i] = c.req
	}
	start := time.Now()
	client, err := m.client(h.addr)
	var out *raftpb.HeartbeatResponse
	if err == nil {
		ctx, cancel := context.WithTimeout(m.ctx, m.opts.RPCTimeout)
		out, err = client.Heartbeat(ctx, req)
		cancel()
	}
	if status.Code(err) == codes.Unimplemented {
		m.beat.Lock()
		h.legacyUntil = time.Now().Add(heartbeatLegacyRetry)
		m.beat.Unlock()
		m.logger.Info("raft peer does not serve coalesced heartbeats; sending one per group",
			"peer", string(h.addr), "retry_after", heartbeatLegacyRetry)
		err = errHeartbeatUnsupported
	}
	m.metrics.observeSend(rpcHeartbeatBatch, start, err)
	m.metrics.heartbeatsCoalesced.WithLabelValues(sideSend).Add(float64(len(batch)))
	m.metrics.heartbeatBatchSize.WithLabelValues(sideSend).Observe(float64(len(batch)))
	if err == nil && len(out.GetResults()) != len(batch) {
		err = fmt.Errorf("%w: %d heartbeat results for %d heartbeats", ErrProtocol, len(out.GetResults()), len(batch))
	}
	for i, c := range batch {
		if err != nil {
			c.done <- heartbeatResult{err: err}
			continue
		}
		r := out.GetResults()[i]
		if code := codes.Code(r.GetCode()); code != codes.OK {
			c.done <- heartbeatResult{err: status.Error(code, r.GetMessage())}
			continue
		}
		if r.GetResponse() == nil {
			c.done <- heartbeatResult{err: fmt.Errorf("%w: heartbeat result without a response", ErrProtocol)}
			continue
		}
		c.done <- heartbeatResult{resp: r.GetResponse()}
	}
}

// closeHeartbeaters stops queueing heartbeats; the running heartbeaters
// fail what is queued and exit (Close waits for them with beatersWG).
func (m *Mux) closeHeartbeaters() {
	m.beat.Lock()
	defer m.beat.Unlock()
	m.beat.closed = true
}

// Heartbeat serves coalesced heartbeats (see the top of this file): each is
// handed to its group's heartbeat handler in turn, and answered alone.
func (s *service) Heartbeat(_ context.Context, req *raftpb.HeartbeatRequest) (*raftpb.HeartbeatResponse, error) {
	m := s.mux
	heartbeats := req.GetHeartbeats()
	out := &raftpb.HeartbeatResponse{Results: make([]*raftpb.HeartbeatResult, len(heartbeats))}
	for i, hb := range heartbeats {
		resp, err := s.heartbeatOne(hb)
		if err != nil {
			m.metrics.errors.WithLabelValues(rpcHeartbeat, sideReceive).Inc()
			st := status.Convert(toStatus(err))
			out.Results[i] = &raftpb.HeartbeatResult{Code: uint32(st.Code()), Message: st.Message()}
			continue
		}
		out.Results[i] = &raftpb.HeartbeatResult{Response: resp}
	}
	m.metrics.observeReceive(rpcHeartbeatBatch, nil)
	m.metrics.heartbeatsCoalesced.WithLabelValues(sideReceive).Add(float64(len(heartbeats)))
	m.metrics.heartbeatBatchSize.WithLabelValues(sideReceive).Observe(float64(len(heartbeats)))
	return out, nil
}

// heartbeatOne serves one heartbeat of a Heartbeat message.
func (s *service) heartbeatOne(hb *raftpb.AppendEntriesRequest) (*raftpb.AppendEntriesResponse, error) {
	t, err := s.mux.lookup(hb.GetGroupId())
	if err != nil {
		return nil, err
	}
	cmd := appendEntriesRequestFromProto(hb)
	if !isHeartbeat(cmd) {
		return nil, fmt.Errorf("%w: group %d: Heartbeat carried an append that is not a heartbeat", ErrProtocol, t.groupID)
	}
	resp, err := t.serveHeartbeat(cmd)
	if err != nil {
		return nil, err
	}
	r, ok := resp.(*hraft.AppendEntriesResponse)
	if !ok {
		return nil, fmt.Errorf("raft: group %d answered a heartbeat with %T", t.groupID, resp)
	}
	return appendEntriesResponseToProto(r), nil
}

// serveHeartbeat hands one heartbeat to the group's heartbeat handler and
// returns Raft's answer, without waiting: the handler (hraft's
// processHeartbeat) answers before it returns, or not at all when Raft is
// shutting down. A group whose Raft has not set a handler yet fails at
// once (UNAVAILABLE) rather than holding up the other groups' heartbeats
// behind its Consumer().
func (t *Transport) serveHeartbeat(cmd *hraft.AppendEntriesRequest) (any, error) {
	cb := t.heartbeat.Load()
	if cb == nil {
		return nil, status.Errorf(codes.Unavailable, "raft: group %d has no heartbeat handler (raft not started)", t.groupID)
	}
	respCh := make(chan hraft.RPCResponse, 1)
	if err := t.handleHeartbeat(*cb, hraft.RPC{Command: cmd, RespChan: respCh}); err != nil {
		return nil, err
	}
	select {
	case r := <-respCh:
		return r.Response, r.Error
	default:
		return nil, fmt.Errorf("group %d: raft did not answer the heartbeat (shutting down): %w", t.groupID, ErrTransportClosed)
	}
}
