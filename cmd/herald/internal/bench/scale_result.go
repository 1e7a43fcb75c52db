package bench

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
)

// ScaleNode is one node over one step's idle window.
type ScaleNode struct {
	Node string `json:"node"`
	PID  int    `json:"pid"`
	// CPUPercent is the node's CPU over the window, in % of one core.
	CPUPercent float64 `json:"cpu_percent"`
	// RSSKiB is the mean of VmRSS samples over the window; RSSDeltaKiB
	// its difference from the baseline, RSSPerReplicaKiB that divided by
	// the replicas per node.
	RSSKiB           int64   `json:"rss_kib"`
	RSSDeltaKiB      int64   `json:"rss_delta_kib"`
	RSSPerReplicaKiB float64 `json:"rss_per_replica_kib"`
	// OpenFiles counts /proc/<pid>/fd at the window's end (-1: unknown).
	OpenFiles       int     `json:"open_files"`
	FilesPerReplica float64 `json:"files_per_replica"`
	// Goroutines is go_goroutines from the node's admin /metrics (-1:
	// unknown); GoroutinesPerReplica its delta from the baseline per
	// replica (-1: unknown).
	Goroutines           int     `json:"goroutines"`
	GoroutinesPerReplica float64 `json:"goroutines_per_replica"`
}

// ScaleStep is the cluster at one number of replicas per node. The
// baseline (the empty cluster) is a step of 0 replicas without
// per-replica figures.
type ScaleStep struct {
	// TargetReplicasPerNode is the step asked for; ReplicasPerNode what
	// the cluster had when it was measured (= Partitions: replication 3
	// on three nodes).
	TargetReplicasPerNode int `json:"target_replicas_per_node"`
	ReplicasPerNode       int `json:"replicas_per_node"`
	Partitions            int `json:"partitions"`
	Topics                int `json:"topics"`
	// Listed is the run's partitions ListTopics showed, Led those of them
	// with a leader, when the wait for leaders ended.
	Listed int `json:"listed"`
	Led    int `json:"led"`
	// Reached is false when the step's topics or leaders were not all
	// there within --step-timeout (Problem says what), which ends the
	// growth; it is measured all the same.
	Reached bool   `json:"reached"`
	Problem string `json:"problem,omitempty"`
	// CreateS is the time to create the step's topics, LeadersS the wait
	// after that for every partition's leader.
	CreateS  float64 `json:"create_s"`
	LeadersS float64 `json:"leaders_s"`
	IdleS    float64 `json:"idle_s"`
	// ClusterCPUPercent is the three nodes' CPU over the idle window in %
	// of one core; CPUPerReplicaMsPerS the part above the baseline per
	// replica of the cluster (3 x ReplicasPerNode), in ms of CPU per
	// second.
	ClusterCPUPercent   float64 `json:"cluster_cpu_percent"`
	CPUPerReplicaMsPerS float64 `json:"cpu_per_replica_ms_per_s"`
	// MachineCPUPercent is every process of the machine over the window
	// (/proc/stat), BenchCPUPercent this process's, both in % of one
	// core (-1: unknown), and LoadAverage1m the machine's at its end: what
	// else ran beside the nodes, which slows them (late heartbeats cost
	// elections) and so can raise their figures.
	MachineCPUPercent float64 `json:"machine_cpu_percent"`
	BenchCPUPercent   float64 `json:"bench_cpu_percent"`
	LoadAverage1m     float64 `json:"load_average_1m"`
	// The nodes' mean of their per-replica figures (ScaleNode).
	RSSPerReplicaKiB     float64     `json:"rss_per_replica_kib"`
	FilesPerReplica      float64     `json:"files_per_replica"`
	GoroutinesPerReplica float64     `json:"goroutines_per_replica"`
	Nodes                []ScaleNode `json:"nodes"`
}

