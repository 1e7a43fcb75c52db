package raft

import (
	"errors"
	"fmt"
	"time"

	hraft "github.com/hashicorp/raft"
)

// readIndexScanMax bounds how many log entries ReadIndex looks back through
// for the last one the state machine sees; past it (a long run of barriers)
// it falls back to a Barrier.
const readIndexScanMax = 4096

// ReadIndex serves a linearizable read on the leader without writing to the
// log. It returns the index a replica's state machine must have applied (by
// its own count, fsmApplied) before it may answer a read that began before
// the call: every entry acknowledged before then is at or below it.
//
// Why not hashicorp/raft's numbers: AppliedIndex counts entries handed to
// the FSM's queue, not applied, and Noop/Barrier entries (and configuration
// entries, unless the FSM is a raft.ConfigurationStore) are never given to
// the FSM, so an FSM's own applied index may stay below CommitIndex for
// good. ReadIndex therefore answers with the last entry at or below the
// leader's last index that the FSM does see (configVisible says whether
// configuration entries count), found by reading back through the log; the
// uncommitted tail is included, so a read may wait for it to commit.
//
// Steps: VerifyLeader (no newer leader exists, so this log holds every
// acknowledged entry), then the scan. fsmApplied is the leader's own FSM
// applied index; it answers for a prefix compacted into a snapshot (the FSM
// holds at least the newest snapshot's state).
//
// Safe for concurrent use. Fails with ErrNotLeader when this replica does
// not lead the group.
func (g *Group) ReadIndex(timeout time.Duration, fsmApplied func() uint64, configVisible bool) (uint64, error) {
	if err := g.raft.VerifyLeader().Error(); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) {
			return 0, fmt.Errorf("raft: group %d: read index: %w", g.id, ErrNotLeader)
		}
		return 0, fmt.Errorf("raft: group %d: read index: verify leader: %w", g.id, err)
	}
	applied := fsmApplied()
	last := g.raft.LastIndex()
	var entry hraft.Log
	for i, scanned := last, 0; i > applied; i, scanned = i-1, scanned+1 {
		if scanned == readIndexScanMax {
			return g.readIndexByBarrier(timeout, fsmApplied)
		}
		if err := g.logs.GetLog(i, &entry); err != nil {
			if errors.Is(err, hraft.ErrLogNotFound) {
				// Compacted: at or below the newest snapshot, which the
				// FSM's state already holds.
				return applied, nil
			}
			return 0, fmt.Errorf("raft: group %d: read index: entry %d: %w", g.id, i, err)
		}
		if entry.Type == hraft.LogCommand || (configVisible && entry.Type == hraft.LogConfiguration) {
			return i, nil
		}
	}
	return applied, nil
}

// readIndexByBarrier is ReadIndex's fallback: a Barrier returns once the
// FSM has applied every entry before it.
func (g *Group) readIndexByBarrier(timeout time.Duration, fsmApplied func() uint64) (uint64, error) {
	if err := g.raft.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) {
			return 0, fmt.Errorf("raft: group %d: read index: %w", g.id, ErrNotLeader)
		}
		return 0, fmt.Errorf("raft: group %d: read index: barrier: %w", g.id, err)
	}
	return fsmApplied(), nil
}
