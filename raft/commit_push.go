package raft

import (
	"context"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/heraldlog/herald/raft/raftpb"
)

// Commit push: followers learn the commit index when it moves, not at the
// next append.
//
// hashicorp/raft tells a follower how far the log is committed only in the
// AppendEntries that carries the next entries, or, when none come, the one
// its replication loop sends after CommitTimeout (50–100 ms). A follower
// applies an entry only once it knows the entry is committed, so every
// reader of a follower's state (subscribers above all: any replica serves
// them) sees a write up to CommitTimeout after the leader acknowledged it.
// A shorter CommitTimeout costs every idle group an append per timeout.
//
// Instead, a leader's FSM wrapper (pushingFSM) reports each batch it has
// applied; if the batch's last entry is of the term this node leads, the
// group's Transport queues (group, term, index, index's term) for each
// follower it has sent appends to recently, and the Mux sends them in one
// Commit message per peer, coalesced: while one is in flight, later
// commits of any group wait in a map holding the newest per group (bounded
// by the number of groups) and go in the next message.
//
// The receiving Transport hands its Raft an AppendEntries with no entries,
// previous entry (index, index's term) and leader commit index: the same
// message hashicorp/raft's replication loop sends after CommitTimeout
// when the follower is up to date. Raft's own checks decide: an older term
// is ignored; the previous-entry check proves that the follower's log
// matches the leader's up to index (Raft's log-matching property), so
// committing up to it is safe even if the follower holds a different,
// uncommitted suffix after it, which the message leaves alone. The
// receiver skips a push its Raft cannot use (it lacks the entry, or
// already knows the commit), so a slow follower gets no log lines for it.
//
// Only an index applied by the leader is pushed, so it is committed; only
// one of the leader's own term, so the message is one the leader of that
// term could send. At most one injection per group is queued to Raft at a
// time (the newest index wins), by a goroutine that exits when none waits.

// appendsFresh is how recently a follower must have been sent an append
// (heartbeats count; hashicorp/raft sends one every HeartbeatTimeout/10)
// to get commit pushes.
const appendsFresh = 5 * time.Second

// The FSM wrappers below report each applied entry (or batch) to the
// group's transport. hashicorp/raft finds a BatchingFSM and a
// ConfigurationStore by type assertion, so each wrapper has exactly the
// optional interfaces of the FSM it wraps (withCommitPush picks it): a
// wrapper with more would change how Raft drives the FSM, one with fewer
// would hide StoreConfiguration or ApplyBatch.

// pushingFSM wraps a plain FSM.
type pushingFSM struct {
	hraft.FSM
	t *Transport
}

// pushingBatchingFSM wraps a BatchingFSM (partition groups).
type pushingBatchingFSM struct {
	hraft.BatchingFSM
	t *Transport
}

// pushingConfigFSM wraps a ConfigurationStore (the controller group). A
// configuration entry is not pushed: StoreConfiguration is not told its
// term, and followers learn its commit with the next append or push.
type pushingConfigFSM struct {
	hraft.ConfigurationStore
	t *Transport
}

// pushingBatchingConfigFSM wraps an FSM that is both.
type pushingBatchingConfigFSM struct {
	batchingConfigFSM
	t *Transport
}

// batchingConfigFSM is an FSM that is a BatchingFSM and a ConfigurationStore.
type batchingConfigFSM interface {
	hraft.BatchingFSM
	StoreConfiguration(index uint64, configuration hraft.Configuration)
}

var (
	_ hraft.BatchingFSM        = (*pushingBatchingFSM)(nil)
	_ hraft.ConfigurationStore = (*pushingConfigFSM)(nil)
	_ hraft.BatchingFSM        = (*pushingBatchingConfigFSM)(nil)
	_ hraft.ConfigurationStore = (*pushingBatchingConfigFSM)(nil)
)

// withCommitPush wraps fsm so that its leader pushes each applied index to
// the followers; the wrapper has the same optional interfaces as fsm.
func withCommitPush(fsm hraft.FSM, t *Transport) hraft.FSM {
	b, batching := fsm.(hraft.BatchingFSM)
	_, configStore := fsm.(hraft.ConfigurationStore)
	switch {
	case batching && configStore:
		return &pushingBatchingConfigFSM{batchingConfigFSM: fsm.(batchingConfigFSM), t: t}
	case batching:
		return &pushingBatchingFSM{BatchingFSM: b, t: t}
	case configStore:
		return &pushingConfigFSM{ConfigurationStore: fsm.(hraft.ConfigurationStore), t: t}
	default:
		return &pushingFSM{FSM: fsm, t: t}
	}
}

