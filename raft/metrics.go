package raft

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RPC type labels. Per-group labels are deliberately absent: a node hosts
// thousands of groups and a label per group would multiply every series.
const (
	rpcAppendEntries         = "append_entries"
	rpcHeartbeat             = "heartbeat"
	rpcAppendEntriesPipeline = "append_entries_pipeline"
	rpcRequestVote           = "request_vote"
	rpcRequestPreVote        = "request_pre_vote"
	rpcTimeoutNow            = "timeout_now"
	rpcInstallSnapshot       = "install_snapshot"
	rpcRejoinReplica         = "rejoin_replica"
	rpcCommit                = "commit"
	rpcHeartbeatBatch        = "heartbeat_batch"
)

// Values of the "outcome" label of herald_raft_commit_pushes_total.
const (
	pushSent     = "sent"     // a group's commit went to a peer in a Commit message
	pushSkipped  = "skipped"  // received, and of no use to the group's Raft
	pushDeferred = "deferred" // received before the entry it names; handed on once an append brings it
	pushApplied  = "applied"  // received and accepted by the group's Raft
	pushRefused  = "refused"  // received and refused by Raft (term or log mismatch)
)

// Values of the "side" and "direction" labels.
const (
	sideSend    = "send"
	sideReceive = "receive"
)

// transportMetrics are the Mux's Prometheus collectors, shared by all its
// transports. All methods are safe for concurrent use.
type transportMetrics struct {
	sent          *prometheus.CounterVec
	received      *prometheus.CounterVec
	errors        *prometheus.CounterVec
	unknownGroup  prometheus.Counter
	duration      *prometheus.HistogramVec
	snapshotBytes *prometheus.CounterVec
	commitPushes  *prometheus.CounterVec
	// heartbeatsCoalesced counts group heartbeats carried in Heartbeat
	// messages (rpcs_sent_total{type="heartbeat_batch"} counts the
	// messages); heartbeatBatchSize is the heartbeats per message.
	heartbeatsCoalesced *prometheus.CounterVec
	heartbeatBatchSize  *prometheus.HistogramVec
}

func newTransportMetrics() *transportMetrics {
	return &transportMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "herald", Subsystem: "raft", Name: "rpcs_sent_total",
			Help: "Raft RPCs sent to peers, by type (pipelined appends count one each).",
		}, []string{"type"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "herald", Subsystem: "raft", Name: "rpcs_received_total",
			Help: "Raft RPCs received from peers for a registered group, by type.",
		}, []string{"type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "herald", Subsystem: "raft", Name: "rpc_errors_total",
			Help: "Raft RPCs that failed, by type and side (send: this node was the caller).",
		}, []string{"type", "side"}),
		unknownGroup: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "herald", Subsystem: "raft", Name: "unknown_group_refusals_total",
			Help: "Raft RPCs refused because this node hosts no such group.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "herald", Subsystem: "raft", Name: "rpc_duration_seconds",
			Help:    "Round trip of outgoing Raft RPCs, by type.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100µs .. ~26s
		}, []string{"type"}),
		snapshotBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "herald", Subsystem: "raft", Name: "snapshot_bytes_total",
			Help: "Snapshot data bytes streamed, by direction (send, receive).",
		}, []string{"direction"}),
		commitPushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "herald", Subsystem: "raft", Name: "commit_pushes_total",
			Help: "Group commits pushed to followers as leaders apply (sent), and as received: of no use (skipped), waiting for their entry's append (deferred), accepted (applied), refused by Raft (refused).",
		}, []string{"outcome"}),
		heartbeatsCoalesced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "herald", Subsystem: "raft", Name: "heartbeats_coalesced_total",
			Help: "Group heartbeats carried in coalesced Heartbeat messages, by side (send, receive); the messages are rpcs_sent_total and rpcs_received_total of type heartbeat_batch.",
		}, []string{"side"}),
		heartbeatBatchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "herald", Subsystem: "raft", Name: "heartbeat_batch_size",
			Help:    "Group heartbeats per coalesced Heartbeat message, by side (send, receive).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 .. 1024 (heartbeatBatchMax)
		}, []string{"side"}),
	}
}

func (m *transportMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.sent, m.received, m.errors, m.unknownGroup, m.duration, m.snapshotBytes, m.commitPushes,
		m.heartbeatsCoalesced, m.heartbeatBatchSize}
}

// observeSend records one finished outgoing RPC.
func (m *transportMetrics) observeSend(rpcType string, start time.Time, err error) {
	m.sent.WithLabelValues(rpcType).Inc()
	m.duration.WithLabelValues(rpcType).Observe(time.Since(start).Seconds())
	if err != nil {
		m.errors.WithLabelValues(rpcType, sideSend).Inc()
	}
}

// observeReceive records one served incoming RPC.
func (m *transportMetrics) observeReceive(rpcType string, err error) {
	m.received.WithLabelValues(rpcType).Inc()
	if err != nil {
		m.errors.WithLabelValues(rpcType, sideReceive).Inc()
	}
}
