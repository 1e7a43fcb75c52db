package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heraldlog/herald/client/heraldpb"
	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition"
	heraldraft "github.com/heraldlog/herald/raft"
	"github.com/heraldlog/herald/server/controller"
)

// Node is one running Herald node: one Pebble log, one gRPC server for
// clients and peers (the Herald API, NodeInternal and the Raft transport),
// one public HTTP server (and, when configured, an admin listener), the
// gRPC health service, the controller group and the partition replicas the
// controller assigned here.
//
// Start it with StartNode and stop it with Close; in between every method
// is safe for concurrent use.
type Node struct {
	cfg    Config
	logger *slog.Logger

	db         *heraldlog.DB
	mux        *heraldraft.Mux
	grpcServer *grpc.Server
	grpcLis    net.Listener
	httpServer *http.Server
	httpLis    net.Listener
	// adminServer and adminLis are the admin listener (admin.go), nil
	// when none is configured.
	adminServer *http.Server
	adminLis    net.Listener
	// health is the gRPC health service (health.go): written by
	// healthLoop while the node runs, shut down by Close.
	health *health.Server

	controllerFSM *controller.FSM
	controller    *heraldraft.Group

	peers   *peerPool
	metrics *nodeMetrics
	// peerAuth tells peers from clients on the gRPC port and gives this
	// node's links to its peers their identity (peer_auth.go).
	peerAuth *peerAuth
	// authz checks client credentials (authz.go); it allows everything
	// when Config.Auth is not enabled.
	authz *authorizer
	// ws is the WebSocket gateway (ws_gateway.go), set when the HTTP
	// server starts.
	ws *wsGateway
	// coordinator coordinates the consumer groups of the topics whose
	// partition 0 this node leads (group_coordinator.go).
	coordinator        *coordinator
	coordinatorMetrics *coordinatorMetrics
	partitionMetrics   *partition.Metrics
	// tenantActivity learns which partitions each tenant uses, from every
	// replica's applies, to split quotas over them (quota.go).
	tenantActivity *partition.TenantActivity
	// quotaBlocks refuses a tenant just refused for its quota here before
	// its requests are planned (quota.go).
	quotaBlocks quotaBlocks
	// doorHeld is the bytes of requests refused at the door and held
	// (quota.go).
	doorHeld atomic.Int64
	registry *prometheus.Registry

	mu struct {
		sync.Mutex
		replicas map[uint64]*partition.Replica // by group id
		closed   bool
	}

	// autoTenants queues tenants of auto-tenants topics to register.
	autoTenants chan string

	// rejoins tracks the groups whose replica here rejoins from its peers.
	rejoins *rejoins
	// wiped is the partition pass of a wiped node's rejoin (Config.Rejoin).
	wiped wipedRejoin
	// registrySynced is set once this node's registry has caught up with
	// the controller leader's since the start (see registrySyncedOnce).
	registrySynced atomic.Bool
	// serving is set once the controller is open; until then the public
	// and node-internal services answer NodeStarting (serving_gate.go).
	serving atomic.Bool

	// tails are the shared live edges of the replicas with subscribers.
	tails tails
	// limits are the node's caps on what its callers hold (limits.go).
	limits *nodeLimits

	// lag holds the replicas' lag guards, refreshed by its loop
	// (lag_guard.go).
	lag *lagGuards

	stop chan struct{}
	// ctx is cancelled when the node stops (with stop), for calls the
	// background loops make.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// spawnMu guards spawnClosed. Goroutines started on demand while the
	// node runs (spawn) join wg under it, and Close sets spawnClosed under
	// it before waiting: an Add never races the Wait (a request handler
	// still running after the gRPC server's Stop, which does not wait for
	// handlers, could otherwise add to a counter at zero while Close waits).
	spawnMu     sync.Mutex
	spawnClosed bool
}

// spawn runs fn in a goroutine that Close waits for, unless the node is
// closing: then fn does not run and spawn returns false.
func (n *Node) spawn(fn func()) bool {
	if !n.track() {
		return false
	}
	go func() {
		defer n.wg.Done()
		fn()
	}()
	return true
}

