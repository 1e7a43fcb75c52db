package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldlog/herald/client"
)

// newTopicCommand groups the topic verbs: create, list, describe.
func newTopicCommand(env environment) *cobra.Command {
	var opts clientOptions
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Create, list and describe topics",
		RunE:  runGroup,
	}
	opts.register(cmd.PersistentFlags(), env)
	cmd.AddCommand(newTopicCreateCommand(&opts), newTopicListCommand(&opts), newTopicDescribeCommand(&opts))
	return cmd
}

func newTopicCreateCommand(opts *clientOptions) *cobra.Command {
	var (
		cfg    client.TopicConfig
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME --partitions N --replication N",
		Short: "Create a topic",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Name = args[0]
			if cfg.Partitions == 0 || cfg.ReplicationFactor == 0 {
				return usagef("--partitions and --replication must be at least 1")
			}
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.CreateTopic(cmd.Context(), &cfg)
			if err != nil {
				return err
			}
			return printTopic(cmd.OutOrStdout(), info, asJSON)
		},
	}
	f := cmd.Flags()
	f.Uint32Var(&cfg.Partitions, "partitions", 0, "number of partitions (required)")
	f.Uint32Var(&cfg.ReplicationFactor, "replication", 0, "replicas per partition (required)")
	f.Uint64Var(&cfg.MaxEventBytes, "max-event-bytes", 0, "largest event payload in bytes (0: the server default, 1 MiB)")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	_ = cmd.MarkFlagRequired("partitions")
	_ = cmd.MarkFlagRequired("replication")
	return cmd
}

func newTopicListCommand(opts *clientOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List topics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			topics, err := c.ListTopics(cmd.Context())
			if err != nil {
				return err
			}
			views := make([]topicView, len(topics))
			for i, t := range topics {
				views[i] = newTopicView(t)
			}
			if asJSON {
				return newJSONWriter(cmd.OutOrStdout()).write(views)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tPARTITIONS\tREPLICATION\tMAX EVENT BYTES\tCREATED")
			for _, v := range views {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", v.Name, v.Partitions, v.ReplicationFactor, maxBytesText(v.MaxEventBytes), orDash(v.CreatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func newTopicDescribeCommand(opts *clientOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Describe a topic and its partitions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.DescribeTopic(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printTopic(cmd.OutOrStdout(), info, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

// topicView is a topic as `topic ... --json` prints it.
type topicView struct {
	Name              string           `json:"name"`
	Partitions        uint32           `json:"partitions"`
	ReplicationFactor uint32           `json:"replication_factor"`
	MaxEventBytes     uint64           `json:"max_event_bytes"`
	CreatedAt         string           `json:"created_at,omitempty"`
	Assignments       []assignmentView `json:"assignments"`
}

// assignmentView is one partition of a topicView.
type assignmentView struct {
	Partition  uint32   `json:"partition"`
	GroupID    uint64   `json:"group_id"`
	Replicas   []string `json:"replicas"`
	LeaderID   string   `json:"leader_id"`
	LeaderAddr string   `json:"leader_addr"`
}

func newTopicView(t *client.TopicInfo) topicView {
	v := topicView{
		Name:              t.GetConfig().GetName(),
		Partitions:        t.GetConfig().GetPartitions(),
		ReplicationFactor: t.GetConfig().GetReplicationFactor(),
		MaxEventBytes:     t.GetConfig().GetMaxEventBytes(),
		Assignments:       []assignmentView{},
	}
	if ns := t.GetCreatedAtUnixNano(); ns != 0 {
		v.CreatedAt = time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
	}
	for _, p := range t.GetPartitions() {
		v.Assignments = append(v.Assignments, assignmentView{
			Partition: p.GetIndex(), GroupID: p.GetGroupId(), Replicas: append([]string{}, p.GetReplicas()...),
			LeaderID: p.GetLeaderId(), LeaderAddr: p.GetLeaderAddr(),
		})
	}
	return v
}

// printTopic prints one topic as JSON or as a header and a partition table.
func printTopic(w io.Writer, t *client.TopicInfo, asJSON bool) error {
	v := newTopicView(t)
	if asJSON {
		return newJSONWriter(w).write(v)
	}
	fmt.Fprintf(w, "topic %s: %d partitions, replication %d, max event bytes %s, created %s\n",
		v.Name, v.Partitions, v.ReplicationFactor, maxBytesText(v.MaxEventBytes), formatTime(t.GetCreatedAtUnixNano()))
	tw := newTable(w)
	fmt.Fprintln(tw, "PARTITION\tGROUP\tLEADER\tREPLICAS")
	for _, a := range v.Assignments {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\n", a.Partition, a.GroupID, orDash(a.LeaderID), strings.Join(a.Replicas, ","))
	}
	return tw.Flush()
}

func maxBytesText(n uint64) string {
	if n == 0 {
		return "default"
	}
	return fmt.Sprint(n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
