package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/heraldlog/herald/cmd/herald/internal/bench"
)

// newBenchCmd groups the load scenarios: `herald bench produce|replay|e2e`.
// The flags are the CLI contract of issue 5 (scripts rely on them) and
// apply to every scenario; the work is in internal/bench.
func newBenchCmd() *cobra.Command {
	var (
		flags     benchFlags
		conn      clientOptions
		httpAddrs string
		nodeArgs  []string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput, latency and CPU: produce, replay, e2e, group, ws, noisy-tenant, scale",
		Long: `Run a load scenario and print events/s, MB/s (payload, 10^6 bytes), latency
percentiles (HDR histogram) and the CPU the node processes used per event.

Without --server, bench starts its own three-node cluster (this binary's
"serve", free 127.0.0.1 ports, a temporary directory), waits for /readyz on
every node and removes it all afterwards; the nodes' CPU comes from /proc.
With --server it uses that cluster, and the nodes' CPU from
process_cpu_seconds_total on /metrics when --http-addrs names the nodes'
HTTP addresses (else it is reported as -1).

Each run creates a fresh topic bench-<random> (auto_tenants, --partitions,
--replication); on an existing cluster it is deleted afterwards.

A progress line goes to stderr about once a second. The summary goes to
stdout; with --json stdout carries only one JSON object, on its last line,
and the summary goes to stderr.`,
		RunE: runGroup,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&conn.servers, "server", "", "comma-separated gRPC addresses of an existing cluster (default: start a local one)")
	pf.DurationVar(&conn.timeout, "timeout", bench.DefaultTimeout, "timeout of each request to the cluster")
	pf.StringVar(&httpAddrs, "http-addrs", "", "with --server: the nodes' HTTP addresses, comma-separated, to read their CPU from /metrics")
	pf.StringArrayVar(&nodeArgs, "node-arg", nil, "without --server: an extra flag of herald serve for every local node (repeatable), e.g. --node-arg=--raft-no-commit-push")
	flags.register(pf)

	for _, sc := range []struct {
		scenario bench.Scenario
		short    string
	}{
		{bench.ScenarioProduce, "Produce --count events: --sync (one per request, per-event latency) or batched (--batch, --inflight)"},
		{bench.ScenarioReplay, "Produce --count events untimed, then time reading them all from offset 0 (one subscriber, partitions in parallel)"},
		{bench.ScenarioE2E, "Produce at --rate (default half of a quick peak) while readers poll each partition: produced_at-to-fetch latency"},
		{bench.ScenarioGroup, "Produce --count events untimed, then time a three-member consumer group consuming them all with explicit acks"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:   string(sc.scenario),
			Short: sc.short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				opts := flags.options(sc.scenario)
				if strings.TrimSpace(conn.servers) != "" {
					servers, err := conn.serverList()
					if err != nil {
						return err
					}
					opts.Servers = servers
				}
				opts.Timeout = conn.timeout
				opts.HTTPAddrs = splitList(httpAddrs)
				opts.NodeArgs = nodeArgs
				if err := opts.Validate(); err != nil {
					return usageError{err}
				}
				res, err := bench.Run(cmd.Context(), opts, cmd.ErrOrStderr())
				return writeBenchResult(cmd, flags.asJSON, res, err)
			},
		})
	}
	cmd.AddCommand(newBenchWSCmd(&nodeArgs))
	cmd.AddCommand(newBenchNoisyCmd(&flags, &conn, &httpAddrs, &nodeArgs))
	cmd.AddCommand(newBenchScaleCmd(&flags, &conn, &nodeArgs))
	return cmd
}

