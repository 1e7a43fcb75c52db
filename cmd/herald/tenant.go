package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/heraldlog/herald/client"
)

// newTenantCommand groups the tenant verbs: create, list, describe,
// set-quota.
func newTenantCommand(env environment) *cobra.Command {
	var opts clientOptions
	cmd := &cobra.Command{
		Use:   "tenant",
		Short: "Create, list and describe tenants, and set their quotas",
		RunE:  runGroup,
	}
	opts.register(cmd.PersistentFlags(), env)
	cmd.AddCommand(newTenantCreateCommand(&opts), newTenantListCommand(&opts), newTenantDescribeCommand(&opts),
		newTenantSetQuotaCommand(&opts))
	return cmd
}

// quotaFlags are the flags of a tenant quota. Each takes a positive whole
// number; "unlimited" (for --burst: "default", one second's worth) is how
// to say none, stored as the wire's 0. A bare 0 and negative numbers are
// refused while the command line is parsed (exit 2), since 0 reads as
// "nothing allowed" to a person and as "unlimited" to the server.
var quotaFlags = []string{"events-per-sec", "bytes-per-sec", "burst", "max-inflight-bytes"}

// Words a quota flag takes in place of a number.
const (
	quotaUnlimited = "unlimited"
	quotaDefault   = "default"
)

func registerQuotaFlags(f *pflag.FlagSet, q *client.TenantQuota) {
	f.Var(quotaFlag{&q.EventsPerSec, quotaUnlimited}, "events-per-sec", `events per second, or "unlimited"`)
	f.Var(quotaFlag{&q.BytesPerSec, quotaUnlimited}, "bytes-per-sec", `payload bytes per second, or "unlimited"`)
	f.Var(quotaFlag{&q.Burst, quotaDefault}, "burst", `events above the rate allowed at once (needs --events-per-sec), or "default" (one second's worth)`)
	f.Var(quotaFlag{&q.MaxInflightBytes, quotaUnlimited}, "max-inflight-bytes", `bytes waiting to be committed at once, or "unlimited"`)
}

var _ pflag.Value = quotaFlag{}

// quotaFlag is one limit of a quota: a positive whole number, or word
// (unlimited or default) for the wire's 0.
type quotaFlag struct {
	v    *uint64
	word string
}

func (f quotaFlag) String() string {
	if f.v == nil || *f.v == 0 {
		return f.word
	}
	return strconv.FormatUint(*f.v, 10)
}

func (f quotaFlag) Set(s string) error {
	s = strings.TrimSpace(s)
	if s == f.word {
		*f.v = 0
		return nil
	}
	if strings.HasPrefix(s, "-") {
		return fmt.Errorf("a quota cannot be negative: want a positive whole number, or %q", f.word)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return fmt.Errorf("too large: want at most %d, or %q", uint64(math.MaxUint64), f.word)
	case err != nil:
		return fmt.Errorf("want a positive whole number, or %q", f.word)
	case n == 0:
		if f.word == quotaDefault {
			return fmt.Errorf(`0 is ambiguous: give %q for one second's worth`, f.word)
		}
		return fmt.Errorf(`0 is ambiguous: give %q for no limit`, f.word)
	}
	*f.v = n
	return nil
}

func (quotaFlag) Type() string { return "count" }

