package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	heraldraft "github.com/heraldlog/herald/raft"
	"github.com/heraldlog/herald/server/controller"
)

// A node restarted on an empty data directory (disk replaced, data wiped)
// must not bootstrap its groups: it would vote with an empty log and could
// lose committed entries. With Config.Rejoin the operator says "this node's
// data is gone; the cluster exists", and every group without Raft state here
// rejoins from its peers like a damaged one (see rejoin.go), its marker
// written at stage damaged with reason wipedReason:
//
//   - the controller at start, before it is opened;
//   - every partition group assigned here, in one pass of the reconciler
//     once the registry has caught up (after the controller's own catch-up
//     index when it rejoined too). Until then, groups with neither Raft
//     state nor a marker are not opened at all. Groups created after that
//     pass bootstrap normally.
//
// The pending pass is persisted (wipedMarkerFile) before anything else, so
// a crash before it ran resumes it at the next start even without the flag;
// each group's own marker then carries its rejoin. Groups that have Raft
// state are left alone: for them the flag is a no-op.

// wipedReason is the rejoin reason of a group whose state was wiped.
const wipedReason = "data directory wiped"

// wipedMarkerFile, in the data directory, records that the partition pass
// of a wiped node's rejoin has not run yet.
const wipedMarkerFile = "rejoin-wiped"

// raftStateFile is the file that holds a group's Raft log and stable store
// (raft.OpenGroup creates it): a group directory without it has no state.
const raftStateFile = "raft.db"

// wipedRejoin is the state of a wiped node's rejoin. Set by StartNode
// before the reconcile loop starts; then owned by the reconcile loop.
type wipedRejoin struct {
	// pending: the partition pass has not run yet.
	pending bool
}

func (n *Node) wipedMarkerPath() string { return filepath.Join(n.cfg.DataDir, wipedMarkerFile) }

// hasRaftState reports whether group gid has Raft state on this node.
func (n *Node) hasRaftState(gid uint64) bool {
	_, err := os.Stat(filepath.Join(n.groupDir(gid), raftStateFile))
	return err == nil
}

// hasRejoinMarker reports whether group gid has a rejoin marker (any
// stage, readable or not).
func (n *Node) hasRejoinMarker(gid uint64) bool {
	_, err := os.Stat(heraldraft.RejoinMarkerPath(n.groupDir(gid)))
	return err == nil
}

// prepareWiped runs at start, before the controller is prepared: with
// Config.Rejoin (or a pass left pending by an earlier run) it persists the
// pending partition pass and, when the controller has no Raft state here,
// writes its rejoin marker.
func (n *Node) prepareWiped() error {
	path := n.wipedMarkerPath()
	_, err := os.Stat(path)
	resumed := err == nil
	if !n.cfg.Rejoin && !resumed {
		return nil
	}
	if len(n.cfg.Peers) == 0 && !n.hasRaftState(controller.GroupID) && !n.hasRejoinMarker(controller.GroupID) {
		// Nothing here names a peer (the wiped Raft state held the
		// addresses): the demotion could never be asked for.
		return fmt.Errorf("server: rejoin: the data directory has no Raft state, so the node cannot find its peers: give --peers (every node's id=address)")
	}
	if !resumed {
		if err := heraldraft.WriteFileDurably(path, []byte(wipedReason+"\n")); err != nil {
			return fmt.Errorf("server: rejoin: %w", err)
		}
	}
	n.wiped.pending = true
	switch {
	case n.hasRejoinMarker(controller.GroupID):
		n.logger.Warn("rejoin: the controller is already rejoining; following its marker")
	case n.hasRaftState(controller.GroupID):
		n.logger.Warn("rejoin: the controller has Raft state here; --rejoin applies only to groups without state", "resumed", resumed)
	default:
		if err := n.markWiped(controller.GroupID); err != nil {
			return fmt.Errorf("server: rejoin: controller: %w", err)
		}
	}
	return nil
}

// markWiped writes group gid's rejoin marker at stage damaged.
func (n *Node) markWiped(gid uint64) error { return n.markRejoin(gid, wipedReason) }

// markRejoin writes group gid's rejoin marker at stage damaged, with reason.
func (n *Node) markRejoin(gid uint64, reason string) error {
	if err := os.MkdirAll(filepath.Dir(n.groupDir(gid)), 0o755); err != nil {
		return err
	}
	return heraldraft.WriteRejoinMarker(n.groupDir(gid), &heraldraft.RejoinMarker{Group: gid,
		DetectedAt: time.Now().UTC(), Reason: reason, Stage: heraldraft.RejoinDamaged})
}

// wipedPass is the reconciler's partition pass of a wiped node's rejoin:
// called once the registry has caught up with the controller leader's
// (registrySyncedOnce, which also covers the controller's own catch-up
// index when it rejoined), it marks every assigned group that has neither
// Raft state nor a marker here, then removes the pending marker. A failure
// is logged and the pass runs again at the next reconcile.
func (n *Node) wipedPass(assigned []controller.Assignment) {
	if !n.wiped.pending {
		return
	}
	var marked, kept []uint64
	for _, a := range assigned {
		gid := a.Partition.GroupID
		if n.hasRaftState(gid) || n.hasRejoinMarker(gid) {
			kept = append(kept, gid)
			continue
		}
		if err := n.markWiped(gid); err != nil {
			n.logger.Error("rejoin: cannot write the rejoin marker; retrying at the next pass", "group", gid, "err", err)
			return
		}
		marked = append(marked, gid)
	}
	if err := os.Remove(n.wipedMarkerPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.logger.Error("rejoin: cannot remove the pending marker; retrying at the next pass", "err", err)
		return
	}
	n.wiped.pending = false
	n.logger.Warn("rejoin: every partition group without Raft state here rejoins from its peers",
		"rejoining_groups", marked, "groups_with_state", kept)
}

// mayOpenWiped reports whether group gid may be opened while the partition
// pass is pending: only with Raft state or a marker here.
func (n *Node) mayOpenWiped(gid uint64) bool {
	return !n.wiped.pending || n.hasRaftState(gid) || n.hasRejoinMarker(gid)
}
