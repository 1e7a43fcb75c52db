package server

import "github.com/prometheus/client_golang/prometheus"

// coordinatorMetrics are the group coordinator's (group_coordinator.go),
// labelled by topic and group, for the groups this node coordinates; a
// group's series go when the node stops coordinating it.
type coordinatorMetrics struct {
	members           *prometheus.GaugeVec
	generation        *prometheus.GaugeVec
	rebalances        *prometheus.CounterVec
	rebalanceFailures *prometheus.CounterVec
}

func newCoordinatorMetrics() *coordinatorMetrics {
	labels := []string{"topic", "group"}
	return &coordinatorMetrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herald_group_members",
			Help: "Members of a consumer group, on the node coordinating it (the leader of the topic's partition 0)."}, labels),
		generation: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herald_group_generation",
			Help: "A consumer group's current generation (its last assignment applied on every partition), on the node coordinating it."}, labels),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_group_rebalances_total",
			Help: "Rebalances of a consumer group completed by this node as its coordinator."}, labels),
		rebalanceFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_group_rebalance_failures_total",
			Help: "Rebalances of a consumer group that failed on this node as its coordinator (the members join again)."}, labels),
	}
}

func (m *coordinatorMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.members, m.generation, m.rebalances, m.rebalanceFailures}
}

// forget removes a group's series (the node no longer coordinates it).
func (m *coordinatorMetrics) forget(topic, group string) {
	for _, v := range []*prometheus.MetricVec{m.members.MetricVec, m.generation.MetricVec, m.rebalances.MetricVec, m.rebalanceFailures.MetricVec} {
		v.DeleteLabelValues(topic, group)
	}
}
