package partition

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are shared by every replica on a node. All methods are safe on a
// nil *Metrics (tests may pass none).
type Metrics struct {
	batchRecords prometheus.Histogram
	batchBytes   prometheus.Histogram
	applyLatency prometheus.Histogram
	applyErrors  *prometheus.CounterVec
	queueFull    prometheus.Counter
	// snapshots and restores count the state machine's side of Raft
	// snapshots: every snapshot persisted, every restore (at start from the
	// newest local snapshot, or after InstallSnapshot from a leader).
	snapshots prometheus.Counter
	restores  prometheus.Counter

	// Admission control (admission.go, the batcher's bounds).
	admittedEvents    *prometheus.CounterVec // tenant
	admittedBytes     *prometheus.CounterVec // tenant
	throttled         *prometheus.CounterVec // tenant, limit
	refused           *prometheus.CounterVec // tenant, limit
	queueBytes        *prometheus.GaugeVec   // partition
	partitionAdmitted *prometheus.CounterVec // partition
	tokens            *prometheus.GaugeVec   // tenant, kind
}

// The limits of herald_admission_refused_total and _throttled_total.
const (
	refusedTenantQuota    = "tenant_quota"
	refusedPartitionQueue = "partition_queue"
	refusedConsumerLag    = "consumer_lag"
	refusedDeadline       = "deadline"
)

// NewMetrics makes the partition metrics; register Collectors() once.
func NewMetrics() *Metrics {
	return &Metrics{
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_batcher_entry_records",
			Help:    "Records per Raft entry proposed by partition leaders.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		batchBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_batcher_entry_bytes",
			Help:    "Bytes per Raft entry proposed by partition leaders.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 8),
		}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_batcher_apply_seconds",
			Help:    "Time from raft.Apply to commit on a quorum and apply on the leader.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		applyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_batcher_apply_errors_total",
			Help: "Raft applies that failed, by kind (not_leader: never proposed; unknown: fate unknown).",
		}, []string{"kind"}),
		queueFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_batcher_queue_full_total",
			Help: "Produce calls refused (QUEUE_FULL, nothing proposed) because the leader held QueueBytesMax bytes of calls.",
		}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_partition_snapshots_total",
			Help: "Raft snapshots of partition replicas persisted on this node (the log below them then compacted).",
		}),
		restores: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_partition_snapshot_restores_total",
			Help: "Partition replicas restored from a Raft snapshot on this node: at start, or after InstallSnapshot from the leader.",
		}),
		admittedEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_admission_admitted_events_total",
			Help: "Events of produce calls admitted and acknowledged by partition leaders on this node, by tenant (duplicates included).",
		}, []string{"tenant"}),
		admittedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_admission_admitted_bytes_total",
			Help: "Encoded bytes of the events counted by herald_admission_admitted_events_total, by tenant.",
		}, []string{"tenant"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_admission_throttled_total",
			Help: "Produce calls admitted with a throttle hint (throttle_ms > 0), by tenant and the limit that set it (tenant_quota, partition_queue, consumer_lag).",
		}, []string{"tenant", "limit"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_admission_refused_total",
			Help: "Produce calls refused by admission control with nothing written, by tenant and limit (tenant_quota, partition_queue, consumer_lag, deadline).",
		}, []string{"tenant", "limit"}),
		queueBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_admission_queue_bytes",
			Help: "Bytes of produce calls a partition leader holds (queued, batched or in flight), by partition (Raft group id).",
		}, []string{"partition"}),
		partitionAdmitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_admission_partition_admitted_events_total",
			Help: "Events admitted and acknowledged by partition leaders on this node, by partition (Raft group id).",
		}, []string{"partition"}),
		tokens: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_admission_tokens",
			Help: "Tokens left (negative: debt) in the tenant's bucket of the partition it last produced to on this node, by tenant and kind (events, bytes). Absent for tenants without a quota.",
		}, []string{"tenant", "kind"}),
	}
}

// Collectors returns the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.batchRecords, m.batchBytes, m.applyLatency, m.applyErrors, m.queueFull, m.snapshots, m.restores,
		m.admittedEvents, m.admittedBytes, m.throttled, m.refused, m.queueBytes, m.partitionAdmitted, m.tokens}
}

func (m *Metrics) observeBatch(records, bytes int) {
	if m == nil {
		return
	}
	m.batchRecords.Observe(float64(records))
	m.batchBytes.Observe(float64(bytes))
}

func (m *Metrics) observeApply(d time.Duration, err error) {
	if m == nil {
		return
	}
	if err == nil {
		m.applyLatency.Observe(d.Seconds())
		return
	}
	kind := "unknown"
	if errors.Is(classifyApplyError(err), ErrNotLeader) {
		kind = "not_leader"
	}
	m.applyErrors.WithLabelValues(kind).Inc()
}

func (m *Metrics) observeQueueFull() {
	if m == nil {
		return
	}
	m.queueFull.Inc()
}

func (m *Metrics) observeSnapshot() {
	if m == nil {
		return
	}
	m.snapshots.Inc()
}

func (m *Metrics) observeRestore() {
	if m == nil {
		return
	}
	m.restores.Inc()
}

// ObserveRefused counts a produce call refused by admission control before
// it reached a partition (the node's quota blocks).
func (m *Metrics) ObserveRefused(tenant, limit string) { m.observeRefused(tenant, limit) }

func (m *Metrics) observeRefused(tenant, limit string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(tenant, limit).Inc()
}

func (m *Metrics) observeThrottled(tenant, limit string) {
	if m == nil {
		return
	}
	m.throttled.WithLabelValues(tenant, limit).Inc()
}

// observeAdmitted counts a call's events once acknowledged.
func (m *Metrics) observeAdmitted(groupID uint64, costs []tenantCost) {
	if m == nil {
		return
	}
	total := 0.0
	for _, c := range costs {
		m.admittedEvents.WithLabelValues(c.tenant).Add(c.events)
		m.admittedBytes.WithLabelValues(c.tenant).Add(c.bytes)
		total += c.events
	}
	m.partitionAdmitted.WithLabelValues(strconv.FormatUint(groupID, 10)).Add(total)
}

// queueBytesGauge returns the partition's queue bytes gauge, or nil.
func (m *Metrics) queueBytesGauge(groupID uint64) prometheus.Gauge {
	if m == nil {
		return nil
	}
	return m.queueBytes.WithLabelValues(strconv.FormatUint(groupID, 10))
}

// forgetPartition drops the partition's series (its replica closed).
func (m *Metrics) forgetPartition(groupID uint64) {
	if m == nil {
		return
	}
	id := strconv.FormatUint(groupID, 10)
	m.queueBytes.DeleteLabelValues(id)
	m.partitionAdmitted.DeleteLabelValues(id)
}

// observeTokens records the levels of the buckets a call just used (held
// by a.mu).
func (m *Metrics) observeTokens(costs []tenantCost, held []*tenantBuckets) {
	if m == nil {
		return
	}
	for i, tb := range held {
		if tb == nil {
			continue
		}
		m.tokens.WithLabelValues(costs[i].tenant, "events").Set(tb.events.tokens)
		m.tokens.WithLabelValues(costs[i].tenant, "bytes").Set(tb.bytes.tokens)
	}
}
