package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"strings"
	"time"

	hraft "github.com/hashicorp/raft"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition"
	heraldraft "github.com/heraldlog/herald/raft"
)

// Config is one node's configuration. The zero value is not usable: NodeID,
// DataDir, GRPCAddr and HTTPAddr are required; Peers is required to
// bootstrap a new cluster and ignored when DataDir already holds one.
type Config struct {
	// NodeID names this node in the cluster (n1, n2, ...). It is the Raft
	// server id of every group on the node and never changes.
	NodeID string
	// DataDir holds everything the node persists: pebble/ (the partition
	// logs) and raft/ (one raft-boltdb file and snapshot store per group).
	DataDir string
	// LogCompression is the block compression of the Pebble log's sstables
	// (log.Options.Compression): none by default; snappy or zstd for
	// compressible payloads. Changing it between starts is safe.
	LogCompression heraldlog.Compression
	// GRPCAddr is the one gRPC listen address for clients and peers; it is
	// also the address advertised to peers, so it must be reachable by them.
	GRPCAddr string
	// HTTPAddr is the public HTTP port: /metrics (without tenant series
	// when Auth is enabled), /healthz, /readyz and the WebSocket gateway.
	// pprof is served only on the admin listener (AdminAddr).
	HTTPAddr string
	// Peers maps node id to gRPC address for every initial node, this one
	// included. It bootstraps the controller group on first start.
	Peers map[string]string
	// Logger receives the node's structured logs; nil means slog.Default().
	Logger *slog.Logger
	// GRPCListener and HTTPListener, when set, are used instead of listening
	// on GRPCAddr and HTTPAddr (tests bind :0 first to learn the ports).
	GRPCListener net.Listener
	HTTPListener net.Listener
	// DialVia maps a peer's advertised gRPC address to the address this
	// node dials instead (fault injection: every peer link through a proxy
	// the test harness controls). Peers not in it are dialled directly.
	DialVia map[string]string
	// Rejoin says this node's data is gone but its cluster exists (disk
	// replaced, data wiped): every group without Raft state here rejoins
	// from its peers as a non-voter instead of being bootstrapped (see
	// rejoin_wiped.go). Groups with state are not affected.
	Rejoin bool
	// Raft tunes the snapshot and log-compaction settings of every group on
	// this node (controller and partitions); zero fields keep
	// raft.DefaultConfig's values.
	Raft RaftTuning
	// WebSocket configures the WebSocket gateway at /v1/ws on the HTTP
	// port (ws_gateway.go); zero fields take the defaults.
	WebSocket WebSocketConfig
	// Batching tunes the leader-side batcher of every partition this node
	// leads; zero fields keep partition.DefaultBatcherOptions' values.
	Batching BatchTuning
	// Limits bounds what the node holds for its callers: produce and
	// fetch bytes in flight, long polls and streams (limits.go); zero
	// fields take the defaults.
	Limits NodeLimits
	// TLS, when its files are set, serves gRPC and HTTP (wss) over TLS and
	// makes every link to a peer mutual TLS with this node's certificate
	// (security: docs/security.md). Empty: plaintext.
	TLS TLSFiles
	// ClusterSecretFile names a file holding the secret that peers present
	// to one another when the cluster runs without TLS; with TLS, peers
	// are known by their certificates instead. Either way, the Raft
	// transport and NodeInternal refuse every caller that is not a peer.
	ClusterSecretFile string
	// Auth, when its keys are set, requires a signed token on every
	// client request (gRPC and WebSocket) and checks what it allows.
	// Empty: no client credentials are checked.
	Auth AuthConfig
	// AdminAddr, when set, serves the operations endpoints that must not
	// be public (pprof, and /metrics with tenant labels) on their own
	// listener; bind it to loopback. Empty: no admin listener.
	AdminAddr string
	// AdminListener, when set, is used instead of listening on AdminAddr.
	AdminListener net.Listener
}

