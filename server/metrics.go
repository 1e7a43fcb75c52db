package server

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// nodeMetrics are the node's own Prometheus metrics.
type nodeMetrics struct {
	rpcs            *prometheus.CounterVec
	rpcSeconds      *prometheus.HistogramVec
	producedEvents  *prometheus.CounterVec
	fetchedEvents   *prometheus.CounterVec
	forwarded       *prometheus.CounterVec
	retainedTrims   *prometheus.CounterVec
	retainedRecords *prometheus.CounterVec
	duplicates      *prometheus.CounterVec
	logRebuilds     prometheus.Counter
	rejoins         *prometheus.CounterVec
	rejoining       prometheus.Gauge
	startupChecks   *prometheus.CounterVec
	reconciles      prometheus.Counter
	refusedStarting prometheus.Counter
	fetchBehind     prometheus.Counter
	fetchCatchUps   *prometheus.CounterVec
	groupsRemoved   prometheus.Counter
	// Contract fencing (contract_fence.go).
	contractRechecks prometheus.Counter
	contractFences   *prometheus.CounterVec
	// Subscriptions (service_subscribe.go).
	subscriptions       prometheus.Gauge
	subscribeEvents     *prometheus.CounterVec
	subscribeReads      *prometheus.CounterVec
	subscribeHeartbeats prometheus.Counter
	// WebSocket gateway (ws_gateway.go).
	wsConnections prometheus.Gauge
	wsMessages    *prometheus.CounterVec
	wsCloses      *prometheus.CounterVec
	wsQueueBytes  prometheus.Gauge
	wsQueueDrops  *prometheus.CounterVec
	wsRefused     *prometheus.CounterVec
	// wsPublishPauses counts the pauses of connection readers after a
	// throttled publish.
	wsPublishPauses prometheus.Counter
	// wsHubSubscriptions counts the WebSocket subscriptions served by
	// their tail's hub (caught up, no goroutine of their own).
	wsHubSubscriptions prometheus.Gauge
	// Consumer group consumption (group_consume.go).
	groupConsume *groupConsumeMetrics
	// Consumer groups over WebSocket (ws_group.go).
	wsGroup    *wsGroupMetrics
	groupMarks *groupMarkMetrics
}

func newNodeMetrics() *nodeMetrics {
	return &nodeMetrics{
		groupConsume: newGroupConsumeMetrics(),
		wsGroup:      newWSGroupMetrics(),
		groupMarks:   newGroupMarkMetrics(),
		wsConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_ws_connections_open",
			Help: "WebSocket connections open on this node.",
		}),
		wsMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ws_messages_total",
			Help: "WebSocket frames by direction (in: from clients, out: to clients) and type (invalid: a client frame that is not JSON of a known type).",
		}, []string{"direction", "type"}),
		wsCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ws_closes_total",
			Help: "WebSocket connections ended, by close code (1006: the socket broke or went silent; 4008: slow consumer).",
		}, []string{"code"}),
		wsQueueBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_ws_send_queue_bytes",
			Help: "Bytes waiting in the send queues of this node's WebSocket connections.",
		}),
		wsQueueDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ws_send_queue_drops_total",
			Help: "WebSocket frames not sent: heartbeats skipped while a send queue was full (heartbeat), frames discarded when a slow consumer was closed (slow_consumer).",
		}, []string{"reason"}),
		wsHubSubscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_ws_hub_subscriptions",
			Help: "WebSocket subscriptions at the live edge, served by their tail's hub without a goroutine of their own (the others read their backlog in their own goroutine).",
		}),
		wsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ws_handshakes_refused_total",
			Help: "WebSocket upgrades refused, by reason (origin: not an allowed origin; handshake: not a valid WebSocket request; stopping: the node is stopping; auth: no valid token, on a node that checks credentials).",
		}, []string{"reason"}),
		wsPublishPauses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_ws_publish_pauses_total",
			Help: "Pauses of a WebSocket connection's reader after a throttled publish (ack throttle_ms, or a THROTTLED or QUEUE_FULL refusal): the client's frames wait in its socket.",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_subscriptions_active",
			Help: "Subscriptions being served by this node (gRPC Subscribe streams and WebSocket subscriptions).",
		}),
		subscribeEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_subscribe_events_total",
			Help: "Events sent on Subscribe streams by this node, by topic.",
		}, []string{"topic"}),
		subscribeReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_subscribe_reads_total",
			Help: "Pages a subscription took: from the partition's shared tail (tail) or read on its own behind it (own); behind: a read found the replica's log ending before the subscription's position (a snapshot being restored) and waited.",
		}, []string{"source"}),
		subscribeHeartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_subscribe_heartbeats_total",
			Help: "Heartbeats sent on idle Subscribe streams.",
		}),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_rpc_requests_total",
			Help: "Unary gRPC requests served, by method and status code.",
		}, []string{"method", "code"}),
		rpcSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_rpc_duration_seconds",
			Help:    "Unary gRPC request duration, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}, []string{"method"}),
		producedEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_produced_events_total",
			Help: "Events acknowledged to producers by this node, by topic.",
		}, []string{"topic"}),
		fetchedEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_fetched_events_total",
			Help: "Events returned by fetches served from this node's replicas, by topic.",
		}, []string{"topic"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_forwarded_requests_total",
			Help: "Requests this node forwarded to a leader or replica, by method.",
		}, []string{"method"}),
		retainedTrims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_retention_trims_total",
			Help: "Retention truncations proposed by partitions this node leads, by topic.",
		}, []string{"topic"}),
		retainedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_retention_removed_events_total",
			Help: "Events removed by retention on partitions this node leads, by topic.",
		}, []string{"topic"}),
		logRebuilds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_log_rebuilds_total",
			Help: "Times this process found its Pebble log damaged at start and rebuilt it from Raft.",
		}),
		rejoins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_raft_rejoins_total",
			Help: "Rejoins of group replicas whose Raft state was damaged, by stage reached in this process: started (damage found or a rejoin resumed), demoted (the leader made it a non-voter), promoted (a voter again; the rejoin is over).",
		}, []string{"stage"}),
		rejoining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_raft_rejoining_groups",
			Help: "Group replicas on this node rejoining from their peers (waiting for demotion, or catching up as non-voters).",
		}),
		startupChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_raft_startup_checks_total",
			Help: "Group replicas checked before opening, by check: full (the stored Raft state read whole: after a crash, a change, or --raft-verify-full) or unchanged (files matched the record of their last clean shutdown).",
		}, []string{"check"}),
		refusedStarting: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_rpcs_refused_starting_total",
			Help: "Public and node-internal calls refused (UNAVAILABLE, retryable) because the node was still starting.",
		}),
		fetchBehind: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_fetch_replica_behind_total",
			Help: "Fetches past this follower's high watermark (offsets it has not applied yet), passed to another replica instead of answered out of range.",
		}),
		fetchCatchUps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_fetch_leader_catchups_total",
			Help: "Read indexes a leader took before answering LATEST or out of range above its high watermark, by outcome (caught_up, failed: passed to another replica).",
		}, []string{"outcome"}),
		reconciles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_reconcile_passes_total",
			Help: "Passes of the reconciler (open assigned replicas, remove tombstoned ones, mark groups live).",
		}),
		groupsRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_groups_removed_total",
			Help: "Local replicas of deleted partitions removed, each named in a replicated tombstone.",
		}),
		contractRechecks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_produce_contract_rechecks_total",
			Help: "Produce calls a partition refused as checked against an older topic contract, checked again and resent (or answered) by this node.",
		}),
		contractFences: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_contract_fences_total",
			Help: "Partition contract fences proposed by this node, by outcome (ok, error) and by who asked (alter, reconcile).",
		}, []string{"by", "outcome"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_produce_duplicates_total",
			Help: "Produced events recognised as duplicates (idempotent producer or event id), by topic.",
		}, []string{"topic"}),
	}
}

