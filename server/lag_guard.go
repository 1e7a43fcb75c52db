package server

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldlog/herald/partition"
	"github.com/heraldlog/herald/server/controller"
)

// Lag-aware admission (issue 13): a topic names the consumer groups its
// producers must not outrun (TopicConfig.protected_groups). On each
// partition replica this node hosts, a guard (partition.LagGuard) answers
// the admission controller with a cached partition.LagPressure; one
// node-owned goroutine (lagGuards.loop) refreshes every guard each
// lagGuardInterval from the registry (which groups, which lags) and the
// partition's applied state (each group's floor, the high watermark).
//
// Only leaders admit produce calls, so only leaders compute: a follower's
// guard answers none, and a new leader's from its first tick on.

// Lag guard timing and bounds.
const (
	// lagGuardInterval is how often the guards are refreshed: how long a
	// group's catching up takes to resume its producers, at most.
	lagGuardInterval = 100 * time.Millisecond
	// lagGuardPartitionsPerTickMax bounds the work of one tick: at most
	// this many partitions (each at most protectedGroupsMax point reads)
	// are refreshed; the others keep their value until a later tick takes
	// them up, round-robin.
	lagGuardPartitionsPerTickMax = 512
	// lagThrottleMax is the throttle hint at the pause lag (or, for a
	// group without one, at twice its slow lag and beyond).
	lagThrottleMax = time.Second
	// lagThrottleMin is the least hint of a group at its slow lag, so that
	// a slowed partition always says so.
	lagThrottleMin = time.Millisecond
)

// lagLevel is a protected group's state on a partition; its number is the
// value of the herald_admission_lag_pressure gauge.
type lagLevel int

const (
	lagNone   lagLevel = 0
	lagSlowed lagLevel = 1
	lagPaused lagLevel = 2
)

// groupPressure is what protected group g, lag events behind, asks of the
// producers: below its slow lag nothing; from its slow lag to its pause lag
// a throttle growing linearly from lagThrottleMin to lagThrottleMax (a
// group without a pause lag reaches lagThrottleMax at twice its slow lag);
// from its pause lag on a pause. A lag of 0 in g turns that stage off.
func groupPressure(g controller.ProtectedGroup, lag uint64) (time.Duration, lagLevel) {
	switch {
	case g.PauseLag > 0 && lag >= g.PauseLag:
		return 0, lagPaused
	case g.SlowLag > 0 && lag >= g.SlowLag:
		span := g.SlowLag
		if g.PauseLag > g.SlowLag {
			span = g.PauseLag - g.SlowLag
		}
		// The fraction first: a product of lags may not fit 64 bits, and
		// a duration past lagThrottleMax is not converted.
		fraction := float64(lag-g.SlowLag) / float64(span)
		if fraction >= 1 {
			return lagThrottleMax, lagSlowed
		}
		return max(time.Duration(fraction*float64(lagThrottleMax)), lagThrottleMin), lagSlowed
	}
	return 0, lagNone
}

// protectedLag is one protected group's reading on a partition: ok is
// false when the group does not exist there (it protects nothing yet).
type protectedLag struct {
	group controller.ProtectedGroup
	lag   uint64
	ok    bool
}

// lagReading is a partition's guard value and what it was computed from.
// Immutable once stored.
type lagReading struct {
	topic     string
	partition uint32
	pressure  partition.LagPressure
	// levels is each protected group's level, in the topic's order.
	levels []lagLevel
	groups []protectedLag
}