// TLSFiles names the PEM files of a node's TLS identity. CertFile and
// KeyFile are this node's certificate (issued by the cluster CA, naming
// the node: `herald certs node`) and key; CAFile is the cluster CA, which
// every peer's certificate, and every client certificate, must chain to.
// The files are read again when they change (rotation without restart).
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
}

// Enabled reports whether TLS is configured.
func (t TLSFiles) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" }

// AuthConfig configures the checking of client tokens.
type AuthConfig struct {
	// KeysFile names a PEM file of one or more Ed25519 public keys
	// (`herald token keygen`); a token signed by any of them is valid
	// until it expires. Several keys allow rotation. Read again when it
	// changes.
	KeysFile string
}

// Enabled reports whether client tokens are required.
func (a AuthConfig) Enabled() bool { return a.KeysFile != "" }

// BatchTuning tunes the partition batchers (partition.BatcherOptions).
type BatchTuning struct {
	// Linger is how long a batcher waits for more produce calls when its
	// batch is not full and an apply slot is free (0: send at once).
	Linger time.Duration
	// InflightMax bounds a partition's Raft applies in flight (0: 4).
	InflightMax int
}

// batcherOptions returns the batcher options of this node's partitions.
func (c *Config) batcherOptions() partition.BatcherOptions {
	o := partition.DefaultBatcherOptions()
	if c.Batching.Linger > 0 {
		o.Linger = c.Batching.Linger
	}
	if c.Batching.InflightMax > 0 {
		o.InflightMax = c.Batching.InflightMax
	}
	return o
}

// WebSocketConfig bounds the WebSocket gateway's connections
// (docs/protocol.md, "WebSocket"). Zero fields take the defaults
// (EnsureDefaults); negative ones are refused by Validate.
type WebSocketConfig struct {
	// AllowedOrigins lists the browser origins (scheme://host[:port], as
	// the Origin header spells them) allowed to connect besides the
	// node's own (same host as the request); "*" allows any. A request
	// without an Origin header (not a browser) is always allowed.
	// Default: none (same-origin only).
	AllowedOrigins []string
	// SendQueueFramesMax and SendQueueBytesMax bound the frames waiting to
	// be written to one connection: 256 frames, 4 MiB. A frame larger than
	// the byte bound goes alone into an empty queue.
	SendQueueFramesMax int
	SendQueueBytesMax  int
	// SlowConsumerTimeout is how long a full send queue may go without the
	// connection writing anything before the client is closed as a slow
	// consumer (close code 4008): 10 s.
	SlowConsumerTimeout time.Duration
	// WriteTimeout bounds one frame's write to the socket: 10 s.
	WriteTimeout time.Duration
	// SocketSendBufferBytes, when set, fixes each connection's socket send
	// buffer (SO_SNDBUF) instead of the kernel's autotuning (which on
	// Linux lets it grow to net.ipv4.tcp_wmem's maximum, 4 MiB by
	// default): it bounds the kernel memory of a client that does not
	// read, and lets its send queue fill, and the client be closed, that
	// much sooner. Default 0: the kernel's.
	SocketSendBufferBytes int
	// PingInterval is how often the server pings; a connection that sends
	// nothing (not even a pong) for PongTimeout is closed: 20 s and 60 s.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// ReadBytesMax bounds one client frame: 4 MiB (a publish's payload is
	// base64, a third larger than its bytes). A larger frame closes the
	// connection with 1009.
	ReadBytesMax int64
	// SubscriptionsMax bounds the subscriptions of one connection: 256.
	SubscriptionsMax int
	// PublishesInflightMax bounds one connection's unanswered publishes:
	// 64; the server reads no more frames from it meanwhile.
	PublishesInflightMax int
	// PublishPauseMax bounds one pause of a connection's reader after a
	// throttled publish (the ack's throttle_ms, or a THROTTLED or
	// QUEUE_FULL refusal's retry_after_ms): 5 s. It must stay below
	// PongTimeout, which the pause does not count against.
	PublishPauseMax time.Duration
}

