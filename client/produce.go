package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Produce appends events to topic and returns one result per event, in the
// order given: its partition, offset, tenant sequence and event id. Each
// event needs a tenant id.
//
// Routing follows the topic's ordering (PartitionFor): per tenant (the
// default), per key, or by event id. Produce first gives every event
// without an EventId a fresh UUIDv7, in the caller's Event (so the caller
// learns the id, and resending the same *Event keeps it, which a topic's
// dedupe window recognises).
//
// Events are grouped by partition and each group is sent to that
// partition's leader (any node when it is not known yet), the groups
// concurrently. A group is acknowledged as a whole once committed on a
// quorum. When some groups fail, the returned slice still holds the
// results of the acknowledged events and nil for the others, and the error
// joins each failed group's error.
//
// Backpressure: a reply's throttle_ms pauses its partition, and a THROTTLED
// or QUEUE_FULL refusal (ErrThrottled; nothing was written) pauses it for
// its retry-after. With Config.Backpressure BackpressureBlock (the
// default) Produce waits for a partition's pause before sending to it and
// resends a refused group after the retry-after plus jitter, at most
// Config.MaxThrottleRetries times, while ctx lasts; such a resend never
// makes the outcome unknown. With BackpressureFailFast the group of a
// paused or refusing partition fails at once with an error matching
// ErrThrottled (RetryAfter gives the time left), and nothing of it was
// written. Config.MaxPendingBytes bounds the bytes of unanswered calls
// (PendingBytes): a call past it waits for room or fails with
// ErrThrottled, by the same mode.
//
// Retries: a NOT_LEADER answer is followed to the leader it names at once;
// NO_LEADER, or a node that cannot be reached before the request was sent,
// is retried with backoff on another node, at most Config.MaxRetries times
// and while ctx lasts.
//
// No resend of an ambiguous write: a request that may have reached a node
// and failed without a definite refusal (an attempt timeout after sending,
// a connection lost mid-call, an UNKNOWN_OUTCOME answer) is not resent,
// since that could append its events twice. Its error matches
// ErrUnknownOutcome: the events may or may not be in the log, and the
// caller decides (for example by reading the tenant's latest events). A
// Producer (NewProducer) numbers its events so that such resends are safe,
// and does resend.
//
// Produce is safe for concurrent use, but the events of one call must not
// be used by another goroutine until it returns; it blocks until every
// group is done.
func (c *Client) Produce(ctx context.Context, topic string, events ...*Event) ([]*ProduceResult, error) {
	if err := validateEvents(topic, events); err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, nil
	}
	if err := assignEventIDs(events); err != nil {
		return nil, err
	}
	sizes, total, err := c.admit(ctx, topic, events)
	if err != nil {
		return nil, err
	}
	shape, err := c.shape(ctx, topic)
	if err != nil {
		c.pending.release(total)
		return nil, err
	}
	order, groups := groupByPartition(shape, events)
	results := make([]*ProduceResult, len(events))
	errs := forEachGroup(order, func(p uint32) error {
		defer c.pending.release(groupBytes(sizes, groups[p]))
		return c.produceGroup(ctx, topic, p, groups[p], events, results, false)
	})
	if err := errors.Join(errs...); err != nil {
		return results, err
	}
	return results, nil
}

// admit counts the events' bytes as pending (PendingBytes), waiting for
// room under Config.MaxPendingBytes or failing with ErrThrottled as the
// backpressure mode says. It returns each event's size and their sum; the
// caller releases them, group by group, as the groups are answered.
func (c *Client) admit(ctx context.Context, topic string, events []*Event) ([]int64, int64, error) {
	sizes, total := eventBytes(events)
	if err := c.pending.acquire(ctx, "produce to "+topic, total, c.cfg.Backpressure != BackpressureBlock); err != nil {
		c.log.DebugContext(ctx, "herald: produce held by max pending bytes", "topic", topic, "bytes", total, "err", err)
		return nil, 0, err
	}
	return sizes, total, nil
}

// validateEvents checks what can be checked before anything is sent.
func validateEvents(topic string, events []*Event) error {
	if topic == "" {
		return InvalidArgument("topic", "a topic name is required")
	}
	for i, e := range events {
		if e == nil {
			return InvalidArgument("events", "event %d is nil", i)
		}
		if e.GetTenantId() == "" {
			return InvalidArgument("tenant_id", "event %d has no tenant id", i)
		}
	}
	return nil
}

// assignEventIDs gives every event without an id a UUIDv7, so that it can
// be routed by id (ordering NONE) and recognised if sent again.
func assignEventIDs(events []*Event) error {
	for _, e := range events {
		if e.GetEventId() != "" {
			continue
		}
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("client: making an event id: %w", err)
		}
		e.EventId = id.String()
	}
	return nil
}

// groupByPartition routes events and returns the partitions used, in
// ascending order, and each one's event indexes in the order given.
func groupByPartition(shape topicShape, events []*Event) ([]uint32, map[uint32][]int) {
	groups := make(map[uint32][]int)
	for i, e := range events {
		p := shape.partitionFor(e)
		groups[p] = append(groups[p], i)
	}
	order := make([]uint32, 0, len(groups))
	for p := range groups {
		order = append(order, p)
	}
	slices.Sort(order)
	return order, groups
}

// forEachGroup runs send for every partition of order, concurrently when
// there are several, and returns their errors in the same order. The
// goroutines it starts are owned by the call and done before it returns.
func forEachGroup(order []uint32, send func(partition uint32) error) []error {
	errs := make([]error, len(order))
	if len(order) == 1 {
		errs[0] = send(order[0])
		return errs
	}
	var wg sync.WaitGroup
	for k, p := range order {
		wg.Go(func() { errs[k] = send(p) })
	}
	wg.Wait()
	return errs
}

// produceGroup sends the events at indexes (all for partition) and writes
// their results at the same indexes of results. An idempotent group (every
// event carries a producer id and sequence) is resent after an ambiguous
// failure; see call.idempotent.
func (c *Client) produceGroup(ctx context.Context, topic string, partition uint32, indexes []int, events []*Event, results []*ProduceResult, idempotent bool) error {
	req := &heraldpb.ProduceRequest{Topic: topic, Events: make([]*heraldpb.Event, len(indexes))}
	for j, i := range indexes {
		req.Events[j] = events[i]
	}
	op := fmt.Sprintf("produce to %s/%d", topic, partition)
	resp, err := invoke(ctx, c, call{
		op: op, topic: topic, partition: partition, bound: true, mutating: true, idempotent: idempotent, paced: true,
	}, heraldpb.HeraldClient.Produce, req)
	if err != nil {
		if errors.Is(err, ErrTopicNotFound) {
			c.meta.forgetTopic(topic)
		}
		return err
	}
	if ms := resp.GetThrottleMs(); ms > 0 {
		// Admitted, but the leader asks for a pause before the next
		// request to this partition.
		pauseFor := time.Duration(ms) * time.Millisecond
		c.pacer.hold(topic, partition, pauseFor, "")
		c.log.DebugContext(ctx, "herald: partition asks for a pause", "op", op, "throttle", pauseFor)
	}
	if got := len(resp.GetResults()); got != len(indexes) {
		return fmt.Errorf("client: %s: the server acknowledged %d results for %d events: %w", op, got, len(indexes), ErrUnknownOutcome)
	}
	for j, i := range indexes {
		results[i] = resp.GetResults()[j]
	}
	return nil
}
