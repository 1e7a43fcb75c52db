package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// groupCollector exports, at scrape time, the lag and pending count of
// every consumer group on the partitions this node leads (a follower's
// copy would only repeat the leader's, later). Nothing is kept between
// scrapes and nothing is counted per event: a scrape reads each led
// partition's groups (at most partition.GroupsMax per partition) and one
// record per group that lags, so its work is bounded by groups × led
// partitions.
type groupCollector struct {
	node       *Node
	lagEvents  *prometheus.Desc
	lagSeconds *prometheus.Desc
	pending    *prometheus.Desc
}

func newGroupCollector(n *Node) *groupCollector {
	labels := []string{"topic", "group", "partition"}
	return &groupCollector{
		node: n,
		lagEvents: prometheus.NewDesc("herald_group_lag_events",
			"Events a consumer group has not finished (high watermark - committed floor), per partition this node leads.", labels, nil),
		lagSeconds: prometheus.NewDesc("herald_group_lag_seconds",
			"Age of the oldest event a consumer group has not finished (0 when caught up), per partition this node leads.", labels, nil),
		pending: prometheus.NewDesc("herald_group_pending",
			"Events delivered to a consumer group and not yet acknowledged, per partition this node leads.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lagEvents
	ch <- c.lagSeconds
	ch <- c.pending
}

// Collect implements prometheus.Collector; the registry may call it
// concurrently with itself and with anything else on the node.
func (c *groupCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.node
	if !n.serving.Load() {
		return
	}
	now := time.Now()
	for _, a := range n.controllerFSM.AssignedTo(n.cfg.NodeID) {
		r := n.replica(a.Partition.GroupID)
		if r == nil || !r.IsLeader() {
			continue
		}
		states, err := r.Groups()
		if err != nil {
			n.logger.Debug("group metrics: cannot read the groups", "topic", a.Topic, "group", a.Partition.GroupID, "err", err)
			continue
		}
		index := strconv.FormatUint(uint64(a.Partition.Index), 10)
		for _, st := range states {
			ps := n.groupStateWire(r, st, now).GetState()
			ch <- prometheus.MustNewConstMetric(c.lagEvents, prometheus.GaugeValue, float64(ps.GetLagEvents()), a.Topic, st.Name, index)
			ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, float64(ps.GetLagMs())/1000, a.Topic, st.Name, index)
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(ps.GetPending()), a.Topic, st.Name, index)
		}
	}
}
