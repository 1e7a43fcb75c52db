package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/heraldlog/herald/partition"
	heraldraft "github.com/heraldlog/herald/raft"
	"github.com/heraldlog/herald/server/controller"
)

// Reconciler timing: how often the assigned replicas are rechecked even
// without a registry change, and how often leadership is rebalanced.
const (
	reconcileInterval      = time.Second
	rebalanceInterval      = 2 * time.Second
	rebalanceLeaderAgeMin  = time.Second
	leadershipTransferWait = 3 * time.Second
)

// reconcileLoop opens the partition replicas the controller assigns to
// this node and moves leadership to each partition's preferred replica.
// It is owned by the Node and exits when the node stops.
func (n *Node) reconcileLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(reconcileInterval)
	defer tick.Stop()
	lastRebalance := time.Now()
	leaderSince := make(map[uint64]time.Time)
	for {
		select {
		case <-n.stop:
			return
		case <-n.controllerFSM.Changed():
		case <-tick.C:
		}
		n.reconcile()
		n.markLive()
		n.fenceLagging()
		n.advanceRejoins()
		n.metrics.reconciles.Inc()
		if time.Since(lastRebalance) >= rebalanceInterval {
			lastRebalance = time.Now()
			n.rebalance(leaderSince)
		}
	}
}

// reconcile opens every assigned replica that is not open yet, removes
// replicas of deleted topics and marks the groups it leads live. Failures
// are logged and retried on the next pass.
//
// The rules it keeps (docs/architecture.md, "Rules of local state"):
//   - local data is deleted only for a group named in a replicated tombstone
//     (removeTombstoned), never because a group is absent from a registry;
//   - a group without local state here bootstraps only when the controller
//     says it is new (not Live), and only once this node's registry has
//     caught up with the leader's (registrySynced); a Live group without
//     local state rejoins from its peers as a non-voter.
func (n *Node) reconcile() {
	nodes := n.nodes()
	n.removeTombstoned()
	synced := n.registrySyncedOnce()
	assigned := n.controllerFSM.AssignedTo(n.cfg.NodeID)
	if synced {
		n.wipedPass(assigned)
	}
	for _, a := range assigned {
		gid := a.Partition.GroupID
		if n.replica(gid) != nil || !n.mayOpenWiped(gid) {
			continue
		}
		select {
		case <-n.stop:
			return
		default:
		}
		if !n.hasRaftState(gid) && !n.hasRejoinMarker(gid) {
			if !synced {
				// Whether the group is new is not known yet.
				continue
			}
			if a.Partition.Live {
				if err := n.markRejoin(gid, noStateReason); err != nil {
					n.logger.Error("cannot write the rejoin marker of a live group without local state", "group", gid, "err", err)
					continue
				}
				n.logger.Warn("live group has no local state here; rejoining from its peers", "topic", a.Topic, "partition", a.Partition.Index, "group", gid)
			}
		}
		if err := n.openReplica(a, nodes); err != nil {
			if errors.Is(err, errRejoinNotDue) {
				continue
			}
			n.logger.Warn("cannot open replica yet", "topic", a.Topic, "partition", a.Partition.Index, "group", a.Partition.GroupID, "err", err)
		}
	}
}

func (n *Node) openReplica(a controller.Assignment, nodes map[string]string) error {
	p := a.Partition
	var servers []hraft.Server
	for _, id := range p.Replicas {
		addr, ok := nodes[id]
		if !ok {
			return fmt.Errorf("replica node %s has no known address", id)
		}
		servers = append(servers, hraft.Server{Suffrage: hraft.Voter, ID: hraft.ServerID(id), Address: hraft.ServerAddress(addr)})
	}
	lp, err := n.db.Partition(p.GroupID)
	if err != nil {
		return err
	}
	if !n.rejoins.due(p.GroupID, time.Now()) {
		return errRejoinNotDue
	}
	rejoin, err := n.prepareGroup(p.GroupID, partition.CheckEntry)
	if err != nil {
		return err
	}
	if rejoin != nil && rejoin.Stage == heraldraft.RejoinDamaged {
		// The log's copy of the partition came from the damaged Raft
		// state: it starts over from what the leader sends.
		if err := lp.Drop(); err != nil {
			return fmt.Errorf("server: rejoin group %d: drop the local log: %w", p.GroupID, err)
		}
		if err := n.demote(n.ctx, p.GroupID, rejoin); err != nil {
			return err
		}
	}
	tr, err := n.mux.Transport(p.GroupID)
	if err != nil {
		return err
	}
	r, err := partition.OpenReplica(partition.ReplicaConfig{
		GroupID:      p.GroupID,
		NodeID:       n.cfg.NodeID,
		Dir:          n.groupDir(p.GroupID),
		Log:          lp,
		Transport:    tr,
		Servers:      servers,
		Logger:       n.logger.With("topic", a.Topic, "partition", p.Index),
		Metrics:      n.partitionMetrics,
		Batcher:      n.cfg.batcherOptions(),
		Raft:         n.cfg.raftConfig(),
		OnCorruption: n.markCorrupt,
		OnRaftDamage: func(err error) { n.markRaftDamaged(p.GroupID, err) },
		Rejoining:    rejoin != nil,
		Limits:       n.tenantLimit,
		Activity:     n.tenantActivity,
	})
	if err != nil {
		_ = tr.Close()
		return err
	}
	n.mu.Lock()
	if n.mu.closed {
		n.mu.Unlock()
		return r.Close()
	}
	n.mu.replicas[p.GroupID] = r
	n.mu.Unlock()
	n.logger.Info("opened replica", "topic", a.Topic, "partition", p.Index, "group", p.GroupID,
		"applied_index", lp.AppliedIndex(), "high_watermark", lp.HighWatermark(), "rejoining", rejoin != nil)
	return nil
}

