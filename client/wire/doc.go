// Package wire is Herald's wire contract in Go, shared by the SDK (package
// client) and the nodes (package server): the error reasons with the one
// table that gives each its gRPC code and its sentinel, the typed errors and
// their constructors, Status and FromStatus (the two halves of the
// conversion between errors and gRPC statuses), the ErrorInfo metadata
// keys, routing by ordering (PartitionFor), the envelope and alterable
// field lists, the stats handler that tells whether a request left the
// process (SentTracker), and the WebSocket gateway's JSON frames (ws.go,
// shared with package wsclient).
//
// It is a leaf: it imports only the generated protocol (heraldpb) and gRPC's
// status packages, never the SDK or the server. So a node does not depend
// on its own SDK, and an error made on a node is the same Go value the SDK
// matches with errors.Is after it crossed the wire.
//
// What it defines is part of herald.v1 (docs/protocol.md): reasons,
// metadata keys and field names are append-only, and the routing hash
// never changes. Every function and variable is safe for concurrent use;
// the package has no mutable state.
package wire