// track adds one to what Close waits for (the caller calls n.wg.Done),
// unless the node is closing: then it returns false.
func (n *Node) track() bool {
	n.spawnMu.Lock()
	defer n.spawnMu.Unlock()
	if n.spawnClosed {
		return false
	}
	n.wg.Add(1)
	return true
}

// StartNode opens the node's storage, starts serving and joins (or
// bootstraps) the cluster. It returns once the node is serving; the
// controller may not have a leader yet.
func StartNode(cfg Config) (*Node, error) {
	return StartNodeContext(context.Background(), cfg)
}

// StartNodeContext is StartNode, with ctx bounding the one wait a start can
// have: when the controller's Raft state here is damaged, the node waits
// (before serving) until the controller's leader has demoted this replica
// to a non-voter (see rejoin.go).
func StartNodeContext(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("node", cfg.NodeID)
	n := &Node{
		cfg:                cfg,
		logger:             logger,
		stop:               make(chan struct{}),
		autoTenants:        make(chan string, autoTenantQueueMax),
		metrics:            newNodeMetrics(),
		limits:             newNodeLimits(cfg.Limits),
		partitionMetrics:   partition.NewMetrics(),
		tenantActivity:     partition.NewTenantActivity(quotaActivityWindow),
		registry:           prometheus.NewRegistry(),
		rejoins:            newRejoins(),
		coordinatorMetrics: newCoordinatorMetrics(),
	}
	if n.authz, err = newAuthorizer(cfg.Auth, logger); err != nil {
		return nil, err
	}
	n.coordinator = newCoordinator(n)
	n.lag = newLagGuards(n)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.mu.replicas = make(map[uint64]*partition.Replica)
	defer func() {
		if err != nil {
			n.Close()
		}
	}()

	if n.peerAuth, err = newPeerAuth(&cfg, logger); err != nil {
		return nil, err
	}
	n.registry.MustRegister(n.peerAuth.collectors()...)
	// Every link to a peer presents this node's identity.
	peerDial := append(n.peerAuth.dialOptions(), grpc.WithContextDialer(cfg.dialer()))

	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "raft"), 0o755); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	if err := n.openLog(); err != nil {
		return nil, err
	}
	n.mux, err = heraldraft.NewMux(heraldraft.MuxOptions{LocalAddr: cfg.GRPCAddr, Logger: logger,
		DialOptions:  peerDial,
		NoCommitPush: cfg.Raft.NoCommitPush})
	if err != nil {
		return nil, err
	}
	n.peers = newPeerPool(peerDial...)
	if err := n.prepareWiped(); err != nil {
		return nil, err
	}
	controllerRejoin, err := n.prepareController(ctx)
	if err != nil {
		return nil, err
	}

	// The peer interceptors come first: nothing runs for a caller refused
	// a peer-only method.
	opts := append(heraldraft.ServerOptions(grpcMessageBytesMax),
		grpc.ChainUnaryInterceptor(n.peerAuth.unary, n.metrics.unaryInterceptor, n.authz.unary, n.gateUnary, errorInterceptor),
		grpc.ChainStreamInterceptor(n.peerAuth.stream, n.authz.stream, n.gateStream, streamErrorInterceptor))
	opts = append(opts, n.peerAuth.serverOptions()...)
	n.grpcServer = grpc.NewServer(opts...)
	n.mux.Register(n.grpcServer)
	heraldpb.RegisterHeraldServer(n.grpcServer, &heraldService{node: n})
	heraldpb.RegisterNodeInternalServer(n.grpcServer, &internalService{node: n})
	n.health = newHealthServer()
	healthpb.RegisterHealthServer(n.grpcServer, n.health)
	if n.grpcLis = cfg.GRPCListener; n.grpcLis == nil {
		if n.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return nil, fmt.Errorf("server: listen grpc: %w", err)
		}
	}
	n.grpcLis = n.limits.limitConns(n.grpcLis, listenerGRPC, n.logger)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.grpcServer.Serve(n.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.logger.Error("grpc server stopped", "err", err)
		}
	}()

	if err := n.openController(controllerRejoin); err != nil {
		return nil, err
	}
	// Publish the controller to the gRPC handlers (see serving_gate.go).
	n.serving.Store(true)
	if err := n.startHTTP(); err != nil {
		return nil, err
	}
	if err := n.startAdmin(); err != nil {
		return nil, err
	}
	n.wg.Add(5)
	go n.reconcileLoop()
	go n.lag.loop()
	go n.retentionLoop()
	go n.autoTenantLoop()
	go n.healthLoop()
	n.logger.Info("node started", "grpc", cfg.GRPCAddr, "http", cfg.HTTPAddr, "admin", n.AdminAddr(), "data", cfg.DataDir)
	return n, nil
}

