package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMuxOptionsDefaultsAreValid(t *testing.T) {
	o := MuxOptions{LocalAddr: "127.0.0.1:1"}
	o.EnsureDefaults()
	require.NoError(t, o.Validate())
	require.Equal(t, DefaultMaxMessageBytes, o.MaxMessageBytes)
	require.Equal(t, DefaultPipelineInFlightMax, o.PipelineInFlightMax)
	require.Equal(t, DefaultHeartbeatLinger, o.HeartbeatLinger)
	require.NotNil(t, o.Logger)
}

func TestMuxOptionsValidateReportsEveryProblem(t *testing.T) {
	o := MuxOptions{
		MaxMessageBytes:        1 << 20,
		SnapshotChunkBytes:     1 << 20, // no room for framing
		RPCTimeout:             time.Minute,
		SnapshotTimeout:        time.Second, // below RPCTimeout
		SnapshotRestoreTimeout: time.Second, // below RPCTimeout
		PipelineInFlightMax:    1,
		KeepaliveTime:          time.Second, // below the servers' policy
		HeartbeatLinger:        time.Hour,   // above RPCTimeout
	}
	o.EnsureDefaults()
	err := o.Validate()
	require.ErrorIs(t, err, ErrInvalidOptions)
	for _, want := range []string{"LocalAddr", "SnapshotChunkBytes", "SnapshotTimeout", "SnapshotRestoreTimeout", "PipelineInFlightMax", "KeepaliveTime", "HeartbeatLinger"} {
		require.ErrorContains(t, err, want)
	}
	_, err = NewMux(o)
	require.ErrorIs(t, err, ErrInvalidOptions)
}

func TestMuxOptionsValidateLeavesRoomForAnEntry(t *testing.T) {
	o := MuxOptions{LocalAddr: "127.0.0.1:1", MaxMessageBytes: appendFramingBytesMax, SnapshotChunkBytes: 1 << 10}
	o.EnsureDefaults()
	require.ErrorContains(t, o.Validate(), "AppendEntries framing")
}

func TestErrorsMapToOneStatusCodeEach(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("x: %w", ErrUnknownGroup), codes.NotFound},
		{fmt.Errorf("x: %w", ErrTransportClosed), codes.Unavailable},
		{ErrMuxClosed, codes.Unavailable},
		{fmt.Errorf("x: %w", ErrSnapshotSize), codes.OutOfRange},
		{fmt.Errorf("x: %w", ErrProtocol), codes.InvalidArgument},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{errors.New("raft said no"), codes.Unknown},
		{status.Error(codes.ResourceExhausted, "as is"), codes.ResourceExhausted},
	} {
		st := toStatus(tc.err)
		require.Equal(t, tc.code, status.Code(st), "%v", tc.err)
		// And back: the sender's RemoteError matches the same sentinel.
		remote := fromStatus("M", "peer:1", 3, st)
		for _, sentinel := range []error{ErrUnknownGroup, ErrSnapshotSize, ErrProtocol} {
			if errors.Is(tc.err, sentinel) {
				require.ErrorIs(t, remote, sentinel)
			}
		}
	}
	require.NoError(t, toStatus(nil))
	require.NoError(t, fromStatus("M", "p", 1, nil))
	require.ErrorIs(t, fromStatus("M", "p", 1, ErrSnapshotSize), ErrSnapshotSize)
}

func TestCollectorsRegisterAndReportTraffic(t *testing.T) {
	p := newTransportPair(t, 4, nil)
	p.receiver.SetHeartbeatHandler(func(rpc hraft.RPC) { rpc.Respond(&hraft.AppendEntriesResponse{Success: true}, nil) })
	require.NoError(t, p.sender.AppendEntries("b", p.target(), heartbeatRequest(), &hraft.AppendEntriesResponse{}))

	reg := prometheus.NewRegistry()
	for _, c := range p.senderNode.mux.Collectors() {
		require.NoError(t, reg.Register(c))
	}
	families, err := reg.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	require.True(t, names["herald_raft_rpcs_sent_total"], "%v", names)
	require.True(t, names["herald_raft_rpc_duration_seconds"], "%v", names)
	require.True(t, names["herald_raft_heartbeats_coalesced_total"], "%v", names)
	require.True(t, names["herald_raft_heartbeat_batch_size"], "%v", names)
	// The heartbeat went in a coalesced Heartbeat message.
	require.Equal(t, 1.0, counterValue(p.senderNode.mux.metrics.sent.WithLabelValues(rpcHeartbeatBatch)))
	require.Equal(t, 1.0, counterValue(p.senderNode.mux.metrics.heartbeatsCoalesced.WithLabelValues(sideSend)))
	require.Zero(t, counterValue(p.senderNode.mux.metrics.sent.WithLabelValues(rpcHeartbeat)))
}

func TestNewHCLoggerDefaultsToInfo(t *testing.T) {
	var buf bytes.Buffer
	l := NewHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "raft")
	l.Debug("not at INFO")
	l.Log(hclog.Info, "at INFO", "k", "v")
	require.NotContains(t, buf.String(), "not at INFO")
	require.Contains(t, buf.String(), "msg=\"at INFO\" logger=raft k=v")
}
