package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
)

// Defaults applied by MuxOptions.EnsureDefaults to fields left at zero.
const (
	// DefaultMaxMessageBytes bounds one gRPC message of the raft service in
	// both directions. One entry may be up to MaxMessageBytes less 64 KiB of
	// framing (Transport.EntryBytesMax); an AppendEntries whose entries
	// together exceed it is sent as its longest prefix that fits.
	DefaultMaxMessageBytes = 64 << 20
	// DefaultRPCTimeout bounds one unary RPC (append, vote, pre-vote,
	// timeout-now) and each pipelined append, send to response.
	DefaultRPCTimeout = 10 * time.Second
	// DefaultSnapshotTimeout bounds moving one snapshot's bytes: from the
	// start of an InstallSnapshot stream to its last byte.
	DefaultSnapshotTimeout = 10 * time.Minute
	// DefaultSnapshotRestoreTimeout bounds waiting, after a snapshot's last
	// byte, for the receiver to install it (restore it into its FSM). A
	// restore that takes longer is sent again from scratch, so this is
	// generous: a partition restore writes its whole image to Pebble.
	DefaultSnapshotRestoreTimeout = time.Hour
	// DefaultSnapshotChunkBytes is the data carried by one InstallSnapshot
	// message.
	DefaultSnapshotChunkBytes = 1 << 20
	// DefaultPipelineInFlightMax bounds the appends one pipeline has sent
	// without a response yet.
	DefaultPipelineInFlightMax = 128
	// DefaultKeepaliveTime is how long a peer connection may be idle before the
	// client pings it; a silently dead link (partition that drops packets) is
	// then noticed after KeepaliveTime+KeepaliveTimeout and redialled.
	DefaultKeepaliveTime = 10 * time.Second
	// DefaultKeepaliveTimeout is how long a keepalive ping may go unanswered.
	DefaultKeepaliveTimeout = 5 * time.Second
	// DefaultReconnectDelayMax caps gRPC's reconnect backoff, so a healed
	// link is used again within about this long (gRPC's own default is 120 s,
	// far longer than a Raft election).
	DefaultReconnectDelayMax = 2 * time.Second
	// DefaultHeartbeatLinger is how long a peer's heartbeater waits for
	// more groups' heartbeats before it sends a Heartbeat message: each
	// group heartbeats every 100–200 ms (DefaultConfig), so 10 ms delays a
	// heartbeat by a tenth of its interval at most, well inside the leader
	// lease, and caps a peer's Heartbeat messages at about 100 a second
	// whatever the number of groups.
	DefaultHeartbeatLinger = 10 * time.Millisecond

	// keepaliveTimeMin is the smallest client ping interval the servers
	// configured by ServerOptions accept; a faster client would be sent
	// GOAWAY ("too_many_pings").
	keepaliveTimeMin = 5 * time.Second
	// snapshotChunkOverheadBytes is headroom for the protobuf framing of a
	// chunk within MaxMessageBytes.
	snapshotChunkOverheadBytes = 1 << 10
)

// MuxOptions configures a Mux. Zero fields take the defaults above
// (EnsureDefaults); Validate reports every remaining problem at once.
type MuxOptions struct {
	// LocalAddr is this node's advertised gRPC address: the
	// hraft.ServerAddress of every local group. Required.
	LocalAddr string
	// Logger receives the transport's own logs. Default: slog.Default().
	Logger *slog.Logger
	// DialOptions are appended to the options the Mux dials peers with.
	// Default: insecure transport credentials. A grpc.WithContextDialer here
	// replaces how peers are reached (tests use it to cut links).
	DialOptions []grpc.DialOption
	// MaxMessageBytes bounds one message of the raft service, sent or
	// received. Default DefaultMaxMessageBytes. The node's grpc.Server must
	// use ServerOptions(MaxMessageBytes).
	MaxMessageBytes int
	// RPCTimeout bounds one unary RPC and each pipelined append, on both the
	// sending side and the receiving side (waiting for Raft to answer).
	RPCTimeout time.Duration
	// SnapshotTimeout bounds the transfer of one snapshot (the stream up to
	// its last byte), on both sides.
	SnapshotTimeout time.Duration
	// SnapshotRestoreTimeout bounds, on both sides, the wait after a
	// snapshot's last byte for the receiver's Raft to install it. It is
	// apart from SnapshotTimeout because giving up on a restore still in
	// progress makes the leader send the whole snapshot again, and the
	// follower restore it again: a restore longer than the bound would be
	// retried from scratch forever. A dead peer is noticed earlier, by the
	// connection's keepalive.
	SnapshotRestoreTimeout time.Duration
	// SnapshotChunkBytes is the data per InstallSnapshot message.
	SnapshotChunkBytes int
	// PipelineInFlightMax bounds the unanswered appends of one pipeline; at
	// least 2 (one in flight would be no pipeline at all).
	PipelineInFlightMax int
	// KeepaliveTime and KeepaliveTimeout configure client pings on every peer
	// connection. KeepaliveTime must be at least 5 s (the servers'
	// enforcement policy set by ServerOptions).
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// ReconnectDelayMax caps the backoff between dials of an unreachable peer.
	ReconnectDelayMax time.Duration
	// NoCommitPush stops this node's leaders from pushing commit indexes to
	// followers (commit_push.go); followers then learn them with the next
	// append, up to CommitTimeout later. Pushes received are still used.
	// For measuring what the push gives; off by default.
	NoCommitPush bool
	// HeartbeatLinger is how long heartbeats wait for others to the same
	// peer to share their message (heartbeat.go). Default
	// DefaultHeartbeatLinger; below RPCTimeout.
	HeartbeatLinger time.Duration
	// NoHeartbeatCoalescing makes this node send one AppendEntries per
	// heartbeat, as nodes without the Heartbeat method do. Coalesced
	// heartbeats received are still served. For measuring; off by default.
	NoHeartbeatCoalescing bool
}

