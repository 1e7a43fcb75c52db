package partition

import (
	"errors"
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
}

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
	}
}

// Collectors returns the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.batchRecords, m.batchBytes, m.applyLatency, m.applyErrors, m.queueFull, m.snapshots, m.restores}
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
