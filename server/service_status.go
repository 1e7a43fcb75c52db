package server

import (
	"context"
	"sync"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/partition"
	heraldraft "github.com/heraldlog/herald/raft"
	"github.com/heraldlog/herald/server/controller"
)

// statusTimeout bounds how long ClusterStatus waits for each peer.
const statusTimeout = 2 * time.Second

type internalService struct {
	heraldpb.UnimplementedNodeInternalServer
	node *Node
}

func (s *internalService) NodeStatus(context.Context, *heraldpb.NodeStatusRequest) (*heraldpb.NodeStatusResponse, error) {
	return s.node.localStatus(), nil
}

// Group states reported besides hashicorp/raft's own (Follower, Leader,
// ...) for a replica that rejoins from its peers.
const (
	// stateRejoining: the group is not open here; its replica waits for the
	// leader to demote it (its Raft state was damaged).
	stateRejoining = "Rejoining"
	// stateNonvoter: the group runs here as a non-voter catching up.
	stateNonvoter = "Nonvoter"
)

// groupState is a group's state as status reports it.
func (n *Node) groupState(gid uint64, raftState string) string {
	if raftState == "Follower" && n.rejoins.stage(gid) == heraldraft.RejoinDemoted {
		return stateNonvoter
	}
	return raftState
}

// localStatus reports the groups hosted here; group 0 is the controller.
func (n *Node) localStatus() *heraldpb.NodeStatusResponse {
	resp := &heraldpb.NodeStatusResponse{NodeId: n.cfg.NodeID, HttpAddr: n.cfg.HTTPAddr}
	rf := n.controller.Raft()
	_, leaderID := rf.LeaderWithID()
	resp.Groups = append(resp.Groups, &heraldpb.GroupStatus{
		GroupId:      controller.GroupID,
		State:        n.groupState(controller.GroupID, rf.State().String()),
		LeaderId:     string(leaderID),
		CommitIndex:  rf.CommitIndex(),
		AppliedIndex: rf.AppliedIndex(),
		LastLogIndex: rf.LastIndex(),
	})
	open := map[uint64]bool{}
	for _, r := range n.replicasSnapshot() {
		st := r.Status()
		open[r.GroupID()] = true
		resp.Groups = append(resp.Groups, &heraldpb.GroupStatus{
			GroupId:            r.GroupID(),
			State:              n.groupState(r.GroupID(), st.State),
			LeaderId:           st.LeaderID,
			CommitIndex:        st.CommitIndex,
			AppliedIndex:       st.AppliedIndex,
			HighWatermark:      st.HighWatermark,
			LastLogIndex:       st.LastLogIndex,
			Term:               st.Term,
			LowWatermark:       st.LowWatermark,
			LastAppendUnixNano: lastAppend(r),
		})
	}
	for _, a := range n.controllerFSM.AssignedTo(n.cfg.NodeID) {
		gid := a.Partition.GroupID
		if !open[gid] && n.rejoins.stage(gid) == heraldraft.RejoinDamaged {
			resp.Groups = append(resp.Groups, &heraldpb.GroupStatus{GroupId: gid, State: stateRejoining})
		}
	}
	return resp
}