// EnsureDefaults fills the zero fields with the defaults.
func (w *WebSocketConfig) EnsureDefaults() {
	if w.SendQueueFramesMax == 0 {
		w.SendQueueFramesMax = 256
	}
	if w.SendQueueBytesMax == 0 {
		w.SendQueueBytesMax = 4 << 20
	}
	if w.SlowConsumerTimeout == 0 {
		w.SlowConsumerTimeout = 10 * time.Second
	}
	if w.WriteTimeout == 0 {
		w.WriteTimeout = 10 * time.Second
	}
	if w.PingInterval == 0 {
		w.PingInterval = 20 * time.Second
	}
	if w.PongTimeout == 0 {
		w.PongTimeout = 60 * time.Second
	}
	if w.ReadBytesMax == 0 {
		w.ReadBytesMax = 4 << 20
	}
	if w.SubscriptionsMax == 0 {
		w.SubscriptionsMax = 256
	}
	if w.PublishesInflightMax == 0 {
		w.PublishesInflightMax = 64
	}
	if w.PublishPauseMax == 0 {
		w.PublishPauseMax = 5 * time.Second
	}
}

// Validate reports every problem with w (zero fields are defaults).
func (w *WebSocketConfig) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"send queue frames", int64(w.SendQueueFramesMax)}, {"send queue bytes", int64(w.SendQueueBytesMax)},
		{"slow consumer timeout", int64(w.SlowConsumerTimeout)}, {"write timeout", int64(w.WriteTimeout)},
		{"ping interval", int64(w.PingInterval)}, {"pong timeout", int64(w.PongTimeout)},
		{"read bytes", w.ReadBytesMax}, {"subscriptions", int64(w.SubscriptionsMax)},
		{"publishes in flight", int64(w.PublishesInflightMax)}, {"socket send buffer", int64(w.SocketSendBufferBytes)},
		{"publish pause", int64(w.PublishPauseMax)},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("server: websocket %s is negative", f.name))
		}
	}
	d := *w
	d.EnsureDefaults()
	if d.PongTimeout <= d.PingInterval {
		errs = append(errs, fmt.Errorf("server: websocket pong timeout %s must exceed the ping interval %s", d.PongTimeout, d.PingInterval))
	}
	if d.PongTimeout <= d.PublishPauseMax {
		errs = append(errs, fmt.Errorf("server: websocket pong timeout %s must exceed the publish pause %s", d.PongTimeout, d.PublishPauseMax))
	}
	for _, o := range w.AllowedOrigins {
		if o == "*" {
			continue
		}
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("server: websocket allowed origin %q: want scheme://host[:port] or *", o))
		}
	}
	return errors.Join(errs...)
}

// RaftTuning overrides hashicorp/raft's snapshot settings. Production keeps
// the defaults; the fault-injection suite lowers them so that snapshots,
// log compaction and InstallSnapshot happen many times in a short run.
type RaftTuning struct {
	// SnapshotThreshold is how many entries past the last snapshot make a
	// group take a snapshot (checked every SnapshotInterval).
	SnapshotThreshold uint64
	// SnapshotInterval is how often a group checks SnapshotThreshold
	// (hashicorp/raft waits a random time between one and two intervals).
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log, so
	// that a follower at most that far behind catches up from the log
	// rather than by InstallSnapshot.
	TrailingLogs uint64
	// NoCommitPush stops this node's leaders from pushing commit indexes
	// to followers as they apply (raft/commit_push.go); followers then
	// learn them with the next append, up to CommitTimeout (1–2 s)
	// later. For measuring the push; off by default.
	NoCommitPush bool
	// VerifyFull makes every start read each group's stored Raft state
	// whole (raft.VerifyStore), even a group whose files are unchanged
	// since its last clean shutdown, which is otherwise only compared with
	// the record that shutdown left (raft/clean_shutdown.go). For after a
	// suspected disk fault; off by default.
	VerifyFull bool
}

