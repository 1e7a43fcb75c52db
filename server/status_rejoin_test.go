package server

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	heraldraft "github.com/heraldlog/herald/raft"
	"github.com/heraldlog/herald/server/controller"
)

// A node whose controller replica rejoins and has not applied the registry
// up to its catch-up index refuses ClusterStatus with a retryable error
// instead of answering from the registry it does not have yet; the other
// nodes report its controller replica as a Nonvoter; once it has caught up
// it answers again. In fault-injection run j10-s1 a wiped node, its
// controller just demoted and empty, answered with no nodes and no
// partitions, and the wipe gate took that for a whole cluster.
func TestClusterStatusRefusedWhileControllerCatchesUp(t *testing.T) {
	c := startCluster(t, 3)
	createTopic(t, c.rawClient(0), "orders", 1, 3)
	// The rejoining replica is a follower of the controller.
	leaderID, _ := c.nodes[0].controllerLeader()
	victim, other := -1, -1
	for i, n := range c.nodes {
		switch {
		case n.cfg.NodeID == leaderID:
		case victim < 0:
			victim = i
		default:
			other = i
		}
	}
	if victim < 0 || other < 0 {
		t.Fatalf("controller leader %q: want two followers", leaderID)
	}
	vid := c.cfgs[victim].NodeID
	status := func(i int) (*heraldpb.ClusterStatusResponse, error) {
		return c.rawClient(i).ClusterStatus(ctxTimeout(t, 5*time.Second), &heraldpb.ClusterStatusRequest{})
	}
	controllerState := func(st *heraldpb.ClusterStatusResponse, id string) string {
		for _, n := range st.GetNodes() {
			if n.GetId() == id {
				return n.GetControllerState()
			}
		}
		return "absent"
	}

	// Demoted, catch-up index not applied yet.
	n := c.nodes[victim]
	n.rejoins.track(controller.GroupID, &heraldraft.RejoinMarker{Group: controller.GroupID,
		Stage: heraldraft.RejoinDemoted, CatchUpIndex: math.MaxUint64, Reason: "test"})
	_, err := status(victim)
	if ce := wire.FromStatus(err); err == nil || !errors.Is(ce, wire.ErrNoLeader) {
		t.Fatalf("%s (catching up) answered ClusterStatus: err %v, want a retryable refusal", vid, err)
	}
	st, err := status(other)
	if err != nil {
		t.Fatal(err)
	}
	if got := controllerState(st, vid); got != stateNonvoter {
		t.Fatalf("%s's controller replica is %q in %s's status, want %q", vid, got, c.cfgs[other].NodeID, stateNonvoter)
	}

	// Caught up, not promoted yet: it answers, and names itself a Nonvoter.
	n.rejoins.track(controller.GroupID, &heraldraft.RejoinMarker{Group: controller.GroupID,
		Stage: heraldraft.RejoinDemoted, CatchUpIndex: 1, Reason: "test"})
	if st, err = status(victim); err != nil {
		t.Fatalf("%s (caught up) refused ClusterStatus: %v", vid, err)
	}
	if got := controllerState(st, vid); got != stateNonvoter || len(st.GetNodes()) != 3 || len(st.GetPartitions()) != 1 {
		t.Fatalf("%s's own status: controller %q, %d nodes, %d partitions", vid, got, len(st.GetNodes()), len(st.GetPartitions()))
	}

	// Promoted.
	n.rejoins.untrack(controller.GroupID)
	eventually(t, 10*time.Second, func() error {
		st, err := status(victim)
		if err != nil {
			return err
		}
		if got := controllerState(st, vid); got != "Follower" && got != "Leader" {
			return fmt.Errorf("controller %q", got)
		}
		return nil
	})
}