// newBenchNoisyCmd is `herald bench noisy-tenant` (issue 13): tenant A
// floods while B..E produce steadily. Of bench's shared flags it takes
// --server, --timeout, --http-addrs, --node-arg, --size, --partitions,
// --replication and --json.
func newBenchNoisyCmd(flags *benchFlags, conn *clientOptions, httpAddrs *string, nodeArgs *[]string) *cobra.Command {
	o := bench.DefaultNoisyOptions()
	cmd := &cobra.Command{
		Use:   "noisy-tenant",
		Short: "Tenant A floods (over its quota) while B..E produce steadily: B..E latency with A off and flooding, A's admitted rate",
		Long: `Create tenants A..E (A with --quota events/s, set by SetTenantQuota) and a
topic with ordering none, so every tenant lands on every partition. Phase
"A off" (--phase long, after --warmup of the same load, unmeasured): B..E
each produce --steady-rate events/s, one event per request on a fixed
schedule; each ack's latency is measured from the event's scheduled send
time (HDR histograms). Phase "A flooding" (as long):
the same B..E load while A's --flooders senders send --flood-batch events per
request as fast as they can, ignoring throttle hints, without SDK retries,
pausing only --flood-pause after a refusal.

Reports B..E's p50/p99/p99.9 and throughput per phase, A's attempted,
admitted and refused rates and admitted/quota, each node's RSS (start and
peak, sampled every 200 ms: /proc for the local cluster, else
process_resident_memory_bytes from --http-addrs), and writes a plot (SVG) of
B..E's p99 per second and A's admitted rate per second against its quota
to --svg.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(conn.servers) != "" {
				servers, err := conn.serverList()
				if err != nil {
					return err
				}
				o.Servers = servers
			}
			o.Timeout = conn.timeout
			o.HTTPAddrs = splitList(*httpAddrs)
			o.NodeArgs = *nodeArgs
			o.SizeBytes, o.Partitions, o.Replication = flags.size, flags.partitions, flags.replication
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			res, err := bench.RunNoisy(cmd.Context(), o, cmd.ErrOrStderr())
			return writeBenchResult(cmd, flags.asJSON, res, err)
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&o.QuotaEventsPerSec, "quota", o.QuotaEventsPerSec, "tenant A's quota, events/s")
	f.Float64Var(&o.SteadyRate, "steady-rate", o.SteadyRate, "each of B..E's produce rate, events/s")
	f.DurationVar(&o.Phase, "phase", o.Phase, "length of each phase (A off, A flooding)")
	f.DurationVar(&o.Warmup, "warmup", o.Warmup, "B..E's load before the first phase, not measured")
	f.IntVar(&o.Flooders, "flooders", o.Flooders, "A's concurrent senders")
	f.IntVar(&o.FloodBatch, "flood-batch", o.FloodBatch, "events per request A sends")
	f.DurationVar(&o.FloodPause, "flood-pause", o.FloodPause, "A's pause after a refused or failed request (0: none)")
	f.StringVar(&o.SVGPath, "svg", o.SVGPath, "where to write the plot (empty: none)")
	return cmd
}

// newBenchScaleCmd is `herald bench scale` (issue 15): idle cost per
// partition replica and restart time as the replicas per node grow. It
// always starts its own cluster; of bench's shared flags it takes
// --timeout, --node-arg and --json (--server is refused).
func newBenchScaleCmd(flags *benchFlags, conn *clientOptions, nodeArgs *[]string) *cobra.Command {
	o := bench.DefaultScaleOptions()
	var steps string
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Grow partition replicas per node in steps: idle CPU, memory, files and goroutines per replica, and a node's restart time",
		Long: `Start a local three-node cluster, measure it empty (the baseline), then
grow it to each of --steps partition replicas per node: create topics of at
most --topic-partitions partitions (replication 3, so a partition is one
replica on every node; --create-concurrency creates in flight; a create
whose outcome is unknown is sent again, and a topic that then exists with
the same partitions and replication counts as created), wait for a leader
on every partition (ListTopics), wait --settle, and measure each node over
an idle window of --idle with no requests from the bench: CPU
(utime+stime from /proc/<pid>/stat), RSS (VmRSS sampled every second,
averaged), open files (/proc/<pid>/fd) and goroutines (go_goroutines on the
node's admin /metrics). Per replica: the cluster's CPU above the baseline
in ms of CPU per second per replica of the cluster, and each node's RSS,
files and goroutines above the baseline divided by its replicas.

A step whose topics or leaders are not all there within --step-timeout is
measured as it stands, reported as not reached, and ends the growth;
--max-replicas drops the steps above it.

Then (unless --no-restart) with --fill-bytes, produce that much payload
over every partition (--fill-batch events of --fill-size bytes per request,
each request to one partition, round robin, --fill-producers senders), and
restart one node that does not
lead the controller: SIGTERM, wait for its exit, start it on the same data
and time start to /readyz 200 (controller leader known, registry caught
up, every assigned replica open) and start to caught up (ready, and every
replica applied to at least the commit index its partition's leader had
before the stop, from the node's admin /metrics, looked at only once
/readyz answers so as not to slow the start), within --restart-timeout.

Prints a table per step and per node; --plot writes an SVG of idle CPU and
memory per replica against replicas per node. The nodes share this
machine with the bench: on a machine running other work the CPU figures
carry that noise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(conn.servers) != "" {
				return usageError{fmt.Errorf("%w: scale starts its own cluster (it restarts a node): --server is not supported", bench.ErrInvalidOptions)}
			}
			parsed, err := bench.ParseScaleSteps(steps)
			if err != nil {
				return usageError{err}
			}
			o.Steps = parsed
			o.Timeout = conn.timeout
			o.NodeArgs = *nodeArgs
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			res, err := bench.RunScale(cmd.Context(), o, cmd.ErrOrStderr())
			return writeBenchResult(cmd, flags.asJSON, res, err)
		},
	}
	f := cmd.Flags()
	f.StringVar(&steps, "steps", bench.DefaultScaleSteps, "partition replicas per node to grow to, comma-separated, increasing")
	f.IntVar(&o.MaxReplicas, "max-replicas", o.MaxReplicas, "drop the steps above this many replicas per node (0: none)")
	f.IntVar(&o.TopicPartitions, "topic-partitions", o.TopicPartitions, "most partitions per topic")
	f.DurationVar(&o.Idle, "idle", o.Idle, "idle measurement window of each step")
	f.DurationVar(&o.Settle, "settle", o.Settle, "wait after every partition has a leader, before the window (and after the fill)")
	f.DurationVar(&o.StepTimeout, "step-timeout", o.StepTimeout, "bound on creating a step's topics and waiting for their leaders")
	f.IntVar(&o.CreateConcurrency, "create-concurrency", o.CreateConcurrency, "topic creates in flight")
	f.BoolVar(&o.NoRestart, "no-restart", false, "skip the restart measurement")
	f.DurationVar(&o.RestartTimeout, "restart-timeout", o.RestartTimeout, "bound on the restarted node's wait for ready and caught up")
	f.Int64Var(&o.FillBytes, "fill-bytes", o.FillBytes, "payload bytes to produce over every partition before the restart (0: none)")
	f.IntVar(&o.FillEventBytes, "fill-size", o.FillEventBytes, "payload bytes per fill event")
	f.IntVar(&o.FillBatch, "fill-batch", o.FillBatch, "fill events per produce request")
	f.IntVar(&o.FillProducers, "fill-producers", o.FillProducers, "concurrent fill senders")
	f.DurationVar(&o.FillTimeout, "fill-timeout", o.FillTimeout, "bound on the fill; the restart then opens what was written")
	f.StringVar(&o.PlotPath, "plot", "", "where to write the SVG plot (empty: none)")
	return cmd
}

