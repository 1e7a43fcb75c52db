package server

import "github.com/prometheus/client_golang/prometheus"

// wsGroupMetrics count the consumer group members served over WebSocket
// (ws_group.go). No topic or group label: the group consume metrics of
// the partition leaders carry those.
type wsGroupMetrics struct {
	subscriptions prometheus.Gauge
	events        prometheus.Counter
	dropped       prometheus.Counter
	acks          *prometheus.CounterVec
	ended         prometheus.Counter
}

func newWSGroupMetrics() *wsGroupMetrics {
	return &wsGroupMetrics{
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_ws_group_subscriptions_open",
			Help: "WebSocket group subscriptions this node's gateway runs as group members.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_ws_group_events_total",
			Help: "Events sent to WebSocket clients in group_events frames (redeliveries included).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_ws_group_events_dropped_total",
			Help: "Events not sent because their group subscription held the most unacknowledged deliveries (redelivered after the ack wait).",
		}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ws_group_acks_total",
			Help: "Offsets acknowledged or nacked over WebSocket, by op (ack, nack) and outcome (acked, fenced, unknown, failed).",
		}, []string{"op", "outcome"}),
		ended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_ws_group_subscriptions_failed_total",
			Help: "WebSocket group subscriptions ended by an error (an unknown group, a refused join, ...), not by the client.",
		}),
	}
}

func (m *wsGroupMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.subscriptions, m.events, m.dropped, m.acks, m.ended}
}
