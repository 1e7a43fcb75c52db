package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/heraldlog/herald/client"
)

// The scale scenario (`herald bench scale`, issue 15 goal 3) shows what
// an idle partition replica costs and how long a node with many of them
// takes to start:
//
//  1. start the bench's own three-node cluster and measure it empty (the
//     baseline: the controller group only), after Settle, over an Idle
//     window;
//  2. for each step of Steps (replicas per node; with replication 3 on
//     three nodes a partition puts one replica on every node, so P
//     partitions are P replicas per node): create topics of at most
//     TopicPartitions partitions each until the cluster has that many
//     partitions, CreateConcurrency creates in flight; wait until every
//     partition has a leader (ListTopics), then Settle, then measure each
//     node over the Idle window: CPU (utime+stime from /proc/<pid>/stat),
//     RSS (VmRSS, sampled every second, averaged), open files
//     (/proc/<pid>/fd) and goroutines (go_goroutines on the node's admin
//     /metrics); per replica against the baseline;
//  3. a step whose topics or leaders are not there within StepTimeout is
//     reported as not reached, with what was measured, and ends the
//     growth;
//  4. optionally produce FillBytes spread over every partition (async,
//     large batches), then SIGTERM one node that does not lead the
//     controller, start it again on the same data and time start to
//     /readyz 200 (controller leader known, registry caught up, every
//     assigned replica open) and start to caught up (ready, and every
//     replica applied to at least the commit index its partition's leader
//     had before the stop, read from the node's admin /metrics);
//  5. write the table, the JSON and, with PlotPath, an SVG of idle CPU and
//     memory per replica against replicas per node.
//
// Like the other scenarios it measures and asserts nothing about speed.

// Defaults of ScaleOptions (DefaultScaleOptions).
const (
	DefaultScaleSteps             = "50,100,250,500,1000"
	DefaultScaleTopicPartitions   = 50
	DefaultScaleIdle              = 20 * time.Second
	DefaultScaleSettle            = 10 * time.Second
	DefaultScaleStepTimeout       = 10 * time.Minute
	DefaultScaleRestartTimeout    = 5 * time.Minute
	DefaultScaleCreateConcurrency = 4
	DefaultScaleFillEventBytes    = 4096
	DefaultScaleFillBatch         = 256
	DefaultScaleFillProducers     = 4
	DefaultScaleFillTimeout       = 30 * time.Minute
)

// Limits of ScaleOptions.
const (
	// scaleReplicasMax bounds a step (replicas per node). Each replica
	// holds open files and goroutines: 10,000 is far past what one node
	// of this design is meant for today.
	scaleReplicasMax = 10_000
	// scaleStepsMax bounds the number of steps.
	scaleStepsMax = 64
	// scaleTopicPartitionsMax is the server's limit of partitions per
	// topic (service_topics.go topicPartitionsMax).
	scaleTopicPartitionsMax = 1024
	scaleIdleMax            = time.Hour
	scaleCreateMax          = 64
	scaleFillProducersMax   = 64
	scaleFillBytesMax       = 1 << 40
	// scaleReplication is the topics' replication factor: every partition
	// has a replica on each of the three local nodes.
	scaleReplication = localNodes
)

// ScaleOptions configure the scale scenario. Validate reports every
// problem at once.
type ScaleOptions struct {
	// Executable is the binary the local cluster runs; empty means
	// os.Executable().
	Executable string
	// NodeArgs are extra `herald serve` flags for the local nodes.
	NodeArgs []string
	// Timeout bounds each request to the cluster (the SDK's attempt
	// timeout) and each dial.
	Timeout time.Duration
	// Steps are the replicas per node to grow to, increasing.
	Steps []int
	// MaxReplicas drops the steps above it (0: none dropped).
	MaxReplicas int
	// TopicPartitions is the most partitions one topic gets.
	TopicPartitions int
	// Idle is the measurement window of each step; Settle the wait
	// before it, once every partition has a leader.
	Idle, Settle time.Duration
	// StepTimeout bounds creating a step's topics and waiting for their
	// leaders; RestartTimeout the wait for the restarted node.
	StepTimeout, RestartTimeout time.Duration
	// CreateConcurrency is the topic creates in flight.
	CreateConcurrency int
	// FillBytes of payload are produced before the restart (0: none), in
	// events of FillEventBytes, FillBatch per request, by FillProducers
	// senders, for at most FillTimeout.
	FillBytes      int64
	FillEventBytes int
	FillBatch      int
	FillProducers  int
	FillTimeout    time.Duration
	// NoRestart skips the restart measurement.
	NoRestart bool
	// PlotPath is where the SVG goes; empty: no plot.
	PlotPath string

	// stepTimeout, when positive, replaces StepTimeout past Validate's
	// bounds (tests of a step not reached).
	stepTimeout time.Duration
}