// worstPressure combines the protected groups' readings on one partition
// of topic: a pause if any group is at its pause lag (naming the one
// furthest past it), else the largest throttle.
func worstPressure(topic string, readings []protectedLag) (partition.LagPressure, []lagLevel) {
	var worst partition.LagPressure
	levels := make([]lagLevel, len(readings))
	for i, rd := range readings {
		if !rd.ok {
			continue
		}
		throttle, level := groupPressure(rd.group, rd.lag)
		levels[i] = level
		switch {
		case level == lagPaused:
			if !worst.Pause || rd.lag-rd.group.PauseLag > worst.Lag-worst.PauseLag {
				worst = partition.LagPressure{Pause: true, Topic: topic, Group: rd.group.Group, Lag: rd.lag, PauseLag: rd.group.PauseLag}
			}
		case level == lagSlowed && !worst.Pause && throttle > worst.Throttle:
			worst = partition.LagPressure{Throttle: throttle, Topic: topic, Group: rd.group.Group, Lag: rd.lag, PauseLag: rd.group.PauseLag}
		}
	}
	return worst, levels
}

// lagCell is one replica's guard: the loop stores, the admission
// controller loads.
type lagCell struct {
	replica *partition.Replica
	reading atomic.Pointer[lagReading]
}

// pressure is the cell's partition.LagGuard.
func (c *lagCell) pressure() partition.LagPressure {
	if rd := c.reading.Load(); rd != nil {
		return rd.pressure
	}
	return partition.LagPressure{}
}

// protectedPartition is what the registry says about one partition's
// protection.
type protectedPartition struct {
	topic     string
	partition uint32
	groups    []controller.ProtectedGroup
}

// lagGuards owns the guards of the node's replicas. install is called by
// the reconciler when it opens a replica; loop is the one goroutine that
// refreshes them; Collect exports their levels. All are safe for
// concurrent use.
type lagGuards struct {
	node *Node
	desc *prometheus.Desc

	mu struct {
		sync.Mutex
		cells map[uint64]*lagCell // by group id
	}

	// Owned by loop.
	registryIndex uint64
	protected     map[uint64]protectedPartition // by group id; only protected partitions
	cursor        uint64                        // the group id the next tick starts at
}

func newLagGuards(n *Node) *lagGuards {
	g := &lagGuards{
		node: n,
		desc: prometheus.NewDesc("herald_admission_lag_pressure",
			"Pressure of a protected consumer group on its topic's producers, the worst over the partitions this node leads: 0 none, 1 slowed (throttle hints), 2 paused (produce refused, limit consumer_lag).",
			[]string{"topic", "group"}, nil),
	}
	g.mu.cells = make(map[uint64]*lagCell)
	return g
}

// install gives replica r a guard, replacing any its group had (a replica
// reopened). The guard answers none until the loop's next tick.
func (g *lagGuards) install(r *partition.Replica) {
	c := &lagCell{replica: r}
	g.mu.Lock()
	g.mu.cells[r.GroupID()] = c
	g.mu.Unlock()
	r.SetLagGuard(c.pressure)
}

// loop refreshes the guards every lagGuardInterval until the node stops.
// It is owned by the Node (started with wg.Add, exits on stop).
func (g *lagGuards) loop() {
	defer g.node.wg.Done()
	tick := time.NewTicker(lagGuardInterval)
	defer tick.Stop()
	for {
		select {
		case <-g.node.stop:
			return
		case <-tick.C:
		}
		g.refresh()
	}
}

// refresh is one tick: it rereads the registry if it changed, adopts
// replicas without a guard, forgets the guards of deleted partitions and
// recomputes up to lagGuardPartitionsPerTickMax guards.
func (g *lagGuards) refresh() {
	n := g.node
	if idx := n.controllerFSM.AppliedIndex(); idx != g.registryIndex || g.protected == nil {
		g.registryIndex = idx
		g.protected = protectedPartitions(n.controllerFSM.Topics())
	}
	// A replica opened by another path than the reconciler's (none today)
	// still gets a guard.
	for _, r := range n.replicasSnapshot() {
		g.mu.Lock()
		c := g.mu.cells[r.GroupID()]
		g.mu.Unlock()
		if c == nil || c.replica != r {
			g.install(r)
		}
	}
	cells := g.cellsFrom()
	for _, c := range cells {
		g.update(c)
	}
}

