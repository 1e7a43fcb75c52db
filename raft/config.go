package raft

import (
	"time"

	hraft "github.com/hashicorp/raft"
)

// DefaultConfig returns the hashicorp/raft configuration of a Herald group
// (it passes hraft.ValidateConfig). Why these values:
//
//   - HeartbeatTimeout and ElectionTimeout 1 s (hraft's defaults, not lower):
//     a node hosts one group per partition replica, and each leader sends a
//     heartbeat to each follower every HeartbeatTimeout/10, so the heartbeat
//     rate grows with the number of groups; 1 s keeps it at 10/s per
//     follower per group while failover still takes 1–2 s. Shorter timeouts
//     also turn fsync and GC stalls on a loaded small machine into spurious
//     elections. Tests that want faster elections lower them.
//   - LeaderLeaseTimeout 500 ms: below HeartbeatTimeout, as required.
//   - CommitTimeout 1 s (hraft's default is 50 ms): hashicorp/raft's
//     replication loop sends each follower an append every CommitTimeout
//     to 2×CommitTimeout (randomised) when nothing else flows, so that it
//     learns the commit index. Leaders push the commit index as they
//     apply (commit_push.go, every group), so this tick is only the
//     fallback: a follower whose push was lost (its Commit message failed)
//     learns the commit, and applies, at most 2 s later; a push that
//     overtook its entry waits for the entry's append and needs no tick.
//     The tick is also when an idle group's leader retries a follower
//     whose append failed (a peer down, a broken pipeline): that waits
//     CommitTimeout to 2×CommitTimeout plus hraft's failure backoff (10 ms
//     doubling up to 10 s), where new entries retry at once. At 50 ms the
//     tick was the largest idle cost: about 13 empty appends a second per
//     follower per group, more than the heartbeats.
//   - MaxAppendEntries 64 and BatchApplyCh: the leader-side batcher gives
//     Raft few large commands (up to 4 MiB each by default, a single large
//     produce call up to Transport.EntryBytesMax); up to 64 go in one append
//     and one fsync. hraft bounds an append by count only and reads all its
//     entries before sending: 64 keeps that to 256 MiB of 4 MiB entries
//     (512 was 2 GiB), and the transport sends the prefix that fits in
//     MuxOptions.MaxMessageBytes (the rest follows in the next append).
//   - SnapshotInterval 120 s, SnapshotThreshold 8192, TrailingLogs 10240:
//     hraft's defaults; a follower at most TrailingLogs behind catches up
//     from the log instead of a snapshot.
//   - LogLevel INFO (the logger is set by OpenGroup).
func DefaultConfig(nodeID string) *hraft.Config {
	c := hraft.DefaultConfig()
	c.LocalID = hraft.ServerID(nodeID)
	c.HeartbeatTimeout = 1000 * time.Millisecond
	c.ElectionTimeout = 1000 * time.Millisecond
	c.LeaderLeaseTimeout = 500 * time.Millisecond
	c.CommitTimeout = 1000 * time.Millisecond
	c.MaxAppendEntries = 64
	c.BatchApplyCh = true
	c.SnapshotInterval = 120 * time.Second
	c.SnapshotThreshold = 8192
	c.TrailingLogs = 10240
	c.LogLevel = "INFO"
	return c
}
