package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/heraldlog/herald/client"
)

// scaleRSSSampleInterval is how often a step samples each node's RSS
// during its idle window (the figure is their mean: one sample is noisy,
// the Go heap breathes with every GC).
const scaleRSSSampleInterval = time.Second

// scaleRun is one scale run's state. It is used by RunScale's goroutine
// only (topic creation fans out under createTopics, which owns its
// workers and is done before it returns).
type scaleRun struct {
	opts    ScaleOptions
	cluster *LocalCluster
	admin   *client.Client
	log     io.Writer
	// prefix starts every topic name of the run.
	prefix string
	// topics are the topics created so far; partitions their partitions
	// together (= replicas per node, replication 3 on three nodes).
	topics     []scaleTopic
	partitions int
}

// scaleTopic is one topic the run created.
type scaleTopic struct {
	name       string
	partitions int
}

// metricsClient returns a client for the nodes' admin /metrics.
func (s *scaleRun) metricsClient() *http.Client { return &http.Client{Timeout: metricsTimeout} }

// measure measures every node over an idle window of opts.Idle: CPU
// between its two ends, RSS as the mean of samples every
// scaleRSSSampleInterval, open files and goroutines at its end. With base
// (nil for the baseline itself) the per-replica figures are deltas from
// it divided by the replicas per node. The bench makes no request to the
// nodes during the window; the goroutine count is scraped after the CPU
// has been read, so that the scrape is not counted.
func (s *scaleRun) measure(ctx context.Context, base *ScaleStep) (ScaleStep, error) {
	pids := s.cluster.PIDs()
	step := ScaleStep{ReplicasPerNode: s.partitions, Partitions: s.partitions, Topics: len(s.topics)}
	cpu0 := make([]float64, len(pids))
	for i, pid := range pids {
		v, err := procCPU{pids: []int{pid}}.cpuSeconds(ctx)
		if err != nil {
			return step, err
		}
		cpu0[i] = v
	}
	machine0, self0 := machineBusySeconds(), selfCPUSeconds()
	start := time.Now()
	rssSum := make([]int64, len(pids))
	var samples int64
	tick := time.NewTicker(scaleRSSSampleInterval)
	defer tick.Stop()
	deadline := time.NewTimer(s.opts.Idle)
	defer deadline.Stop()
	sample := func() {
		for i, pid := range pids {
			rssSum[i] += max(procStatusKiB(pid, "VmRSS"), 0)
		}
		samples++
	}
	sample()
wait:
	for {
		select {
		case <-ctx.Done():
			return step, ctx.Err()
		case <-deadline.C:
			break wait
		case <-tick.C:
			sample()
		}
	}
	elapsed := time.Since(start).Seconds()
	machine1, self1 := machineBusySeconds(), selfCPUSeconds()
	if err := s.cluster.Exited(); err != nil {
		return step, err
	}
	hc := s.metricsClient()
	defer hc.CloseIdleConnections()
	step.IdleS = round(elapsed, 3)
	var cpuTotal float64
	for i, pid := range pids {
		v, err := procCPU{pids: []int{pid}}.cpuSeconds(ctx)
		if err != nil {
			return step, err
		}
		n := ScaleNode{Node: s.cluster.procs.Node(i).ID, PID: pid, Goroutines: -1}
		used := v - cpu0[i]
		cpuTotal += used
		n.CPUPercent = round(100*used/elapsed, 2)
		n.RSSKiB = rssSum[i] / samples
		n.OpenFiles = countOpenFiles(pid)
		if g, err := scrapeGoroutines(ctx, hc, s.cluster.procs.Node(i).AdminAddr); err == nil {
			n.Goroutines = g
		}
		step.Nodes = append(step.Nodes, n)
	}
	step.ClusterCPUPercent = round(100*cpuTotal/elapsed, 2)
	step.MachineCPUPercent, step.BenchCPUPercent = -1, -1
	if machine0 >= 0 && machine1 >= 0 {
		step.MachineCPUPercent = round(100*(machine1-machine0)/elapsed, 2)
	}
	if self0 >= 0 && self1 >= 0 {
		step.BenchCPUPercent = round(100*(self1-self0)/elapsed, 2)
	}
	step.LoadAverage1m = loadAverage1m()
	if base != nil {
		perReplica(&step, base)
	}
	return step, nil
}

// perReplica fills step's per-replica figures from its nodes' deltas
// against base's nodes (matched by position: the same three nodes).
func perReplica(step *ScaleStep, base *ScaleStep) {
	r := float64(step.ReplicasPerNode)
	if r <= 0 || len(base.Nodes) != len(step.Nodes) {
		return
	}
	replicas := r * float64(len(step.Nodes))
	// Per replica: the cluster's CPU above the baseline, in ms of CPU
	// per second, shared by every replica of the cluster.
	step.CPUPerReplicaMsPerS = round(10*(step.ClusterCPUPercent-base.ClusterCPUPercent)/replicas, 4)
	var rss, files, goroutines float64
	goroutinesKnown := true
	for i := range step.Nodes {
		n, b := &step.Nodes[i], base.Nodes[i]
		n.RSSDeltaKiB = n.RSSKiB - b.RSSKiB
		n.RSSPerReplicaKiB = round(float64(n.RSSDeltaKiB)/r, 2)
		n.FilesPerReplica = round(float64(n.OpenFiles-b.OpenFiles)/r, 3)
		rss += n.RSSPerReplicaKiB
		files += n.FilesPerReplica
		n.GoroutinesPerReplica = -1
		if n.Goroutines >= 0 && b.Goroutines >= 0 {
			n.GoroutinesPerReplica = round(float64(n.Goroutines-b.Goroutines)/r, 3)
			goroutines += n.GoroutinesPerReplica
		} else {
			goroutinesKnown = false
		}
	}
	nodes := float64(len(step.Nodes))
	step.RSSPerReplicaKiB = round(rss/nodes, 2)
	step.FilesPerReplica = round(files/nodes, 3)
	step.GoroutinesPerReplica = -1
	if goroutinesKnown {
		step.GoroutinesPerReplica = round(goroutines/nodes, 3)
	}
}

// countOpenFiles counts the entries of /proc/<pid>/fd (-1: unknown).
func countOpenFiles(pid int) int {
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

// scrapeGoroutines reads go_goroutines from a node's /metrics at addr.
func scrapeGoroutines(ctx context.Context, hc *http.Client, addr string) (int, error) {
	body, err := scrapeMetrics(ctx, hc, addr)
	if err != nil {
		return 0, err
	}
	v, err := parseMetricValue(strings.NewReader(body), "go_goroutines")
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	return int(v), nil
}

// machineBusySeconds returns the CPU time every process of the machine has
// used since boot, all cores together (the "cpu" line of /proc/stat:
// user, nice, system, irq, softirq and steal), or -1.
func machineBusySeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	return parseMachineBusy(string(b))
}

// parseMachineBusy reads the busy ticks of /proc/stat's first line, in
// seconds (-1: malformed).
func parseMachineBusy(stat string) float64 {
	line, _, _ := strings.Cut(stat, "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return -1
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal: all but idle and
	// iowait.
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseUint(fields[i], 10, 64)
		if err != nil {
			return -1
		}
		busy += v
	}
	return float64(busy) / clockTicksPerSecond
}

// loadAverage1m returns the machine's one-minute load average, or -1.
func loadAverage1m() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	first, _, _ := strings.Cut(string(b), " ")
	v, err := strconv.ParseFloat(first, 64)
	if err != nil {
		return -1
	}
	return v
}