// newBenchWSCmd is `herald bench ws`, measured like the Centrifugo anchor.
func newBenchWSCmd(nodeArgs *[]string) *cobra.Command {
	o := bench.DefaultWSOptions()
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ws",
		Short: "WebSocket gateway: --connections to one node, broadcast and own-stream delivery, memory per connection",
		Long: `Start a local three-node cluster and open --connections WebSocket
connections to node n1's /v1/ws, each subscribed to a stream of its own (its
tenant on a shared topic) and to one stream all connections share; then
report the node's memory per connection (RSS, and live heap+stack after a
forced GC, minus a baseline), a broadcast phase (--broadcast-rate events/s to
the shared stream, each delivered to every connection) and an own-stream
phase (--own-rate events/s round-robin over the connections' tenants), with
delivery counts and send-to-receive latency. The same measurements as
../shared/anchors/centrifugo (run.sh) makes of Centrifugo; the open-file limit
(ulimit -n) must exceed --connections plus a few hundred.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.NodeArgs = *nodeArgs
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			res, err := bench.RunWS(cmd.Context(), exe, o, cmd.ErrOrStderr())
			if res != nil {
				out := cmd.OutOrStdout()
				if asJSON {
					_ = res.WriteSummary(cmd.ErrOrStderr())
					if jerr := res.WriteJSON(out); jerr != nil {
						return jerr
					}
				} else if werr := res.WriteSummary(out); werr != nil {
					return werr
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Connections, "connections", o.Connections, "WebSocket connections to node n1")
	f.IntVar(&o.DialConcurrency, "dial-concurrency", o.DialConcurrency, "dials in flight")
	f.Float64Var(&o.BroadcastRate, "broadcast-rate", o.BroadcastRate, "events/s to the shared stream")
	f.DurationVar(&o.BroadcastDuration, "broadcast-duration", o.BroadcastDuration, "length of the broadcast phase (0: skip)")
	f.Float64Var(&o.OwnRate, "own-rate", o.OwnRate, "events/s to the connections' own streams, in total")
	f.DurationVar(&o.OwnDuration, "own-duration", o.OwnDuration, "length of the own-stream phase (0: skip)")
	f.IntVar(&o.Partitions, "partitions", o.Partitions, "partitions of the own streams' topic")
	f.IntVar(&o.Replication, "replication", o.Replication, "replication factor of both topics")
	f.DurationVar(&o.Drain, "drain", o.Drain, "longest wait for deliveries after a phase's last publish")
	f.IntVar(&o.HeartbeatMs, "heartbeat-ms", o.HeartbeatMs, "each subscription's heartbeat interval")
	f.BoolVar(&asJSON, "json", false, "print one JSON object on the last line of stdout")
	return cmd
}

// benchFlags are the scenario flags of `herald bench`.
type benchFlags struct {
	producers, size, batch, inflight, tenants, partitions, replication int
	groupWindow                                                        int
	count                                                              int64
	rate                                                               float64
	sync, asJSON                                                       bool
	clients                                                            string
}

// register adds the scenario flags, with bench's defaults.
func (f *benchFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&f.producers, "producers", bench.DefaultProducers, "concurrent producers")
	fs.IntVar(&f.size, "size", bench.DefaultSizeBytes, "payload bytes per event")
	fs.Int64Var(&f.count, "count", bench.DefaultCount, "events to produce (and, for replay, to read)")
	fs.BoolVar(&f.sync, "sync", false, "one event per request, each waiting for its ack (latency per event)")
	fs.BoolVar(&f.asJSON, "json", false, "print one JSON object on the last line of stdout")
	fs.IntVar(&f.batch, "batch", bench.DefaultBatch, "events per produce request, without --sync")
	fs.IntVar(&f.inflight, "inflight", bench.DefaultInflight, "produce requests in flight per producer, without --sync")
	fs.IntVar(&f.groupWindow, "group-window", bench.DefaultGroupWindow, "group: batches in flight per member and partition (1 to 8)")
	fs.IntVar(&f.tenants, "tenants", bench.DefaultTenants, "tenants the events are spread over (evenly over the partitions)")
	fs.IntVar(&f.partitions, "partitions", bench.DefaultPartitions, "partitions of the bench topic")
	fs.IntVar(&f.replication, "replication", bench.DefaultReplication, "replication factor of the bench topic")
	fs.Float64Var(&f.rate, "rate", 0, "e2e: produce rate in events/s (0: half of a quick peak measurement)")
	fs.StringVar(&f.clients, "clients", string(bench.DefaultClientMode),
		fmt.Sprintf("%s: one SDK client (connections) per producer; %s: one for all", bench.ClientsPerProducer, bench.ClientsShared))
}

// options turns the flags into bench.Options for scenario.
func (f *benchFlags) options(scenario bench.Scenario) bench.Options {
	o := bench.DefaultOptions(scenario)
	o.Producers, o.SizeBytes, o.Count, o.Sync = f.producers, f.size, f.count, f.sync
	o.Batch, o.Inflight, o.Tenants = f.batch, f.inflight, f.tenants
	o.Partitions, o.Replication, o.Rate = f.partitions, f.replication, f.rate
	o.Clients = bench.ClientMode(f.clients)
	o.GroupWindow = f.groupWindow
	return o
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var items []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// benchResult is what a bench scenario reports.
type benchResult interface {
	WriteSummary(io.Writer) error
	WriteJSON(io.Writer) error
}

// writeBenchResult ends a bench command: a run refused for its options is
// a usage error; a result is printed as a summary, or with asJSON as a
// summary on stderr and one JSON object on stdout.
func writeBenchResult[R benchResult](cmd *cobra.Command, asJSON bool, res R, err error) error {
	if err != nil {
		if errors.Is(err, bench.ErrInvalidOptions) {
			return usageError{err}
		}
		return err
	}
	if !asJSON {
		return res.WriteSummary(cmd.OutOrStdout())
	}
	if err := res.WriteSummary(cmd.ErrOrStderr()); err != nil {
		return err
	}
	return res.WriteJSON(cmd.OutOrStdout())
}
