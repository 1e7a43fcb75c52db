// Package server is a Herald node: the process behind `herald serve`.
//
// StartNode (or Run) opens the node's Pebble log (package log), starts one
// gRPC server for clients and peers, opens the controller group (Raft
// group 0, whose state machine is package server/controller: the registry
// of tenants, topics and partition placement) and
// then, from its reconcile loop, the partition replicas (package partition)
// the controller assigns to this node. On the one gRPC port it serves:
//
//   - the Raft transport of every group (package raft), from the first
//     moment;
//   - the public Herald API (heraldpb.Herald): topics, tenants, produce,
//     fetch, status; any node accepts any call and forwards what it cannot
//     answer to the controller or partition leader;
//   - NodeInternal, for peers: status, the controller's read index, marking
//     groups live.
//
// A node reaches a partition only through package partition: a produce
// call hands Replica.Produce the events encoded once (partition.Record, with
// the contract version they were checked against) and a fetch reads
// through the replica's read calls; the partition's errors are mapped to
// wire errors (package client/wire) in service_produce.go and
// service_fetch.go. The node does not build Raft commands; it uses package
// log only for the store it owns (open, quarantine), retention points and
// the stored records it encodes for the wire.
//
// The public and internal services answer only once the controller is open
// (serving_gate.go). HTTP serves /metrics, /healthz, /readyz and pprof.
//
// The rules this package keeps about local state (deletion only by a
// replicated tombstone, bootstrap only of groups the controller says are
// new, "caught up" measured by a state machine's own applied index, errors
// after a proposal are unknown outcomes) are in docs/architecture.md.
//
// A Node is safe for concurrent use; Close stops it and is idempotent.
package server
