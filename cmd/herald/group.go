package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/heraldlog/herald/client"
)

// newGroupCommand groups the consumer group verbs: create, list,
// describe, reset, delete.
func newGroupCommand(env environment) *cobra.Command {
	var opts clientOptions
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Create, list, describe, reset and delete consumer groups",
		RunE:  runGroup,
	}
	opts.register(cmd.PersistentFlags(), env)
	cmd.AddCommand(newGroupCreateCommand(&opts), newGroupListCommand(&opts), newGroupDescribeCommand(&opts),
		newGroupResetCommand(&opts), newGroupDeleteCommand(&opts))
	return cmd
}

// groupStartFlag is a start position of a consumer group:
// earliest, latest, offset:N or time:RFC3339.
type groupStartFlag struct{ start **client.GroupStart }

var _ pflag.Value = groupStartFlag{}

func (f groupStartFlag) String() string {
	if f.start == nil || *f.start == nil {
		return "earliest"
	}
	return ""
}

func (f groupStartFlag) Set(s string) error {
	switch s {
	case "earliest":
		*f.start = client.GroupStartEarliest()
		return nil
	case "latest":
		*f.start = client.GroupStartLatest()
		return nil
	}
	kind, value, _ := strings.Cut(s, ":")
	switch kind {
	case "offset":
		n, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a non-negative integer", value)
		}
		*f.start = client.GroupStartOffset(n)
		return nil
	case "time":
		at, err := time.Parse(time.RFC3339Nano, value)
		if err != nil {
			return fmt.Errorf("%q is not an RFC 3339 time (2025-01-02T03:04:05Z)", value)
		}
		if at.Before(unixNanoMin) || at.After(unixNanoMax) {
			return fmt.Errorf("want a time from %s to %s", unixNanoMin.UTC().Format(time.RFC3339), unixNanoMax.UTC().Format(time.RFC3339))
		}
		*f.start = client.GroupStartTime(at)
		return nil
	}
	return fmt.Errorf("want earliest, latest, offset:N or time:RFC3339")
}

func (groupStartFlag) Type() string { return "position" }

