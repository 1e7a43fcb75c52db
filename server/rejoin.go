package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	heraldraft "github.com/heraldlog/herald/raft"
	"github.com/heraldlog/herald/raft/raftpb"
	"github.com/heraldlog/herald/server/controller"
)

// A group replica whose Raft state is damaged rejoins from its peers (see
// raft.PrepareRejoin for the protocol and its persisted stages). The node
// drives it:
//
//   - the controller (group 0) in StartNode, before the gRPC server starts:
//     the demotion is awaited there, since nothing on the node works
//     without the registry; then the group opens as a non-voter;
//   - a partition group in the reconciler, when it opens the replica: one
//     demotion attempt per due pass (jittered, capped backoff between
//     attempts), the replica staying closed until it succeeds;
//   - promotion of every demoted group in the reconciler, once the group
//     has applied up to the index the leader answered the demotion with.
//
// While no leader can demote it, a group stays down on this node: that is
// the only safe choice, since its replica may have acknowledged entries it
// has lost.

// Rejoin timing.
const (
	// rejoinAskTimeout bounds one AskLeader (all the peers it tries).
	rejoinAskTimeout = 15 * time.Second
	// Metric stage labels of herald_raft_rejoins_total.
	rejoinStageStarted  = "started"
	rejoinStageDemoted  = "demoted"
	rejoinStagePromoted = "promoted"
)

// errRejoinNotDue is returned by openReplica for a group waiting for its
// next demotion attempt.
var errRejoinNotDue = errors.New("server: rejoining; next attempt not due yet")

// rejoins tracks this node's rejoining groups. Safe for concurrent use; no
// I/O under the lock.
type rejoins struct {
	mu struct {
		sync.Mutex
		groups map[uint64]*rejoiningGroup
	}
}

// rejoiningGroup is one group's rejoin as this process drives it.
type rejoiningGroup struct {
	marker  heraldraft.RejoinMarker
	backoff heraldraft.RejoinBackoff
	due     time.Time // no attempt before
}

func newRejoins() *rejoins {
	r := &rejoins{}
	r.mu.groups = make(map[uint64]*rejoiningGroup)
	return r
}

// track records m as the state of group gid (a copy) and reports whether
// the group was not tracked yet.
func (r *rejoins) track(gid uint64, m *heraldraft.RejoinMarker) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.mu.groups[gid]
	if !ok {
		g = &rejoiningGroup{}
		r.mu.groups[gid] = g
	}
	g.marker = *m
	return !ok
}

func (r *rejoins) untrack(gid uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.mu.groups, gid)
}

// stage returns the tracked stage of gid ("" when not rejoining).
func (r *rejoins) stage(gid uint64) heraldraft.RejoinStage {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g, ok := r.mu.groups[gid]; ok {
		return g.marker.Stage
	}
	return ""
}

// marker returns a copy of gid's tracked marker, and whether gid rejoins.
func (r *rejoins) marker(gid uint64) (heraldraft.RejoinMarker, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g, ok := r.mu.groups[gid]; ok {
		return g.marker, true
	}
	return heraldraft.RejoinMarker{}, false
}

// due reports whether an attempt for gid may run now.
func (r *rejoins) due(gid uint64, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.mu.groups[gid]
	return !ok || !now.Before(g.due)
}

// failed schedules gid's next attempt after a jittered backoff.
func (r *rejoins) failed(gid uint64, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.mu.groups[gid]
	if !ok {
		return 0
	}
	d := g.backoff.Next()
	g.due = now.Add(d)
	return d
}

// demoted lists the demoted groups and the index each must apply before
// promotion, in group order.
func (r *rejoins) demoted() []heraldraft.RejoinMarker {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []heraldraft.RejoinMarker
	for _, g := range r.mu.groups {
		if g.marker.Stage == heraldraft.RejoinDemoted {
			out = append(out, g.marker)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}

func (r *rejoins) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.mu.groups)
}

