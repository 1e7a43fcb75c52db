package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/wire"
)

// newTopicCommand groups the topic verbs: create, alter, delete, list,
// describe.
func newTopicCommand(env environment) *cobra.Command {
	var opts clientOptions
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Create, alter, delete, list and describe topics",
		RunE:  runGroup,
	}
	opts.register(cmd.PersistentFlags(), env)
	cmd.AddCommand(newTopicCreateCommand(&opts), newTopicAlterCommand(&opts), newTopicDeleteCommand(&opts),
		newTopicListCommand(&opts), newTopicDescribeCommand(&opts))
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
		Long: `Create a topic. Durations are Go durations (90m, 1h30m) or days (7d, 1d12h);
0 means unlimited (retention), none (TTLs) or off (dedupe window).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Name = args[0]
			if cfg.Partitions == 0 || cfg.ReplicationFactor == 0 {
				return usagef("--partitions and --replication must be at least 1")
			}
			if cfg.MaxTtlMs > 0 && cfg.DefaultTtlMs > cfg.MaxTtlMs {
				return usagef("--default-ttl %s is over --max-ttl %s", formatMillis(cfg.DefaultTtlMs), formatMillis(cfg.MaxTtlMs))
			}
			if len(cfg.SchemaVersions) > 0 && cfg.Schema == "" {
				return usagef("--schema-versions needs --schema")
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
	f.Var(orderingFlag{&cfg.Ordering}, "ordering", "which events are ordered: per-tenant, per-key or none")
	f.StringVar(&cfg.Schema, "schema", "", "schema name of the topic's events")
	f.BoolVar(&cfg.AutoTenants, "auto-tenants", false, "accept events of tenants not created with 'herald tenant create'")
	registerAlterableFlags(f, &cfg)
	f.Var(fieldsFlag{&cfg.RequiredFields}, "required-fields", "envelope fields every event must set, comma-separated ("+strings.Join(wire.EnvelopeFields(), ",")+")")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	_ = cmd.MarkFlagRequired("partitions")
	_ = cmd.MarkFlagRequired("replication")
	return cmd
}

// alterableFlag names the flag of an alterable TopicConfig field
// (wire.AlterableFields, herald.proto AlterTopicRequest.fields): the field
// name without its "_ms" unit, dashed ("retention_age_ms" is
// --retention-age). TestEveryAlterableFieldHasAFlag checks that each one is
// registered.
func alterableFlag(field string) string {
	if field == "protected_groups" {
		// Repeated, one group per flag.
		return "protect-group"
	}
	return strings.ReplaceAll(strings.TrimSuffix(field, "_ms"), "_", "-")
}

// registerAlterableFlags adds the flags of the settings AlterTopic can
// change, but for --auto-tenants, whose help differs.
func registerAlterableFlags(f *pflag.FlagSet, cfg *client.TopicConfig) {
	f.Var(millisFlag{&cfg.RetentionAgeMs}, "retention-age", "drop events older than this (0: unlimited)")
	f.Uint64Var(&cfg.RetentionBytes, "retention-bytes", 0, "bytes kept per partition (0: unlimited)")
	f.Uint64Var(&cfg.RetentionEvents, "retention-events", 0, "events kept per partition (0: unlimited)")
	f.Var(millisFlag{&cfg.DefaultTtlMs}, "default-ttl", "TTL of events that set none (0: they do not expire)")
	f.Var(millisFlag{&cfg.MaxTtlMs}, "max-ttl", "largest TTL an event may set (0: no maximum)")
	f.Var(millisFlag{&cfg.DedupeWindowMs}, "dedupe-window", "drop an event whose event id was seen this recently (0: off)")
	f.Var(versionsFlag{&cfg.SchemaVersions}, "schema-versions", "allowed schema versions, comma-separated (empty: any)")
	f.StringVar(&cfg.DeadLetterTopic, "dead-letter-topic", "", "existing topic where consumer groups put events delivered max-deliveries times (empty: none)")
	f.Var(protectFlag{&cfg.ProtectedGroups}, "protect-group", "consumer group the topic's producers must not outrun, GROUP:SLOW:PAUSE in events of lag per partition: slowed from SLOW, refused from PAUSE (0: that stage off); repeat for more groups; alter replaces the list (none: clear it)")
}

func newTopicAlterCommand(opts *clientOptions) *cobra.Command {
	var (
		cfg    client.TopicConfig
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "alter NAME [--retention-age DUR] [--default-ttl DUR] [...]",
		Short: "Change a topic's retention, TTLs, dedupe window, schema versions, auto-tenants, dead-letter topic or protected groups",
		Long: `Change the settings given as flags, and only those; the others keep their
