package raft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/heraldlog/herald/raft/raftpb"
)

// reconnectDelayBase is the first delay of gRPC's reconnect backoff; it grows
// up to MuxOptions.ReconnectDelayMax.
const reconnectDelayBase = 100 * time.Millisecond

// Mux multiplexes the Raft groups of one node over one gRPC service and one
// client connection per peer address. Every message names its group; the
// receiving Mux hands it to that group's Transport, or refuses it at once with
// codes.NotFound when the group has no open Transport here.
//
// All methods are safe for concurrent use. Peer connections are dialled
// lazily on first use and shared by every group; they live until Close.
type Mux struct {
	opts        MuxOptions
	logger      *slog.Logger
	metrics     *transportMetrics
	dialOptions []grpc.DialOption
	// logLimiter is shared by the hclog loggers of the groups opened on
	// this Mux's transports, so that one dead peer is one line per 5 s for
	// the node rather than per group.
	logLimiter *logLimiter

	mu struct {
		sync.RWMutex
		closed bool
		groups map[uint64]*Transport
		peers  map[hraft.ServerAddress]*peerConn
	}

	// ctx is cancelled by Close; it bounds the commit pushers' calls.
	ctx    context.Context
	cancel context.CancelFunc
	// push holds the commit pushers, one per peer (commit_push.go);
	// pushersWG counts their goroutines, which Close waits for.
	push struct {
		sync.Mutex
		closed  bool
		pushers map[hraft.ServerAddress]*commitPusher
	}
	pushersWG sync.WaitGroup
	// beat holds the heartbeaters, one per peer (heartbeat.go); beatersWG
	// counts their goroutines, which Close waits for.
	beat struct {
		sync.Mutex
		closed bool
		peers  map[hraft.ServerAddress]*heartbeater
	}
	beatersWG sync.WaitGroup
}

// peerConn is the one client connection to a peer address.
type peerConn struct {
	conn   *grpc.ClientConn
	client raftpb.RaftTransportClient
}

// NewMux validates opts (after filling defaults) and returns a Mux. The Mux
// serves nothing until Register is called with the node's grpc.Server.
func NewMux(opts MuxOptions) (*Mux, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	m := &Mux{
		opts:    opts,
		logger:  opts.Logger.With("component", "raft-transport", "local_addr", opts.LocalAddr),
		metrics: newTransportMetrics(),

		logLimiter: newLogLimiter(logRepeatWindow, logKeysMax, time.Now),
	}
	m.mu.groups = make(map[uint64]*Transport)
	m.mu.peers = make(map[hraft.ServerAddress]*peerConn)
	m.push.pushers = make(map[hraft.ServerAddress]*commitPusher)
	m.beat.peers = make(map[hraft.ServerAddress]*heartbeater)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	// Caller options come last so that they override these defaults
	// (credentials in particular).
	m.dialOptions = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(opts.MaxMessageBytes),
			grpc.MaxCallSendMsgSize(opts.MaxMessageBytes),
		),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                opts.KeepaliveTime,
			Timeout:             opts.KeepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  min(reconnectDelayBase, opts.ReconnectDelayMax),
				Multiplier: backoff.DefaultConfig.Multiplier,
				Jitter:     backoff.DefaultConfig.Jitter,
				MaxDelay:   opts.ReconnectDelayMax,
			},
			MinConnectTimeout: opts.RPCTimeout,
		}),
	}, opts.DialOptions...)
	return m, nil
}

// ServerOptions returns the options the node's grpc.Server must be created
// with for the raft service: message limits of maxMessageBytes (0 means
// DefaultMaxMessageBytes) in both directions, and a keepalive policy that
// accepts the Mux's client pings. The limits apply to every service on that
// server.
func ServerOptions(maxMessageBytes int) []grpc.ServerOption {
	if maxMessageBytes <= 0 {
		maxMessageBytes = DefaultMaxMessageBytes
	}
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMessageBytes),
		grpc.MaxSendMsgSize(maxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveTimeMin,
			PermitWithoutStream: true,
		}),
	}
}

