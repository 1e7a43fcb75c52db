// Package partition is one replica of one partition: a Raft group (package
// raft) whose state machine appends to the partition's Pebble-backed log
// (package log). It knows nothing of the network: the node (package server)
// routes requests to it.
//
// A node uses it in this order:
//
//  1. OpenReplica with a ReplicaConfig: the group's directory, its
//     log.Partition, its raft.Transport and, for a new group, the servers
//     every replica bootstraps (Rejoining opens a replica that lost its
//     state without bootstrapping; the node decides which, see
//     docs/architecture.md "Rules of local state").
//  2. Replica.Produce on the leader, with one produce call's Records (each
//     event already validated and encoded; never copied here) and the
//     contract version they were checked against: the partition builds the
//     Raft command and the leader-side Batcher gathers concurrent calls
//     into one Raft entry (linger, count and byte caps) so one fsync
//     carries many events, and returns each record's Assigned position
//     once the entry is committed and applied here. Replica.Trim proposes
//     a retention trim. Any replica serves reads (Replica.Read,
//     ReadTenant, OffsetForTime, NextSequence): everything applied is
//     committed. Replica.Log() is the log itself, for what the partition
//     does not wrap (retention points).
//  3. Replica.Changed to wait for the next apply (long polls), Status and
//     IsLeader/Leader for routing and reporting.
//  4. Consumer groups (group.go): on the leader, Replica.GroupCreate,
//     GroupReset, GroupDelete, GroupAssign, GroupDeliver, GroupAck,
//     GroupNack and GroupDeadLetter each propose one command and wait for
//     it to apply; any replica serves GroupState, Groups, GroupPending and
//     GroupExpired as applied there.
//  5. Replica.Close on removal or shutdown.
//
// The FSM (a raft.BatchingFSM and raft.IndexedFSM) writes one Pebble batch
// per ApplyBatch with the applied index in the same batch, skips entries at
// or below that index after a restart, and stops the replica (never skips)
// on an entry it cannot decode or whose checksum fails. Entries are framed
// by command.go: a type byte, a CRC32C, then the command; the types are
// persisted and append-only.
//
// Errors are the partition's own (errors.go), matched with errors.Is and
// errors.As: not proposed (ErrNotLeader, ErrClosed, *EntryTooLargeError,
// *QueueFullError), refused by the state machine with nothing written
// (*ContractChangedError and the producer rules' refusals, which wrap the
// log's error and keep its message; the consumer group refusals, which are
// the log's own under the partition's names), fate unknown (ErrUnknownOutcome), and
// the read errors (*OffsetOutOfRangeError, *CorruptionError).
//
// Concurrency: Replica methods are safe for concurrent use. The FSM's
// methods run on Raft's FSM goroutine only.
package partition