values. Durations are Go durations (90m, 1h30m) or days (7d, 1d12h).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Name = args[0]
			var fields []string
			for _, field := range wire.AlterableFields() {
				if cmd.Flags().Changed(alterableFlag(field)) {
					fields = append(fields, field)
				}
			}
			if len(fields) == 0 {
				return usagef("nothing to alter: give at least one of --%s", joinFlags(wire.AlterableFields()))
			}
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.AlterTopic(cmd.Context(), &cfg, fields...)
			if err != nil {
				return err
			}
			return printTopic(cmd.OutOrStdout(), info, asJSON)
		},
	}
	f := cmd.Flags()
	registerAlterableFlags(f, &cfg)
	f.BoolVar(&cfg.AutoTenants, "auto-tenants", false, "accept events of unknown tenants: --auto-tenants=true|false")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

// joinFlags lists the flags of alterable fields, for a usage message.
func joinFlags(fields []string) string {
	names := make([]string, len(fields))
	for i, field := range fields {
		names[i] = alterableFlag(field)
	}
	return strings.Join(names, ", --")
}

func newTopicDeleteCommand(opts *clientOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete NAME [--force]",
		Short: "Delete a topic and its events",
		Long: `Delete a topic and its events. A topic that had events produced within the
last minute is refused unless --force is given.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.DeleteTopic(cmd.Context(), args[0], force); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "topic %s deleted\n", args[0])
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete even if events were produced within the last minute")
	return cmd
}

func newTopicListCommand(opts *clientOptions) *cobra.Command {
	var asJSON, stale bool
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
			topics, err := c.ListTopics(cmd.Context(), readOptions(stale)...)
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
			fmt.Fprintln(tw, "NAME\tPARTITIONS\tREPLICATION\tMAX EVENT BYTES\tCREATED\tORDERING\tRETENTION AGE\tDEFAULT TTL\tMAX TTL\tDEDUPE WINDOW\tAUTO TENANTS")
			for _, v := range views {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Partitions, v.ReplicationFactor, maxBytesText(v.MaxEventBytes), orDash(v.CreatedAt),
					v.Ordering, millisOr(v.RetentionAgeMs, "unlimited"), millisOr(v.DefaultTTLMs, "none"), millisOr(v.MaxTTLMs, "none"),
					millisOr(v.DedupeWindowMs, "off"), yesNo(v.AutoTenants))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the node's own copy of the registry, which may trail the controller leader (no read index round trip)")
	return cmd
}

func newTopicDescribeCommand(opts *clientOptions) *cobra.Command {
	var asJSON, stale bool
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
			info, err := c.DescribeTopic(cmd.Context(), args[0], readOptions(stale)...)
			if err != nil {
				return err
			}
			return printTopic(cmd.OutOrStdout(), info, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the node's own copy of the registry, which may trail the controller leader (no read index round trip)")
	return cmd
}

// topicView is a topic as `topic ... --json` prints it.
type topicView struct {
	Name              string           `json:"name"`
	Partitions        uint32           `json:"partitions"`
	ReplicationFactor uint32           `json:"replication_factor"`
	MaxEventBytes     uint64           `json:"max_event_bytes"`
	Ordering          string           `json:"ordering"`
	RetentionAgeMs    int64            `json:"retention_age_ms"`
	RetentionBytes    uint64           `json:"retention_bytes"`
	RetentionEvents   uint64           `json:"retention_events"`
	DefaultTTLMs      int64            `json:"default_ttl_ms"`
	MaxTTLMs          int64            `json:"max_ttl_ms"`
	DedupeWindowMs    int64            `json:"dedupe_window_ms"`
	Schema            string           `json:"schema"`
	SchemaVersions    []uint32         `json:"schema_versions"`
	RequiredFields    []string         `json:"required_fields"`
	AutoTenants       bool             `json:"auto_tenants"`
	DeadLetterTopic   string           `json:"dead_letter_topic"`
	ProtectedGroups   []protectedView  `json:"protected_groups"`
	CreatedAt         string           `json:"created_at,omitempty"`
	Assignments       []assignmentView `json:"assignments"`
}

// protectedView is one protected consumer group of a topicView.
type protectedView struct {
	Group    string `json:"group"`
	SlowLag  uint64 `json:"slow_lag"`
	PauseLag uint64 `json:"pause_lag"`
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
	cfg := t.GetConfig()
	v := topicView{
		Name:              cfg.GetName(),
		Partitions:        cfg.GetPartitions(),
		ReplicationFactor: cfg.GetReplicationFactor(),
		MaxEventBytes:     cfg.GetMaxEventBytes(),
		Ordering:          orderingName(cfg.GetOrdering()),
		RetentionAgeMs:    cfg.GetRetentionAgeMs(),
		RetentionBytes:    cfg.GetRetentionBytes(),
		RetentionEvents:   cfg.GetRetentionEvents(),
		DefaultTTLMs:      cfg.GetDefaultTtlMs(),
		MaxTTLMs:          cfg.GetMaxTtlMs(),
		DedupeWindowMs:    cfg.GetDedupeWindowMs(),
		Schema:            cfg.GetSchema(),
		SchemaVersions:    append([]uint32{}, cfg.GetSchemaVersions()...),
		RequiredFields:    append([]string{}, cfg.GetRequiredFields()...),
		AutoTenants:       cfg.GetAutoTenants(),
		DeadLetterTopic:   cfg.GetDeadLetterTopic(),
		ProtectedGroups:   []protectedView{},
		Assignments:       []assignmentView{},
	}
	for _, g := range cfg.GetProtectedGroups() {
		v.ProtectedGroups = append(v.ProtectedGroups, protectedView{Group: g.GetGroup(), SlowLag: g.GetSlowLag(), PauseLag: g.GetPauseLag()})
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
	schema := orDash(v.Schema)
	if len(v.SchemaVersions) > 0 {
		schema += " (versions " + joinVersions(v.SchemaVersions) + ")"
	}
	fmt.Fprintf(w, "ordering: %s\n", v.Ordering)
	fmt.Fprintf(w, "retention: age %s, bytes %s, events %s\n",
		millisOr(v.RetentionAgeMs, "unlimited"), countOr(v.RetentionBytes, "unlimited"), countOr(v.RetentionEvents, "unlimited"))
	fmt.Fprintf(w, "ttl: default %s, max %s\n", millisOr(v.DefaultTTLMs, "none"), millisOr(v.MaxTTLMs, "none"))
	fmt.Fprintf(w, "dedupe window: %s\n", millisOr(v.DedupeWindowMs, "off"))
	fmt.Fprintf(w, "schema: %s\n", schema)
	fmt.Fprintf(w, "required fields: %s\n", orDash(strings.Join(v.RequiredFields, ",")))
	fmt.Fprintf(w, "auto tenants: %s\n", yesNo(v.AutoTenants))
	fmt.Fprintf(w, "dead-letter topic: %s\n", orDash(v.DeadLetterTopic))
	fmt.Fprintf(w, "protected groups: %s\n", protectedText(v.ProtectedGroups))
	tw := newTable(w)
	fmt.Fprintln(tw, "PARTITION\tGROUP\tLEADER\tREPLICAS")
	for _, a := range v.Assignments {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\n", a.Partition, a.GroupID, orDash(a.LeaderID), strings.Join(a.Replicas, ","))
	}
	return tw.Flush()
}

// protectedText renders protected groups as "billing (slow 100, pause
// 200), audit (pause 50)", or "-".
func protectedText(groups []protectedView) string {
	if len(groups) == 0 {
		return "-"
	}
	parts := make([]string, len(groups))
	for i, g := range groups {
		var stages []string
		if g.SlowLag > 0 {
			stages = append(stages, fmt.Sprintf("slow %d", g.SlowLag))
		}
		if g.PauseLag > 0 {
			stages = append(stages, fmt.Sprintf("pause %d", g.PauseLag))
		}
		parts[i] = fmt.Sprintf("%s (%s)", g.Group, strings.Join(stages, ", "))
	}
	return strings.Join(parts, ", ")
}

func maxBytesText(n uint64) string {
	if n == 0 {
		return "default"
	}
	return fmt.Sprint(n)
}

// millisOr renders a duration in milliseconds, or zeroText for 0.
func millisOr(ms int64, zeroText string) string {
	if ms == 0 {
		return zeroText
	}
	return formatMillis(ms)
}

// countOr renders n, or zeroText for 0.
func countOr(n uint64, zeroText string) string {
	if n == 0 {
		return zeroText
	}
	return fmt.Sprint(n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
