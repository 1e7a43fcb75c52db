// Package controller is the registry of a Herald cluster as a replicated
// state machine: the FSM of Raft group 0 (GroupID), which every initial
// node runs. It is a peer of package partition: the node (package server)
// opens its Raft group, proposes its commands and reads it; it knows
// nothing of the network or of the wire protocol.
//
// Why a replicated state machine: every node must agree on which topics
// exist, where their partitions live and whether a partition group may
// still be bootstrapped, and must agree on it in the same order, even
// across leader changes and restarts. So every change is a command in the
// controller's Raft log, applied in log order on every node, and a node
// acts only on what its replica of the registry has applied.
//
// The registry holds tenants (id, display name, quota, creation time),
// topics with their contract (ordering, retention, TTLs, dedupe window,
// schema, required fields, auto-tenants) and contract version, for each
// partition its cluster-wide group id (allocated from 1, never reused),
// its replica nodes and whether the group is live, the tombstones of
// deleted topics' groups, and the producer-id counter.
//
// A node uses it in this order:
//
//  1. NewFSM with a Config (the deterministic AlterContract the node also
//     checks requests with; OnDamage), then open Raft group 0 over it with
//     CheckEntry as the Raft log's entry checker.
//  2. On the controller leader, Encode a Command (CreateTopic, AlterTopic,
//     DeleteTopic, CreateTenant, SetTenantQuota, InitProducer, MarkLive)
//     and apply it through Raft; the future's response is the FSM's result
//     (a *Topic, *Tenant, ProducerGrant, a count) or its refusal
//     (*NameError, *PlacementError, or AlterContract's error). An error of
//     the Raft apply itself, once proposed, is an unknown outcome, never a
//     refusal.
//  3. Read with Topic, Topics, Tenant, Tenants, AssignedTo, Tombstoned and
//     TombstoneIndex; wait for changes on Changed, and for a given
//     AppliedIndex on AppliedAdvanced.
//
// The rules a node keeps with it (docs/architecture.md, "Rules of local
// state"):
//
//   - Deletion only by tombstone: local data of a group is deleted only
//     when Tombstoned names it, never because a group is absent (a
//     registry not replayed yet looks like one whose topic was deleted).
//   - Bootstrap only when new: a replica without local state bootstraps
//     only while its Partition is not Live, and only after the registry
//     has caught up with the leader's (a read index).
//   - "Caught up" is this state machine's own count: AppliedIndex advances
//     when an entry (command or configuration) has been applied here, and
//     a restored snapshot carries it; hashicorp/raft's AppliedIndex counts
//     entries queued for the FSM, and Noop/Barrier entries never reach it.
//
// Entries are framed like partition commands (command.go): op | CRC32C |
// body, with fixed op numbers that are persisted and append-only; the
// checksum also covers the op. The first versions' JSON envelopes, with
// and without a checksum, still decode. An entry that fails its checksum
// (damaged in this replica's Raft log, which raft-boltdb does not
// checksum) or that this version cannot decode stops the node rather than
// being skipped; a damaged one is reported to OnDamage first, so that the
// replica rejoins from its peers on the next start. Snapshots are the
// registry as one JSON document with a format version (snapshot.go).
//
// Concurrency: Apply, Snapshot, Restore and StoreConfiguration run on
// Raft's FSM goroutine; the read calls are safe for concurrent use with
// them and return copies.
package controller