// gatherStatus asks every node for its NodeStatus in parallel; unreachable
// nodes are absent from the result.
func (n *Node) gatherStatus(ctx context.Context) map[string]*heraldpb.NodeStatusResponse {
	nodes := n.nodes()
	out := make(map[string]*heraldpb.NodeStatusResponse, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, addr := range nodes {
		if id == n.cfg.NodeID {
			local := n.localStatus()
			mu.Lock()
			out[id] = local
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func(id, addr string) {
			defer wg.Done()
			ic, err := n.peers.internal(addr)
			if err != nil {
				return
			}
			cctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			st, err := ic.NodeStatus(cctx, &heraldpb.NodeStatusRequest{})
			if err != nil {
				return
			}
			mu.Lock()
			out[id] = st
			mu.Unlock()
		}(id, addr)
	}
	wg.Wait()
	return out
}

// statusAuthoritative reports whether this node can answer ClusterStatus:
// it knows the controller's configuration (nodes), and its controller
// replica, if it rejoins, has applied the registry up to the index the
// leader demoted it at. A wiped node's controller starts empty as a
// non-voter: until it has caught up it knows no configuration and no
// topics, and its status listed no nodes and no partitions, which reads as
// a cluster with nothing wrong (the fault-injection gate let a second and
// a third wipe through on such an answer).
func (n *Node) statusAuthoritative(nodes map[string]string) bool {
	if len(nodes) == 0 {
		return false
	}
	m, rejoining := n.rejoins.marker(controller.GroupID)
	return !rejoining || m.Stage == heraldraft.RejoinDemoted && n.controllerFSM.AppliedIndex() >= m.CatchUpIndex
}

func (s *heraldService) ClusterStatus(ctx context.Context, _ *heraldpb.ClusterStatusRequest) (*heraldpb.ClusterStatusResponse, error) {
	n := s.node
	nodes := n.nodes()
	if !n.statusAuthoritative(nodes) {
		return nil, wire.NodeCatchingUp(n.cfg.NodeID)
	}
	statuses := n.gatherStatus(ctx)
	resp := &heraldpb.ClusterStatusResponse{}
	resp.ControllerLeaderId, _ = n.controllerLeader()
	groupsByNode := make(map[string]map[uint64]*heraldpb.GroupStatus)
	for id, st := range statuses {
		m := make(map[uint64]*heraldpb.GroupStatus)
		for _, g := range st.GetGroups() {
			m[g.GetGroupId()] = g
		}
		groupsByNode[id] = m
	}
	for _, id := range n.sortedNodeIDs() {
		info := &heraldpb.NodeStatusInfo{Id: id, GrpcAddr: nodes[id], HttpAddr: statuses[id].GetHttpAddr()}
		if g, ok := groupsByNode[id][controller.GroupID]; ok {
			info.Reachable = true
			info.ControllerState = g.GetState()
		}
		resp.Nodes = append(resp.Nodes, info)
	}
	for _, t := range n.controllerFSM.Topics() {
		for _, p := range t.Partitions {
			ps := &heraldpb.PartitionStatus{Topic: t.Name, Index: p.Index, GroupId: p.GroupID, Replicas: p.Replicas}
			for _, id := range p.Replicas {
				rs := &heraldpb.ReplicaStatus{NodeId: id, State: "unreachable"}
				if g, ok := groupsByNode[id][p.GroupID]; ok {
					rs.State = g.GetState()
					rs.CommitIndex = g.GetCommitIndex()
					rs.AppliedIndex = g.GetAppliedIndex()
					rs.HighWatermark = g.GetHighWatermark()
					rs.LastLogIndex = g.GetLastLogIndex()
					rs.LowWatermark = g.GetLowWatermark()
					if g.GetState() == "Leader" {
						ps.LeaderId = id
						ps.CommitIndex = g.GetCommitIndex()
						ps.HighWatermark = g.GetHighWatermark()
						ps.LowWatermark = g.GetLowWatermark()
					}
				} else if _, reachable := groupsByNode[id]; reachable {
					rs.State = "not open"
				}
				ps.ReplicaStatus = append(ps.ReplicaStatus, rs)
			}
			resp.Partitions = append(resp.Partitions, ps)
		}
	}
	return resp, nil
}

// lastAppend is the produce time of the replica's newest event, or 0.
func lastAppend(r *partition.Replica) int64 {
	hw := r.HighWatermark()
	if hw == 0 || hw <= r.LowWatermark() {
		return 0
	}
	recs, err := r.Read(hw-1, 1, 1)
	if err != nil || len(recs) == 0 {
		return 0
	}
	return recs[0].TimestampUnixNano
}