// noStateReason is the rejoin reason of a live group that has no local
// state on a node it is assigned to.
const noStateReason = "no local state for a live group"

// registrySyncedOnce reports whether this node's registry has caught up,
// since it started, with everything the controller had acknowledged (one
// successful syncRegistry; tried on each call until then). Only the
// reconcile loop calls it.
func (n *Node) registrySyncedOnce() bool {
	if n.registrySynced.Load() {
		return true
	}
	if err := n.syncRegistry(n.ctx); err != nil {
		return false
	}
	n.registrySynced.Store(true)
	n.logger.Info("registry caught up with the controller leader", "applied_index", n.controllerFSM.AppliedIndex())
	return true
}

// markLive asks the controller to record as live the groups this node leads
// that the registry does not list as live yet.
func (n *Node) markLive() {
	live := make(map[uint64]bool)
	for _, a := range n.controllerFSM.AssignedTo(n.cfg.NodeID) {
		live[a.Partition.GroupID] = a.Partition.Live
	}
	var gids []uint64
	for _, r := range n.replicasSnapshot() {
		if isLive, assigned := live[r.GroupID()]; assigned && !isLive && r.IsLeader() {
			gids = append(gids, r.GroupID())
		}
	}
	if len(gids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, registrySyncWaitMax)
	defer cancel()
	if err := n.markGroupsLive(ctx, gids); err != nil {
		n.logger.Debug("cannot mark groups live yet", "groups", gids, "err", err)
	}
}

// removeTombstoned closes and deletes local replicas, replica directories
// and rejoin markers of groups named in a tombstone (their topic was
// deleted, possibly while this node was down). A group directory that is
// neither in the registry nor tombstoned is kept: it may belong to a topic
// this node has not replayed yet.
func (n *Node) removeTombstoned() {
	for _, r := range n.replicasSnapshot() {
		if n.controllerFSM.Tombstoned(r.GroupID()) {
			n.mu.Lock()
			delete(n.mu.replicas, r.GroupID())
			n.mu.Unlock()
			if err := r.Close(); err != nil {
				n.logger.Warn("closing replica of deleted partition", "group", r.GroupID(), "err", err)
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join(n.cfg.DataDir, "raft"))
	if err != nil {
		return
	}
	for _, e := range entries {
		gid, err := strconv.ParseUint(strings.TrimPrefix(e.Name(), "g"), 10, 64)
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "g") || err != nil || gid == controller.GroupID || !n.controllerFSM.Tombstoned(gid) || n.replica(gid) != nil {
			continue
		}
		lp, err := n.db.Partition(gid)
		if err == nil {
			err = lp.Drop()
		}
		if err == nil {
			err = os.RemoveAll(filepath.Join(n.cfg.DataDir, "raft", e.Name()))
		}
		if err == nil {
			err = heraldraft.RemoveRejoinMarker(n.groupDir(gid))
			n.rejoins.untrack(gid)
		}
		if err != nil {
			n.logger.Warn("removing deleted partition", "group", gid, "err", err)
			continue
		}
		n.metrics.groupsRemoved.Inc()
		n.logger.Info("removed replica of deleted partition", "group", gid, "tombstone_index", n.controllerFSM.TombstoneIndex(gid))
	}
	// A group waiting for its demotion has no directory, only its marker.
	markers, _ := filepath.Glob(filepath.Join(n.cfg.DataDir, "raft", "g*.rejoin"))
	for _, path := range markers {
		gid, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "g"), ".rejoin"), 10, 64)
		if err != nil || gid == controller.GroupID || !n.controllerFSM.Tombstoned(gid) || n.replica(gid) != nil {
			continue
		}
		if err := heraldraft.RemoveRejoinMarker(n.groupDir(gid)); err != nil {
			n.logger.Warn("removing the rejoin marker of a deleted partition", "group", gid, "err", err)
			continue
		}
		n.rejoins.untrack(gid)
		n.logger.Info("abandoned the rejoin of a deleted partition", "group", gid)
	}
	n.metrics.rejoining.Set(float64(n.rejoins.count()))
}

// rebalance hands leadership of partitions led here to their preferred
// replica (the first in the placement) when this node is not it, so that
// leaders spread over the nodes. A transfer that fails (preferred replica
// down or behind) is simply tried again later.
func (n *Node) rebalance(leaderSince map[uint64]time.Time) {
	preferred := make(map[uint64]string)
	for _, a := range n.controllerFSM.AssignedTo(n.cfg.NodeID) {
		preferred[a.Partition.GroupID] = a.Partition.Replicas[0]
	}
	nodes := n.nodes()
	for _, r := range n.replicasSnapshot() {
		gid := r.GroupID()
		if !r.IsLeader() {
			delete(leaderSince, gid)
			continue
		}
		since, ok := leaderSince[gid]
		if !ok {
			leaderSince[gid] = time.Now()
			continue
		}
		want := preferred[gid]
		if want == "" || want == n.cfg.NodeID || time.Since(since) < rebalanceLeaderAgeMin {
			continue
		}
		f := r.Raft().LeadershipTransferToServer(hraft.ServerID(want), hraft.ServerAddress(nodes[want]))
		if err := f.Error(); err != nil {
			n.logger.Debug("leadership transfer failed", "group", gid, "to", want, "err", err)
			continue
		}
		delete(leaderSince, gid)
		n.logger.Info("moved partition leadership to preferred replica", "group", gid, "to", want)
	}
}