func (f *pushingFSM) Apply(l *hraft.Log) interface{} {
	out := f.FSM.Apply(l)
	f.t.applied(l.Index, l.Term)
	return out
}

func (f *pushingBatchingFSM) Apply(l *hraft.Log) interface{} {
	out := f.BatchingFSM.Apply(l)
	f.t.applied(l.Index, l.Term)
	return out
}

func (f *pushingBatchingFSM) ApplyBatch(logs []*hraft.Log) []interface{} {
	out := f.BatchingFSM.ApplyBatch(logs)
	appliedBatch(f.t, logs)
	return out
}

func (f *pushingConfigFSM) Apply(l *hraft.Log) interface{} {
	out := f.ConfigurationStore.Apply(l)
	f.t.applied(l.Index, l.Term)
	return out
}

func (f *pushingBatchingConfigFSM) Apply(l *hraft.Log) interface{} {
	out := f.batchingConfigFSM.Apply(l)
	f.t.applied(l.Index, l.Term)
	return out
}

func (f *pushingBatchingConfigFSM) ApplyBatch(logs []*hraft.Log) []interface{} {
	out := f.batchingConfigFSM.ApplyBatch(logs)
	appliedBatch(f.t, logs)
	return out
}

// appliedBatch reports the last entry of an applied batch.
func appliedBatch(t *Transport, logs []*hraft.Log) {
	if n := len(logs); n > 0 {
		t.applied(logs[n-1].Index, logs[n-1].Term)
	}
}

// sentAppends is what a transport knows of the appends its Raft sent as
// leader: the term and identity they carried and when each target was
// last sent one.
type sentAppends struct {
	term    uint64
	header  hraft.RPCHeader
	leader  []byte
	targets map[hraft.ServerAddress]time.Time
}

// recordAppend notes an outgoing append (or heartbeat): only leaders send
// them, so its term is the one this node leads.
func (t *Transport) recordAppend(target hraft.ServerAddress, args *hraft.AppendEntriesRequest) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.mu.sent
	if s.term != args.Term || s.targets == nil {
		s.term, s.header, s.leader = args.Term, args.RPCHeader, args.Leader
		s.targets = make(map[hraft.ServerAddress]time.Time, 4)
	}
	s.targets[target] = now
}

// applied is told by the leader's FSM wrapper that it applied up to index,
// an entry of term indexTerm, and pushes the commit to the followers when
// this node leads that term.
func (t *Transport) applied(index, indexTerm uint64) {
	r := t.raft.Load()
	if t.mux.opts.NoCommitPush || r == nil || r.State() != hraft.Leader || r.CurrentTerm() != indexTerm {
		return
	}
	now := time.Now()
	t.mu.Lock()
	s := &t.mu.sent
	if t.mu.closed || s.term != indexTerm {
		t.mu.Unlock()
		return
	}
	targets := make([]hraft.ServerAddress, 0, len(s.targets))
	for addr, at := range s.targets {
		if now.Sub(at) > appendsFresh {
			delete(s.targets, addr)
			continue
		}
		targets = append(targets, addr)
	}
	header, leader := s.header, s.leader
	t.mu.Unlock()
	for _, addr := range targets {
		t.mux.pushCommit(addr, &raftpb.GroupCommit{
			GroupId: t.groupID, Header: headerToProto(header), Leader: leader,
			Term: indexTerm, Index: index, IndexTerm: indexTerm,
		})
	}
}

// receiveCommit takes a pushed commit for this group (see the comment at
// the top of this file). A push can overtake the append carrying its
// entry (the leader applies once a majority holds it, and this follower
// may not be in that majority): such a push waits, the newest one per
// group, until an append brings the entry (appendServed), since no later
// message may tell this follower of the commit before CommitTimeout.
func (t *Transport) receiveCommit(c *raftpb.GroupCommit) {
	r := t.raft.Load()
	if r == nil || r.CommitIndex() >= c.GetIndex() || r.CurrentTerm() > c.GetTerm() {
		t.mux.metrics.commitPushes.WithLabelValues(pushSkipped).Inc()
		return
	}
	if r.LastIndex() < c.GetIndex() {
		t.mu.Lock()
		if !t.mu.closed && newerCommit(c, t.mu.commitLater) {
			t.mu.commitLater = c
		}
		t.mu.Unlock()
		t.mux.metrics.commitPushes.WithLabelValues(pushDeferred).Inc()
		// The append may have been stored while this push was checked.
		t.appendServed()
		return
	}
	t.injectCommit(c)
}

