package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/heraldlog/herald/client"
)

// consumeGroupBatchEventsMax is the largest batch consume --group asks
// for; with --limit it asks for no more than the limit, so that few
// events are delivered to it and then redelivered to the next member.
const consumeGroupBatchEventsMax = 100

// consumeGroupOptions are consume --group's flags.
type consumeGroupOptions struct {
	topic, group, member string
	limit                int
	idleExit             time.Duration
	defaultTTLMs         int64
	// idempotent skips (and acknowledges) what the group's processed
	// marks say was processed, and acknowledges each printed event with
	// its mark (client/group_once.go).
	idempotent bool
}

// consumeGroup consumes as a member of o.group (client.ConsumeGroup) and
// prints each event as a JSON line, then acknowledges it: an event is
// acknowledged only once its line is written to out (an unbuffered
// stdout), so a crash between the two prints it again in a later run,
// never loses it. It stops after o.limit events (0: no limit), when no
// event came for o.idleExit (0: never), or when ctx ends (Ctrl-C); each
// is a clean end (nil). Closing the consumer leaves the group, so its
// partitions move to the other members at once. An ack that fails is
// reported on stderr and the run goes on: the event is redelivered
// (printed again, here or by another member) unless the ack was recorded.
func consumeGroup(ctx context.Context, c *client.Client, o consumeGroupOptions, out *jsonWriter, stderr io.Writer) (err error) {
	opts := client.GroupConsumerOptions{MemberID: o.member, MaxBatchEvents: consumeGroupBatchEventsMax}
	if o.limit > 0 {
		opts.MaxBatchEvents = uint32(min(consumeGroupBatchEventsMax, o.limit))
	}
	gc, err := c.ConsumeGroup(ctx, o.topic, o.group, opts)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := gc.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	for printed := 0; o.limit == 0 || printed < o.limit; {
		nctx, cancel := ctx, context.CancelFunc(func() {})
		if o.idleExit > 0 {
			nctx, cancel = context.WithTimeout(ctx, o.idleExit)
		}
		m, err := gc.Next(nctx)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			return nil // idle for --idle-exit
		default:
			return err
		}
		ack := m.Ack
		if o.idempotent {
			if m.Processed() {
				if err := m.Ack(ctx); err != nil && ctx.Err() == nil {
					fmt.Fprintf(stderr, "herald: ack of processed offset %d of partition %d: %v (redelivered and skipped again unless it was recorded)\n", m.Offset, m.Partition, err)
				}
				continue
			}
			ack = m.AckProcessed
		}
		if err := out.write(renderEvent(m.Partition, m.Event, o.defaultTTLMs)); err != nil {
			return err
		}
		printed++
		if err := ack(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(stderr, "herald: ack of offset %d of partition %d: %v (redelivered unless it was recorded)\n", m.Offset, m.Partition, err)
		}
	}
	return nil
}
