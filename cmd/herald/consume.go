package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/wsclient"
)

// consumePageEventsMax is how many events one fetch asks for.
const consumePageEventsMax = 500

// newConsumeCommand prints a partition's or a tenant's events as JSON lines.
func newConsumeCommand(env environment) *cobra.Command {
	var (
		opts          clientOptions
		topic, tenant string
		partition     uint32
		fromText      string
		limit         int
		follow        bool
		ws            bool
		wsURLs        []string
		group, member string
		idleExit      time.Duration
		idempotent    bool
	)
	cmd := &cobra.Command{
		Use:   "consume --topic T (--tenant A | --partition P | --group G)",
		Short: "Print events as JSON lines, up to the end of the log",
		Long: `Print events as JSON lines until the end of the log or --limit events:
  {"partition":0,"offset":12,"sequence":5,"tenant":"acme","event_id":"...",
   "produced_at":"2025-01-02T03:04:05.123456789Z","causation_id":"...","key":"...",
   "payload":"...","expires_at":"2025-01-09T03:04:05.123456789Z"}
payload is a string when it is valid UTF-8, else base64 under payload_b64
(likewise key and key_b64); causation_id and key appear only when set;
expires_at when the event has a TTL (its own, else the topic's default):
produced_at plus the TTL.

With --tenant, the tenant's partition is read, only its events (a topic
ordered per tenant, the default; other orderings spread a tenant's events,
so read them with --partition):
  --from earliest        from the tenant's first event (seq:1)
  --from seq:N           from the tenant's sequence N
  --from offset:N        scan the partition from offset N
  --from time:RFC3339    from the first event produced at or after the time
  --from latest          from the end (prints nothing)
With --partition, the whole partition:
  --from earliest        from the first retained offset (low watermark)
  --from offset:N        from offset N
  --from time:RFC3339    from the first event produced at or after the time,
                         e.g. time:2025-01-02T03:04:05Z
  --from latest          from the end (prints nothing)

--follow keeps reading past the end, printing each event as it is
produced (a subscription stream on one of the partition's replicas,
resumed on another at the next event if that node dies), until --limit
events or Ctrl-C, which exits 0. With --from latest it prints only new
events. Against a server without subscriptions it long-polls instead.

--ws reads over the nodes' WebSocket gateways instead of gRPC (their
URLs come from the cluster status, where each node reports its HTTP
address; --ws-url ws://host:http-port/v1/ws,... names them instead), and
follows like --follow:
when the node it reads from dies or stops, it resumes on the next one at
the offset after the last event printed, with no gap or repeat (stderr
names each node it reads from). The topic's description still comes over
gRPC (--server).

--group G reads as a member of consumer group G (herald group create):
the member gets some of the topic's partitions from the group's
coordinator and prints their events, each partition's in offset order,
acknowledging each event once its line is written, so runs in a row (or
members side by side) print each event once between them, except an
event redelivered because its acknowledgement was lost (at least once).
--member ID names the member (default: a random id); it stops after
--limit events, after --idle-exit with no event (e.g. 3s; default: never)
or on Ctrl-C, and leaves the group, whose other members then take its
partitions. --tenant, --partition, --from, --follow and --ws do not apply.

--idempotent (with --group) prints each event at most once per group:
it acknowledges each printed event with a processed mark of its tenant
and causation id (or event id), kept by Herald, and acknowledges without
printing an event that any member of the group already marked, even
after herald group reset --to earliest (docs/protocol.md, "The
idempotent consumer").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			byTenant, byPartition := cmd.Flags().Changed("tenant"), cmd.Flags().Changed("partition")
			if cmd.Flags().Changed("group") {
				return runConsumeGroup(cmd, opts, consumeGroupOptions{topic: topic, group: group, member: member, limit: limit, idleExit: idleExit, idempotent: idempotent})
			}
			switch {
			case cmd.Flags().Changed("member"), cmd.Flags().Changed("idle-exit"):
				return usagef("--member and --idle-exit need --group")
			case cmd.Flags().Changed("idempotent"):
				return usagef("--idempotent needs --group")
			case topic == "":
				return usagef("--topic is required")
			case byTenant == byPartition:
				return usagef("give exactly one of --tenant and --partition")
			case byTenant && tenant == "":
				return usagef("--tenant must not be empty")
			case limit < 0:
				return usagef("--limit %d: want 0 (no limit) or more", limit)
			case !ws && len(wsURLs) > 0:
				return usagef("--ws-url needs --ws")
			}
			from, err := parseFrom(fromText, byTenant)
			if err != nil {
				return err
			}
			if _, err := opts.serverList(); err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := opts.connect(ctx, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.DescribeTopic(ctx, topic)
			if err != nil {
				return err
			}
			if byTenant {
				switch ordering := info.GetConfig().GetOrdering(); ordering {
				case client.OrderingPerKey, client.OrderingNone:
					return fmt.Errorf("topic %q is ordered %s: a tenant's events span partitions; read them with --partition", topic, orderingName(ordering))
				}
				partition = client.PartitionForTenant(tenant, info.GetConfig().GetPartitions())
			}
			out := newJSONWriter(cmd.OutOrStdout())
			defaultTTLMs := info.GetConfig().GetDefaultTtlMs()
			if ws {
				so, err := wsSubscribeOptions(topic, partition, tenant, from, fromText)
				if err != nil {
					return err
				}
				resolved, err := opts.resolve()
				if err != nil {
					return err
				}
				scheme := "ws"
				if resolved.tls != nil {
					scheme = "wss"
				}
				if len(wsURLs) == 0 {
					st, err := c.ClusterStatus(ctx)
					if err != nil {
						return err
					}
					if wsURLs, err = wsURLsFromStatus(st, scheme); err != nil {
						return err
					}
				}
				return consumeWS(ctx, wsclient.Config{URLs: wsURLs, TLS: resolved.tls, Token: resolved.token}, so, limit, defaultTTLMs, out, cmd.ErrOrStderr())
			}
			if follow {
				served, err := consumeFollow(ctx, c, topic, client.SubscribeOptions{
					Partitions: []uint32{partition}, TenantID: tenant, Start: from,
				}, limit, defaultTTLMs, out)
				if served || err != nil {
					return err
				}
			}
			rc := client.ReaderConfig{
				Topic: topic, Partition: partition, TenantID: tenant, Start: from,
				PageEventsMax: consumePageEventsMax,
			}
			if limit > 0 {
				rc.PageEventsMax = uint32(min(consumePageEventsMax, limit))
			}
			if follow {
				rc.Wait = followWait
			}
			r, err := client.NewReader(c, rc)
			if err != nil {
				return err
			}
			return consume(ctx, r, follow, limit, defaultTTLMs, out)
		},
	}
	f := cmd.Flags()
	opts.register(f, env)
	f.StringVar(&topic, "topic", "", "topic to read (required)")
	f.StringVar(&tenant, "tenant", "", "read this tenant's events (in its partition)")
	f.Uint32Var(&partition, "partition", 0, "read this partition")
	f.StringVar(&fromText, "from", "earliest", "start: earliest, latest, offset:N, seq:N (needs --tenant) or time:RFC3339")
	f.IntVar(&limit, "limit", 0, "stop after this many events (0: no limit)")
	f.BoolVar(&follow, "follow", false, "keep printing new events after the end of the log (until --limit or Ctrl-C)")
	f.BoolVar(&ws, "ws", false, "read over WebSocket and follow, resuming on another node when one dies")
	f.StringSliceVar(&wsURLs, "ws-url", nil, "with --ws: the nodes' WebSocket URLs, ws://host:http-port/v1/ws (comma-separated or repeated; default: from the cluster status)")
	f.StringVar(&group, "group", "", "read as a member of this consumer group, acknowledging each event printed")
	f.StringVar(&member, "member", "", "with --group: the member id (default: a random one)")
	f.DurationVar(&idleExit, "idle-exit", 0, "with --group: stop once no event came for this long (0: never)")
	f.BoolVar(&idempotent, "idempotent", false, "with --group: skip events a member of the group already processed, and mark each printed one processed")
	return cmd
}

// runConsumeGroup checks consume --group's flags and runs consumeGroup.
func runConsumeGroup(cmd *cobra.Command, opts clientOptions, o consumeGroupOptions) error {
	for _, name := range []string{"tenant", "partition", "from", "follow", "ws", "ws-url"} {
		if cmd.Flags().Changed(name) {
			return usagef("--%s does not apply to --group", name)
		}
	}
	switch {
	case o.topic == "":
		return usagef("--topic is required")
	case o.group == "":
		return usagef("--group must not be empty")
	case o.limit < 0:
		return usagef("--limit %d: want 0 (no limit) or more", o.limit)
	case o.idleExit < 0:
		return usagef("--idle-exit %s: want 0 (never) or more", o.idleExit)
	}
	if _, err := opts.serverList(); err != nil {
		return err
	}
	ctx := cmd.Context()
	c, err := opts.connect(ctx, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer c.Close()
	info, err := c.DescribeTopic(ctx, o.topic)
	if err != nil {
		return err
	}
	o.defaultTTLMs = info.GetConfig().GetDefaultTtlMs()
	return consumeGroup(ctx, c, o, newJSONWriter(cmd.OutOrStdout()), cmd.ErrOrStderr())
}

// The times that Unix nanoseconds (the wire's time_unix_nano) can hold.
var (
	unixNanoMin = time.Unix(0, math.MinInt64)
	unixNanoMax = time.Unix(0, math.MaxInt64)
)

// parseFrom parses --from: earliest, latest, offset:N, time:RFC3339 or
// (for a tenant read) seq:N with N >= 1. A tenant read from the earliest
// point starts at the tenant's sequence 1. Errors are usage errors.
func parseFrom(s string, tenant bool) (client.Start, error) {
	switch s {
	case "earliest":
		if tenant {
			return client.FromSequence(1), nil
		}
		return client.FromEarliest(), nil
	case "latest":
		return client.FromLatest(), nil
	}
	kind, number, ok := strings.Cut(s, ":")
	if ok && kind == "time" {
		at, err := time.Parse(time.RFC3339Nano, number)
		if err != nil {
			return client.Start{}, usagef("--from %q: %q is not an RFC 3339 time (2025-01-02T03:04:05Z)", s, number)
		}
		if at.Before(unixNanoMin) || at.After(unixNanoMax) {
			return client.Start{}, usagef("--from %q: want a time from %s to %s", s,
				unixNanoMin.UTC().Format(time.RFC3339), unixNanoMax.UTC().Format(time.RFC3339))
		}
		return client.FromTime(at), nil
	}
	if !ok || (kind != "offset" && kind != "seq") {
		return client.Start{}, usagef("--from %q: want earliest, latest, offset:N, seq:N or time:RFC3339", s)
	}
	n, err := strconv.ParseUint(number, 10, 64)
	if err != nil {
		return client.Start{}, usagef("--from %q: %q is not a non-negative integer", s, number)
	}
	if kind == "offset" {
		return client.FromOffset(n), nil
	}
	if !tenant {
		return client.Start{}, usagef("--from %q: a tenant sequence needs --tenant", s)
	}
	if n == 0 {
		return client.Start{}, usagef("--from %q: tenant sequences start at 1", s)
	}
	return client.FromSequence(n), nil
}

// consumeFollow prints the events of a subscription (client.Subscribe)
// until limit events were printed (0: no limit) or ctx ends (Ctrl-C),
// which is a clean end: it returns nil. The subscription resumes on
// another replica by itself when a node dies. It reports whether the
// cluster serves subscriptions: a server that predates them answers
// Unimplemented before any event, and the caller then long-polls.
func consumeFollow(ctx context.Context, c *client.Client, topic string, opts client.SubscribeOptions, limit int, defaultTTLMs int64, out *jsonWriter) (served bool, err error) {
	printed := 0
	for d, err := range c.Subscribe(ctx, topic, opts) {
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return true, nil
			case printed == 0 && client.Status(err).Code() == codes.Unimplemented:
				return false, nil
			}
			return true, err
		}
		if err := out.write(renderEvent(d.Event.GetPartition(), d.Event, defaultTTLMs)); err != nil {
			return true, err
		}
		if printed++; limit > 0 && printed >= limit {
			return true, nil
		}
	}
	return true, nil
}

// consume --follow pacing when it long-polls (a server without
// subscriptions): each fetch long-polls followWait; an empty answer that
// came back sooner than the Reader's EmptyPause (a server that does not
// long-poll) is followed by that pause, so the loop never spins.
const followWait = 5 * time.Second

// consume prints events from r until limit events (0: no limit) were
// printed or, unless follow, the end of the log (Reader.AtEnd). With
// follow it long-polls past the end and returns nil when ctx ends
// (Ctrl-C). defaultTTLMs is the topic's, for the expires_at of events
// without one.
func consume(ctx context.Context, r *client.Reader, follow bool, limit int, defaultTTLMs int64, out *jsonWriter) error {
	printed := 0
	for {
		before := r.Position()
		page, err := r.Next(ctx)
		if err != nil {
			if follow && ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, e := range page.GetEvents() {
			if err := out.write(renderEvent(r.Partition(), e, defaultTTLMs)); err != nil {
				return err
			}
			printed++
			if limit > 0 && printed >= limit {
				return nil
			}
		}
		if follow {
			continue
		}
		if r.AtEnd() {
			return nil
		}
		if len(page.GetEvents()) == 0 && r.Position() == before {
			return fmt.Errorf("consume: the server did not advance past %s", before)
		}
	}
}