func (m *nodeMetrics) collectors() []prometheus.Collector {
	return append(append(append(m.groupConsume.collectors(), m.wsGroup.collectors()...), m.groupMarks.collectors()...), m.rpcs, m.rpcSeconds, m.producedEvents, m.fetchedEvents, m.forwarded,
		m.retainedTrims, m.retainedRecords, m.duplicates, m.logRebuilds, m.rejoins, m.rejoining, m.startupChecks, m.reconciles, m.groupsRemoved, m.refusedStarting, m.fetchBehind, m.fetchCatchUps,
		m.contractRechecks, m.contractFences,
		m.subscriptions, m.subscribeEvents, m.subscribeReads, m.subscribeHeartbeats,
		m.wsConnections, m.wsMessages, m.wsCloses, m.wsQueueBytes, m.wsQueueDrops, m.wsRefused, m.wsHubSubscriptions, m.wsPublishPauses)
}

// unaryInterceptor records request counts and latency. It runs outside
// errorInterceptor so it sees the final status code.
func (m *nodeMetrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	method := shortMethod(info.FullMethod)
	m.rpcSeconds.WithLabelValues(method).Observe(time.Since(start).Seconds())
	m.rpcs.WithLabelValues(method, status.Code(err).String()).Inc()
	return resp, err
}

func shortMethod(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

// partitionCollector exports each local replica's position at scrape time.
type partitionCollector struct {
	node          *Node
	highWatermark *prometheus.Desc
	commitIndex   *prometheus.Desc
	appliedIndex  *prometheus.Desc
	leader        *prometheus.Desc
}

func newPartitionCollector(n *Node) *partitionCollector {
	labels := []string{"group"}
	return &partitionCollector{
		node:          n,
		highWatermark: prometheus.NewDesc("herald_partition_high_watermark", "Next offset to be assigned, per local replica.", labels, nil),
		commitIndex:   prometheus.NewDesc("herald_partition_commit_index", "Raft commit index, per local replica.", labels, nil),
		appliedIndex:  prometheus.NewDesc("herald_partition_applied_index", "Raft index applied to the log, per local replica.", labels, nil),
		leader:        prometheus.NewDesc("herald_partition_is_leader", "1 when the local replica leads its partition.", labels, nil),
	}
}

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.highWatermark
	ch <- c.commitIndex
	ch <- c.appliedIndex
	ch <- c.leader
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.node.replicasSnapshot() {
		g := strconv.FormatUint(r.GroupID(), 10)
		st := r.Status()
		leader := 0.0
		if st.State == "Leader" {
			leader = 1
		}
		ch <- prometheus.MustNewConstMetric(c.highWatermark, prometheus.GaugeValue, float64(st.HighWatermark), g)
		ch <- prometheus.MustNewConstMetric(c.commitIndex, prometheus.GaugeValue, float64(st.CommitIndex), g)
		ch <- prometheus.MustNewConstMetric(c.appliedIndex, prometheus.GaugeValue, float64(st.AppliedIndex), g)
		ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, leader, g)
	}
}