// Register registers the raft transport service on s, the node's gRPC
// server. Call it once, before s.Serve. The server's lifecycle stays with
// the caller; stopping it ends the incoming streams this Mux serves.
func (m *Mux) Register(s *grpc.Server) {
	raftpb.RegisterRaftTransportServer(s, &service{mux: m})
}

// Collectors returns the Mux's Prometheus collectors (shared by all its
// transports) for the caller to register; nothing is registered globally.
func (m *Mux) Collectors() []prometheus.Collector {
	return m.metrics.collectors()
}

// LocalAddr is the advertised address of every local group.
func (m *Mux) LocalAddr() hraft.ServerAddress {
	return hraft.ServerAddress(m.opts.LocalAddr)
}

// Transport opens the Transport of one group and registers it, so that
// messages naming groupID are delivered to it. It fails with
// ErrGroupRegistered while another Transport of that group is open, and with
// ErrMuxClosed after Close. Transport.Close unregisters it.
func (m *Mux) Transport(groupID uint64) (*Transport, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return nil, ErrMuxClosed
	}
	if _, ok := m.mu.groups[groupID]; ok {
		return nil, fmt.Errorf("%w: group %d", ErrGroupRegistered, groupID)
	}
	t := newTransport(m, groupID)
	m.mu.groups[groupID] = t
	return t, nil
}

// Close closes every open Transport (failing their pending RPCs) and every
// peer connection, and waits for the commit pushers and heartbeaters to
// stop. Later calls
// return nil. It does not stop the grpc.Server.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return nil
	}
	m.mu.closed = true
	groups, peers := m.mu.groups, m.mu.peers
	m.mu.groups, m.mu.peers = map[uint64]*Transport{}, map[hraft.ServerAddress]*peerConn{}
	m.mu.Unlock()
	m.push.Lock()
	m.push.closed = true
	m.push.Unlock()
	m.closeHeartbeaters()
	m.cancel()
	defer m.pushersWG.Wait()
	defer m.beatersWG.Wait()

	var errs []error
	for _, t := range groups {
		errs = append(errs, t.Close())
	}
	for addr, p := range peers {
		if err := p.conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft: close connection to %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// lookup returns the open Transport of groupID, or an error wrapping
// ErrUnknownGroup (counted) or ErrMuxClosed.
func (m *Mux) lookup(groupID uint64) (*Transport, error) {
	m.mu.RLock()
	t, ok := m.mu.groups[groupID]
	closed := m.mu.closed
	m.mu.RUnlock()
	if closed {
		return nil, ErrMuxClosed
	}
	if !ok {
		m.metrics.unknownGroup.Inc()
		return nil, fmt.Errorf("%w: node %s hosts no open transport for group %d", ErrUnknownGroup, m.opts.LocalAddr, groupID)
	}
	return t, nil
}

// unregister removes t if it is still the registered Transport of its group.
func (m *Mux) unregister(t *Transport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.groups[t.groupID] == t {
		delete(m.mu.groups, t.groupID)
	}
}

// client returns the shared client of the peer at addr, creating the
// connection on first use. grpc.NewClient does no I/O (it connects on the
// first RPC), so creating it under the lock does not block other peers.
func (m *Mux) client(addr hraft.ServerAddress) (raftpb.RaftTransportClient, error) {
	m.mu.RLock()
	p, ok := m.mu.peers[addr]
	closed := m.mu.closed
	m.mu.RUnlock()
	if closed {
		return nil, ErrMuxClosed
	}
	if ok {
		return p.client, nil
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return nil, ErrMuxClosed
	}
	if p, ok := m.mu.peers[addr]; ok {
		return p.client, nil
	}
	conn, err := grpc.NewClient(string(addr), m.dialOptions...)
	if err != nil {
		return nil, fmt.Errorf("raft: client for %s: %w", addr, err)
	}
	p = &peerConn{conn: conn, client: raftpb.NewRaftTransportClient(conn)}
	m.mu.peers[addr] = p
	m.logger.Debug("raft peer connection created", "peer", string(addr))
	return p.client, nil
}
