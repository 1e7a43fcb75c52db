package raft

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/heraldlog/herald/raft/raftpb"
)

// rejoinCallMarginDuration is added to RPCTimeout for one RejoinReplica
// call: the leader spends up to RPCTimeout committing the change.
const rejoinCallMarginDuration = 2 * time.Second

// RejoinRequest asks a group's leader for one membership change on behalf
// of a replica that rejoins (see PrepareRejoin).
type RejoinRequest struct {
	GroupID uint64
	// NodeID and Addr are the rejoining replica's server id and address;
	// Addr defaults to the Mux's LocalAddr.
	NodeID string
	Addr   string
	Step   raftpb.RejoinStep
	// Peers are the addresses to ask, in order (the replica's own address
	// is skipped). A NOT_LEADER answer naming a leader is followed first.
	Peers []string
}

// AskLeader sends req to the group's leader: it tries the peers in order,
// following NOT_LEADER hints (a peer is asked at most twice: in turn, and
// again when named as the leader), making at most 2*len(Peers)+1 calls, each
// bounded by RPCTimeout plus a margin and by ctx. It returns the leader's
// answer, or the last error (an *RemoteError, which may match ErrNotLeader,
// ErrUnknownGroup or ErrNotMember). It does not wait between calls: the
// caller retries with RejoinBackoff.
func (m *Mux) AskLeader(ctx context.Context, req RejoinRequest) (*raftpb.RejoinReplicaResponse, error) {
	if req.Addr == "" {
		req.Addr = m.opts.LocalAddr
	}
	if req.NodeID == "" || req.Step == raftpb.RejoinStep_REJOIN_STEP_UNSPECIFIED {
		return nil, fmt.Errorf("%w: RejoinRequest needs a node id and a step", ErrInvalidOptions)
	}
	queue := make([]string, 0, len(req.Peers))
	for _, p := range req.Peers {
		if p != req.Addr && p != "" && !slices.Contains(queue, p) {
			queue = append(queue, p)
		}
	}
	if len(queue) == 0 {
		return nil, fmt.Errorf("raft: group %d: no peer to ask for %s", req.GroupID, req.Step)
	}
	// A peer is asked at most twice: once in turn, and once more when
	// another names it as the leader (it may have been elected meanwhile).
	asked := map[string]int{}
	callsMax := 2*len(queue) + 1
	lastErr := errors.New("raft: no peer answered")
	for calls := 0; calls < callsMax && len(queue) > 0; calls++ {
		target := queue[0]
		queue = queue[1:]
		if asked[target] >= 2 {
			continue
		}
		asked[target]++
		resp, err := m.rejoinReplica(ctx, hraft.ServerAddress(target), &raftpb.RejoinReplicaRequest{
			GroupId: req.GroupID, NodeId: req.NodeID, Address: req.Addr, Step: req.Step})
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return nil, err
		}
		var nl *NotLeaderError
		if errors.As(err, &nl) && nl.LeaderAddr != "" && nl.LeaderAddr != req.Addr && nl.LeaderAddr != target && asked[nl.LeaderAddr] < 2 {
			queue = append([]string{nl.LeaderAddr}, queue...)
		}
		if errors.Is(err, ErrNotMember) {
			return nil, err
		}
	}
	return nil, lastErr
}

// rejoinReplica makes one RejoinReplica call.
func (m *Mux) rejoinReplica(ctx context.Context, target hraft.ServerAddress, req *raftpb.RejoinReplicaRequest) (*raftpb.RejoinReplicaResponse, error) {
	start := time.Now()
	c, err := m.client(target)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.RPCTimeout+rejoinCallMarginDuration)
	defer cancel()
	resp, err := c.RejoinReplica(ctx, req)
	err = fromStatus("RejoinReplica", target, req.GetGroupId(), err)
	m.metrics.observeSend(rpcRejoinReplica, start, err)
	return resp, err
}

// RejoinReplica serves a membership change for a rejoining replica; only
// the group's leader makes it.
func (s *service) RejoinReplica(_ context.Context, req *raftpb.RejoinReplicaRequest) (*raftpb.RejoinReplicaResponse, error) {
	t, err := s.mux.lookup(req.GetGroupId())
	if err != nil {
		return nil, toStatus(err)
	}
	r := t.raft.Load()
	if r == nil {
		err = fmt.Errorf("%w: group %d is not running on %s", ErrUnknownGroup, req.GetGroupId(), s.mux.opts.LocalAddr)
		return nil, toStatus(err)
	}
	out, err := changeForRejoin(r, req, s.mux.opts.RPCTimeout)
	s.mux.metrics.observeReceive(rpcRejoinReplica, err)
	if err == nil {
		s.mux.logger.Warn("raft: membership changed for a rejoining replica", "group", req.GetGroupId(),
			"replica", req.GetNodeId(), "step", req.GetStep().String(), "index", out.GetIndex())
	}
	return out, toStatus(err)
}

