package server

import "context"

// peerKey keys the node id of an authenticated peer in a request's context.
type peerKey struct{}

// withPeer marks ctx as a request from nodeID, another node of this
// cluster whose identity was verified (its certificate from the cluster
// CA, or the cluster secret): set by the peer interceptor (peer_auth.go)
// before any handler or later interceptor runs.
func withPeer(ctx context.Context, nodeID string) context.Context {
	return context.WithValue(ctx, peerKey{}, nodeID)
}

// peerFrom returns the node id of the authenticated peer that made the
// request, if a peer made it. A request a peer forwarded for a client was
// checked against the client's credentials on the node the client called.
func peerFrom(ctx context.Context) (nodeID string, ok bool) {
	nodeID, ok = ctx.Value(peerKey{}).(string)
	return nodeID, ok
}