// ScaleFill is the data produced before the restart.
type ScaleFill struct {
	TargetBytes int64 `json:"target_bytes"`
	EventBytes  int   `json:"event_bytes"`
	// Events and Bytes (payload) were acknowledged.
	Events    int64   `json:"events"`
	Bytes     int64   `json:"bytes"`
	DurationS float64 `json:"duration_s"`
	MBPerSec  float64 `json:"mb_per_sec"`
	// FailedRequests counts the produce requests that failed (their
	// events may or may not be written; not counted in Bytes), FirstError
	// says why the first did.
	FailedRequests int64  `json:"failed_requests"`
	FirstError     string `json:"first_error,omitempty"`
	Problem        string `json:"problem,omitempty"`
}

// ScaleRestart is one node's restart on its data.
type ScaleRestart struct {
	Node string `json:"node"`
	// ControllerLeader is true when the restarted node led the
	// controller (only when no other node could be picked).
	ControllerLeader bool `json:"controller_leader"`
	// Replicas is the node's partition replicas of the run's topics.
	Replicas int        `json:"replicas"`
	Fill     *ScaleFill `json:"fill,omitempty"`
	// StopS is SIGTERM to exit.
	StopS float64 `json:"stop_s"`
	// ReadyzS is start (fork) to the first /readyz 200: controller leader
	// known, registry caught up, every assigned replica open. CaughtUpS
	// is start to ready and every replica applied to at least the commit
	// index its partition's leader had before the stop. -1: not reached
	// within --restart-timeout.
	ReadyzS   float64 `json:"readyz_s"`
	CaughtUpS float64 `json:"caught_up_s"`
	// Open and Applied count the replicas open and caught up at the last
	// look (all of them once CaughtUpS is known).
	Open    int `json:"open"`
	Applied int `json:"applied"`
	// RSSKiB and OpenFiles are the restarted node's once caught up.
	RSSKiB    int64  `json:"rss_kib"`
	OpenFiles int    `json:"open_files"`
	Problem   string `json:"problem,omitempty"`
}

// ScaleResult is the scale scenario's outcome. Its JSON keys are a
// contract like Result's: add keys, never rename or remove one.
type ScaleResult struct {
	Scenario        string  `json:"scenario"`
	Cluster         string  `json:"cluster"`
	Replication     int     `json:"replication"`
	TopicPartitions int     `json:"topic_partitions"`
	TopicPrefix     string  `json:"topic_prefix"`
	IdleS           float64 `json:"idle_s"`
	SettleS         float64 `json:"settle_s"`
	// Baseline is the empty cluster (the controller group only).
	Baseline ScaleStep     `json:"baseline"`
	Steps    []ScaleStep   `json:"steps"`
	Restart  *ScaleRestart `json:"restart,omitempty"`
	SVG      string        `json:"svg,omitempty"`
	Notes    []string      `json:"notes,omitempty"`
}

// WriteJSON writes r as one JSON object on one line.
func (r *ScaleResult) WriteJSON(w io.Writer) error { return writeJSONLine(w, r) }

