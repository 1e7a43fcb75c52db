package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldlog/herald/client"
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
	)
	cmd := &cobra.Command{
		Use:   "consume --topic T (--tenant A | --partition P)",
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

--follow keeps reading past the end, printing events as they are
produced (each fetch long-polls the replica for up to 5s), until --limit
events or Ctrl-C. With --from latest it prints only new events.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			byTenant, byPartition := cmd.Flags().Changed("tenant"), cmd.Flags().Changed("partition")
			switch {
			case topic == "":
				return usagef("--topic is required")
			case byTenant == byPartition:
				return usagef("give exactly one of --tenant and --partition")
			case byTenant && tenant == "":
				return usagef("--tenant must not be empty")
			case limit < 0:
				return usagef("--limit %d: want 0 (no limit) or more", limit)
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
			req := from.request(topic, partition, tenant)
			out := newJSONWriter(cmd.OutOrStdout())
			if follow {
				return consumeFollow(ctx, c, req, limit, info.GetConfig().GetDefaultTtlMs(), out)
			}
			return consume(ctx, c, req, limit, info.GetConfig().GetDefaultTtlMs(), out)
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
	return cmd
}

// fromKind is the kind of a --from start point.
type fromKind int

const (
	fromEarliest fromKind = iota
	fromLatest
	fromOffset
	fromSequence
	fromTime
)

// The times that Unix nanoseconds (the wire's time_unix_nano) can hold.
var (
	unixNanoMin = time.Unix(0, math.MinInt64)
	unixNanoMax = time.Unix(0, math.MaxInt64)
)

// startPoint is a parsed --from.
type startPoint struct {
	kind fromKind
	n    uint64 // the offset or sequence
	at   int64  // the time, Unix nanoseconds
}

// parseFrom parses --from: earliest, latest, offset:N, time:RFC3339 or
// (for a tenant read) seq:N with N >= 1. Errors are usage errors.
func parseFrom(s string, tenant bool) (startPoint, error) {
	switch s {
	case "earliest":
		return startPoint{kind: fromEarliest}, nil
	case "latest":
		return startPoint{kind: fromLatest}, nil
	}
	kind, number, ok := strings.Cut(s, ":")
	if ok && kind == "time" {
		at, err := time.Parse(time.RFC3339Nano, number)
		if err != nil {
			return startPoint{}, usagef("--from %q: %q is not an RFC 3339 time (2025-01-02T03:04:05Z)", s, number)
		}
		if at.Before(unixNanoMin) || at.After(unixNanoMax) {
			return startPoint{}, usagef("--from %q: want a time from %s to %s", s,
				unixNanoMin.UTC().Format(time.RFC3339), unixNanoMax.UTC().Format(time.RFC3339))
		}
		return startPoint{kind: fromTime, at: at.UnixNano()}, nil
	}
	if !ok || (kind != "offset" && kind != "seq") {
		return startPoint{}, usagef("--from %q: want earliest, latest, offset:N, seq:N or time:RFC3339", s)
	}
	n, err := strconv.ParseUint(number, 10, 64)
	if err != nil {
		return startPoint{}, usagef("--from %q: %q is not a non-negative integer", s, number)
	}
	if kind == "offset" {
		return startPoint{kind: fromOffset, n: n}, nil
	}
	if !tenant {
		return startPoint{}, usagef("--from %q: a tenant sequence needs --tenant", s)
	}
	if n == 0 {
		return startPoint{}, usagef("--from %q: tenant sequences start at 1", s)
	}
	return startPoint{kind: fromSequence, n: n}, nil
}

// request is the first fetch of a read from p. A tenant read from the
// earliest point starts at the tenant's sequence 1.
func (p startPoint) request(topic string, partition uint32, tenant string) *client.FetchRequest {
	req := &client.FetchRequest{Topic: topic, Partition: partition, TenantId: tenant}
	switch p.kind {
	case fromEarliest:
		if tenant != "" {
			req.Start = &client.FetchFromSequence{Sequence: 1}
		} else {
			req.Start = &client.FetchFromPosition{Position: client.Earliest}
		}
	case fromLatest:
		req.Start = &client.FetchFromPosition{Position: client.Latest}
	case fromOffset:
		req.Start = &client.FetchFromOffset{Offset: p.n}
	case fromSequence:
		req.Start = &client.FetchFromSequence{Sequence: p.n}
	case fromTime:
		req.Start = &client.FetchFromTime{TimeUnixNano: p.at}
	}
	return req
}

// consume pages through the log from req, printing each event, until the
// end of the log (next_offset >= high_watermark; an empty page for a
// tenant-sequence read) or until limit events (0: no limit) were printed.
// defaultTTLMs is the topic's, for the expires_at of events without one.
func consume(ctx context.Context, c *client.Client, req *client.FetchRequest, limit int, defaultTTLMs int64, out *jsonWriter) error {
	printed := 0
	for {
		req.MaxEvents = pageEvents(limit, printed)
		resp, err := c.Fetch(ctx, req)
		if err != nil {
			return err
		}
		if done, err := printEvents(resp, req.GetPartition(), limit, &printed, defaultTTLMs, out); done || err != nil {
			return err
		}
		switch start := req.GetStart().(type) {
		case *client.FetchFromSequence:
			if len(resp.GetEvents()) == 0 {
				return nil
			}
			if resp.GetNextSequence() <= start.Sequence {
				return fmt.Errorf("consume: the server did not advance past sequence %d", start.Sequence)
			}
			req.Start = &client.FetchFromSequence{Sequence: resp.GetNextSequence()}
		default:
			if resp.GetNextOffset() >= resp.GetHighWatermark() {
				return nil
			}
			if o, ok := start.(*client.FetchFromOffset); ok && resp.GetNextOffset() <= o.Offset && len(resp.GetEvents()) == 0 {
				return fmt.Errorf("consume: the server did not advance past offset %d", o.Offset)
			}
			req.Start = &client.FetchFromOffset{Offset: resp.GetNextOffset()}
		}
	}
}

// pageEvents is how many events the next page asks for: a full page, or
// what is left of limit (0: no limit) after printed.
func pageEvents(limit, printed int) uint32 {
	if limit > 0 {
		return uint32(min(consumePageEventsMax, limit-printed))
	}
	return consumePageEventsMax
}

// printEvents prints resp's events of partition, counting them in
// *printed; done is true once limit events (0: no limit) were printed.
func printEvents(resp *client.FetchResponse, partition uint32, limit int, printed *int, defaultTTLMs int64, out *jsonWriter) (done bool, err error) {
	for _, e := range resp.GetEvents() {
		if err := out.write(renderEvent(partition, e, defaultTTLMs)); err != nil {
			return false, err
		}
		*printed++
		if limit > 0 && *printed >= limit {
			return true, nil
		}
	}
	return false, nil
}

// consume --follow pacing: each fetch long-polls followWaitMs; an empty
// answer that came back sooner than followEmptyPauseDuration (a server that
// does not long-poll) is followed by a pause of that long, so the loop
// never spins.
const (
	followWaitMs             = 5000
	followEmptyPauseDuration = 100 * time.Millisecond
)

// consumeFollow is consume that does not stop at the end of the log: each
// fetch long-polls (followWaitMs) and the read continues from where the
// answer left it. It returns nil when ctx ends (Ctrl-C) or after limit
// events (0: no limit).
func consumeFollow(ctx context.Context, c *client.Client, req *client.FetchRequest, limit int, defaultTTLMs int64, out *jsonWriter) error {
	printed := 0
	req.MaxWaitMs = followWaitMs
	for {
		req.MaxEvents = pageEvents(limit, printed)
		asked := time.Now()
		resp, err := c.Fetch(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(resp.GetEvents()) == 0 && time.Since(asked) < followEmptyPauseDuration {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(followEmptyPauseDuration):
			}
		}
		if done, err := printEvents(resp, req.GetPartition(), limit, &printed, defaultTTLMs, out); done || err != nil {
			return err
		}
		switch start := req.GetStart().(type) {
		case *client.FetchFromSequence:
			if len(resp.GetEvents()) > 0 {
				req.Start = &client.FetchFromSequence{Sequence: resp.GetNextSequence()}
			}
		case *client.FetchFromPosition:
			if start.Position == client.Latest && req.GetTenantId() != "" {
				req.Start = &client.FetchFromSequence{Sequence: resp.GetNextSequence()}
			} else {
				req.Start = &client.FetchFromOffset{Offset: resp.GetNextOffset()}
			}
		default:
			req.Start = &client.FetchFromOffset{Offset: resp.GetNextOffset()}
		}
	}
}