// openLog opens the node's Pebble log. A log found damaged (when opening,
// or by an earlier run that left the corruption marker) is moved aside and
// started empty: it is derived state, and each partition replica rebuilds
// it from its own Raft log and snapshots (raft.OpenGroup restores the
// newest snapshot into an FSM that is behind it, and Raft replays the rest).
func (n *Node) openLog() error {
	dir := filepath.Join(n.cfg.DataDir, "pebble")
	open := func() (err error) {
		n.db, err = heraldlog.Open(heraldlog.Options{Dir: dir, Logger: n.logger, Compression: n.cfg.LogCompression})
		return err
	}
	marked := false
	if _, err := os.Stat(n.corruptionMarker()); err == nil {
		marked = true
	}
	err := errors.New("damaged by an earlier run")
	if !marked {
		err = open()
	}
	if err == nil {
		return nil
	}
	if !marked && !heraldlog.IsCorruption(err) {
		return fmt.Errorf("server: open log: %w", err)
	}
	moved, qerr := heraldlog.Quarantine(dir)
	if qerr != nil && !os.IsNotExist(errors.Unwrap(qerr)) {
		return fmt.Errorf("server: open log: %w (and cannot move it aside: %v)", err, qerr)
	}
	n.logger.Error("local log is damaged; moved aside, rebuilding every partition replica from its Raft log and snapshots",
		"err", err, "moved_to", moved)
	n.metrics.logRebuilds.Inc()
	if err := open(); err != nil {
		return fmt.Errorf("server: open rebuilt log: %w", err)
	}
	if err := os.Remove(n.corruptionMarker()); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("server: remove corruption marker: %w", err)
	}
	return nil
}

func (n *Node) corruptionMarker() string { return filepath.Join(n.cfg.DataDir, "pebble.corrupt") }

// markCorrupt records that the log is damaged, for openLog on the next start.
func (n *Node) markCorrupt(err error) {
	n.logger.Error("local log is damaged; it will be rebuilt from Raft at the next start", "err", err)
	if werr := os.WriteFile(n.corruptionMarker(), []byte(err.Error()+"\n"), 0o644); werr != nil {
		n.logger.Error("cannot write the corruption marker", "err", werr)
	}
}

// grpcMessageBytesMax bounds one gRPC message: above the largest fetch
// (16 MiB) and the largest Raft entry (partition.DefaultEntryBytesMax,
// 32 MiB); an AppendEntries larger than this is split by the transport
// (raft/append_size.go), and a single entry that cannot fit is refused
// before it is proposed.
const grpcMessageBytesMax = 64 << 20