// cellsFrom returns up to lagGuardPartitionsPerTickMax cells in group id
// order from the cursor on (wrapping), advances the cursor past them, and
// drops the cells of tombstoned groups: their replicas are gone for good
// (group ids are never reused), while a group merely absent from the node
// may be reopening.
func (g *lagGuards) cellsFrom() []*lagCell {
	g.mu.Lock()
	gids := make([]uint64, 0, len(g.mu.cells))
	for gid := range g.mu.cells {
		if g.node.controllerFSM.Tombstoned(gid) && g.node.replica(gid) == nil {
			delete(g.mu.cells, gid)
			continue
		}
		gids = append(gids, gid)
	}
	sort.Slice(gids, func(i, j int) bool { return gids[i] < gids[j] })
	start := sort.Search(len(gids), func(i int) bool { return gids[i] >= g.cursor })
	take := min(len(gids), lagGuardPartitionsPerTickMax)
	out := make([]*lagCell, 0, take)
	for i := 0; i < take; i++ {
		out = append(out, g.mu.cells[gids[(start+i)%len(gids)]])
	}
	g.mu.Unlock()
	if take > 0 {
		g.cursor = gids[(start+take-1)%len(gids)] + 1
	}
	return out
}

// update recomputes one guard and logs a pause or a resume.
func (g *lagGuards) update(c *lagCell) {
	gid := c.replica.GroupID()
	prot, ok := g.protected[gid]
	var next *lagReading
	if ok && c.replica.IsLeader() {
		readings := make([]protectedLag, len(prot.groups))
		for i, pg := range prot.groups {
			lag, exists := c.replica.GroupLag(pg.Group)
			readings[i] = protectedLag{group: pg, lag: lag, ok: exists}
		}
		pressure, levels := worstPressure(prot.topic, readings)
		next = &lagReading{topic: prot.topic, partition: prot.partition, pressure: pressure, levels: levels, groups: readings}
	}
	prev := c.reading.Swap(next)
	wasPaused := prev != nil && prev.pressure.Pause
	switch {
	case next != nil && next.pressure.Pause && !wasPaused:
		p := next.pressure
		g.node.logger.Info("producers paused: a protected consumer group is at its pause lag", "topic", p.Topic, "partition", next.partition,
			"group", p.Group, "lag", p.Lag, "pause_lag", p.PauseLag)
	case wasPaused && next != nil && !next.pressure.Pause:
		g.node.logger.Info("producers resumed: protected consumer groups are below their pause lag", "topic", next.topic, "partition", next.partition,
			"group", prev.pressure.Group, "throttle", next.pressure.Throttle)
	case wasPaused && next == nil:
		g.node.logger.Info("producers no longer paused here: the partition is not led here or no longer protected", "topic", prev.topic,
			"partition", prev.partition, "group", prev.pressure.Group)
	}
}

// protectedPartitions maps the group id of every partition of a topic
// with protected groups to its protection.
func protectedPartitions(topics []*controller.Topic) map[uint64]protectedPartition {
	out := make(map[uint64]protectedPartition)
	for _, t := range topics {
		if len(t.ProtectedGroups) == 0 {
			continue
		}
		for _, p := range t.Partitions {
			out[p.GroupID] = protectedPartition{topic: t.Name, partition: p.Index, groups: t.ProtectedGroups}
		}
	}
	return out
}

// Describe implements prometheus.Collector.
func (g *lagGuards) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector: per topic and protected group,
// the worst level over the partitions this node leads, from the guards'
// cached readings (no reads of the partitions).
func (g *lagGuards) Collect(ch chan<- prometheus.Metric) {
	type key struct{ topic, group string }
	worst := make(map[key]lagLevel)
	g.mu.Lock()
	for _, c := range g.mu.cells {
		rd := c.reading.Load()
		if rd == nil {
			continue
		}
		for i, pl := range rd.groups {
			k := key{rd.topic, pl.group.Group}
			if level, seen := worst[k]; !seen || rd.levels[i] > level {
				worst[k] = rd.levels[i]
			}
		}
	}
	g.mu.Unlock()
	for k, level := range worst {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(level), k.topic, k.group)
	}
}
