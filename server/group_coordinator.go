package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/partition"
	"github.com/heraldlog/herald/server/controller"
)

// The consumer group coordinator (issue 12, part 2b-i): who owns which
// partition of a group. The coordinator of (topic, group) is the node
// that leads partition 0 of the topic; it keeps the group's members in
// memory, numbers assignments with generations and writes each one to
// every partition (GroupAssign, fenced by the partitions' replicated
// state: log/group.go). In order:
//
//  1. A member joins (JoinGroup); the coordinator records it with its
//     session timeout. A new member, a leave or an expiry changes the
//     membership, and the group needs a rebalance.
//  2. A rebalance (one at a time per group: the group's turn) picks a
//     generation above every one the partitions know: above partition 0's
//     replicated generation, read here after a read index, and above every
//     generation this node proposed for the group. It assigns partition p
//     to the p-th member modulo their count, members sorted by id.
//  3. It proposes GroupAssign on partition 0 first and waits for it to
//     apply, then on every other partition (on each one's leader). So no
//     partition ever holds a generation above partition 0's, which a new
//     coordinator reads after a failover.
//  4. Once every partition applied it, the generation is current: joins
//     waiting for it answer, and heartbeats of members of an older one (or
//     while the membership changed since) answer rebalance=true.
//
// Membership is not replicated: after a coordinator failover (partition
// 0's leader moved) the new coordinator knows no member, answers
// UNKNOWN_MEMBER to heartbeats, and the members join again; until then
// the partitions keep their last assignment, so the old owners' work is
// fenced only once the new generation is assigned.
//
// Nothing here deletes or creates a group: a group absent on partition 0
// is GROUP_NOT_FOUND, and a rebalance that finds it gone drops the
// coordinator's memory of it.

// Bounds of the coordinator; each refused past its limit with
// TOO_MANY_MEMBERS (RESOURCE_EXHAUSTED), nothing changed.
const (
	// coordinatorMembersMax bounds the members of one group (a topic has
	// at most 1,024 partitions; members past the partition count own none).
	coordinatorMembersMax = 256
	// coordinatorGroupsMax bounds the groups with members one node
	// coordinates at once.
	coordinatorGroupsMax = 1024
	// memberSessionTimeoutDefault, Min and Max: the session timeout of a
	// member that asks for none, and the range it may ask for.
	memberSessionTimeoutDefault = 10 * time.Second
	memberSessionTimeoutMin     = time.Second
	memberSessionTimeoutMax     = 5 * time.Minute
	// groupRebalanceTimeout bounds one rebalance run by the group's loop
	// (a join's rebalance runs within the join's deadline).
	groupRebalanceTimeout = 30 * time.Second
	// groupRebalanceRetryWaitMax bounds the pause after failed rebalances
	// of the group's loop (doubling from groupLeaderRetryWait*4).
	groupRebalanceRetryWaitMax = 5 * time.Second
	// groupCoordinatorCheckInterval is the longest the group's loop
	// sleeps: it checks that this node still coordinates the group.
	groupCoordinatorCheckInterval = time.Second
	// groupUnownedMember is the member a rebalance assigns a partition no
	// member owns (a group left with no member). The replicated rule wants
	// a non-empty member id (log.GroupAssign), and "-" is none a client can
	// choose (member ids start with a letter or digit), so every member is
	// fenced from the partition.
	groupUnownedMember = "-"
)

// groupKey names a coordinated group.
type groupKey struct{ topic, group string }

// groupMember is one member as the coordinator knows it.
type groupMember struct {
	sessionTimeout time.Duration
	deadline       time.Time // expires when not heartbeaten by then
}

// coordinatedGroup is the coordinator's memory of one group. Its fields
// below turn are guarded by coordinator.mu.
type coordinatedGroup struct {
	key groupKey
	// turn has one slot: who holds it decides on, and runs, the group's
	// rebalance; joins and the group's loop take it in turn.
	turn chan struct{}
	// kick wakes the group's loop (a leave, a join with an earlier
	// deadline); one pending wake is enough.
	kick chan struct{}

	members map[string]groupMember
	// changes counts membership changes; balanced is the count the
	// current assignment was computed from (a rebalance is needed when
	// they differ, or before the first assignment).
	changes, balanced uint64
	// generation is the last generation applied on every partition (0:
	// none yet here) and assignment its partitions per member (every
	// member of it, those without a partition included).
	generation uint64
	assignment map[string][]uint32
	// generationMax is the highest generation this node proposed for the
	// group or read from partition 0.
	generationMax uint64
	// dropped: removed from the coordinator (idle, not coordinator any
	// more, group deleted); holders must not use it.
	dropped bool
}