// WriteSummary writes r for people: a table of the steps (cluster
// figures), a table per step of its nodes, and the restart.
func (r *ScaleResult) WriteSummary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "herald bench scale: %s cluster of 3 nodes, topics of at most %d partitions x%d (one replica per node each), settle %gs, idle window %gs, this machine has %d cores\n\n",
		r.Cluster, r.TopicPartitions, r.Replication, r.SettleS, r.IdleS, runtime.NumCPU())
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICAS/NODE\tTOPICS\tLED\tCREATE\tLEADERS\tCPU(cluster)\tCPU/REPLICA\tRSS/REPLICA\tFILES/REPLICA\tGOROUTINES/REPLICA\tCPU(machine)\tLOAD\tSTATUS")
	rows := append([]ScaleStep{r.Baseline}, r.Steps...)
	for i, s := range rows {
		status, perCPU, perRSS, perFiles, perG := "reached", "-", "-", "-", "-"
		if i == 0 {
			status = "baseline"
		} else {
			perCPU = fmt.Sprintf("%.3f ms/s", s.CPUPerReplicaMsPerS)
			perRSS = fmt.Sprintf("%.1f KiB", s.RSSPerReplicaKiB)
			perFiles = fmt.Sprintf("%.2f", s.FilesPerReplica)
			if s.GoroutinesPerReplica >= 0 {
				perG = fmt.Sprintf("%.2f", s.GoroutinesPerReplica)
			}
			if !s.Reached {
				status = "NOT REACHED"
			}
		}
		fmt.Fprintf(tw, "%d\t%d\t%d/%d\t%.1fs\t%.1fs\t%.1f%%\t%s\t%s\t%s\t%s\t%.0f%%\t%.1f\t%s\n", s.ReplicasPerNode, s.Topics, s.Led, s.Partitions,
			s.CreateS, s.LeadersS, s.ClusterCPUPercent, perCPU, perRSS, perFiles, perG, s.MachineCPUPercent, s.LoadAverage1m, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(&b, "\n  CPU: %% of one core over the idle window, all three nodes; per replica: above the baseline, in ms of CPU per second, per replica of the cluster (3 per partition)\n")
	fmt.Fprintf(&b, "  CPU(machine): every process of this machine over the window, %% of one core (the nodes, the bench, and anything else); LOAD: 1-minute load average\n")
	fmt.Fprintf(&b, "  RSS, files, goroutines per replica: each node's delta from the baseline over its replicas, mean of the nodes\n")
	fmt.Fprintf(&b, "  goals (issue 15, at 1,000 replicas per node): idle cluster under 10%% of one core; under 256 KiB per idle replica\n\n")
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICAS/NODE\tNODE\tCPU\tRSS\tRSS DELTA\tRSS/REPLICA\tFILES\tGOROUTINES")
	for _, s := range rows {
		for _, n := range s.Nodes {
			fmt.Fprintf(tw, "%d\t%s\t%.2f%%\t%.1f MiB\t%.1f MiB\t%.1f KiB\t%d\t%d\n", s.ReplicasPerNode, n.Node, n.CPUPercent,
				float64(n.RSSKiB)/1024, float64(n.RSSDeltaKiB)/1024, n.RSSPerReplicaKiB, n.OpenFiles, n.Goroutines)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Steps {
		if s.Problem != "" {
			fmt.Fprintf(&b, "  step %d replicas per node not reached: %s\n", s.TargetReplicasPerNode, s.Problem)
		}
	}
	if x := r.Restart; x != nil {
		b.WriteString("\n")
		if f := x.Fill; f != nil {
			fmt.Fprintf(&b, "  fill: %s events of %d B (%.1f MB of %.1f MB asked) in %.1fs, %.1f MB/s\n",
				formatCount(f.Events), f.EventBytes, float64(f.Bytes)/1e6, float64(f.TargetBytes)/1e6, f.DurationS, f.MBPerSec)
			if f.FailedRequests > 0 {
				fmt.Fprintf(&b, "  fill: %d requests failed (not counted; the fill went on), the first: %s\n", f.FailedRequests, f.FirstError)
			}
			if f.Problem != "" {
				fmt.Fprintf(&b, "  fill: %s\n", f.Problem)
			}
		}
		leader := ""
		if x.ControllerLeader {
			leader = ", the controller leader"
		}
		fmt.Fprintf(&b, "  restart of %s%s with %d replicas: stop (SIGTERM to exit) %.2fs; start to /readyz %s; start to every replica caught up %s\n",
			x.Node, leader, x.Replicas, x.StopS, formatSeconds(x.ReadyzS), formatSeconds(x.CaughtUpS))
		if x.Problem != "" {
			fmt.Fprintf(&b, "  restart: %s\n", x.Problem)
		} else {
			fmt.Fprintf(&b, "  after the restart %s: RSS %.1f MiB, %d open files\n", x.Node, float64(x.RSSKiB)/1024, x.OpenFiles)
		}
	}
	if r.SVG != "" {
		fmt.Fprintf(&b, "  plot: %s\n", r.SVG)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// formatSeconds renders a time in seconds, "not reached" when negative.
func formatSeconds(s float64) string {
	if s < 0 {
		return "not reached"
	}
	return fmt.Sprintf("%.2fs", s)
}
