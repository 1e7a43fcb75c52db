// Package raft is everything hashicorp/raft (imported as hraft) needs to run
// many Raft groups on one Herald node: a multiplexed gRPC transport, per-group
// raft-boltdb stores and snapshot stores, configuration defaults, and an
// hclog-to-slog logger adapter. It knows nothing of topics or tenants.
//
// How the pieces fit, in the order a node uses them:
//
//  1. NewMux(MuxOptions{LocalAddr: ...}) once per node, and Mux.Register on
//     the node's one grpc.Server, created with ServerOptions(MaxMessageBytes).
//  2. Per group replica: Mux.Transport(groupID), then OpenGroup with that
//     transport, a directory and an FSM. The group's raft.db (fsynced on
//     every append) and snapshots/ live in the directory.
//  3. Group.BootstrapIfNew with the same servers on every replica of a new
//     group; Group.Raft() for Apply, Barrier, leadership and membership.
//  4. Group.Close on removal or shutdown (it closes the transport, which
//     unregisters the group: later messages for it are refused with
//     codes.NotFound); Mux.Close last, then stop the grpc.Server.
//
// Wire: one gRPC service (raftpb.RaftTransport); every request names its
// group; one client connection per peer address serves every group.
// AppendEntries, RequestVote, RequestPreVote and TimeoutNow are unary calls;
// pipelined appends use one bidirectional stream per (group, peer);
// InstallSnapshot is a client stream: the request, then data chunks whose
// total must be exactly the request's Size.
//
// Receiving: each incoming RPC runs on its gRPC handler goroutine, which
// hands it to the group's Consumer() channel (heartbeats go to the heartbeat
// handler directly) and waits for Raft's answer; waits are bounded by the
// caller's deadline, MuxOptions timeouts and Transport.Close.
package raft