// needsRebalanceLocked reports whether the assignment is not the
// membership's. coordinator.mu must be held.
func (g *coordinatedGroup) needsRebalanceLocked() bool {
	return g.changes != g.balanced || (g.generation == 0 && len(g.members) > 0)
}

// coordinator holds the groups this node coordinates. Its methods may be
// called concurrently; each group's loop (runGroup) is owned by the node
// (Node.wg) and ends at node stop, when the group has no member and no
// rebalance to make, or when this node no longer coordinates it.
type coordinator struct {
	node *Node
	mu   struct {
		sync.Mutex
		groups map[groupKey]*coordinatedGroup
	}
}

func newCoordinator(n *Node) *coordinator {
	c := &coordinator{node: n}
	c.mu.groups = make(map[groupKey]*coordinatedGroup)
	return c
}

// coordinatorReplica returns the replica of t's partition 0 when this
// node leads it (it coordinates t's groups), else NOT_LEADER naming the
// leader it knows (or the preferred leader, which knows), or NO_LEADER.
func (n *Node) coordinatorReplica(t *controller.Topic) (*partition.Replica, error) {
	if len(t.Partitions) == 0 {
		return nil, wire.NoLeader(fmt.Sprintf("topic %s has no partitions", t.Name))
	}
	p := t.Partitions[0]
	if r := n.replica(p.GroupID); r != nil {
		if r.IsLeader() {
			return r, nil
		}
		addr, id := r.Leader()
		if addr == "" {
			return nil, wire.NoLeader(fmt.Sprintf("partition 0 of %s (the coordinator of its consumer groups)", t.Name))
		}
		return nil, wire.NotLeader(id, addr)
	}
	addr := n.nodes()[p.Replicas[0]]
	if addr == "" || addr == n.cfg.GRPCAddr {
		return nil, wire.NoLeader(fmt.Sprintf("partition 0 of %s (the coordinator of its consumer groups)", t.Name))
	}
	return nil, wire.NotLeader("", addr)
}

// partitionZeroGeneration reads, on r (partition 0's leader) after a read
// index, the group's replicated generation; GROUP_NOT_FOUND when absent.
func (n *Node) partitionZeroGeneration(ctx context.Context, r *partition.Replica, t *controller.Topic, group string) (uint64, error) {
	if err := r.CatchUp(ctx); err != nil {
		if errors.Is(err, partition.ErrNotLeader) {
			addr, id := r.Leader()
			return 0, wire.NotLeader(id, addr)
		}
		return 0, wire.NoLeader(fmt.Sprintf("partition 0 of %s: the leader could not confirm it has applied every acknowledged write (%v)", t.Name, err))
	}
	st, err := r.GroupState(group)
	if err != nil {
		return 0, n.groupError(&heraldpb.PartitionGroupRequest{Topic: t.Name, Group: group, Command: &heraldpb.PartitionGroupRequest_Read{}}, err)
	}
	return st.Generation, nil
}

