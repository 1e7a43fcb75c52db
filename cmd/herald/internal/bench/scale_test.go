package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/heraldtest"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/proccluster"
)

func TestParseScaleSteps(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  string
	}{
		{in: "50,100,250,500,1000", want: []int{50, 100, 250, 500, 1000}},
		{in: " 3, 6 ,", want: []int{3, 6}},
		{in: "7", want: []int{7}},
		{in: "", err: "at least one step"},
		{in: "10,5", err: "increasing"},
		{in: "10,10", err: "increasing"},
		{in: "0", err: "want 1 to 10000"},
		{in: "10001", err: "want 1 to 10000"},
		{in: "ten", err: "not a number"},
	} {
		got, err := ParseScaleSteps(tc.in)
		if tc.err != "" {
			require.ErrorIs(t, err, ErrInvalidOptions, tc.in)
			assert.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestScaleOptionsValidateReportsEveryProblem(t *testing.T) {
	o := DefaultScaleOptions()
	require.NoError(t, o.Validate())
	assert.Equal(t, []int{50, 100, 250, 500, 1000}, o.Steps)

	o.Steps = []int{5, 3}
	o.MaxReplicas = -1
	o.TopicPartitions = 2000
	o.Idle = time.Millisecond
	o.Settle = -time.Second
	o.StepTimeout = 0
	o.RestartTimeout = 0
	o.CreateConcurrency = 0
	o.FillBytes = -1
	o.FillEventBytes = 0
	o.FillBatch = 0
	o.FillProducers = 100
	o.FillTimeout = 0
	o.Timeout = 0
	err := o.Validate()
	require.ErrorIs(t, err, ErrInvalidOptions)
	for _, flag := range []string{"--steps [5 3]", "--max-replicas -1", "--topic-partitions 2000", "--idle 1ms", "--settle -1s",
		"--step-timeout 0s", "--restart-timeout 0s", "--create-concurrency 0", "--fill-bytes -1", "--fill-size 0", "--fill-batch 0",
		"--fill-producers 100", "--fill-timeout 0s", "--timeout 0s"} {
		assert.Contains(t, err.Error(), flag)
	}

	o = DefaultScaleOptions()
	o.MaxReplicas = 10
	assert.ErrorContains(t, o.Validate(), "below the first step")
	o.MaxReplicas = 300
	require.NoError(t, o.Validate())
	assert.Equal(t, []int{50, 100, 250}, o.steps(), "the steps above --max-replicas are dropped")

	o = DefaultScaleOptions()
	o.FillBytes, o.NoRestart = 1<<20, true
	assert.ErrorContains(t, o.Validate(), "not with --no-restart")
	o = DefaultScaleOptions()
	o.FillBatch, o.FillEventBytes = 10_000, 1<<20
	assert.ErrorContains(t, o.Validate(), "at most 4 MiB per request")
}

func TestCountCaughtUp(t *testing.T) {
	exposition := `# HELP herald_partition_applied_index Raft index applied to the log, per local replica.
# TYPE herald_partition_applied_index gauge
herald_partition_applied_index{group="1"} 12
herald_partition_applied_index{group="2"} 4
herald_partition_applied_index{group="3"} 1.2e+07
herald_partition_applied_index{group="9"} 100
herald_partition_commit_index{group="2"} 40
`
	targets := map[string]uint64{"1": 12, "2": 5, "3": 12_000_000, "4": 1}
	open, applied := countCaughtUp(strings.NewReader(exposition), targets)
	assert.Equal(t, 3, open, "groups 1..3 open, 4 absent, 9 not a target")
	assert.Equal(t, 2, applied, "group 2 trails its target")
}

func TestParseMachineBusy(t *testing.T) {
	stat := "cpu  100 20 30 4000 50 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
	assert.InDelta(t, 1.71, parseMachineBusy(stat), 1e-9, "user+nice+system+irq+softirq+steal ticks / 100")
	assert.InDelta(t, -1.0, parseMachineBusy("intr 1 2 3\n"), 0)
}

func TestPartitionKeysRouteToEachPartition(t *testing.T) {
	for _, n := range []int{1, 2, 50, 1024} {
		keys := partitionKeys(n)
		require.Len(t, keys, n)
		for p, k := range keys {
			assert.EqualValues(t, p, client.PartitionFor(client.OrderingPerKey, scaleFillTenant, k, "", uint32(n)), "n=%d key %s", n, k)
		}
	}
}

func TestPerReplicaAgainstTheBaseline(t *testing.T) {
	base := ScaleStep{ClusterCPUPercent: 3, Nodes: []ScaleNode{
		{RSSKiB: 10_000, OpenFiles: 40, Goroutines: 100},
		{RSSKiB: 20_000, OpenFiles: 50, Goroutines: -1},
	}}
	step := ScaleStep{ReplicasPerNode: 100, ClusterCPUPercent: 23, Nodes: []ScaleNode{
		{RSSKiB: 30_000, OpenFiles: 440, Goroutines: 1100},
		{RSSKiB: 60_000, OpenFiles: 650, Goroutines: 900},
	}}
	perReplica(&step, &base)
	// 20 % of a core above the baseline = 200 ms/s over 200 replicas.
	assert.InDelta(t, 1.0, step.CPUPerReplicaMsPerS, 1e-9)
	assert.EqualValues(t, 20_000, step.Nodes[0].RSSDeltaKiB)
	assert.InDelta(t, 200.0, step.Nodes[0].RSSPerReplicaKiB, 1e-9)
	assert.InDelta(t, 400.0, step.Nodes[1].RSSPerReplicaKiB, 1e-9)
	assert.InDelta(t, 300.0, step.RSSPerReplicaKiB, 1e-9)
	assert.InDelta(t, 5.0, step.FilesPerReplica, 1e-9)
	assert.InDelta(t, 10.0, step.Nodes[0].GoroutinesPerReplica, 1e-9)
	assert.InDelta(t, -1.0, step.Nodes[1].GoroutinesPerReplica, 0, "the baseline's count is unknown")
	assert.InDelta(t, -1.0, step.GoroutinesPerReplica, 0)
}

// TestScaleCreateTopicResentAfterUnknownOutcome: the fake cluster creates
// the topic but answers UNKNOWN_OUTCOME; the bench sends the create again,
// is told the topic exists, finds it has the partitions and replication
// it asked for and counts it as created. A topic of that name with
// another shape is an error.
func TestScaleCreateTopicResentAfterUnknownOutcome(t *testing.T) {
	fake := heraldtest.NewCluster(t, 1)
	node := fake.Nodes[0]
	var creates atomic.Int64
	node.Handle("CreateTopic", func(ctx context.Context, req any) (any, error) {
		resp, err := node.Default(ctx, req)
		if creates.Add(1) == 1 {
			require.NoError(t, err)
			return nil, wire.UnknownOutcome("lost the answer")
		}
		return resp, err
	})
	admin, err := client.New(t.Context(), client.Config{Servers: fake.Addrs(), RequestTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer admin.Close()
	s := &scaleRun{opts: DefaultScaleOptions(), admin: admin, log: io.Discard, prefix: "scale-test-"}

	require.NoError(t, s.createTopic(t.Context(), "scale-test-0000", 4))
	assert.EqualValues(t, 2, creates.Load(), "sent again once")

	fake.CreateTopicWith(&heraldpb.TopicConfig{Name: "scale-test-0001", Partitions: 2, ReplicationFactor: 3})
	err = s.createTopic(t.Context(), "scale-test-0001", 4)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exists with 2 partitions x3, not 4 x3")
}

// localScaleOptions skips t unless it may run a cluster of node processes
// that scale can read from /proc, and returns the default options with
// the test binary and steps of 3 then 6 replicas per node (the cluster's
// data in t's temporary directory).
func localScaleOptions(t *testing.T) ScaleOptions {
	t.Helper()
	if testing.Short() {
		t.Skip("smoke: builds herald and runs a 3-node cluster of processes")
	}
	if runtime.GOOS != "linux" {
		t.Skip("scale reads the nodes' figures from /proc")
	}
	bin := proccluster.TestBinary(t)
	t.Setenv("TMPDIR", t.TempDir())
	o := DefaultScaleOptions()
	o.Executable = bin
	o.Steps = []int{3, 6}
	return o
}

// TestRunScaleOnLocalCluster runs a tiny scale (3 then 6 replicas per
// node, topics of 2 partitions, 1 s windows, a small fill) on a cluster of
// three real node processes, and checks every figure is there and the
// counts agree. Nothing about speed is asserted.
func TestRunScaleOnLocalCluster(t *testing.T) {
	o := localScaleOptions(t)
	o.TopicPartitions = 2
	o.Idle = time.Second
	o.Settle = 200 * time.Millisecond
	o.StepTimeout = 2 * time.Minute
	o.RestartTimeout = 2 * time.Minute
	o.FillBytes, o.FillEventBytes, o.FillBatch, o.FillProducers = 64<<10, 1024, 16, 2
	o.PlotPath = t.TempDir() + "/scale.svg"
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var progress lockedBuffer
	res, err := RunScale(ctx, o, &progress)
	t.Logf("bench output:\n%s", progress.String())
	require.NoError(t, err)

	assert.Equal(t, "scale", res.Scenario)
	assert.Zero(t, res.Baseline.ReplicasPerNode)
	require.Len(t, res.Baseline.Nodes, localNodes)
	for _, n := range res.Baseline.Nodes {
		assert.GreaterOrEqual(t, n.CPUPercent, 0.0, n.Node)
		assert.Positive(t, n.RSSKiB, n.Node)
		assert.Positive(t, n.OpenFiles, n.Node)
		assert.Positive(t, n.Goroutines, n.Node)
	}
	require.Len(t, res.Steps, 2)
	for i, want := range []struct{ replicas, topics int }{{3, 2}, {6, 4}} {
		s := res.Steps[i]
		assert.True(t, s.Reached, "step %d: %s", i, s.Problem)
		assert.Equal(t, want.replicas, s.TargetReplicasPerNode)
		assert.Equal(t, want.replicas, s.ReplicasPerNode)
		assert.Equal(t, want.replicas, s.Partitions)
		assert.Equal(t, want.topics, s.Topics, "topics of at most 2 partitions")
		assert.Equal(t, want.replicas, s.Listed)
		assert.Equal(t, want.replicas, s.Led, "every partition has a leader")
		assert.InDelta(t, 1.0, s.IdleS, 0.5)
		assert.GreaterOrEqual(t, s.MachineCPUPercent, 0.0)
		assert.GreaterOrEqual(t, s.BenchCPUPercent, 0.0)
		require.Len(t, s.Nodes, localNodes)
		for j, n := range s.Nodes {
			assert.Equal(t, res.Baseline.Nodes[j].Node, n.Node)
			assert.Equal(t, n.RSSKiB-res.Baseline.Nodes[j].RSSKiB, n.RSSDeltaKiB)
			assert.Positive(t, n.OpenFiles)
			assert.Positive(t, n.Goroutines)
			assert.GreaterOrEqual(t, n.GoroutinesPerReplica, -1000.0)
		}
	}
	r := res.Restart
	require.NotNil(t, r)
	assert.Empty(t, r.Problem)
	assert.Equal(t, 6, r.Replicas, "every partition has a replica on every node")
	assert.Equal(t, 6, r.Open)
	assert.Equal(t, 6, r.Applied)
	assert.False(t, r.ControllerLeader, "a node that does not lead the controller is restarted")
	assert.Positive(t, r.ReadyzS)
	assert.Positive(t, r.CaughtUpS)
	assert.Positive(t, r.RSSKiB)
	require.NotNil(t, r.Fill)
	assert.Empty(t, r.Fill.Problem)
	assert.EqualValues(t, 64-16*r.Fill.FailedRequests, r.Fill.Events, "requests of 16 events: acknowledged or failed")
	assert.Equal(t, r.Fill.Events*1024, r.Fill.Bytes)

	svg, err := os.ReadFile(o.PlotPath)
	require.NoError(t, err)
	assertWellFormedXML(t, svg)
	assert.Equal(t, o.PlotPath, res.SVG)

	var out bytes.Buffer
	require.NoError(t, res.WriteSummary(&out))
	assert.Regexp(t, `(?m)^6\s+4\s+6/6\s`, out.String())
	assert.Contains(t, out.String(), "restart of "+r.Node)
	out.Reset()
	require.NoError(t, res.WriteJSON(&out))
	var back ScaleResult
	require.NoError(t, json.Unmarshal(out.Bytes(), &back))
	assert.Equal(t, *res.Restart, *back.Restart)
	assert.Equal(t, 1, strings.Count(out.String(), "\n"), "one line")
}

func TestRenderScaleSVGMarksAStepNotReached(t *testing.T) {
	res := &ScaleResult{Cluster: "local", TopicPartitions: 50, Replication: 3, IdleS: 20, SettleS: 10,
		Baseline: ScaleStep{ClusterCPUPercent: 5},
		Steps: []ScaleStep{
			{ReplicasPerNode: 50, ClusterCPUPercent: 40, RSSPerReplicaKiB: 230, Reached: true},
			{ReplicasPerNode: 80, TargetReplicasPerNode: 100, ClusterCPUPercent: 90, RSSPerReplicaKiB: 200, Problem: "timed out"},
		},
		Restart: &ScaleRestart{Node: "n2", Replicas: 80, ReadyzS: 3.2, CaughtUpS: -1},
	}
	svg := renderScaleSVG(res)
	assertWellFormedXML(t, svg)
	assert.Equal(t, 2, bytes.Count(svg, []byte("<polyline")), "one line per panel")
	assert.Equal(t, 2, bytes.Count(svg, []byte(`fill="white" stroke=`)), "the step not reached is hollow in both panels")
	assert.Contains(t, string(svg), "caught up not reached")
}

// TestRunScaleStepNotReachedEndsTheGrowth: a step whose topics cannot be
// created in time (here a step timeout of a nanosecond) is measured as
// it stands and reported as not reached, the steps after it are not
// tried, and with no partition there is no restart. The run is no error.
func TestRunScaleStepNotReachedEndsTheGrowth(t *testing.T) {
	o := localScaleOptions(t)
	o.Idle, o.Settle = 200*time.Millisecond, 0
	o.stepTimeout = time.Nanosecond
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := RunScale(ctx, o, nil)
	require.NoError(t, err)
	require.Len(t, res.Steps, 1, "the growth ends at the step not reached")
	s := res.Steps[0]
	assert.False(t, s.Reached)
	assert.Contains(t, s.Problem, "deadline exceeded")
	assert.Equal(t, 3, s.TargetReplicasPerNode)
	assert.Zero(t, s.ReplicasPerNode)
	assert.Len(t, s.Nodes, localNodes, "measured as it stands")
	assert.Nil(t, res.Restart, "no partition to restart with")
	var out bytes.Buffer
	require.NoError(t, res.WriteSummary(&out))
	assert.Contains(t, out.String(), "NOT REACHED")
	assert.Contains(t, out.String(), "step 3 replicas per node not reached")
}