// DefaultScaleOptions returns the scenario's defaults.
func DefaultScaleOptions() ScaleOptions {
	steps, _ := ParseScaleSteps(DefaultScaleSteps)
	return ScaleOptions{
		Timeout:           DefaultTimeout,
		Steps:             steps,
		TopicPartitions:   DefaultScaleTopicPartitions,
		Idle:              DefaultScaleIdle,
		Settle:            DefaultScaleSettle,
		StepTimeout:       DefaultScaleStepTimeout,
		RestartTimeout:    DefaultScaleRestartTimeout,
		CreateConcurrency: DefaultScaleCreateConcurrency,
		FillEventBytes:    DefaultScaleFillEventBytes,
		FillBatch:         DefaultScaleFillBatch,
		FillProducers:     DefaultScaleFillProducers,
		FillTimeout:       DefaultScaleFillTimeout,
	}
}

// ParseScaleSteps parses --steps: replicas per node, comma-separated,
// each 1 to scaleReplicasMax, strictly increasing.
func ParseScaleSteps(s string) ([]int, error) {
	var steps []int
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		n, err := strconv.Atoi(item)
		if err != nil {
			return nil, fmt.Errorf("%w: --steps %q: %q is not a number", ErrInvalidOptions, s, item)
		}
		if n < 1 || n > scaleReplicasMax {
			return nil, fmt.Errorf("%w: --steps %q: %d: want 1 to %d replicas per node", ErrInvalidOptions, s, n, scaleReplicasMax)
		}
		if len(steps) > 0 && n <= steps[len(steps)-1] {
			return nil, fmt.Errorf("%w: --steps %q: want increasing steps (%d after %d)", ErrInvalidOptions, s, n, steps[len(steps)-1])
		}
		steps = append(steps, n)
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("%w: --steps %q: want at least one step", ErrInvalidOptions, s)
	}
	if len(steps) > scaleStepsMax {
		return nil, fmt.Errorf("%w: --steps: %d steps, want at most %d", ErrInvalidOptions, len(steps), scaleStepsMax)
	}
	return steps, nil
}

// Validate reports every problem with o, each wrapping ErrInvalidOptions
// and naming the CLI flag.
func (o *ScaleOptions) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if o.Timeout <= 0 {
		bad("--timeout %s: want a positive duration", o.Timeout)
	}
	if len(o.Steps) == 0 || len(o.Steps) > scaleStepsMax {
		bad("--steps: %d steps, want 1 to %d", len(o.Steps), scaleStepsMax)
	}
	for i, s := range o.Steps {
		if s < 1 || s > scaleReplicasMax || (i > 0 && s <= o.Steps[i-1]) {
			bad("--steps %v: want increasing steps of 1 to %d replicas per node", o.Steps, scaleReplicasMax)
			break
		}
	}
	if o.MaxReplicas < 0 || o.MaxReplicas > scaleReplicasMax {
		bad("--max-replicas %d: want 0 (no limit) to %d", o.MaxReplicas, scaleReplicasMax)
	} else if o.MaxReplicas > 0 && len(o.Steps) > 0 && o.Steps[0] > o.MaxReplicas {
		bad("--max-replicas %d: below the first step (%d)", o.MaxReplicas, o.Steps[0])
	}
	if o.TopicPartitions < 1 || o.TopicPartitions > scaleTopicPartitionsMax {
		bad("--topic-partitions %d: want 1 to %d", o.TopicPartitions, scaleTopicPartitionsMax)
	}
	if o.Idle < 100*time.Millisecond || o.Idle > scaleIdleMax {
		bad("--idle %s: want 100ms to %s", o.Idle, scaleIdleMax)
	}
	if o.Settle < 0 || o.Settle > scaleIdleMax {
		bad("--settle %s: want 0 to %s", o.Settle, scaleIdleMax)
	}
	if o.StepTimeout < time.Second || o.StepTimeout > 24*time.Hour {
		bad("--step-timeout %s: want 1s to 24h", o.StepTimeout)
	}
	if o.RestartTimeout < time.Second || o.RestartTimeout > 24*time.Hour {
		bad("--restart-timeout %s: want 1s to 24h", o.RestartTimeout)
	}
	if o.CreateConcurrency < 1 || o.CreateConcurrency > scaleCreateMax {
		bad("--create-concurrency %d: want 1 to %d", o.CreateConcurrency, scaleCreateMax)
	}
	if o.FillBytes < 0 || o.FillBytes > scaleFillBytesMax {
		bad("--fill-bytes %d: want 0 to %d", o.FillBytes, int64(scaleFillBytesMax))
	}
	if o.FillBytes > 0 && o.NoRestart {
		bad("--fill-bytes is for the restart: not with --no-restart")
	}
	if o.FillEventBytes < 1 || o.FillEventBytes > sizeBytesMax {
		bad("--fill-size %d: want 1 to %d bytes", o.FillEventBytes, sizeBytesMax)
	}
	if o.FillBatch < 1 || o.FillBatch > batchMax {
		bad("--fill-batch %d: want 1 to %d", o.FillBatch, batchMax)
	} else if o.FillEventBytes >= 1 && int64(o.FillBatch)*int64(o.FillEventBytes) > 4<<20 {
		bad("--fill-batch %d x --fill-size %d: want at most 4 MiB per request", o.FillBatch, o.FillEventBytes)
	}
	if o.FillProducers < 1 || o.FillProducers > scaleFillProducersMax {
		bad("--fill-producers %d: want 1 to %d", o.FillProducers, scaleFillProducersMax)
	}
	if o.FillTimeout < time.Second || o.FillTimeout > 24*time.Hour {
		bad("--fill-timeout %s: want 1s to 24h", o.FillTimeout)
	}
	return errors.Join(errs...)
}

