package server

import "github.com/prometheus/client_golang/prometheus"

// groupConsumeMetrics are the counters of GroupConsume streams (labels
// topic and group; a group's name is a metric label, as its lag is).
type groupConsumeMetrics struct {
	streams            prometheus.Gauge
	deliveries         *prometheus.CounterVec
	redeliveries       *prometheus.CounterVec
	acks               *prometheus.CounterVec
	nacks              *prometheus.CounterVec
	deadLetters        *prometheus.CounterVec
	deadLetterFailures *prometheus.CounterVec
	skipped            *prometheus.CounterVec
	fenced             *prometheus.CounterVec
	keyOrderHolds      *prometheus.CounterVec
}

func newGroupConsumeMetrics() *groupConsumeMetrics {
	labels := []string{"topic", "group"}
	return &groupConsumeMetrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_group_consume_streams_open",
			Help: "GroupConsume streams being served by this node (it leads their partitions).",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_deliveries_total",
			Help: "Events sent to consumer group members for the first time.",
		}, labels),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_redeliveries_total",
			Help: "Events sent again to consumer group members (ack wait passed, or nacked).",
		}, labels),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_acks_total",
			Help: "Offsets acknowledged by consumer group members (cumulative ones included; already-done ones not).",
		}, labels),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_nacks_total",
			Help: "Offsets nacked by consumer group members (applied ones).",
		}, labels),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_dead_letters_total",
			Help: "Offsets dead-lettered after max deliveries (written to the dead-letter topic, or with none declared).",
		}, labels),
		deadLetterFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_dead_letter_failures_total",
			Help: "Failed writes to a dead-letter topic (the offsets stay pending and are tried again).",
		}, labels),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_skipped_total",
			Help: "Offsets acknowledged by the partition leader without being sent: reason expired (TTL) or retention (below the low watermark).",
		}, []string{"topic", "group", "reason"}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_consume_fenced_total",
			Help: "GroupConsume streams ended because their generation or member was not the partition's assignment.",
		}, labels),
		keyOrderHolds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_key_order_holds_total",
			Help: "Delivery steps of per-key-order groups whose new events stopped at an event whose key had one pending.",
		}, labels),
	}
}

func (m *groupConsumeMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.streams, m.deliveries, m.redeliveries, m.acks, m.nacks, m.deadLetters,
		m.deadLetterFailures, m.skipped, m.fenced, m.keyOrderHolds}
}
