// Package certs makes and loads the TLS identities of a Herald cluster.
//
// A cluster has one certificate authority (CA), an ECDSA P-256 key that
// signs everything else; `herald certs` creates it for development. What
// it issues:
//
//  1. Node certificates (IssueNode): usable as server and as client
//     certificate (ServerAuth and ClientAuth), naming the node by the URI
//     SAN spiffe://herald/node/<id> and its addresses by DNS and IP SANs
//     (127.0.0.1, ::1 and localhost when none are given). A node serves
//     clients with it and presents it to every peer it dials; NodeIdentity
//     reads the node id back from a verified certificate, which is what
//     makes a caller a peer (server/peer_auth.go).
//  2. Client certificates (IssueClient): ClientAuth only, named
//     spiffe://herald/client/<name>. They prove a client holds a key the
//     cluster CA signed; they never make it a peer.
//
// A Reloader holds a node's current certificate, key and CA pool, read
// from their PEM files and read again when the files change (rotation
// without restart), and gives the tls.Config of the node's servers
// (ServerConfig) and of its links to peers (PeerClientConfig).
//
// Files (WriteCA, WriteNode, WriteClient): ca.crt and ca.key, node-<id>.crt
// and node-<id>.key, client-<name>.crt and client-<name>.key in one
// directory; keys are written 0600, and a CA key already there is never
// overwritten.
package certs