// join makes member a member of t's group (or renews it) and returns its
// partitions under the current generation, running a rebalance first if
// the membership changed. r leads partition 0.
func (c *coordinator) join(ctx context.Context, r *partition.Replica, t *controller.Topic, group, member string, session time.Duration) (uint64, []uint32, error) {
	n := c.node
	current, err := n.partitionZeroGeneration(ctx, r, t, group)
	if err != nil {
		return 0, nil, err
	}
	key := groupKey{t.Name, group}
	c.mu.Lock()
	g := c.mu.groups[key]
	if g != nil && current > g.generationMax {
		// Another coordinator assigned the group since this memory of it
		// (leadership lost and won back): its members are not known here.
		delete(c.mu.groups, key)
		g.dropped = true
		n.coordinatorMetrics.forget(key.topic, key.group)
		g = nil
		defer n.logger.Info("consumer group coordinator state dropped", "topic", key.topic, "group", key.group,
			"why", fmt.Sprintf("partition 0 is at generation %d, assigned elsewhere", current))
	}
	if g == nil {
		select {
		case <-n.stop: // no new loop once the node stops (as the WebSocket hub's)
			c.mu.Unlock()
			return 0, nil, wire.NodeStopping(n.cfg.NodeID)
		default:
		}
		if len(c.mu.groups) >= coordinatorGroupsMax {
			c.mu.Unlock()
			return 0, nil, wire.TooManyMembers(t.Name, group, "coordinated groups", coordinatorGroupsMax)
		}
		g = &coordinatedGroup{key: key, turn: make(chan struct{}, 1), kick: make(chan struct{}, 1),
			members: make(map[string]groupMember)}
		c.mu.groups[key] = g
		if !n.spawn(func() { c.runGroup(g) }) { // owned by the node: ends at stop, when idle or not coordinator
			delete(c.mu.groups, key)
			c.mu.Unlock()
			return 0, nil, wire.NodeStopping(n.cfg.NodeID)
		}
	}
	_, known := g.members[member]
	if !known && len(g.members) >= coordinatorMembersMax {
		c.mu.Unlock()
		return 0, nil, wire.TooManyMembers(t.Name, group, "members", coordinatorMembersMax)
	}
	g.members[member] = groupMember{sessionTimeout: session, deadline: time.Now().Add(session)}
	if !known {
		g.changes++
	}
	n.coordinatorMetrics.members.WithLabelValues(t.Name, group).Set(float64(len(g.members)))
	c.mu.Unlock()
	select {
	case g.kick <- struct{}{}: // the loop recomputes its next expiry
	default:
	}
	if !known {
		n.logger.Info("consumer group member joined", "topic", t.Name, "group", group, "member", member, "session_timeout", session)
	}

	select {
	case g.turn <- struct{}{}:
	case <-ctx.Done():
		return 0, nil, wire.NoLeader(fmt.Sprintf("consumer group %q of %s: the rebalance did not finish before the deadline (nothing of this join was written; join again): %v", group, t.Name, ctx.Err()))
	case <-n.stop:
		return 0, nil, wire.NodeStopping(n.cfg.NodeID)
	}
	defer func() { <-g.turn }()
	c.mu.Lock()
	_, still := g.members[member]
	needs := g.needsRebalanceLocked()
	dropped := g.dropped
	c.mu.Unlock()
	if dropped || !still {
		return 0, nil, wire.UnknownMember(t.Name, group, member)
	}
	if needs {
		if err := c.rebalance(ctx, t, g, "join of "+member); err != nil {
			return 0, nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	parts, ok := g.assignment[member]
	if !ok {
		return 0, nil, wire.UnknownMember(t.Name, group, member) // left or expired meanwhile
	}
	return g.generation, slices.Clone(parts), nil
}

// heartbeat renews member's session and says whether it must join again.
// r leads partition 0.
func (c *coordinator) heartbeat(r *partition.Replica, t *controller.Topic, group, member string, generation uint64) (uint64, bool, error) {
	key := groupKey{t.Name, group}
	// The replicated generation tells whether another coordinator assigned
	// the group since this node's memory of it (leadership lost and won
	// back between two calls): then that memory is stale.
	st, err := r.GroupState(group)
	if err != nil {
		if errors.Is(err, partition.ErrUnknownGroup) {
			c.drop(key, "the group is gone")
		}
		return 0, false, c.node.groupError(&heraldpb.PartitionGroupRequest{Topic: t.Name, Group: group, Command: &heraldpb.PartitionGroupRequest_Read{}}, err)
	}
	c.mu.Lock()
	g := c.mu.groups[key]
	if g != nil && st.Generation > g.generationMax {
		c.mu.Unlock()
		c.drop(key, fmt.Sprintf("partition 0 is at generation %d, assigned elsewhere", st.Generation))
		return 0, false, wire.UnknownMember(t.Name, group, member)
	}
	var m groupMember
	known := false
	if g != nil {
		m, known = g.members[member]
	}
	if !known {
		c.mu.Unlock()
		return 0, false, wire.UnknownMember(t.Name, group, member)
	}
	m.deadline = time.Now().Add(m.sessionTimeout)
	g.members[member] = m
	_, assigned := g.assignment[member]
	rebalance := g.needsRebalanceLocked() || generation != g.generation || !assigned
	current := g.generation
	c.mu.Unlock()
	return current, rebalance, nil
}

// leave removes member from t's group; the group's loop rebalances. A
// member the coordinator does not know has left already: no error.
func (c *coordinator) leave(t *controller.Topic, group, member string) {
	key := groupKey{t.Name, group}
	c.mu.Lock()
	g := c.mu.groups[key]
	if g == nil {
		c.mu.Unlock()
		return
	}
	if _, known := g.members[member]; !known {
		c.mu.Unlock()
		return
	}
	delete(g.members, member)
	g.changes++
	c.node.coordinatorMetrics.members.WithLabelValues(t.Name, group).Set(float64(len(g.members)))
	c.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
	c.node.logger.Info("consumer group member left", "topic", t.Name, "group", group, "member", member)
}

// drop forgets group key (when it is the one held), with its metrics.
func (c *coordinator) drop(key groupKey, why string) {
	c.mu.Lock()
	g := c.mu.groups[key]
	if g != nil {
		delete(c.mu.groups, key)
		g.dropped = true
		c.node.coordinatorMetrics.forget(key.topic, key.group)
	}
	c.mu.Unlock()
	if g != nil {
		c.node.logger.Info("consumer group coordinator state dropped", "topic", key.topic, "group", key.group, "why", why)
	}
}

// rebalance assigns t's partitions to g's members under a new generation
// (steps 2-4 of the file's comment). The caller holds g's turn. An error
// leaves the current generation as it was: the members join again (their
// heartbeats answer rebalance=true) and the next rebalance takes a
// generation above this one's.
func (c *coordinator) rebalance(ctx context.Context, t *controller.Topic, g *coordinatedGroup, why string) (err error) {
	n := c.node
	topic, group := g.key.topic, g.key.group
	defer func() {
		if err != nil {
			n.coordinatorMetrics.rebalanceFailures.WithLabelValues(topic, group).Inc()
			n.logger.Warn("consumer group rebalance failed", "topic", topic, "group", group, "why", why, "err", err)
		}
	}()
	r, err := n.coordinatorReplica(t)
	if err != nil {
		return err
	}
	current, err := n.partitionZeroGeneration(ctx, r, t, group)
	if err != nil {
		return err
	}
	c.mu.Lock()
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	changes := g.changes
	generation := max(g.generationMax, current) + 1
	g.generationMax = generation
	c.mu.Unlock()
	sort.Strings(ids)
	owners, assignment := assignPartitions(ids, len(t.Partitions))
	n.logger.Info("consumer group rebalancing", "topic", topic, "group", group, "generation", generation, "members", len(ids), "why", why)

	assign := func(p controller.Partition) error {
		_, err := n.runPartitionGroup(ctx, t, p, &heraldpb.PartitionGroupRequest{Group: group,
			Command: &heraldpb.PartitionGroupRequest_Assign{Assign: &heraldpb.PartitionGroupAssign{Generation: generation, Member: owners[p.Index]}}})
		if err != nil {
			return fmt.Errorf("partition %d: %w", p.Index, err)
		}
		return nil
	}
	// Partition 0 first: no partition may hold a generation above its.
	if err := assign(t.Partitions[0]); err != nil {
		return c.rebalanceError(g, err)
	}
	rest := t.Partitions[1:]
	errs := make([]error, len(rest))
	slots := make(chan struct{}, groupFanOutMax)
	var wg sync.WaitGroup
	for i, p := range rest {
		slots <- struct{}{}
		wg.Add(1)
		go func() { // owned by rebalance: ends with runPartitionGroup
			defer func() { <-slots; wg.Done() }()
			errs[i] = assign(p)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return c.rebalanceError(g, err)
	}

	c.mu.Lock()
	if !g.dropped {
		g.generation, g.assignment, g.balanced = generation, assignment, changes
	}
	c.mu.Unlock()
	n.coordinatorMetrics.generation.WithLabelValues(topic, group).Set(float64(generation))
	n.coordinatorMetrics.rebalances.WithLabelValues(topic, group).Inc()
	n.logger.Info("consumer group rebalanced", "topic", topic, "group", group, "generation", generation, "members", len(ids))
	return nil
}

// rebalanceError returns the error of a failed rebalance, raising g's
// highest generation to one a partition named as current.
func (c *coordinator) rebalanceError(g *coordinatedGroup, err error) error {
	var we *wire.Error
	if errors.As(err, &we) && we.Reason == heraldpb.ErrorReason_STALE_GENERATION {
		if current, perr := strconv.ParseUint(we.Metadata[wire.MetadataCurrentGeneration], 10, 64); perr == nil {
			c.mu.Lock()
			g.generationMax = max(g.generationMax, current)
			c.mu.Unlock()
		}
	}
	// A wire error keeps its reason (unknown outcome, no leader, group not
	// found, ...) for the member; the wrapping names the partition.
	return err
}

// assignPartitions spreads partitions over the sorted member ids round
// robin: partition p goes to ids[p mod len(ids)]. It returns the owner of
// each partition (groupUnownedMember when there is no member) and each
// member's partitions, ascending (every member present, possibly with
// none).
func assignPartitions(ids []string, partitions int) ([]string, map[string][]uint32) {
	owners := make([]string, partitions)
	assignment := make(map[string][]uint32, len(ids))
	for _, id := range ids {
		assignment[id] = []uint32{}
	}
	for p := range partitions {
		if len(ids) == 0 {
			owners[p] = groupUnownedMember
			continue
		}
		id := ids[p%len(ids)]
		owners[p] = id
		assignment[id] = append(assignment[id], uint32(p))
	}
	return owners, assignment
}

// runGroup is g's loop: it expires members whose session ran out and
// rebalances whenever the membership changed and no join did it first.
// It ends at node stop, when g has no member and no rebalance to make,
// and when this node no longer coordinates the group (or it is gone).
func (c *coordinator) runGroup(g *coordinatedGroup) {
	n := c.node
	timer := time.NewTimer(groupCoordinatorCheckInterval)
	defer timer.Stop()
	retryWait, retryAt := time.Duration(0), time.Time{}
	for {
		now := time.Now()
		t, ok := n.controllerFSM.Topic(g.key.topic)
		if !ok || t == nil {
			c.drop(g.key, "the topic is gone")
			return
		}
		if _, err := n.coordinatorReplica(t); err != nil {
			c.drop(g.key, "this node no longer leads partition 0")
			return
		}
		c.mu.Lock()
		if g.dropped {
			c.mu.Unlock()
			return
		}
		var expired []string
		next := now.Add(groupCoordinatorCheckInterval)
		for id, m := range g.members {
			if !m.deadline.After(now) {
				expired = append(expired, id)
				delete(g.members, id)
				continue
			}
			if m.deadline.Before(next) {
				next = m.deadline
			}
		}
		if len(expired) > 0 {
			g.changes++
			n.coordinatorMetrics.members.WithLabelValues(g.key.topic, g.key.group).Set(float64(len(g.members)))
		}
		needs := g.needsRebalanceLocked()
		if len(g.members) == 0 && !needs {
			delete(c.mu.groups, g.key)
			g.dropped = true
			n.coordinatorMetrics.forget(g.key.topic, g.key.group)
			c.mu.Unlock()
			n.logger.Info("consumer group has no member; its coordinator loop ends", "topic", g.key.topic, "group", g.key.group)
			return
		}
		c.mu.Unlock()
		for _, id := range expired {
			n.logger.Info("consumer group member expired", "topic", g.key.topic, "group", g.key.group, "member", id)
		}

		if needs && !now.Before(retryAt) {
			err := c.rebalanceTurn(g, t)
			switch {
			case err == nil:
				retryWait = 0
			case errors.Is(err, errNodeStopping):
				return
			case errors.Is(err, wire.ErrGroupNotFound), errors.Is(err, wire.ErrNotLeader):
				c.drop(g.key, err.Error())
				return
			default:
				retryWait = min(max(2*retryWait, 4*groupLeaderRetryWait), groupRebalanceRetryWaitMax)
				retryAt = time.Now().Add(retryWait)
				if retryAt.Before(next) {
					next = retryAt
				}
			}
		}

		// Go 1.23+ timers: Reset needs no drain, and no stale tick stays.
		timer.Reset(max(time.Until(next), 0))
		select {
		case <-n.stop:
			return
		case <-g.kick:
		case <-timer.C:
		}
	}
}

// errNodeStopping: the node stopped while the group's loop waited.
var errNodeStopping = errors.New("server: node stopping")

// rebalanceTurn takes g's turn and rebalances if still needed.
func (c *coordinator) rebalanceTurn(g *coordinatedGroup, t *controller.Topic) error {
	n := c.node
	select {
	case g.turn <- struct{}{}:
	case <-n.stop:
		return errNodeStopping
	}
	defer func() { <-g.turn }()
	c.mu.Lock()
	needs := g.needsRebalanceLocked() && !g.dropped
	c.mu.Unlock()
	if !needs {
		return nil // a join rebalanced while the loop waited for its turn
	}
	ctx, cancel := context.WithTimeout(n.ctx, groupRebalanceTimeout)
	defer cancel()
	return c.rebalance(ctx, t, g, "membership changed (leave or expiry)")
}