// prepareController verifies the controller's Raft state and, when it is
// damaged, waits until the controller's leader has demoted this replica
// (bounded by ctx). It returns the rejoin marker to follow, or nil.
func (n *Node) prepareController(ctx context.Context) (*heraldraft.RejoinMarker, error) {
	m, err := n.prepareGroup(controller.GroupID, controller.CheckEntry)
	if err != nil {
		return nil, fmt.Errorf("server: controller: %w", err)
	}
	if m != nil && m.Stage == heraldraft.RejoinDamaged {
		if err := n.awaitControllerDemotion(ctx, m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// openController opens the controller group; with a rejoin marker (stage
// demoted) it starts without bootstrap, as a non-voter.
func (n *Node) openController(rejoin *heraldraft.RejoinMarker) error {
	fsm, err := controller.NewFSM(controller.Config{
		AlterContract: alterContract,
		OnDamage:      func(err error) { n.markRaftDamaged(controller.GroupID, err) },
	})
	if err != nil {
		return err
	}
	tr, err := n.mux.Transport(controller.GroupID)
	if err != nil {
		return err
	}
	group, err := heraldraft.OpenGroup(heraldraft.GroupConfig{
		GroupID:   controller.GroupID,
		NodeID:    n.cfg.NodeID,
		Dir:       n.groupDir(controller.GroupID),
		FSM:       fsm,
		Transport: tr,
		Logger:    n.logger,
		Config:    n.cfg.raftConfig(),
	})
	if err != nil {
		_ = tr.Close()
		return fmt.Errorf("server: open controller: %w", err)
	}
	n.controllerFSM, n.controller = fsm, group
	if len(n.cfg.Peers) > 0 && rejoin == nil {
		var servers []hraft.Server
		for _, id := range n.cfg.sortedPeerIDs() {
			servers = append(servers, hraft.Server{Suffrage: hraft.Voter, ID: hraft.ServerID(id), Address: hraft.ServerAddress(n.cfg.Peers[id])})
		}
		if err := group.BootstrapIfNew(servers); err != nil {
			return fmt.Errorf("server: bootstrap controller: %w", err)
		}
	}
	return nil
}

// Addr is the node's gRPC address.
func (n *Node) Addr() string { return n.grpcLis.Addr().String() }

// HTTPAddr is the node's HTTP address.
func (n *Node) HTTPAddr() string { return n.httpLis.Addr().String() }

// nodes returns the cluster's nodes (id -> gRPC address) from the
// controller's configuration.
func (n *Node) nodes() map[string]string {
	out := make(map[string]string)
	f := n.controller.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return out
	}
	for _, s := range f.Configuration().Servers {
		out[string(s.ID)] = string(s.Address)
	}
	return out
}

func (n *Node) sortedNodeIDs() []string {
	nodes := n.nodes()
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// replica returns the local replica of a group, if open.
func (n *Node) replica(groupID uint64) *partition.Replica {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.replicas[groupID]
}

func (n *Node) replicasSnapshot() []*partition.Replica {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*partition.Replica, 0, len(n.mu.replicas))
	for _, r := range n.mu.replicas {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GroupID() < out[j].GroupID() })
	return out
}

// controllerLeader returns the controller leader's id and address as known here.
func (n *Node) controllerLeader() (id, addr string) {
	a, i := n.controller.Raft().LeaderWithID()
	return string(i), string(a)
}

// Close stops the node: background loops, replicas, the controller, the
// servers and storage, in that order. It is safe to call more than once.
func (n *Node) Close() {
	n.mu.Lock()
	if n.mu.closed {
		n.mu.Unlock()
		return
	}
	n.mu.closed = true
	replicas := n.mu.replicas
	n.mu.replicas = map[uint64]*partition.Replica{}
	n.mu.Unlock()

	// NOT_SERVING from here on: health checkers stop sending traffic
	// before the servers go (Shutdown makes healthLoop's updates no-ops).
	if n.health != nil {
		n.health.Shutdown()
	}
	close(n.stop)
	n.cancel()
	for _, srv := range []*http.Server{n.httpServer, n.adminServer} {
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
		}
	}
	// Stop accepting RPCs first so that no handler races the shutdown of
	// the replicas it would use; give in-flight ones a moment.
	if n.grpcServer != nil {
		done := make(chan struct{})
		go func() { n.grpcServer.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
			n.grpcServer.Stop()
			<-done
		}
	}
	n.spawnMu.Lock()
	n.spawnClosed = true
	n.spawnMu.Unlock()
	n.wg.Wait()
	if n.ws != nil {
		// Every connection has ended: their group members have left.
		n.ws.closeGroupClient()
	}
	for gid, r := range replicas {
		if err := r.Close(); err != nil {
			n.logger.Warn("closing replica", "group", gid, "err", err)
		}
	}
	if n.controller != nil {
		if err := n.controller.Close(); err != nil {
			n.logger.Warn("closing controller", "err", err)
		}
	}
	if n.mux != nil {
		_ = n.mux.Close()
	}
	if n.peers != nil {
		n.peers.close()
	}
	if n.db != nil {
		if err := n.db.Close(); err != nil {
			n.logger.Warn("closing log", "err", err)
		}
	}
	n.logger.Info("node stopped")
}
