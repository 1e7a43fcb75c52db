package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/heraldlog/herald/server"
)

// newServeCommand runs one node until SIGINT or SIGTERM.
func newServeCommand() *cobra.Command {
	var (
		cfg                 server.Config
		peers               string
		dialVia             string
		wsOrigins           string
		logFormat, logLevel string
		limits              nodeLimitFlags
		insecure            bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one Herald node until SIGINT or SIGTERM",
		Long: `Run one Herald node. Logs go to stderr (--log-format text|json).

Peers name every initial node, this one included, and bootstrap a new
cluster; they are ignored when --data already holds one.

--rejoin is for a node of an existing cluster whose data directory was
wiped or replaced: every group without Raft state on this node rejoins from
its peers (as a non-voter until caught up) instead of being bootstrapped
with an empty log, which could lose committed events. Groups that have
state are not affected. See docs/operations.md.

The Raft transport and the node-internal RPCs share the gRPC port with
clients and are served only to peers. Peers are known by their TLS
certificates (--tls-cert, --tls-key, --tls-ca: a node certificate from the
cluster CA, see "herald certs"; clients then connect over TLS and wss too),
or, without TLS, by a shared secret (--cluster-secret-file, at least 32
bytes, the same file on every node). serve refuses to start with neither
unless --insecure is given, which leaves those RPCs open to anyone who
reaches --grpc.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), logFormat, logLevel)
			if err != nil {
				return err
			}
			parsed, err := server.ParsePeers(peers)
			if err != nil {
				return usageError{err}
			}
			cfg.Peers = parsed
			if cfg.DialVia, err = server.ParsePeers(dialVia); err != nil {
				return usageError{fmt.Errorf("--dial-via: %w", err)}
			}
			for _, o := range strings.Split(wsOrigins, ",") {
				if o = strings.TrimSpace(o); o != "" {
					cfg.WebSocket.AllowedOrigins = append(cfg.WebSocket.AllowedOrigins, o)
				}
			}
			cfg.Logger = logger
			limits.apply(&cfg)
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			if !cfg.TLS.Enabled() && cfg.ClusterSecretFile == "" && !insecure {
				return usagef("serve: nothing tells peers from clients, so anyone who reaches --grpc could call the Raft transport and move leaders: " +
					"give --tls-cert, --tls-key and --tls-ca (herald certs), or --cluster-secret-file, or --insecure to run that way anyway")
			}
			return server.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.NodeID, "id", "", "node id, e.g. n1 (required)")
	f.StringVar(&cfg.DataDir, "data", "", "data directory (required)")
	f.StringVar(&cfg.GRPCAddr, "grpc", "", "gRPC listen and advertised address, host:port (required)")
	f.StringVar(&cfg.HTTPAddr, "http", "", "HTTP address for /metrics, health and the WebSocket gateway (/v1/ws), host:port (required)")
	f.StringVar(&cfg.AdminAddr, "admin-addr", "", "admin listener for pprof, the full /metrics (with tenant series), /healthz and /readyz, host:port; plaintext and without credentials: bind it to loopback (default: none)")
	f.StringVar(&peers, "peers", "", "initial nodes: n1=host:port,n2=host:port,...")
	f.BoolVar(&cfg.Rejoin, "rejoin", false, "this node's data directory was wiped: rejoin every group without state from its peers, never bootstrap it")
	f.StringVar(&dialVia, "dial-via", "", "fault injection: dial peer ADDR through PROXY instead, as ADDR=PROXY,...")
	_ = f.MarkHidden("dial-via")
	f.Uint64Var(&cfg.Raft.SnapshotThreshold, "raft-snapshot-threshold", 0, "entries past the last snapshot that make a group snapshot (0: the default, 8192)")
	f.DurationVar(&cfg.Raft.SnapshotInterval, "raft-snapshot-interval", 0, "how often a group checks --raft-snapshot-threshold (0: the default, 120s)")
	f.DurationVar(&cfg.Batching.Linger, "batch-linger", 0, "how long a partition leader's batcher waits for more produce calls before proposing a batch that is not full (0: at once)")
	f.IntVar(&cfg.Batching.InflightMax, "batch-inflight", 0, "Raft applies in flight per partition leader (0: the default, 4)")
	f.Var(compressionFlag{&cfg.LogCompression}, "log-compression", "block compression of the Pebble log: none (default; payloads that are compressed, encrypted or random), snappy or zstd (compressible payloads such as JSON: less disk, more CPU); safe to change between starts")
	f.BoolVar(&cfg.Raft.VerifyFull, "raft-verify-full", false, "read every group's stored Raft state whole before opening it, even one unchanged since its last clean shutdown (after a suspected disk fault)")
	f.BoolVar(&cfg.Raft.NoCommitPush, "raft-no-commit-push", false, "do not push commit indexes to followers as leaders apply (followers learn them with the next append or up to CommitTimeout, 1-2 s, later; for measuring the push)")
	f.Uint64Var(&cfg.Raft.TrailingLogs, "raft-trailing-logs", 0, "entries a snapshot leaves in the log for lagging followers (0: the default, 10240)")
	f.StringVar(&cfg.Auth.KeysFile, "auth-keys", "", "PEM file of the Ed25519 public keys client tokens are checked with (herald token keygen's signing.pub; several for rotation; read again when it changes); empty: no client credentials checked. Needs peer authentication (TLS or a cluster secret)")
	f.StringVar(&wsOrigins, "ws-allowed-origins", "", "browser origins allowed on the WebSocket gateway besides the node's own, as scheme://host[:port],... or * for any (default: same origin only; clients without an Origin header are always allowed)")
	f.IntVar(&cfg.WebSocket.SendQueueFramesMax, "ws-send-queue-frames", 0, "frames a WebSocket connection may have waiting to be written (0: the default, 256)")
	f.IntVar(&cfg.WebSocket.SendQueueBytesMax, "ws-send-queue-bytes", 0, "bytes a WebSocket connection may have waiting to be written (0: the default, 4 MiB)")
	f.DurationVar(&cfg.WebSocket.SlowConsumerTimeout, "ws-slow-consumer-timeout", 0, "how long a WebSocket client's full send queue may go unread before it is closed with 4008 (0: the default, 10s)")
	f.Int64Var(&cfg.WebSocket.ReadBytesMax, "ws-read-bytes-max", 0, "largest WebSocket frame a client may send; larger closes the connection with 1009 (0: the default, 4 MiB)")
	f.IntVar(&cfg.WebSocket.SocketSendBufferBytes, "ws-socket-send-buffer", 0, "fix each WebSocket connection's socket send buffer to this many bytes (0: the kernel's autotuning)")
	f.StringVar(&cfg.TLS.CertFile, "tls-cert", "", "this node's certificate (PEM, from the cluster CA, naming the node: herald certs node); with --tls-key and --tls-ca, gRPC, HTTP (wss) and every peer link use TLS; the files are read again when they change")
	f.StringVar(&cfg.TLS.KeyFile, "tls-key", "", "the key of --tls-cert (PEM)")
	f.StringVar(&cfg.TLS.CAFile, "tls-ca", "", "the cluster CA (PEM): peers' and client certificates must chain to it")
	f.StringVar(&cfg.ClusterSecretFile, "cluster-secret-file", "", "without TLS: a file holding the secret peers present to one another (at least 32 bytes; the same on every node)")
	f.BoolVar(&insecure, "insecure", false, "start without TLS or a cluster secret: the Raft transport and node-internal RPCs are open to anyone who reaches --grpc")
	limits.register(f)
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// newLogger returns an slog logger writing format (text or json) at level
// to w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usageError{fmt.Errorf("--log-format %q: want text or json", format)}
	}
}