// changeForRejoin makes the change req asks for on r, which must lead, and
// waits until it is committed (bounded by timeout). A change already in
// place is confirmed by a barrier, so that the answer still means
// "committed": the leader's latest configuration may not be yet.
func changeForRejoin(r *hraft.Raft, req *raftpb.RejoinReplicaRequest, timeout time.Duration) (*raftpb.RejoinReplicaResponse, error) {
	notLeader := func() error {
		addr, id := r.LeaderWithID()
		return &NotLeaderError{GroupID: req.GetGroupId(), LeaderID: string(id), LeaderAddr: string(addr)}
	}
	if req.GetNodeId() == "" || req.GetAddress() == "" {
		return nil, fmt.Errorf("%w: RejoinReplica needs node_id and address", ErrProtocol)
	}
	if r.State() != hraft.Leader {
		return nil, notLeader()
	}
	_, leaderID := r.LeaderWithID()
	id, addr := hraft.ServerID(req.GetNodeId()), hraft.ServerAddress(req.GetAddress())
	if id == leaderID {
		return nil, fmt.Errorf("%w: %s asks to change its own membership but leads group %d", ErrProtocol, id, req.GetGroupId())
	}
	cf := r.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, classifyChange(err, notLeader)
	}
	var current *hraft.Server
	for _, s := range cf.Configuration().Servers {
		if s.ID == id {
			current = &s
			break
		}
	}
	var f hraft.Future
	switch req.GetStep() {
	case raftpb.RejoinStep_REJOIN_STEP_DEMOTE:
		switch {
		case current == nil:
			f = r.AddNonvoter(id, addr, 0, timeout)
		case current.Suffrage == hraft.Voter:
			f = r.DemoteVoter(id, 0, timeout)
		default:
			f = r.Barrier(timeout)
		}
	case raftpb.RejoinStep_REJOIN_STEP_PROMOTE:
		switch {
		case current == nil:
			return nil, fmt.Errorf("%w: %s is not in group %d", ErrNotMember, id, req.GetGroupId())
		case current.Suffrage == hraft.Voter:
			f = r.Barrier(timeout)
		default:
			f = r.AddVoter(id, addr, 0, timeout)
		}
	default:
		return nil, fmt.Errorf("%w: unknown rejoin step %d", ErrProtocol, req.GetStep())
	}
	if err := f.Error(); err != nil {
		return nil, classifyChange(err, notLeader)
	}
	return &raftpb.RejoinReplicaResponse{Index: r.LastIndex(), LeaderId: string(leaderID)}, nil
}

// classifyChange maps hraft's leadership errors to a NotLeaderError.
func classifyChange(err error, notLeader func() error) error {
	if errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) || errors.Is(err, hraft.ErrLeadershipTransferInProgress) {
		return notLeader()
	}
	return fmt.Errorf("raft: membership change: %w", err)
}

// isVoter reports whether id is a voter in c.
func isVoter(c hraft.Configuration, id hraft.ServerID) bool {
	for _, s := range c.Servers {
		if s.ID == id {
			return s.Suffrage == hraft.Voter
		}
	}
	return false
}

// RejoinBackoff spaces the attempts of a rejoin step: exponential from
// rejoinBackoffBaseDuration, capped at rejoinBackoffMaxDuration, each delay
// drawn uniformly from its upper half (jitter) so that the replicas of many groups do not ask in lockstep. Not
// safe for concurrent use: one per rejoining group.
type RejoinBackoff struct {
	attempts int
}

// Rejoin backoff bounds.
const (
	rejoinBackoffBaseDuration = 250 * time.Millisecond
	rejoinBackoffMaxDuration  = 5 * time.Second
)

// Next returns how long to wait before the next attempt.
func (b *RejoinBackoff) Next() time.Duration {
	d := rejoinBackoffBaseDuration << min(b.attempts, 8)
	d = min(d, rejoinBackoffMaxDuration)
	b.attempts++
	return d/2 + rand.N(d/2+1)
}

// Reset starts the backoff over after a success.
func (b *RejoinBackoff) Reset() { b.attempts = 0 }
