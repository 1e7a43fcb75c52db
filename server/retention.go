package server

import (
	"time"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/server/controller"
)

// Retention timing: how often partition leaders check retention, and how
// often they expire dedupe and producer state when nothing is truncated.
const (
	retentionInterval    = time.Second
	dedupeExpiryInterval = 30 * time.Second
)

// retentionLoop runs on every node; for each partition this node leads it
// computes where retention (age, bytes, events, expired TTL prefix) wants
// the log to start and proposes a trim entry, so every replica deletes the
// same prefix. It is owned by the Node and exits when the node stops.
func (n *Node) retentionLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(retentionInterval)
	defer tick.Stop()
	lastExpiry := make(map[uint64]time.Time)
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
		byGroup := make(map[uint64]*controller.Topic)
		for _, t := range n.controllerFSM.Topics() {
			for _, p := range t.Partitions {
				byGroup[p.GroupID] = t
			}
		}
		now := time.Now()
		for _, r := range n.replicasSnapshot() {
			t := byGroup[r.GroupID()]
			if t == nil || !r.IsLeader() {
				continue
			}
			lg := r.Log()
			point, err := lg.RetentionPoint(heraldlog.RetentionPolicy{
				MaxAge:      time.Duration(t.RetentionAgeMs) * time.Millisecond,
				MaxBytes:    t.RetentionBytes,
				MaxRecords:  t.RetentionEvents,
				DropExpired: true,
			}, now.UnixNano())
			if err != nil {
				n.logger.Warn("retention check failed", "topic", t.Name, "group", r.GroupID(), "err", err)
				continue
			}
			low := lg.LowWatermark()
			if point <= low {
				point = 0
			}
			if point == 0 && now.Sub(lastExpiry[r.GroupID()]) < dedupeExpiryInterval {
				continue
			}
			if err := r.Trim(point, now); err != nil {
				n.logger.Debug("trim not applied", "topic", t.Name, "group", r.GroupID(), "err", err)
				continue
			}
			lastExpiry[r.GroupID()] = now
			if point > 0 {
				n.metrics.retainedTrims.WithLabelValues(t.Name).Inc()
				n.metrics.retainedRecords.WithLabelValues(t.Name).Add(float64(point - low))
				n.logger.Info("retention truncated partition", "topic", t.Name, "group", r.GroupID(), "low_watermark", point, "removed", point-low)
			}
		}
	}
}