// steps returns the steps to run: Steps up to MaxReplicas.
func (o *ScaleOptions) steps() []int {
	var out []int
	for _, s := range o.Steps {
		if o.MaxReplicas == 0 || s <= o.MaxReplicas {
			out = append(out, s)
		}
	}
	return out
}

// RunScale runs the scale scenario on a local cluster it starts and
// stops. Progress lines go to progressOut (nil: discarded). A step that is
// not reached ends the growth and is reported, not returned as an error;
// an error means no result (the cluster could not start, a node died, ctx
// ended). With PlotPath the plot is written once the run has succeeded.
func RunScale(ctx context.Context, opts ScaleOptions, progressOut io.Writer) (res *ScaleResult, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	logOut := progressOut
	if logOut == nil {
		logOut = io.Discard
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("bench: names: %w", err)
	}
	run := hex.EncodeToString(b[:])
	res = &ScaleResult{
		Scenario: "scale", Cluster: "local", Replication: scaleReplication, TopicPartitions: opts.TopicPartitions,
		IdleS: opts.Idle.Seconds(), SettleS: opts.Settle.Seconds(), TopicPrefix: "scale-" + run + "-",
	}
	cluster, err := startRunCluster(ctx, opts.Executable, opts.NodeArgs, logOut)
	if err != nil {
		return nil, err
	}
	defer finishRun(cluster, &res, &err)

	admin, err := client.New(ctx, client.Config{
		Servers: cluster.GRPCAddrs(), DialTimeout: opts.Timeout, RequestTimeout: opts.Timeout,
		Logger: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	s := &scaleRun{opts: opts, cluster: cluster, admin: admin, log: logOut, prefix: res.TopicPrefix}

	fmt.Fprintf(logOut, "bench: scale: baseline (empty cluster): settle %s, idle %s\n", opts.Settle, opts.Idle)
	if err := sleepCtx(ctx, opts.Settle); err != nil {
		return nil, err
	}
	base, err := s.measure(ctx, nil)
	if err != nil {
		return nil, err
	}
	res.Baseline = base
	for _, target := range opts.steps() {
		step, err := s.grow(ctx, target, &base)
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, step)
		fmt.Fprintf(logOut, "bench: scale: %d replicas per node: cluster idle CPU %.1f%% of one core, %.1f KiB RSS per replica%s\n",
			step.ReplicasPerNode, step.ClusterCPUPercent, step.RSSPerReplicaKiB, notReached(step))
		if !step.Reached {
			break
		}
	}
	if !opts.NoRestart && s.partitions > 0 {
		if res.Restart, err = s.restart(ctx); err != nil {
			return nil, err
		}
	}
	if opts.PlotPath != "" {
		if err := writeScaleSVG(opts.PlotPath, res); err != nil {
			return nil, err
		}
		res.SVG = opts.PlotPath
	}
	return res, nil
}

// notReached is the progress line's tail for a step not reached.
func notReached(s ScaleStep) string {
	if s.Reached {
		return ""
	}
	return " (NOT REACHED: " + s.Problem + ")"
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