func newGroupCreateCommand(opts *clientOptions) *cobra.Command {
	var (
		topic  string
		cfg    client.GroupConfig
		start  *client.GroupStart
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME --topic T [--ack-wait D] [--max-deliveries N] [--max-pending N] [--start earliest|latest|offset:N|time:RFC3339]",
		Short: "Create a consumer group",
		Long: `Create a consumer group on every partition of a topic. The start is resolved
per partition by its leader: earliest is the oldest retained event, latest
the end of the log, offset:N is clamped into each partition's retained
range, time:RFC3339 is the first event produced at or after it. Creating a
group that exists with the same settings succeeds and changes nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.CreateGroup(cmd.Context(), topic, args[0], &cfg, start)
			if err != nil {
				return err
			}
			return printGroup(cmd.OutOrStdout(), info, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&topic, "topic", "", "the group's topic (required)")
	f.Var(millisFlag{&cfg.AckWaitMs}, "ack-wait", "redeliver an event not acknowledged this long after its delivery (0: the server default, 30s)")
	f.Uint32Var(&cfg.MaxDeliveries, "max-deliveries", 0, "deliveries of one event before it goes to the dead-letter topic (0: no limit)")
	f.Uint32Var(&cfg.MaxPending, "max-pending", 0, "delivered, unacknowledged events per partition at most (0: the server default, 1000)")
	f.BoolVar(&cfg.KeyOrder, "key-order", false, "keep per-key order: deliver no event while an earlier one of its tenant and key is pending")
	f.Var(groupStartFlag{&start}, "start", "where the group starts: earliest, latest, offset:N or time:RFC3339")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func newGroupListCommand(opts *clientOptions) *cobra.Command {
	var (
		topic  string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list --topic T",
		Short: "List a topic's consumer groups with their lag",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			groups, err := c.ListGroups(cmd.Context(), topic)
			if err != nil {
				return err
			}
			views := make([]groupView, len(groups))
			for i, g := range groups {
				views[i] = newGroupView(g)
				views[i].Partitions = nil
			}
			if asJSON {
				return newJSONWriter(cmd.OutOrStdout()).write(views)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tACK WAIT\tMAX DELIVERIES\tMAX PENDING\tPENDING\tLAG EVENTS\tLAG TIME")
			for _, v := range views {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", v.Name, formatMillis(v.AckWaitMs), countOr(uint64(v.MaxDeliveries), "unlimited"),
					v.MaxPending, v.Pending, v.LagEvents, lagText(v.LagMs))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&topic, "topic", "", "the topic (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func newGroupDescribeCommand(opts *clientOptions) *cobra.Command {
	var (
		topic  string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "describe NAME --topic T",
		Short: "Describe a consumer group: positions and lag per partition",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.DescribeGroup(cmd.Context(), topic, args[0])
			if err != nil {
				return err
			}
			return printGroup(cmd.OutOrStdout(), info, asJSON)
		},
	}
	cmd.Flags().StringVar(&topic, "topic", "", "the group's topic (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func newGroupResetCommand(opts *clientOptions) *cobra.Command {
	var (
		topic  string
		to     *client.GroupStart
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "reset NAME --topic T --to earliest|latest|offset:N|time:RFC3339",
		Short: "Move a consumer group's position on every partition",
		Long: `Move a consumer group's position on every partition and drop its pending
deliveries. --to is resolved per partition as create's --start is.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.ResetGroup(cmd.Context(), topic, args[0], to)
			if err != nil {
				return err
			}
			return printGroup(cmd.OutOrStdout(), info, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&topic, "topic", "", "the group's topic (required)")
	f.Var(groupStartFlag{&to}, "to", "where to move the group: earliest, latest, offset:N or time:RFC3339 (required)")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	_ = cmd.MarkFlagRequired("topic")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func newGroupDeleteCommand(opts *clientOptions) *cobra.Command {
	var topic string
	cmd := &cobra.Command{
		Use:   "delete NAME --topic T",
		Short: "Delete a consumer group and its positions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.DeleteGroup(cmd.Context(), topic, args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "group %s of topic %s deleted\n", args[0], topic)
			return err
		},
	}
	cmd.Flags().StringVar(&topic, "topic", "", "the group's topic (required)")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

// groupView is a consumer group as `group ... --json` prints it (list
// leaves out the partitions).
type groupView struct {
	Topic         string               `json:"topic"`
	Name          string               `json:"name"`
	AckWaitMs     int64                `json:"ack_wait_ms"`
	MaxDeliveries uint32               `json:"max_deliveries"`
	MaxPending    uint32               `json:"max_pending"`
	KeyOrder      bool                 `json:"key_order"`
	Pending       uint64               `json:"pending"`
	LagEvents     uint64               `json:"lag_events"`
	LagMs         int64                `json:"lag_ms"`
	Partitions    []groupPartitionView `json:"partitions,omitempty"`
}

// groupPartitionView is one partition of a groupView.
type groupPartitionView struct {
	Partition     uint32 `json:"partition"`
	Present       bool   `json:"present"`
	Floor         uint64 `json:"floor"`
	Cursor        uint64 `json:"cursor"`
	Pending       uint64 `json:"pending"`
	DeadLettered  uint64 `json:"dead_lettered"`
	LagEvents     uint64 `json:"lag_events"`
	LagMs         int64  `json:"lag_ms"`
	Generation    uint64 `json:"generation"`
	Member        string `json:"member"`
	LowWatermark  uint64 `json:"low_watermark"`
	HighWatermark uint64 `json:"high_watermark"`
	LeaderID      string `json:"leader_id"`
}

func newGroupView(g *client.GroupInfo) groupView {
	cfg := g.GetConfig()
	v := groupView{
		Topic: g.GetTopic(), Name: g.GetName(),
		AckWaitMs: cfg.GetAckWaitMs(), MaxDeliveries: cfg.GetMaxDeliveries(), MaxPending: cfg.GetMaxPending(),
		KeyOrder: cfg.GetKeyOrder(), Pending: g.GetPending(), LagEvents: g.GetLagEvents(), LagMs: g.GetLagMs(),
		Partitions: []groupPartitionView{},
	}
	for _, p := range g.GetPartitions() {
		v.Partitions = append(v.Partitions, groupPartitionView{
			Partition: p.GetPartition(), Present: p.GetPresent(), Floor: p.GetFloor(), Cursor: p.GetCursor(),
			Pending: p.GetPending(), DeadLettered: p.GetDeadLettered(), LagEvents: p.GetLagEvents(), LagMs: p.GetLagMs(),
			Generation: p.GetGeneration(), Member: p.GetMember(), LowWatermark: p.GetLowWatermark(),
			HighWatermark: p.GetHighWatermark(), LeaderID: p.GetLeaderId(),
		})
	}
	return v
}

// printGroup prints one group as JSON or as a header and a partition table.
func printGroup(w io.Writer, g *client.GroupInfo, asJSON bool) error {
	v := newGroupView(g)
	if asJSON {
		return newJSONWriter(w).write(v)
	}
	order := ""
	if v.KeyOrder {
		order = ", per-key order"
	}
	fmt.Fprintf(w, "group %s of topic %s: ack wait %s, max deliveries %s, max pending %d%s\n",
		v.Name, v.Topic, formatMillis(v.AckWaitMs), countOr(uint64(v.MaxDeliveries), "unlimited"), v.MaxPending, order)
	fmt.Fprintf(w, "lag: %d events, %s; pending: %d\n", v.LagEvents, lagText(v.LagMs), v.Pending)
	tw := newTable(w)
	fmt.Fprintln(tw, "PARTITION\tFLOOR\tCURSOR\tPENDING\tDEAD-LETTERED\tLAG EVENTS\tLAG TIME\tGENERATION\tMEMBER\tLEADER")
	for _, p := range v.Partitions {
		if !p.Present {
			fmt.Fprintf(tw, "%d\t(no group on this partition)\t\t\t\t\t\t\t\t\n", p.Partition)
			continue
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s\n", p.Partition, p.Floor, p.Cursor, p.Pending, p.DeadLettered,
			p.LagEvents, lagText(p.LagMs), p.Generation, orDash(p.Member), orDash(p.LeaderID))
	}
	return tw.Flush()
}

// lagText renders a lag in milliseconds as a Go duration ("0s" when
// caught up).
func lagText(ms int64) string {
	return (time.Duration(ms) * time.Millisecond).String()
}