// newerCommit reports whether c is ahead of old (nil: none).
func newerCommit(c, old *raftpb.GroupCommit) bool {
	return old == nil || c.GetTerm() > old.GetTerm() || (c.GetTerm() == old.GetTerm() && c.GetIndex() > old.GetIndex())
}

// appendServed is called after this group's Raft stored an append: a
// deferred push whose entry it now holds is handed to Raft.
func (t *Transport) appendServed() {
	r := t.raft.Load()
	t.mu.Lock()
	c := t.mu.commitLater
	if c == nil || r == nil || r.LastIndex() < c.GetIndex() {
		t.mu.Unlock()
		return
	}
	t.mu.commitLater = nil
	t.mu.Unlock()
	if r.CommitIndex() >= c.GetIndex() || r.CurrentTerm() > c.GetTerm() {
		return // the append itself carried the commit, or a new term began
	}
	t.injectCommit(c)
}

// injectCommit queues c for injectCommits, starting it when idle.
func (t *Transport) injectCommit(c *raftpb.GroupCommit) {
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return
	}
	if in := t.mu.commitIn; in == nil || c.GetIndex() > in.GetIndex() {
		t.mu.commitIn = c
	}
	start := !t.mu.injecting
	if start {
		t.mu.injecting = true
		t.injectors.Add(1)
	}
	t.mu.Unlock()
	if start {
		go t.injectCommits()
	}
}

// injectCommits hands Raft the newest pushed commit, one at a time, until
// none waits or the transport closes.
func (t *Transport) injectCommits() {
	defer t.injectors.Done()
	for {
		t.mu.Lock()
		c := t.mu.commitIn
		t.mu.commitIn = nil
		if c == nil || t.mu.closed {
			t.mu.injecting = false
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
		req := &hraft.AppendEntriesRequest{
			RPCHeader:         headerFromProto(c.GetHeader()),
			Term:              c.GetTerm(),
			Leader:            c.GetLeader(),
			PrevLogEntry:      c.GetIndex(),
			PrevLogTerm:       c.GetIndexTerm(),
			LeaderCommitIndex: c.GetIndex(),
		}
		outcome := pushApplied
		resp, err := t.serve(t.ctx, req, false)
		if r, ok := resp.(*hraft.AppendEntriesResponse); err != nil || !ok || !r.Success {
			outcome = pushRefused
		}
		t.mux.metrics.commitPushes.WithLabelValues(outcome).Inc()
	}
}

// pushCommit queues c for the peer at addr and starts its sender if idle.
func (m *Mux) pushCommit(addr hraft.ServerAddress, c *raftpb.GroupCommit) {
	m.push.Lock()
	defer m.push.Unlock()
	if m.push.closed {
		return
	}
	p := m.push.pushers[addr]
	if p == nil {
		p = &commitPusher{m: m, addr: addr, pending: make(map[uint64]*raftpb.GroupCommit)}
		m.push.pushers[addr] = p
	}
	if newerCommit(c, p.pending[c.GetGroupId()]) {
		p.pending[c.GetGroupId()] = c
	}
	if !p.running {
		p.running = true
		m.pushersWG.Add(1)
		go p.run()
	}
}

// commitPusher sends one peer's pushed commits, one message at a time.
// Its fields other than m and addr are guarded by m.push.
type commitPusher struct {
	m       *Mux
	addr    hraft.ServerAddress
	pending map[uint64]*raftpb.GroupCommit
	running bool
}

// run sends what waits until nothing does or the Mux closes.
func (p *commitPusher) run() {
	m := p.m
	defer m.pushersWG.Done()
	for {
		m.push.Lock()
		if len(p.pending) == 0 || m.push.closed {
			p.running = false
			m.push.Unlock()
			return
		}
		req := &raftpb.CommitRequest{Commits: make([]*raftpb.GroupCommit, 0, len(p.pending))}
		for _, c := range p.pending {
			req.Commits = append(req.Commits, c)
		}
		clear(p.pending)
		m.push.Unlock()

		start := time.Now()
		client, err := m.client(p.addr)
		if err == nil {
			ctx, cancel := context.WithTimeout(m.ctx, m.opts.RPCTimeout)
			_, err = client.Commit(ctx, req)
			cancel()
		}
		m.metrics.observeSend(rpcCommit, start, err)
		m.metrics.commitPushes.WithLabelValues(pushSent).Add(float64(len(req.Commits)))
	}
}