// raftConfig returns the Raft configuration of this node's groups: nil
// (raft.DefaultConfig) when nothing is tuned.
func (c *Config) raftConfig() *hraft.Config {
	t := c.Raft
	t.NoCommitPush = false // a transport setting, not Raft's
	t.VerifyFull = false   // a start-up setting, not Raft's
	if t == (RaftTuning{}) {
		return nil
	}
	conf := heraldraft.DefaultConfig(c.NodeID)
	if t.SnapshotThreshold > 0 {
		conf.SnapshotThreshold = t.SnapshotThreshold
	}
	if t.SnapshotInterval > 0 {
		conf.SnapshotInterval = t.SnapshotInterval
	}
	if t.TrailingLogs > 0 {
		conf.TrailingLogs = t.TrailingLogs
	}
	return conf
}

// dialer returns a context dialer that applies DialVia.
func (c *Config) dialer() func(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	via := c.DialVia
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if to, ok := via[addr]; ok {
			addr = to
		}
		return d.DialContext(ctx, "tcp", addr)
	}
}

// ParsePeers parses "n1=127.0.0.1:7701,n2=127.0.0.1:7702".
func ParsePeers(s string) (map[string]string, error) {
	peers := make(map[string]string)
	if strings.TrimSpace(s) == "" {
		return peers, nil
	}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("server: bad peer %q: want id=host:port", part)
		}
		if _, dup := peers[id]; dup {
			return nil, fmt.Errorf("server: peer %q listed twice", id)
		}
		peers[id] = addr
	}
	return peers, nil
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("server: node id is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("server: data dir is required"))
	}
	for name, addr := range map[string]string{"grpc": c.GRPCAddr, "http": c.HTTPAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("server: %s address %q: %w", name, addr, err))
		}
	}
	if c.AdminAddr != "" && c.AdminListener == nil {
		if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
			errs = append(errs, fmt.Errorf("server: admin address %q: %w", c.AdminAddr, err))
		}
	}
	if len(c.Peers) > 0 {
		if addr, ok := c.Peers[c.NodeID]; !ok {
			errs = append(errs, fmt.Errorf("server: peers do not include this node %q", c.NodeID))
		} else if addr != c.GRPCAddr {
			errs = append(errs, fmt.Errorf("server: peers give %s the address %s but --grpc is %s", c.NodeID, addr, c.GRPCAddr))
		}
	}
	if c.Raft.SnapshotInterval < 0 {
		errs = append(errs, fmt.Errorf("server: raft snapshot interval %s is negative", c.Raft.SnapshotInterval))
	} else if conf := c.raftConfig(); conf != nil && c.NodeID != "" {
		if err := hraft.ValidateConfig(conf); err != nil {
			errs = append(errs, fmt.Errorf("server: raft tuning: %w", err))
		}
	}
	if c.Auth.Enabled() && !c.TLS.Enabled() && c.ClusterSecretFile == "" {
		// Tokens without peer authentication protect nothing: the Raft
		// transport and NodeInternal would stay open to any caller.
		errs = append(errs, errors.New("server: auth keys need TLS or a cluster secret file (peers must authenticate, or Raft stays open)"))
	}
	if err := c.WebSocket.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.TLS.Enabled() && (c.TLS.CertFile == "" || c.TLS.KeyFile == "" || c.TLS.CAFile == "") {
		errs = append(errs, errors.New("server: TLS needs all three files: the node certificate, its key and the cluster CA"))
	}
	return errors.Join(errs...)
}

// sortedPeerIDs returns the peer ids in a stable order.
func (c *Config) sortedPeerIDs() []string {
	ids := make([]string, 0, len(c.Peers))
	for id := range c.Peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
