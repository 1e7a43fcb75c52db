package jepsen

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/heraldtest"
)

// settledStatus is the cluster status of a whole 3-node cluster: every
// node reachable, n1 leading the controller, one partition of topic with a
// replica on every node, led by n1.
func settledStatus(topic string) *heraldpb.ClusterStatusResponse {
	st := &heraldpb.ClusterStatusResponse{ControllerLeaderId: "n1"}
	p := &heraldpb.PartitionStatus{Topic: topic, GroupId: 1, Replicas: []string{"n1", "n2", "n3"}, LeaderId: "n1"}
	for _, id := range []string{"n1", "n2", "n3"} {
		state := "Follower"
		if id == "n1" {
			state = "Leader"
		}
		st.Nodes = append(st.Nodes, &heraldpb.NodeStatusInfo{Id: id, Reachable: true, ControllerState: state})
		p.ReplicaStatus = append(p.ReplicaStatus, &heraldpb.ReplicaStatus{NodeId: id, State: state})
	}
	st.Partitions = []*heraldpb.PartitionStatus{p}
	return st
}

// gateCluster is a fake 3-node cluster whose node i answers ClusterStatus
// with views[i] (an error when nil), and a nemesis on it.
func gateCluster(t *testing.T, views [3]*heraldpb.ClusterStatusResponse) *nemesis {
	t.Helper()
	fake := heraldtest.NewCluster(t, 3)
	c := &Cluster{}
	for i, node := range fake.Nodes {
		view := views[i]
		node.Handle("ClusterStatus", func(context.Context, any) (any, error) {
			if view == nil {
				return nil, client.NodeStarting(node.ID)
			}
			return view, nil
		})
		c.Nodes = append(c.Nodes, Node{ID: node.ID, GRPCAddr: node.Addr})
	}
	return &nemesis{cluster: c, topic: "jepsen"}
}

// The gate of wipes and Raft damage (membershipSettled) must refuse unless
// every node's view is settled. In run /tmp/j10-s1 (seed 1) n2 was wiped;
// its controller replica was demoted to a non-voter and started empty, so
// until it caught up it knew no configuration and no registry: its cluster
// status listed no nodes and no partitions. The gate asked through a
// client whose first attempt went to n2, found nothing unsettled in that
// empty view, and let n3 and then n1 be wiped: every controller replica
// lost its state and the cluster never came back.
func TestMembershipGateRefusesWhileANodeCatchesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	empty := &heraldpb.ClusterStatusResponse{ControllerLeaderId: "n1"} // n2's view while catching up
	nonvoter := settledStatus("jepsen")
	nonvoter.Nodes[1].ControllerState = "Nonvoter"
	noTopic := settledStatus("jepsen")
	noTopic.Partitions = nil
	twoNodes := settledStatus("jepsen")
	twoNodes.Nodes = twoNodes.Nodes[:2]
	rejoining := settledStatus("jepsen")
	rejoining.Partitions[0].ReplicaStatus[2].State = "Rejoining"
	ok := settledStatus("jepsen")
	cases := []struct {
		name  string
		views [3]*heraldpb.ClusterStatusResponse
		want  string // "" for settled; else in the refusal
	}{
		{"settled", [3]*heraldpb.ClusterStatusResponse{ok, ok, ok}, ""},
		{"catching-up node's empty view", [3]*heraldpb.ClusterStatusResponse{ok, empty, ok}, "in the view of n2"},
		{"every view empty", [3]*heraldpb.ClusterStatusResponse{empty, empty, empty}, "refused"},
		{"controller non-voter", [3]*heraldpb.ClusterStatusResponse{nonvoter, nonvoter, nonvoter}, "Nonvoter"},
		{"registry without the topic", [3]*heraldpb.ClusterStatusResponse{ok, noTopic, ok}, "no topic jepsen"},
		{"node missing from the configuration", [3]*heraldpb.ClusterStatusResponse{ok, ok, twoNodes}, "lists nodes [n1,n2]"},
		{"partition replica rejoining", [3]*heraldpb.ClusterStatusResponse{ok, ok, rejoining}, "on n3 is \"Rejoining\""},
		{"node not serving", [3]*heraldpb.ClusterStatusResponse{ok, nil, ok}, "n2 does not answer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := gateCluster(t, tc.views).membershipSettled(ctx)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused a settled cluster: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("let a wipe through; want a refusal naming %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("refusal %q does not name %q", err, tc.want)
			}
		})
	}
}
