package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldlog/herald/jepsen"
)

// newJepsenCmd runs the fault-injection suite against child `herald serve`
// processes of this binary.
func newJepsenCmd() *cobra.Command {
	var (
		opts    jepsen.Options
		nemeses string
		binary  string
		check   string
	)
	cmd := &cobra.Command{
		Use:   "jepsen",
		Short: "Attack a local cluster with faults and check that no acknowledged event is lost",
		Long: `Start --nodes child "herald serve" processes on loopback, every peer link through a
proxy, run idempotent producers and readers for --duration while the nemeses
(` + strings.Join(jepsen.Nemeses, ",") + `) inject a fault schedule fixed by --seed, heal,
read every partition from every node and check the history.

Writes <out>/history.jsonl, <out>/verdict.json and <out>/report.html (the nodes'
data and logs go to <out>/data). Prints a verdict line per checker with its
counterexamples; the last line is a summary. Exits 0 only when every checker
passes; otherwise 1, naming the failing checkers. See docs/fault-injection.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if check != "" {
				return recheck(cmd, check)
			}
			var err error
			if opts.Nemeses, err = jepsen.ParseNemeses(nemeses); err != nil {
				return usageError{err}
			}
			if binary == "" {
				if binary, err = os.Executable(); err != nil {
					return fmt.Errorf("jepsen: finding this binary: %w", err)
				}
			}
			opts.Binary = binary
			if !cmd.Flags().Changed("seed") {
				opts.Seed = uint64(time.Now().UnixNano() % 1_000_000)
			}
			if !cmd.Flags().Changed("subscribers") {
				opts.Subscribers = jepsen.DefaultSubscribers(opts.Mode)
			}
			if !cmd.Flags().Changed("group-members") {
				opts.GroupMembers = jepsen.DefaultGroupMembers(opts.Mode)
			}
			opts.Progress = cmd.ErrOrStderr()
			if err := opts.Validate(); err != nil {
				return usageError{err}
			}
			res, err := jepsen.Run(cmd.Context(), opts)
			if res != nil {
				out := cmd.OutOrStdout()
				jepsen.WriteVerdicts(out, res.Verdicts)
				fmt.Fprintln(out, res.Summary.String())
			}
			if err != nil {
				return err
			}
			if !res.OK() {
				return fmt.Errorf("jepsen: failing checkers: %s", strings.Join(res.Summary.Failing, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Nodes, "nodes", jepsen.DefaultNodes, "number of nodes (3 or 5)")
	f.DurationVar(&opts.Duration, "duration", jepsen.DefaultDuration, "how long the workload and the faults run")
	f.StringVar(&nemeses, "nemesis", "kill,pause,partition", "faults, comma-separated: "+strings.Join(jepsen.Nemeses, ",")+" (none for a clean run)")
	f.Uint64Var(&opts.Seed, "seed", 0, "seed of the fault schedule and workload (default: one picked from the clock and printed; rerun with it to replay the schedule)")
	f.StringVar(&opts.OutDir, "out", "jepsen-out", "output directory")
	f.StringVar(&opts.Mode, "mode", jepsen.ModeCareful, "workload: careful (one event a Send, every op also checked linearizable) or volume (batched producers near the cluster's peak, nodes snapshotting and compacting often)")
	f.IntVar(&opts.BatchEvents, "batch-events", jepsen.DefaultBatchEvents, "volume mode: events a Send")
	f.IntVar(&opts.InFlight, "in-flight", jepsen.DefaultInFlight, "volume mode: Sends in flight per producer")
	f.IntVar(&opts.Producers, "producers", jepsen.DefaultProducers, "idempotent producers")
	f.IntVar(&opts.Tenants, "tenants", jepsen.DefaultTenants, "tenants the producers write for")
	f.IntVar(&opts.RegistryTenants, "registry-tenants", jepsen.DefaultRegistryTenants, "tenants created before the run (a long registry; 0 for none)")
	f.BoolVar(&opts.Churn, "churn", true, "create and delete short-lived topics during the run")
	f.BoolVar(&opts.RegistryWorkload, "registry-workload", true, "create tenants and topics through random nodes and read them back through random nodes")
	f.BoolVar(&opts.Resend, "resend", true, "every 5 s, send an idempotent request of 2,500 events for one tenant over raw gRPC and resend it identically")
	f.BoolVar(&opts.Hijack, "hijack", true, "every 3 s, a raw-gRPC victim producer and a hijacker sending with its producer id and a guessed epoch; the victim's acknowledged events must stay readable")
	f.BoolVar(&opts.Mixed, "mixed", true, "every second, a raw-gRPC request mixing valid and refused records, some spanning partitions; a refusal must never hide a write")
	f.BoolVar(&opts.TLS, "tls", false, "run the nodes with TLS (a CA and certificates made in <out>/data/tls) and every client over TLS; without it the nodes know their peers by a cluster secret")
	f.BoolVar(&opts.Flood, "flood", false, "a tenant with a quota of 200 events/s produces as fast as it can (unpaced requests of 20 events from 4 goroutines) on a topic of its own; acknowledged events must be in the log exactly once and refused ones never (checked by flood)")
	// The default depends on --mode (DefaultSubscribers), so the flag's own
	// default is 0, which cobra does not print; RunE applies the mode's.
	f.IntVar(&opts.Subscribers, "subscribers", 0, "raw-gRPC subscribers per partition, resuming on other nodes across faults (checked by subscriptions; default: 2 in careful mode, 0 in volume mode)")
	f.IntVar(&opts.GroupMembers, "group-members", 0, "members of a consumer group on the live topic, acking most messages and leaving some unacknowledged or nacked (checked by consumer-groups; default: 3 in careful mode, 0 in volume mode; 0 for none)")
	f.StringVar(&check, "check", "", "check the history.jsonl at this path again instead of running (prints the verdicts; starts no node)")
	f.StringVar(&binary, "binary", "", "herald binary to run as the nodes (default: this one), e.g. an older build to reproduce a defect")
	return cmd
}

// recheck reads a history written by an earlier run and checks it again:
// the checkers are pure functions of the history (the rare-paths verdict,
// which needs the nodes' metrics, is in the run's verdict.json only).
func recheck(cmd *cobra.Command, path string) error {
	h, err := jepsen.ReadHistory(path)
	if err != nil {
		return err
	}
	start := time.Now()
	verdicts := jepsen.Check(h)
	fmt.Fprintf(cmd.ErrOrStderr(), "jepsen: checked %d history entries in %s\n", len(h), time.Since(start).Round(time.Millisecond))
	sum := jepsen.Summarize(h, verdicts)
	out := cmd.OutOrStdout()
	jepsen.WriteVerdicts(out, verdicts)
	fmt.Fprintln(out, sum.String())
	if len(sum.Failing) > 0 {
		return fmt.Errorf("jepsen: failing checkers: %s", strings.Join(sum.Failing, ", "))
	}
	return nil
}