// groupDir is the Raft directory of group gid.
func (n *Node) groupDir(gid uint64) string {
	return filepath.Join(n.cfg.DataDir, "raft", fmt.Sprintf("g%d", gid))
}

// prepareGroup runs raft.PrepareRejoin for gid and tracks a rejoin it
// reports. nil: open the group normally.
func (n *Node) prepareGroup(gid uint64, check heraldraft.EntryChecker) (*heraldraft.RejoinMarker, error) {
	m, err := heraldraft.PrepareRejoin(n.groupDir(gid), gid, check, heraldraft.PrepareOptions{
		VerifyFull: n.cfg.Raft.VerifyFull,
		Checked: func(full bool) {
			check := "unchanged"
			if full {
				check = "full"
			}
			n.metrics.startupChecks.WithLabelValues(check).Inc()
		},
	})
	if err != nil || m == nil {
		return nil, err
	}
	if n.rejoins.track(gid, m) {
		n.metrics.rejoins.WithLabelValues(rejoinStageStarted).Inc()
		n.metrics.rejoining.Set(float64(n.rejoins.count()))
		msg := "rejoin: this replica's Raft state of the group was found damaged; rejoining from its peers (the group stays down here until its leader demotes this replica)"
		if m.Stage == heraldraft.RejoinDemoted {
			msg = "rejoin: resuming as a non-voter; promotion follows once caught up"
		}
		n.logger.Error(msg, "group", gid, "stage", string(m.Stage), "reason", m.Reason,
			"detected_at", m.DetectedAt, "moved_to", m.MovedTo, "catch_up_index", m.CatchUpIndex)
	}
	return m, nil
}

// rejoinPeers is every peer address this node knows, sorted: the initial
// peers and the controller's configuration, without this node. Before the
// controller is open (its own rejoin), the configurations stored by the
// node's other groups stand in for the controller's.
func (n *Node) rejoinPeers() []string {
	set := map[string]bool{}
	for _, addr := range n.cfg.Peers {
		set[addr] = true
	}
	if n.controller != nil {
		for _, addr := range n.nodes() {
			set[addr] = true
		}
	} else {
		dirs, _ := filepath.Glob(filepath.Join(n.cfg.DataDir, "raft", "g*"))
		for _, dir := range dirs {
			if _, err := strconv.ParseUint(strings.TrimPrefix(filepath.Base(dir), "g"), 10, 64); err != nil {
				continue // a marker, or a directory moved aside
			}
			for _, addr := range heraldraft.StoredAddresses(dir) {
				set[addr] = true
			}
		}
	}
	delete(set, n.cfg.GRPCAddr)
	out := make([]string, 0, len(set))
	for addr := range set {
		out = append(out, addr)
	}
	sort.Strings(out)
	return out
}

// demote asks gid's leader to demote this replica and, on success,
// persists stage demoted with the leader's index.
func (n *Node) demote(ctx context.Context, gid uint64, m *heraldraft.RejoinMarker) error {
	ctx, cancel := context.WithTimeout(ctx, rejoinAskTimeout)
	defer cancel()
	resp, err := n.mux.AskLeader(ctx, heraldraft.RejoinRequest{GroupID: gid, NodeID: n.cfg.NodeID,
		Addr: n.cfg.GRPCAddr, Step: raftpb.RejoinStep_REJOIN_STEP_DEMOTE, Peers: n.rejoinPeers()})
	if err != nil {
		d := n.rejoins.failed(gid, time.Now())
		n.logger.Warn("rejoin: no leader demoted this replica yet", "group", gid, "retry_in", d, "err", err)
		return fmt.Errorf("server: rejoin group %d: demote: %w", gid, err)
	}
	m.Stage, m.CatchUpIndex = heraldraft.RejoinDemoted, resp.GetIndex()
	if err := heraldraft.WriteRejoinMarker(n.groupDir(gid), m); err != nil {
		return err
	}
	n.rejoins.track(gid, m)
	n.metrics.rejoins.WithLabelValues(rejoinStageDemoted).Inc()
	n.logger.Warn("rejoin: demoted to non-voter; starting Raft empty to catch up from the leader",
		"group", gid, "leader", resp.GetLeaderId(), "catch_up_index", resp.GetIndex())
	return nil
}

