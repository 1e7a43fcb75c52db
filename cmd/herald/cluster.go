package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/heraldlog/herald/client"
)

// newClusterCommand groups the cluster verbs: status.
func newClusterCommand(env environment) *cobra.Command {
	var opts clientOptions
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect the cluster",
		RunE:  runGroup,
	}
	opts.register(cmd.PersistentFlags(), env)
	cmd.AddCommand(newClusterStatusCommand(&opts))
	return cmd
}

func newClusterStatusCommand(opts *clientOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the nodes and every partition's replication state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.ClusterStatus(cmd.Context())
			if err != nil {
				return err
			}
			return printClusterStatus(cmd.OutOrStdout(), st, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of tables")
	return cmd
}

// clusterView is `cluster status --json`.
type clusterView struct {
	ControllerLeaderID string          `json:"controller_leader_id"`
	Nodes              []nodeView      `json:"nodes"`
	Partitions         []partitionView `json:"partitions"`
}

type nodeView struct {
	ID              string `json:"id"`
	Address         string `json:"address"`
	Reachable       bool   `json:"reachable"`
	ControllerState string `json:"controller_state"`
}

type partitionView struct {
	Topic         string        `json:"topic"`
	Index         uint32        `json:"index"`
	GroupID       uint64        `json:"group_id"`
	Replicas      []string      `json:"replicas"`
	LeaderID      string        `json:"leader_id"`
	CommitIndex   uint64        `json:"commit_index"`
	HighWatermark uint64        `json:"high_watermark"`
	ReplicaStatus []replicaView `json:"replica_status"`
}

type replicaView struct {
	NodeID        string `json:"node_id"`
	State         string `json:"state"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	HighWatermark uint64 `json:"high_watermark"`
	LastLogIndex  uint64 `json:"last_log_index"`
}

func newClusterView(st *client.ClusterStatusResponse) clusterView {
	v := clusterView{ControllerLeaderID: st.GetControllerLeaderId(), Nodes: []nodeView{}, Partitions: []partitionView{}}
	for _, n := range st.GetNodes() {
		v.Nodes = append(v.Nodes, nodeView{ID: n.GetId(), Address: n.GetGrpcAddr(), Reachable: n.GetReachable(), ControllerState: n.GetControllerState()})
	}
	for _, p := range st.GetPartitions() {
		pv := partitionView{
			Topic: p.GetTopic(), Index: p.GetIndex(), GroupID: p.GetGroupId(), Replicas: append([]string{}, p.GetReplicas()...),
			LeaderID: p.GetLeaderId(), CommitIndex: p.GetCommitIndex(), HighWatermark: p.GetHighWatermark(), ReplicaStatus: []replicaView{},
		}
		for _, r := range p.GetReplicaStatus() {
			pv.ReplicaStatus = append(pv.ReplicaStatus, replicaView{
				NodeID: r.GetNodeId(), State: r.GetState(), CommitIndex: r.GetCommitIndex(), AppliedIndex: r.GetAppliedIndex(),
				HighWatermark: r.GetHighWatermark(), LastLogIndex: r.GetLastLogIndex(),
			})
		}
		v.Partitions = append(v.Partitions, pv)
	}
	sort.SliceStable(v.Partitions, func(i, j int) bool {
		a, b := v.Partitions[i], v.Partitions[j]
		return a.Topic < b.Topic || (a.Topic == b.Topic && a.Index < b.Index)
	})
	return v
}

// printClusterStatus prints the status as JSON or as a node table and a
// partition table.
func printClusterStatus(w io.Writer, st *client.ClusterStatusResponse, asJSON bool) error {
	v := newClusterView(st)
	if asJSON {
		return newJSONWriter(w).write(v)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "NODE\tADDRESS\tREACHABLE\tCONTROLLER")
	for _, n := range v.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.ID, n.Address, yesNo(n.Reachable), orDash(n.ControllerState))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tGROUP\tREPLICAS\tLEADER\tCOMMIT INDEX\tHIGH WATERMARK")
	for _, p := range v.Partitions {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%d\n", p.Topic, p.Index, p.GroupID, strings.Join(p.Replicas, ","), orDash(p.LeaderID), p.CommitIndex, p.HighWatermark)
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
