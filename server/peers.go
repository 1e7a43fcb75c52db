package server

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// forwardedKey marks a request one node forwarded to another, so that the
// receiver answers NOT_LEADER instead of forwarding again (no loops).
const forwardedKey = "herald-forwarded"

// peerPool holds one client connection per peer address for forwarded
// requests and status calls (the Raft transport keeps its own).
type peerPool struct {
	dialOptions []grpc.DialOption
	mu          struct {
		sync.Mutex
		conns  map[string]*grpc.ClientConn
		closed bool
	}
}

func newPeerPool(opts ...grpc.DialOption) *peerPool {
	p := &peerPool{dialOptions: opts}
	p.mu.conns = make(map[string]*grpc.ClientConn)
	return p
}

func (p *peerPool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, errNodeClosed
	}
	if c, ok := p.mu.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(wire.SentTracker()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcMessageBytesMax), grpc.MaxCallSendMsgSize(grpcMessageBytesMax)),
	}, p.dialOptions...)...)
	if err != nil {
		return nil, err
	}
	p.mu.conns[addr] = c
	return c, nil
}

func (p *peerPool) herald(addr string) (heraldpb.HeraldClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return heraldpb.NewHeraldClient(c), nil
}

func (p *peerPool) internal(addr string) (heraldpb.NodeInternalClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return heraldpb.NewNodeInternalClient(c), nil
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.closed = true
	for _, c := range p.mu.conns {
		_ = c.Close()
	}
	p.mu.conns = nil
}

// isForwarded reports whether the incoming request was forwarded by a peer.
func isForwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

// forwardContext marks an outgoing request as forwarded, and carries on
// the client's credentials (the incoming authorization, authz.go): the
// node it goes to checks them again, so a forwarded call is allowed
// exactly what the client's token allows. A call a node makes for itself
// has none, and is allowed as a peer's.
func forwardContext(ctx context.Context) context.Context {
	kv := []string{forwardedKey, "1"}
	// A context that carries a token out already (the gateway's group
	// client's calls) keeps it: a second value would be refused.
	out, _ := metadata.FromOutgoingContext(ctx)
	in, _ := metadata.FromIncomingContext(ctx)
	if len(out.Get(authorizationKey)) == 0 {
		for _, v := range in.Get(authorizationKey) {
			kv = append(kv, authorizationKey, v)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}