// awaitControllerDemotion is the controller's demotion: retried with
// backoff until it succeeds or ctx ends (the node is not serving yet).
func (n *Node) awaitControllerDemotion(ctx context.Context, m *heraldraft.RejoinMarker) error {
	for {
		err := n.demote(ctx, controller.GroupID, m)
		if err == nil {
			return nil
		}
		wait := time.NewTimer(time.Until(n.rejoins.dueAt(controller.GroupID)))
		select {
		case <-ctx.Done():
			wait.Stop()
			return fmt.Errorf("server: controller rejoin: %w (last error: %v)", ctx.Err(), err)
		case <-wait.C:
		}
	}
}

// dueAt is when gid's next attempt may run.
func (r *rejoins) dueAt(gid uint64) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g, ok := r.mu.groups[gid]; ok {
		return g.due
	}
	return time.Time{}
}

// advanceRejoins asks for the promotion of every demoted group that has
// applied up to its catch-up index, and ends the rejoin of those promoted.
// Called by the reconcile loop; each attempt is bounded by rejoinAskTimeout.
func (n *Node) advanceRejoins() {
	now := time.Now()
	for _, m := range n.rejoins.demoted() {
		gid := m.Group
		// hashicorp/raft's AppliedIndex counts entries handed to the FSM,
		// not applied; that is the right number here: promotion makes this
		// replica count in elections and quorums, which depends on its Raft
		// log holding the committed entries up to the catch-up index, not
		// on its state machine having applied them.
		var applied uint64
		switch {
		case gid == controller.GroupID:
			applied = n.controller.Raft().AppliedIndex()
		case n.replica(gid) != nil:
			applied = n.replica(gid).Raft().AppliedIndex()
		default:
			continue // not open (yet)
		}
		if applied < m.CatchUpIndex || !n.rejoins.due(gid, now) {
			continue
		}
		select {
		case <-n.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(n.ctx, rejoinAskTimeout)
		resp, err := n.mux.AskLeader(ctx, heraldraft.RejoinRequest{GroupID: gid, NodeID: n.cfg.NodeID,
			Addr: n.cfg.GRPCAddr, Step: raftpb.RejoinStep_REJOIN_STEP_PROMOTE, Peers: n.rejoinPeers()})
		cancel()
		if err != nil {
			d := n.rejoins.failed(gid, time.Now())
			n.logger.Warn("rejoin: promotion not granted yet", "group", gid, "retry_in", d, "err", err)
			continue
		}
		if err := heraldraft.RemoveRejoinMarker(n.groupDir(gid)); err != nil {
			n.logger.Error("rejoin: promoted, but the marker stays; promotion will be asked again", "group", gid, "err", err)
			continue
		}
		n.rejoins.untrack(gid)
		n.metrics.rejoins.WithLabelValues(rejoinStagePromoted).Inc()
		n.metrics.rejoining.Set(float64(n.rejoins.count()))
		n.logger.Warn("rejoin: promoted to voter; the group's replica is whole again",
			"group", gid, "leader", resp.GetLeaderId(), "applied_index", applied, "detected_at", m.DetectedAt)
	}
}

// markRaftDamaged is the state machines' report of an entry damaged in
// group gid's Raft log, found at apply just before they stop the node.
func (n *Node) markRaftDamaged(gid uint64, err error) {
	n.logger.Error("an entry is damaged in this replica's Raft log; stopping, the group will rejoin from its peers at the next start",
		"group", gid, "err", err)
	if werr := heraldraft.MarkDamaged(n.groupDir(gid), gid, err.Error()); werr != nil {
		n.logger.Error("cannot write the rejoin marker", "group", gid, "err", werr)
	}
}