func newTenantCreateCommand(opts *clientOptions) *cobra.Command {
	var (
		tenant = client.Tenant{Quota: &client.TenantQuota{}}
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME [--display-name S] [--events-per-sec N] [--bytes-per-sec N] [--burst N] [--max-inflight-bytes N]",
		Short: "Create a tenant",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant.Id = args[0]
			if tenant.Id == "" {
				return usagef("a tenant needs a name")
			}
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			created, err := c.CreateTenant(cmd.Context(), &tenant)
			if err != nil {
				return err
			}
			return printTenant(cmd.OutOrStdout(), created, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&tenant.DisplayName, "display-name", "", "human-readable name")
	registerQuotaFlags(f, tenant.Quota)
	f.BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return cmd
}

func newTenantListCommand(opts *clientOptions) *cobra.Command {
	var asJSON, stale bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tenants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := opts.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			tenants, err := c.ListTenants(cmd.Context(), readOptions(stale)...)
			if err != nil {
				return err
			}
			views := make([]tenantView, len(tenants))
			for i, t := range tenants {
				views[i] = newTenantView(t)
			}
			if asJSON {
				return newJSONWriter(cmd.OutOrStdout()).write(views)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tDISPLAY NAME\tEVENTS/S\tBYTES/S\tBURST\tMAX INFLIGHT BYTES\tCREATED")
			for _, v := range views {
				q := v.Quota
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, orDash(v.DisplayName), countOr(q.EventsPerSec, "unlimited"),
					countOr(q.BytesPerSec, "unlimited"), countOr(q.Burst, "default"), countOr(q.MaxInflightBytes, "unlimited"), orDash(v.CreatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the node's own copy of the registry, which may trail the controller leader (no read index round trip)")
	return cmd
}

func newTenantDescribeCommand(opts *clientOptions) *cobra.Command {
	var (
		asJSON, stale bool
		window        time.Duration
		adminFlag     string
	)
	cmd := &cobra.Command{
		Use:   "describe NAME [--usage-window D] [--admin ADDRS] [--json]",
		Short: "Describe a tenant, its quota and its current usage",
		Long: `Describe a tenant, its quota and its current usage against the quota:
admitted events/s and bytes/s over --usage-window, and the produce requests
throttled and refused by limit (tenant_quota, partition_queue, consumer_lag,
node_limit, deadline), summed over the nodes. The usage is read from every
node's /metrics (the HTTP address each reports in the cluster status), twice,
--usage-window apart; "no usage recorded" means no node has admission
metrics for the tenant (nothing produced since the nodes started). A
cluster that requires credentials hides the tenant series on the nodes'
HTTP port: --admin names the nodes' admin listeners (--admin-addr), read
instead.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if window < 0 || window > usageWindowMax {
				return usagef("--usage-window %s: want 0 (no usage) to %s", window, usageWindowMax)
			}
			admin, err := opts.adminAddrs(adminFlag)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := opts.connect(ctx, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			tenant, err := c.DescribeTenant(ctx, args[0], readOptions(stale)...)
			if err != nil {
				return err
			}
			view := describeView{tenantView: newTenantView(tenant)}
			if window > 0 {
				st, err := c.ClusterStatus(ctx)
				if err != nil {
					return fmt.Errorf("usage: cluster status: %w", err)
				}
				resolved, err := opts.resolve()
				if err != nil {
					return err
				}
				u, err := measureUsage(ctx, st, tenant.GetId(), window, admin, resolved)
				if err != nil {
					return err
				}
				view.Usage = &u
			}
			if asJSON {
				return newJSONWriter(cmd.OutOrStdout()).write(view)
			}
			if err := printTenant(cmd.OutOrStdout(), tenant, false); err != nil {
				return err
			}
			if view.Usage == nil {
				return nil
			}
			return printUsage(cmd.OutOrStdout(), *view.Usage, view.Quota)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the node's own copy of the registry, which may trail the controller leader (no read index round trip)")
	cmd.Flags().StringVar(&adminFlag, "admin", "", adminFlagUsage)
	cmd.Flags().DurationVar(&window, "usage-window", defaultUsageWindow, "time between the two reads of the nodes' metrics whose difference gives the usage rates (0: no usage)")
	return cmd
}

// describeView is a tenant as `tenant describe --json` prints it: the
// tenant and, unless --usage-window is 0, its usage.
type describeView struct {
	tenantView
	Usage *usageView `json:"usage,omitempty"`
}

func newTenantSetQuotaCommand(opts *clientOptions) *cobra.Command {
	var (
		given  client.TenantQuota
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "set-quota NAME [--events-per-sec N] [--bytes-per-sec N] [--burst N] [--max-inflight-bytes N]",
		Short: "Set a tenant's quota",
		Long: `Set a tenant's quota. Limits not given keep their current values (the
tenant is described first, then its whole quota is sent). Each limit is a
positive whole number or "unlimited" ("default" for --burst: one second's
worth); 0 and negative numbers are refused. Setting --events-per-sec to
unlimited without --burst also resets the burst to its default (a burst needs
a rate).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			changed := false
			for _, name := range quotaFlags {
				changed = changed || cmd.Flags().Changed(name)
			}
			if !changed {
				return usagef("nothing to set: give at least one of --events-per-sec, --bytes-per-sec, --burst, --max-inflight-bytes")
			}
			ctx := cmd.Context()
			c, err := opts.connect(ctx, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			current, err := c.DescribeTenant(ctx, args[0])
			if err != nil {
				return err
			}
			quota := &client.TenantQuota{
				EventsPerSec:     current.GetQuota().GetEventsPerSec(),
				BytesPerSec:      current.GetQuota().GetBytesPerSec(),
				Burst:            current.GetQuota().GetBurst(),
				MaxInflightBytes: current.GetQuota().GetMaxInflightBytes(),
			}
			f := cmd.Flags()
			if f.Changed("events-per-sec") {
				quota.EventsPerSec = given.EventsPerSec
			}
			if f.Changed("bytes-per-sec") {
				quota.BytesPerSec = given.BytesPerSec
			}
			if f.Changed("burst") {
				quota.Burst = given.Burst
			} else if quota.EventsPerSec == 0 {
				quota.Burst = 0 // a burst without a rate is refused
			}
			if f.Changed("max-inflight-bytes") {
				quota.MaxInflightBytes = given.MaxInflightBytes
			}
			updated, err := c.SetTenantQuota(ctx, args[0], quota)
			if err != nil {
				return err
			}
			return printTenant(cmd.OutOrStdout(), updated, asJSON)
		},
	}
	registerQuotaFlags(cmd.Flags(), &given)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return cmd
}

// tenantView is a tenant as `tenant ... --json` prints it.
type tenantView struct {
	ID          string    `json:"id"`
	DisplayName string    `json:"display_name"`
	Quota       quotaView `json:"quota"`
	CreatedAt   string    `json:"created_at,omitempty"`
}

// quotaView is a tenant's quota; 0 means unlimited (burst: the default).
type quotaView struct {
	EventsPerSec     uint64 `json:"events_per_sec"`
	BytesPerSec      uint64 `json:"bytes_per_sec"`
	Burst            uint64 `json:"burst"`
	MaxInflightBytes uint64 `json:"max_inflight_bytes"`
}

func newTenantView(t *client.Tenant) tenantView {
	q := t.GetQuota()
	v := tenantView{
		ID:          t.GetId(),
		DisplayName: t.GetDisplayName(),
		Quota: quotaView{
			EventsPerSec: q.GetEventsPerSec(), BytesPerSec: q.GetBytesPerSec(), Burst: q.GetBurst(), MaxInflightBytes: q.GetMaxInflightBytes(),
		},
	}
	if ns := t.GetCreatedAtUnixNano(); ns != 0 {
		v.CreatedAt = time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
	}
	return v
}

// printTenant prints one tenant as JSON or as text.
func printTenant(w io.Writer, t *client.Tenant, asJSON bool) error {
	v := newTenantView(t)
	if asJSON {
		return newJSONWriter(w).write(v)
	}
	q := v.Quota
	_, err := fmt.Fprintf(w, "tenant %s: display name %s, created %s\nquota: events/s %s, bytes/s %s, burst %s, max inflight bytes %s\n",
		v.ID, orDash(v.DisplayName), formatTime(t.GetCreatedAtUnixNano()),
		countOr(q.EventsPerSec, "unlimited"), countOr(q.BytesPerSec, "unlimited"), countOr(q.Burst, "default"), countOr(q.MaxInflightBytes, "unlimited"))
	return err
}
