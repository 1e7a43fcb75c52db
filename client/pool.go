package client

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// responseBytesMax bounds one response: the largest fetch page (16 MiB,
// see herald.proto) plus room for the envelope.
const responseBytesMax = 20 << 20

// pool holds one grpc.ClientConn per address, made on first use and closed
// by close. All methods are safe for concurrent use; no lock is held while
// a connection is made or closed (grpc.NewClient does no I/O).
type pool struct {
	options []grpc.DialOption

	mu struct {
		sync.Mutex
		conns  map[string]*grpc.ClientConn
		closed bool
	}
}

var _ grpc.ClientConnInterface = (*grpc.ClientConn)(nil)

func newPool(cfg Config) *pool {
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS.Clone())
	}
	options := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(responseBytesMax)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  cfg.BackoffMin,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   cfg.BackoffMax,
			},
			MinConnectTimeout: cfg.DialTimeout,
		}),
		grpc.WithStatsHandler(wire.SentTracker()),
	}
	if cfg.Token != "" {
		options = append(options, grpc.WithPerRPCCredentials(tokenCredentials{token: cfg.Token}))
	}
	p := &pool{options: append(options, cfg.DialOptions...)}
	p.mu.conns = make(map[string]*grpc.ClientConn)
	return p
}

// client returns the Herald stub for addr, making its connection if needed.
func (p *pool) client(addr string) (heraldpb.HeraldClient, error) {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if cc, ok := p.mu.conns[addr]; ok {
		p.mu.Unlock()
		return heraldpb.NewHeraldClient(cc), nil
	}
	p.mu.Unlock()

	cc, err := grpc.NewClient(addr, p.options...)
	if err != nil {
		return nil, fmt.Errorf("client: connection to %s: %w", addr, err)
	}
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		_ = cc.Close()
		return nil, ErrClosed
	}
	if existing, ok := p.mu.conns[addr]; ok {
		// Another caller won the race; keep one connection per address.
		p.mu.Unlock()
		_ = cc.Close()
		return heraldpb.NewHeraldClient(existing), nil
	}
	p.mu.conns[addr] = cc
	p.mu.Unlock()
	return heraldpb.NewHeraldClient(cc), nil
}

// close closes every connection; later calls to client fail with ErrClosed.
// It is idempotent.
func (p *pool) close() error {
	p.mu.Lock()
	conns := p.mu.conns
	p.mu.conns = nil
	p.mu.closed = true
	p.mu.Unlock()
	var errs []error
	for addr, cc := range conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("client: closing connection to %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}