// EnsureDefaults fills zero fields with their defaults and returns o.
func (o *MuxOptions) EnsureDefaults() *MuxOptions {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.RPCTimeout == 0 {
		o.RPCTimeout = DefaultRPCTimeout
	}
	if o.SnapshotTimeout == 0 {
		o.SnapshotTimeout = DefaultSnapshotTimeout
	}
	if o.SnapshotRestoreTimeout == 0 {
		o.SnapshotRestoreTimeout = DefaultSnapshotRestoreTimeout
	}
	if o.SnapshotChunkBytes == 0 {
		o.SnapshotChunkBytes = DefaultSnapshotChunkBytes
	}
	if o.PipelineInFlightMax == 0 {
		o.PipelineInFlightMax = DefaultPipelineInFlightMax
	}
	if o.KeepaliveTime == 0 {
		o.KeepaliveTime = DefaultKeepaliveTime
	}
	if o.KeepaliveTimeout == 0 {
		o.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if o.ReconnectDelayMax == 0 {
		o.ReconnectDelayMax = DefaultReconnectDelayMax
	}
	if o.HeartbeatLinger == 0 {
		o.HeartbeatLinger = DefaultHeartbeatLinger
	}
	return o
}

// Validate reports every problem with o at once, each wrapping
// ErrInvalidOptions. Call it after EnsureDefaults.
func (o *MuxOptions) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: MuxOptions."+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if o.LocalAddr == "" {
		bad("LocalAddr is required")
	}
	if o.MaxMessageBytes <= appendFramingBytesMax {
		bad("MaxMessageBytes %d must exceed the %d bytes of AppendEntries framing", o.MaxMessageBytes, appendFramingBytesMax)
	}
	if o.RPCTimeout <= 0 {
		bad("RPCTimeout %s must be positive", o.RPCTimeout)
	}
	if o.SnapshotTimeout < o.RPCTimeout {
		bad("SnapshotTimeout %s must be at least RPCTimeout %s", o.SnapshotTimeout, o.RPCTimeout)
	}
	if o.SnapshotRestoreTimeout < o.RPCTimeout {
		bad("SnapshotRestoreTimeout %s must be at least RPCTimeout %s", o.SnapshotRestoreTimeout, o.RPCTimeout)
	}
	if o.SnapshotChunkBytes <= 0 {
		bad("SnapshotChunkBytes %d must be positive", o.SnapshotChunkBytes)
	} else if o.SnapshotChunkBytes > o.MaxMessageBytes-snapshotChunkOverheadBytes {
		bad("SnapshotChunkBytes %d must be at most MaxMessageBytes %d minus %d bytes of framing",
			o.SnapshotChunkBytes, o.MaxMessageBytes, snapshotChunkOverheadBytes)
	}
	if o.PipelineInFlightMax < 2 {
		bad("PipelineInFlightMax %d must be at least 2", o.PipelineInFlightMax)
	}
	if o.KeepaliveTime < keepaliveTimeMin {
		bad("KeepaliveTime %s must be at least %s (the servers' keepalive policy)", o.KeepaliveTime, keepaliveTimeMin)
	}
	if o.KeepaliveTimeout <= 0 {
		bad("KeepaliveTimeout %s must be positive", o.KeepaliveTimeout)
	}
	if o.ReconnectDelayMax <= 0 {
		bad("ReconnectDelayMax %s must be positive", o.ReconnectDelayMax)
	}
	if o.HeartbeatLinger <= 0 || o.HeartbeatLinger >= o.RPCTimeout {
		bad("HeartbeatLinger %s must be positive and below RPCTimeout %s", o.HeartbeatLinger, o.RPCTimeout)
	}
	return errors.Join(errs...)
}
