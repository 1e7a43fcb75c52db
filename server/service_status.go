package server

import (
	"context"
	"sync"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/partition"
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

// localStatus reports the groups hosted here; group 0 is the controller.
func (n *Node) localStatus() *heraldpb.NodeStatusResponse {
	resp := &heraldpb.NodeStatusResponse{NodeId: n.cfg.NodeID}
	rf := n.controller.Raft()
	_, leaderID := rf.LeaderWithID()
	resp.Groups = append(resp.Groups, &heraldpb.GroupStatus{
		GroupId:      controllerGroupID,
		State:        rf.State().String(),
		LeaderId:     string(leaderID),
		CommitIndex:  rf.CommitIndex(),
		AppliedIndex: rf.AppliedIndex(),
		LastLogIndex: rf.LastIndex(),
	})
	for _, r := range n.replicasSnapshot() {
		st := r.Status()
		resp.Groups = append(resp.Groups, &heraldpb.GroupStatus{
			GroupId:            r.GroupID(),
			State:              st.State,
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

func (s *heraldService) ClusterStatus(ctx context.Context, _ *heraldpb.ClusterStatusRequest) (*heraldpb.ClusterStatusResponse, error) {
	n := s.node
	statuses := n.gatherStatus(ctx)
	nodes := n.nodes()
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
		info := &heraldpb.NodeStatusInfo{Id: id, GrpcAddr: nodes[id]}
		if g, ok := groupsByNode[id][controllerGroupID]; ok {
			info.Reachable = true
			info.ControllerState = g.GetState()
		}
		resp.Nodes = append(resp.Nodes, info)
	}
	for _, t := range n.controllerFSM.topics() {
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
	lg := r.Log()
	hw := lg.HighWatermark()
	if hw == 0 || hw <= lg.LowWatermark() {
		return 0
	}
	recs, err := lg.Read(hw-1, 1, 1)
	if err != nil || len(recs) == 0 {
		return 0
	}
	return recs[0].TimestampUnixNano
}
